// What the API returns: plain JSON shapes built from the store's records. featherctl renders
// them as tables and prints them as they are with -o json|yaml (docs/featherctl.md, "API").
// Times are milliseconds since the epoch (null: never).
import type { Inventory } from '../../shared/protocol/inventory.js';
import type { Reported } from '../../shared/protocol/reported.js';
import type { DeploymentSpec, Measurement, ModelVariant, Placement } from '../model/types.js';
import type { DeploymentStatus, ReplicaStatus, RolloutStatus } from '../scheduler/index.js';
import type { Store } from '../store/store.js';
import type { DeploymentRecord, DeviceCapacity, DeviceRecord, DeviceStatus, EventRecord, RevisionRecord } from '../store/types.js';
import { deviceLabels, metricsTarget } from './sd.js';

export interface DeviceSummary {
  id: string;
  online: boolean;
  /** online, offline, or unseen (never connected: a token was issued, nothing heard yet). */
  state: 'online' | 'offline' | 'unseen';
  lastSeen: number | null;
  stateChangedAt: number | null;
  agentVersion: string | null;
  arch: string | null;
  cpu: { model: string; cores: number } | null;
  memoryBytes: number | null;
  /** "kind:model" of each accelerator. */
  accelerators: string[];
  labels: Record<string, string>;
  /** An active token exists (featherctl device add). */
  token: boolean;
  workloads: { desired: number; running: number };
  generation: { desired: number | null; reported: number | null };
  /** host:port Prometheus scrapes (docs/featherctl.md, "Service discovery"). */
  metricsTarget: string;
}

/** One container on a device: what the controller wants, what the agent reports, what telemetry shows. */
export interface ContainerView {
  name: string;
  deployment: string | null;
  replica: number | null;
  revision: number | null;
  /** In the controller's desired state for the device. */
  desired: boolean;
  /** Reported phase (pulling, starting, running, failed, stopped); null when not reported. */
  phase: string | null;
  reason: string | null;
  restarts: number | null;
  running: boolean | null;
  cpuPercent: number | null;
  memoryBytes: number | null;
  memoryLimitBytes: number | null;
  /** Measured p95 latency of the deployment's model on this device, ms. */
  p95Ms: number | null;
}

export interface DeviceDetail extends DeviceSummary {
  createdAt: number;
  status: DeviceStatus | null;
  inventory: Inventory | null;
  capacity: DeviceCapacity | null;
  telemetryAt: number | null;
  desired: { generation: number; workloads: string[]; images: string[]; cleared: boolean } | null;
  reported: Reported | null;
  containers: ContainerView[];
  measurements: Measurement[];
  events: EventRecord[];
}

export interface DeploymentSummary {
  name: string;
  revision: number;
  phase: string;
  message: string;
  model: string;
  desired: number;
  placed: number;
  running: number;
  updated: number;
  /** The highest measured p95 among the replicas (what the objective is judged by), ms. */
  p95Ms: number | null;
  objectiveMs: number | null;
  rollout: { phase: string; message: string } | null;
  createdAt: number;
  updatedAt: number;
}

export interface ReplicaView extends ReplicaStatus {
  container: string | null;
}

export interface DeploymentDetail extends DeploymentSummary {
  spec: DeploymentSpec;
  replicas: ReplicaView[];
  unschedulable: DeploymentStatus['unschedulable'] | null;
  rolloutStatus: RolloutStatus | null;
  revisions: Array<{ revision: number; createdAt: number; current: boolean }>;
}

export interface ModelView {
  name: string;
  variants: ModelVariant[];
  deployments: string[];
  /** Latest p95 per board class and precision, from the devices' telemetry. */
  measurements: Array<{ boardClass: string; precision: string; p95Ms: number; devices: number; at: number }>;
}

const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);
const nonZero = (n: number): number | null => (n > 0 ? n : null);

