// What the runtime needs from a cgroup backend. Implementations: v2 (unified), v1, and hybrid
// (v1 controllers beside a v2 mount that holds some of them), chosen by detect.ts.
import type { Limits } from '../limits.js';

export type CgroupMode = 'v1' | 'v2' | 'hybrid';

export interface CgroupUsage {
  cpuSeconds: number;
  memoryBytes: number;
  memoryPeakBytes: number;
  /** undefined when no limit is set */
  memoryLimitBytes: number | undefined;
  pids: number;
  oomKills: number;
}

export interface CgroupManager {
  readonly mode: CgroupMode;
  /**
   * Create the container's cgroup(s) with its limits. Returns every directory whose
   * cgroup.procs the shim must write the workload's pid to before it runs.
   * Fails with CONFLICT if they exist, RUNTIME_ERROR naming the file when a write fails.
   */
  create(name: string, limits: Limits): string[];
  /** Current usage, or undefined when the container has no cgroup. */
  usage(name: string): CgroupUsage | undefined;
  /** Remove the container's cgroup(s); missing ones are fine. Kills nothing. */
  remove(name: string): void;
  /** Names of the containers that have a cgroup under feather/. */
  list(): string[];
}
