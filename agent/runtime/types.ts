// The runtime's public shapes: what a caller (CLI, MQTT command executors, reconciler) asks for
// and what it gets back. Field names follow the contract's container.run body (../shared/DESIGN.md).
import type { Limits } from '../../shared/limits.js';
import type { ContainerRunFields, RestartPolicy } from '../../shared/protocol/types.js';

export interface BindMount {
  source: string;
  /** Absolute path inside the container. */
  target: string;
  readonly: boolean;
}

export interface DeviceNode {
  hostPath: string;
  containerPath: string;
}

/** A request to create and start a container (validated by the caller or by Runtime.run): container.run's fields, then the runtime's own. */
export interface RunRequest extends ContainerRunFields {
  userns?: boolean | undefined;
  /** PID 1 is the shim's init (reaps zombies, forwards signals). */
  init?: boolean | undefined;
  tty?: boolean | undefined;
  detach?: boolean | undefined;
  binds?: BindMount[] | undefined;
  devices?: DeviceNode[] | undefined;
  /** Extra lower layers stacked above the image (model or runtime modules), topmost first. */
  extraLayers?: string[] | undefined;
  labels?: Record<string, string> | undefined;
}

export type ContainerStatus = 'created' | 'running' | 'exited';

/** What `ps`/`container.list` shows. */
export interface ContainerInfo {
  name: string;
  image: string;
  imageSha256: string;
  status: ContainerStatus;
  pid: number | undefined;
  exitCode: number | undefined;
  oomKilled: boolean;
  createdAt: number;
  startedAt: number | undefined;
  finishedAt: number | undefined;
  limits: Limits;
  args: string[];
  restart: RestartPolicy;
  restarts: number;
  labels: Record<string, string>;
}

export interface RunResult {
  name: string;
  pid: number;
  startedAt: number;
}

export interface StopResult {
  name: string;
  exitCode: number | undefined;
}