export function deviceSummary(d: DeviceRecord, store: Store): DeviceSummary {
  const desired = store.getDesired(d.id);
  const inv = d.inventory;
  const running = d.reported?.workloads.filter((w) => w.phase === 'running').length ?? 0;
  return {
    id: d.id,
    online: d.online,
    state: d.online ? 'online' : d.lastSeen === 0 && d.status === undefined ? 'unseen' : 'offline',
    lastSeen: nonZero(d.lastSeen),
    stateChangedAt: nonZero(d.stateChangedAt),
    agentVersion: d.status?.agentVersion ?? null,
    arch: inv?.arch ?? null,
    cpu: inv === undefined ? null : { model: inv.cpu.model, cores: inv.cpu.cores },
    memoryBytes: inv?.memoryBytes ?? null,
    accelerators: (inv?.accelerators ?? []).map((a) => `${a.kind}:${a.model}`),
    labels: deviceLabels(d),
    token: store.activeCredentials(d.id).some((c) => c.kind === 'device'),
    workloads: { desired: desired !== undefined && !desired.cleared ? desired.workloads.length : 0, running },
    generation: { desired: desired === undefined ? null : desired.generation, reported: d.reported?.generation ?? null },
    metricsTarget: metricsTarget(d).target,
  };
}

/** Merge placements, the desired state, the reported state and telemetry by container name. */
function containersOf(d: DeviceRecord, store: Store, placements: readonly Placement[]): ContainerView[] {
  const views = new Map<string, ContainerView>();
  const view = (name: string): ContainerView => {
    let v = views.get(name);
    if (v === undefined) {
      v = { name, deployment: null, replica: null, revision: null, desired: false, phase: null, reason: null, restarts: null, running: null, cpuPercent: null, memoryBytes: null, memoryLimitBytes: null, p95Ms: null };
      views.set(name, v);
    }
    return v;
  };
  const desired = store.getDesired(d.id);
  if (desired !== undefined && !desired.cleared) for (const w of desired.workloads) view(w.name).desired = true;
  const measurements = store.listMeasurements({ deviceId: d.id });
  for (const p of placements) {
    const v = view(p.container);
    v.deployment = p.deployment;
    v.replica = p.replica;
    v.revision = p.revision;
    const model = store.getDeployment(p.deployment)?.spec.model.name;
    const m = measurements.find((x) => x.model === model && x.precision === p.precision);
    if (m !== undefined) v.p95Ms = m.p95Ms;
  }
  for (const w of d.reported?.workloads ?? []) {
    const v = view(w.name);
    v.phase = w.phase;
    v.reason = w.reason ?? null;
    v.restarts = w.restarts;
  }
  for (const c of d.containers) {
    const v = view(c.name);
    v.running = c.running;
    v.cpuPercent = c.cpuPercent;
    v.memoryBytes = c.memoryBytes;
    v.memoryLimitBytes = c.memoryLimitBytes ?? null;
    if (v.restarts === null) v.restarts = c.restarts;
  }
  return [...views.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function deviceDetail(d: DeviceRecord, store: Store): DeviceDetail {
  const desired = store.getDesired(d.id);
  return {
    ...deviceSummary(d, store),
    createdAt: d.createdAt,
    status: orNull(d.status),
    inventory: orNull(d.inventory),
    capacity: orNull(d.capacity),
    telemetryAt: nonZero(d.telemetryAt),
    desired: desired === undefined ? null : { generation: desired.generation, workloads: desired.workloads.map((w) => w.name), images: desired.images.map((i) => i.name), cleared: desired.cleared },
    reported: orNull(d.reported),
    containers: containersOf(d, store, store.listPlacements({ deviceId: d.id })),
    measurements: store.listMeasurements({ deviceId: d.id }),
    events: store.listEvents({ deviceId: d.id, limit: 10 }),
  };
}

/** Each replica's p95: the scheduler's figure, else the latest measurement of the model on its device. */
function replicaViews(d: DeploymentRecord, placements: readonly Placement[], store: Store): ReplicaView[] {
  const byReplica = new Map(placements.map((p) => [p.replica, p]));
  const measured = (deviceId: string | undefined, precision: string | undefined): number | undefined => {
    if (deviceId === undefined) return undefined;
    return store.listMeasurements({ deviceId, model: d.spec.model.name }).find((m) => precision === undefined || m.precision === precision)?.p95Ms;
  };
  const fromStatus = d.status?.replicas;
  if (fromStatus !== undefined) {
    return fromStatus.map((r) => {
      const v: ReplicaView = { ...r, container: byReplica.get(r.replica)?.container ?? null };
      const p95 = r.p95Ms ?? measured(r.deviceId, r.precision);
      if (p95 !== undefined) v.p95Ms = p95;
      return v;
    });
  }
  // Not planned yet (the first pass is still running): the placements as they are.
  return placements.map((p) => {
    const v: ReplicaView = { replica: p.replica, deviceId: p.deviceId, revision: p.revision, accelerator: p.accelerator, precision: p.precision, state: 'pending', reason: 'not planned yet', restarts: 0, container: p.container };
    const p95 = measured(p.deviceId, p.precision);
    if (p95 !== undefined) v.p95Ms = p95;
    return v;
  });
}

function worstP95(replicas: readonly ReplicaView[]): number | null {
  let worst: number | null = null;
  for (const r of replicas) if (r.p95Ms !== undefined && (worst === null || r.p95Ms > worst)) worst = r.p95Ms;
  return worst;
}

export function deploymentSummary(d: DeploymentRecord, store: Store, replicas?: ReplicaView[]): DeploymentSummary {
  const placements = store.listPlacements({ deployment: d.name });
  const list = replicas ?? replicaViews(d, placements, store);
  const s = d.status;
  return {
    name: d.name,
    revision: d.revision,
    phase: d.phase,
    message: d.message !== '' ? d.message : s?.message ?? '',
    model: d.spec.model.name,
    desired: s?.desired ?? d.spec.replicas ?? placements.length,
    placed: s?.placed ?? placements.length,
    running: s?.running ?? 0,
    updated: s?.updated ?? placements.filter((p) => p.revision === d.revision).length,
    p95Ms: worstP95(list),
    objectiveMs: d.spec.p95LatencyMs ?? null,
    rollout: d.rollout === undefined ? null : { phase: d.rollout.phase, message: d.rollout.message },
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
  };
}

export function deploymentDetail(d: DeploymentRecord, store: Store, revisions: readonly RevisionRecord[]): DeploymentDetail {
  const replicas = replicaViews(d, store.listPlacements({ deployment: d.name }), store);
  return {
    ...deploymentSummary(d, store, replicas),
    spec: d.spec,
    replicas,
    unschedulable: d.status?.unschedulable ?? null,
    rolloutStatus: orNull(d.rollout),
    revisions: revisions.map((r) => ({ revision: r.revision, createdAt: r.createdAt, current: r.revision === d.revision })),
  };
}

/** Models registered in the store and those the deployments name, with their measured latency. */
export function modelViews(store: Store): ModelView[] {
  const byName = new Map<string, ModelView>();
  const get = (name: string): ModelView => {
    let m = byName.get(name);
    if (m === undefined) {
      m = { name, variants: [], deployments: [], measurements: [] };
      byName.set(name, m);
    }
    return m;
  };
  const addVariant = (m: ModelView, v: ModelVariant): void => {
    if (!m.variants.some((x) => x.accelerator === v.accelerator && x.precision === v.precision && x.sha256 === v.sha256)) m.variants.push(v);
  };
  for (const r of store.listModels()) for (const v of r.variants) addVariant(get(r.name), v);
  for (const d of store.listDeployments()) {
    const m = get(d.spec.model.name);
    m.deployments.push(d.name);
    for (const v of d.spec.model.variants) addVariant(m, v);
  }
  const groups = new Map<string, { model: string; boardClass: string; precision: string; p95Ms: number; devices: number; at: number }>();
  for (const x of store.listMeasurements()) {
    const k = `${x.model}\0${x.boardClass}\0${x.precision}`;
    const g = groups.get(k);
    if (g === undefined) groups.set(k, { model: x.model, boardClass: x.boardClass, precision: x.precision, p95Ms: x.p95Ms, devices: 1, at: x.at });
    else {
      g.devices++;
      if (x.at > g.at) { g.at = x.at; g.p95Ms = x.p95Ms; }
    }
  }
  for (const g of groups.values()) {
    const { model, ...rest } = g;
    get(model).measurements.push(rest);
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
