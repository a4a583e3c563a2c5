// desiredFor(): a device's whole desired set from the placements on it, in the shape the agent
// validates (docs/desired-state.md: each workload is a container.run body, `images` says where to
// pull the runtime images, a runtime variant's `layers` travel in its workloads). The caller adds
// the `generation`. Given the device's inventory accelerators, each replica on an accelerator
// gets the CDI names of the devices it holds or shares (assign.ts).
import { modelFileName } from '../../shared/protocol/model-file.js';
import { FeatherError } from '../../shared/errors.js';
import { DEFAULT_PIDS, withDefaults } from '../deployments/spec.js';
import { acceleratorNeed } from '../model/accelerators.js';
import { assignDevices, type DeviceNote } from './assign.js';
import type { AcceleratorEntry } from './accelerators.js';
import type { DeploymentSpec, Placement, RuntimeVariant } from '../model/types.js';
import type { DeploymentInput, DeploymentRevision } from './types.js';

export interface DesiredArtifact {
  name: string;
  url: string;
  sha256: string;
}

/** A container.run body without requestId (the agent refuses fields it does not know). */
export interface DesiredWorkload {
  name: string;
  image: string;
  args: string[];
  env: Record<string, string>;
  limits: { memory: string; cpu: number; pids: number };
  restart: 'always';
  models: DesiredArtifact[];
  /** The runtime variant's layers above its image, topmost first; absent when it has none. */
  layers?: DesiredArtifact[];
  devices?: string[];
}

export interface DesiredSet {
  workloads: DesiredWorkload[];
  images: DesiredArtifact[];
  /** Replicas that do not get every accelerator device they should, and why; absent when none. */
  notes?: DeviceNote[];
}

export interface DesiredOptions {
  /**
   * The device's inventory accelerators (with their `cdi` names): each replica on an accelerator
   * gets the CDI names of the devices it holds, or shares (assign.ts). Without it, no `devices`.
   */
  accelerators?: readonly AcceleratorEntry[] | undefined;
  /** The device's desired workloads as last published: replicas that stay keep their devices. */
  previous?: readonly { name: string; devices?: readonly string[] | undefined }[] | undefined;
  /** Override: the CDI names ("vendor.com/class=name") of a replica's container; when given, nothing is assigned. */
  devices?: ((placement: Placement) => string[]) | undefined;
}

/**
 * The image name on the device: the deployment's name for it plus 12 hex digits of its sha256,
 * so two revisions (or two deployments) that name different images alike never collide on one
 * device, and a new image under the same name replaces the containers that use it.
 */
export function deviceImageName(v: RuntimeVariant): string {
  return `${v.image}-${v.sha256.slice(0, 12)}`;
}

function lookup(deployments: readonly (DeploymentInput | DeploymentRevision)[]): Map<string, DeploymentSpec> {
  const specs = new Map<string, DeploymentSpec>();
  for (const d of deployments) {
    for (const r of [d, ...('others' in d ? d.others ?? [] : [])]) {
      const k = `${r.spec.name}\0${r.revision}`;
      if (!specs.has(k)) specs.set(k, r.spec);
    }
  }
  return specs;
}

/** The workload one placement asks for, with the image it names. */
export function workloadFor(p: Placement, spec: DeploymentSpec, opts: DesiredOptions = {}): { workload: DesiredWorkload; image: DesiredArtifact } {
  const s = withDefaults(spec);
  const runtime = p.arch !== undefined
    ? s.runtime.variants.find((v) => v.arch === p.arch)
    : s.runtime.variants.length === 1 ? s.runtime.variants[0] : undefined;
  if (!runtime) {
    throw new FeatherError('INTERNAL', `placement ${p.container} on ${p.deviceId}: revision ${p.revision} of ${p.deployment} has no runtime image for ${p.arch ?? 'an unknown architecture'}; run the scheduler again to re-place it`);
  }
  const model = s.model.variants.find((v) => v.accelerator === p.accelerator && v.precision === p.precision);
  if (!model) {
    throw new FeatherError('INTERNAL', `placement ${p.container} on ${p.deviceId}: revision ${p.revision} of ${p.deployment} has no ${p.accelerator}/${p.precision} model variant; run the scheduler again to re-place it`);
  }
  const image = { name: deviceImageName(runtime), url: runtime.url, sha256: runtime.sha256 };
  const workload: DesiredWorkload = {
    name: p.container,
    image: image.name,
    args: [...(s.runtime.args ?? [])],
    env: {
      ...(s.runtime.env ?? {}),
      FEATHER_DEPLOYMENT: p.deployment,
      FEATHER_REPLICA: String(p.replica),
      FEATHER_ACCELERATOR: p.accelerator,
      FEATHER_PRECISION: p.precision,
      FEATHER_MODEL_PATH: `/models/${s.model.name}/${modelFileName(model.url)}`,
    },
    limits: { memory: s.resources.memory, cpu: s.resources.cpus, pids: s.resources.pids ?? DEFAULT_PIDS },
    restart: 'always',
    models: [{ name: s.model.name, url: model.url, sha256: model.sha256 }],
  };
  // Absent rather than [] when there are none: a workload without layers reads as it always did.
  if (runtime.layers !== undefined && runtime.layers.length > 0) {
    workload.layers = runtime.layers.map((l) => ({ name: l.name, url: l.url, sha256: l.sha256 }));
  }
  const devices = opts.devices?.(p) ?? [];
  if (devices.length > 0) workload.devices = devices;
  return { workload, image };
}

/**
 * The desired workloads and images of one device: every placement on it, by container name.
 * `deployments` must hold the spec of every revision the placements run (DeploymentInput.others).
 */
export function desiredFor(deviceId: string, placements: readonly Placement[], deployments: readonly (DeploymentInput | DeploymentRevision)[], opts: DesiredOptions = {}): DesiredSet {
  const specs = lookup(deployments);
  const mine: { p: Placement; spec: DeploymentSpec }[] = [];
  for (const p of placements) {
    if (p.deviceId !== deviceId) continue;
    const spec = specs.get(`${p.deployment}\0${p.revision}`);
    if (!spec) {
      throw new FeatherError('INTERNAL', `placement ${p.container} on ${deviceId} runs revision ${p.revision} of ${p.deployment}, which is not among the deployments given; pass the spec of every revision placements run`);
    }
    mine.push({ p, spec });
  }
  let devices = opts.devices;
  let notes: DeviceNote[] = [];
  if (devices === undefined && opts.accelerators !== undefined) {
    const replicas = mine.map(({ p, spec }) => ({
      container: p.container, deployment: p.deployment, replica: p.replica, accelerator: p.accelerator,
      need: acceleratorNeed(spec.resources.accelerators, p.accelerator),
    }));
    const previous = new Map((opts.previous ?? []).map((w) => [w.name, w.devices ?? []]));
    const assigned = assignDevices(opts.accelerators, replicas, previous);
    devices = (p) => assigned.names.get(p.container) ?? [];
    notes = assigned.notes;
  }
  const workloads: DesiredWorkload[] = [];
  const images = new Map<string, DesiredArtifact>();
  for (const { p, spec } of mine) {
    const { workload, image } = workloadFor(p, spec, { devices });
    workloads.push(workload);
    images.set(image.name, image);
  }
  workloads.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (let i = 1; i < workloads.length; i++) {
    if (workloads[i]?.name === workloads[i - 1]?.name) {
      throw new FeatherError('INTERNAL', `two placements on ${deviceId} share the container name ${workloads[i]?.name}`);
    }
  }
  const set: DesiredSet = { workloads, images: [...images.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
  if (notes.length > 0) set.notes = notes;
  return set;
}
