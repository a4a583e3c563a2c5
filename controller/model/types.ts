// The controller's shared vocabulary: what a deployment asks for, what the controller knows of a
// device, and where replicas are placed. The scheduler is a pure function over these
// (../../shared/DESIGN.md, "Scheduling"); the store persists them; the API and featherctl show them.
import type { Inventory } from '../../shared/protocol/inventory.js';

export type Arch = 'x86_64' | 'aarch64' | 'riscv64';
/** Accelerator kinds of the contract, plus `cpu` for "no accelerator" in preference lists. */
export type AcceleratorKind = 'tensorrt' | 'cuda' | 'edgetpu' | 'npu' | 'gpu' | 'cpu';
export type Precision = 'fp32' | 'fp16' | 'int8';
/** Accelerator kinds that are devices a replica can hold (every kind but `cpu`). */
export type DeviceAcceleratorKind = Exclude<AcceleratorKind, 'cpu'>;
/**
 * Accelerator devices one replica holds on the kind it runs on: one count for every kind, or a
 * count per kind (kinds not named keep their default). 0 = shares the devices of that kind.
 */
export type AcceleratorDevices = number | Partial<Record<DeviceAcceleratorKind, number>>;

/** A file the agent pulls and verifies (image tarball or model file). */
export interface Artifact {
  url: string;
  sha256: string;
}

export interface ModelVariant extends Artifact {
  accelerator: AcceleratorKind;
  precision: Precision;
}

/** A model variant the deployment's buildHook builds from the base variant on apply. */
export interface ModelBuild {
  accelerator: AcceleratorKind;
  precision: Precision;
}

/** A layer stacked above a runtime image on the device (a runtime module, a model layer). */
export interface ImageLayer extends Artifact {
  /** Names the layer in errors and in the device's image store ("<name>.<16 hex of its sha256>"). */
  name: string;
}

export interface RuntimeVariant {
  arch: Arch;
  /** Image name on the device, and where to pull it from. */
  image: string;
  url: string;
  sha256: string;
  /** Layers above the image, topmost first (e.g. the ONNX Runtime module over busybox); absent = none. */
  layers?: ImageLayer[];
}

export interface RolloutPolicy {
  /** Replicas that may be down at once during a rollout wave. */
  maxUnavailable: number;
  /** Replicas of a new revision started first; the rest wait until they are running. */
  canary: number;
  /** Failed replicas of a new revision that stop the rollout and roll back. */
  failureThreshold: number;
  /** Seconds a replica of a new revision must run without a break before it counts as ready. Default 5. */
  minReadyS?: number;
}

/** What an operator applies (featherctl apply -f deployment.yaml), validated at the boundary. */
export interface DeploymentSpec {
  name: string;
  /** build: variants to build with buildHook on apply (the stored spec has them in variants instead). */
  model: { name: string; variants: ModelVariant[]; build?: ModelBuild[] };
  runtime: { variants: RuntimeVariant[]; args?: string[]; env?: Record<string, string> };
  /** Exactly one of replicas or selector (selector: one replica per matching device). */
  replicas?: number;
  selector?: Record<string, string>;
  /**
   * pids: process/thread limit per replica (optional; the deployment parser fills in 256).
   * accelerators: accelerator devices a replica holds on the kind it runs on (docs/scheduling.md,
   * "Accelerator devices"); absent = the defaults of ACCELERATOR_DEVICE_DEFAULTS (./accelerators.ts).
   */
  resources: { memory: string; cpus: number; pids?: number; accelerators?: AcceleratorDevices };
  /** Preference order, e.g. [tensorrt, cuda, edgetpu, npu, cpu]. */
  accelerators: AcceleratorKind[];
  /** Latency objective for the model on a replica. */
  p95LatencyMs?: number;
  strategy?: 'spread' | 'binpack';
  rollout?: RolloutPolicy;
  /** Optional command run on the controller to produce a variant from the base model. */
  buildHook?: string;
}

export type DeploymentPhase = 'Progressing' | 'Available' | 'Degraded' | 'Failed';

/** One replica's home. */
export interface Placement {
  deployment: string;
  revision: number;
  replica: number;
  deviceId: string;
  accelerator: AcceleratorKind;
  precision: Precision;
  /** Container name on the device (unique per device). */
  container: string;
  /** The device's architecture when placed: picks the runtime image variant (desiredFor). */
  arch?: Arch;
  /**
   * Devices this replica was moved away from (failing repeatedly, breaking its latency objective):
   * not chosen again for it. The scheduler stops moving a replica once the list is full.
   */
  avoid?: string[];
}

/** What the scheduler sees of a device. */
export interface DeviceView {
  id: string;
  online: boolean;
  /** Milliseconds since the epoch the device was last heard from. */
  lastSeen: number;
  inventory: Inventory | undefined;
  labels: Record<string, string>;
  /** "arch/cpu model/accelerator models": devices of one class share latency measurements. */
  boardClass: string;
}

/** Measured latency of a model on a device (from telemetry). */
export interface Measurement {
  deviceId: string;
  boardClass: string;
  model: string;
  precision: Precision;
  p95Ms: number;
  count: number;
  at: number;
}

/**
 * One workload of a device's desired state as published (docs/desired-state.md): the body of
 * container.run without requestId, in its wire form ("128Mi", cores). The agent validates it with
 * shared/protocol/desired.ts; the controller runs the same validation before publishing.
 */
export interface DesiredWorkload {
  name: string;
  image: string;
  args?: string[];
  env?: Record<string, string>;
  limits?: { memory?: string | number; cpu?: number | string; pids?: number; cpuset?: string };
  network?: 'none' | 'host';
  restart?: 'no' | 'on-failure' | 'always';
  models?: Array<{ name: string; url: string; sha256: string }>;
  /** Layers above the image, topmost first. */
  layers?: Array<{ name: string; url: string; sha256: string }>;
  devices?: string[];
}

/** An image a desired workload names, with where to pull it from. */
export interface DesiredImage {
  name: string;
  url: string;
  sha256: string;
}

/** The retained payload on feather/v1/dev/{id}/desired. */
export interface DesiredDoc {
  generation: number;
  workloads: DesiredWorkload[];
  images: DesiredImage[];
}
