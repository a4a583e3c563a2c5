// What the store keeps, as the rest of the controller sees it. Times are milliseconds since
// the epoch; JSON columns come back parsed.
import type { Inventory } from '../../shared/protocol/inventory.js';
import type { DeviceStats } from '../../shared/protocol/telemetry.js';
import type { Reported } from '../../shared/protocol/reported.js';
import type { DeploymentPhase, DeploymentSpec, DesiredImage, DesiredWorkload, ModelVariant } from '../model/types.js';
import type { DeploymentStatus, RolloutStatus } from '../scheduler/index.js';

/** The device's retained status message, as last received. */
export interface DeviceStatus {
  online: boolean;
  ts: number;
  agentVersion?: string;
  reason?: string;
}

/** The latest figures from the device's telemetry (what is free right now). */
export type DeviceCapacity = Pick<DeviceStats,
  'cpuPercent' | 'cpuCores' | 'load1' | 'memoryTotalBytes' | 'memoryAvailableBytes' | 'diskTotalBytes' | 'diskFreeBytes'>;

/** A container seen in the device's telemetry (desired ones and hand-started ones alike). */
export interface DeviceContainer {
  name: string;
  running: boolean;
  cpuPercent: number;
  memoryBytes: number;
  memoryLimitBytes?: number;
  restarts: number;
}

export interface DeviceRecord {
  id: string;
  createdAt: number;
  online: boolean;
  /** Last message heard from the device (0: never). Retained replays do not count. */
  lastSeen: number;
  /** When `online` last changed. */
  stateChangedAt: number;
  status: DeviceStatus | undefined;
  inventory: Inventory | undefined;
  inventoryAt: number;
  reported: Reported | undefined;
  reportedAt: number;
  /** Labels set by operators (the inventory has the device's own). */
  labels: Record<string, string>;
  capacity: DeviceCapacity | undefined;
  containers: DeviceContainer[];
  telemetryAt: number;
}

export type CredentialKind = 'admin' | 'device';

export interface CredentialRecord {
  id: number;
  /** "admin" or the device id; the MQTT username. */
  identity: string;
  kind: CredentialKind;
  /** scrypt$N$r$p$salt$hash (controller/broker/tokens.ts). */
  hash: string;
  /** The same token as Mosquitto's $7$ PBKDF2-SHA512 line, for featherctl's password file. */
  mosquittoHash: string;
  createdAt: number;
  revokedAt: number | undefined;
}

export interface ModelRecord {
  name: string;
  variants: ModelVariant[];
  createdAt: number;
  updatedAt: number;
}

export interface DeploymentRecord {
  name: string;
  /** The revision in force. */
  revision: number;
  spec: DeploymentSpec;
  phase: DeploymentPhase;
  message: string;
  /** The scheduler's status after its last pass (replicas, where, why not), for featherctl describe. */
  status: DeploymentStatus | undefined;
  /** The rollout state the scheduler carries from one pass to the next. */
  rollout: RolloutStatus | undefined;
  createdAt: number;
  updatedAt: number;
}

export interface RevisionRecord {
  deployment: string;
  revision: number;
  spec: DeploymentSpec;
  createdAt: number;
}

export interface EventRecord {
  id: number;
  ts: number;
  deviceId: string | undefined;
  type: string;
  body: Record<string, unknown>;
}

/** A device's desired state as the controller last decided it. */
export interface DesiredRecord {
  deviceId: string;
  generation: number;
  workloads: DesiredWorkload[];
  images: DesiredImage[];
  /** sha256 of the canonical JSON of {workloads, images}. */
  hash: string;
  /** Deployment revision of each workload (container name -> revision), when placed by the scheduler. */
  revisions: Record<string, number>;
  /** The same for the generation before. */
  previousRevisions: Record<string, number>;
  /** True after clearDesired: the retained message was emptied; nothing is re-published. */
  cleared: boolean;
  updatedAt: number;
}
