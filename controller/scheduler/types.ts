// The scheduler's input and output (docs/scheduling.md). Everything here is plain data: the
// scheduler and the rollout step are pure functions from these to these, so the controller can
// call them on every change, and tests and the benchmark can run them without a broker.
import type {
  AcceleratorKind, DeploymentPhase, DeploymentSpec, DeviceView, Measurement, Placement, Precision,
} from '../model/types.js';

export interface DeploymentRevision {
  spec: DeploymentSpec;
  revision: number;
}

/**
 * A deployment as the scheduler takes it. `spec`/`revision`: what new replicas are created at
 * (the rollout step's output names it). `others`: the specs of other revisions that placements
 * may still run (a rollout in progress, a rollback); a placement whose revision is in neither is
 * judged by `spec`.
 */
export interface DeploymentInput extends DeploymentRevision {
  others?: DeploymentRevision[];
}

/** Workload phases the agent reports (docs/desired-state.md). */
export type ReportedPhase = 'pulling' | 'starting' | 'running' | 'failed' | 'stopped';

/** What a device reported for one replica (its container `<deployment>-<replica>`). */
export interface ReplicaHealth {
  deployment: string;
  replica: number;
  deviceId: string;
  /** The revision the reported container runs (the controller knows it from the generation the device reached). */
  revision: number;
  phase: ReportedPhase;
  /** Restarts of the current container by its restart policy. */
  restarts: number;
  /**
   * While `running`: since when (ms, the caller's clock) it has been running without a break (no
   * other phase, no restart in between). The rollout counts a replica of a new revision as ready
   * only `rollout.minReadyS` after this; missing = not known, never ready unless minReadyS is 0.
   */
  runningSince?: number;
  reason?: string;
}

export interface SchedulerOptions {
  /** A replica that is not running and has restarted this many times is moved elsewhere. Default 3. */
  failureRestarts?: number;
  /** Latency measurements younger than this are the window a replica is judged over. Default 300 000 (5 min). */
  latencyWindowMs?: number;
  /** Measurements in the window needed before a replica counts as breaking its objective. Default 3. */
  latencyMinSamples?: number;
  /** A replica is moved at most this many times for failing or for latency (Placement.avoid). Default 3. */
  maxAvoid?: number;
  /** Kept free on every device for the system and the agent. Default none. */
  reserved?: { memoryBytes?: number; cpus?: number };
}

export interface ScheduleInput {
  devices: DeviceView[];
  deployments: DeploymentInput[];
  placements: Placement[];
  measurements: Measurement[];
  /** Reported state per placement; missing = not reported yet. */
  health?: ReplicaHealth[];
  now: number;
  /** How long a placement stays on an offline device before it is moved. */
  graceMs: number;
  options?: SchedulerOptions;
}

export type MoveReason =
  /** Offline for longer than the grace period. */
  | 'device-offline'
  /** No longer among the devices. */
  | 'device-gone'
  /** No longer fits: architecture, accelerator, resources (after a revision or inventory change). */
  | 'device-unfit'
  /** Not running after failureRestarts restarts. */
  | 'failing'
  /** Breaks p95LatencyMs over the window; a board that meets it was found. */
  | 'latency';

/** A replica that leaves its device. `to` undefined: nowhere to go, so it is unscheduled. */
export interface Move {
  deployment: string;
  replica: number;
  from: string;
  to: string | undefined;
  reason: MoveReason;
  detail: string;
}

export type RemoveReason = 'deleted' | 'scaled-down' | 'unselected' | 'duplicate';

/** A placement dropped without a replacement. */
export interface Removal {
  deployment: string;
  replica: number;
  deviceId: string;
  reason: RemoveReason;
}

export type ReplicaState = ReportedPhase | 'pending' | 'offline' | 'unschedulable';

export interface ReplicaStatus {
  replica: number;
  deviceId?: string;
  revision?: number;
  accelerator?: AcceleratorKind;
  precision?: Precision;
  /** The reported phase; `pending` (not reported at this revision yet), `offline`, `unschedulable`. */
  state: ReplicaState;
  reason: string;
  restarts: number;
  /** Latest measured p95 of the model on this device at this precision. */
  p95Ms?: number;
  /** Breaks the latency objective over the window (and no better board was found). */
  slow?: boolean;
}

/** Devices rejected for one reason, e.g. {reason: "not enough free memory (needs 512Mi)", devices: 3000}. */
export interface RejectCount {
  reason: string;
  devices: number;
}

export interface DeploymentStatus {
  name: string;
  /** The revision new replicas get. */
  revision: number;
  phase: DeploymentPhase;
  desired: number;
  placed: number;
  running: number;
  /** Placements at `revision`. */
  updated: number;
  replicas: ReplicaStatus[];
  unschedulable: { replicas: number; reasons: RejectCount[] };
  message: string;
}

export interface ScheduleResult {
  /** Every placement, sorted by deployment then replica. */
  placements: Placement[];
  /** One per deployment, sorted by name. */
  status: DeploymentStatus[];
  moves: Move[];
  removals: Removal[];
  /** Devices whose placements changed: publish each one's whole desired set with a new generation. */
  affectedDevices: string[];
}
