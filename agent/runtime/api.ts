// The container runtime as the rest of the agent sees it (CLI, MQTT executors, reconciler,
// telemetry). Implemented by agent/runtime/runtime.ts over feather-shim.
import type { CgroupUsage } from './cgroups/types.js';
import type { ContainerInfo, RunRequest, RunResult, StopResult } from './types.js';

export interface ContainerExit {
  name: string;
  exitCode: number | undefined;
  signal: number | undefined;
  oomKilled: boolean;
  finishedAt: number;
}

export interface GcReport {
  /** Containers whose supervisor died and that were recorded as exited. */
  reaped: string[];
  /** Cgroups removed that belonged to no running container. */
  cgroups: string[];
  /** Temp files and directories removed. */
  tmp: string[];
}

export interface ContainerRuntime {
  /** Create and start a container (detached unless req.detach === false). NOT_FOUND image, CONFLICT name. */
  run(req: RunRequest): Promise<RunResult>;
  /** Start a stopped container again, keeping its upper layer. */
  start(name: string): Promise<RunResult>;
  /** SIGTERM, then SIGKILL after timeoutS (default 10). Stopping a stopped container is not an error. */
  stop(name: string, timeoutS?: number): Promise<StopResult>;
  /** Remove a stopped container (force: stop it first). Deletes its upper layer. */
  remove(name: string, opts?: { force?: boolean }): Promise<StopResult>;
  list(opts?: { all?: boolean }): ContainerInfo[];
  /** NOT_FOUND when there is no such container. */
  inspect(name: string): ContainerInfo;
  logs(name: string, tail?: number): Promise<string[]>;
  usage(name: string): CgroupUsage | undefined;
  /** Reap what a killed shim or agent left: state of dead containers, orphan cgroups, temp files. */
  gc(): Promise<GcReport>;
  /** Called once for each container exit the runtime notices (polling the shims' state). Returns an unsubscribe. */
  onExit(listener: (exit: ContainerExit) => void): () => void;
}
