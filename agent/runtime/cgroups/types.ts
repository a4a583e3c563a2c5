// What the runtime needs from a cgroup backend. Implementations: v2 (unified), v1, and hybrid
// (v1 controllers beside a v2 mount that holds some of them), chosen by detect.ts.
import type { Limits } from '../../../shared/limits.js';

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

// ---- Extensions (cgroup backends): what detectCgroups() returns beyond CgroupManager. ----

/** Controllers the backends manage. cpuacct and devices exist as such on v1 only. */
export type CgroupController = 'memory' | 'cpu' | 'cpuacct' | 'pids' | 'cpuset' | 'devices';

/** One device-cgroup rule (v1 devices.allow / devices.deny syntax: "c 195:* rwm", "a"). */
export interface DeviceRule {
  allow: boolean;
  /** 'a' = all devices (major, minor and access are ignored). */
  type: 'a' | 'b' | 'c';
  /** undefined = any ('*'). */
  major?: number | undefined;
  minor?: number | undefined;
  /** Some of r (read), w (write), m (mknod). */
  access: string;
}

/**
 * One allow rule of a cgroup v2 device filter: the shim attaches a BPF program that allows what
 * some rule matches (its type, numbers and every access bit asked for) and denies everything else.
 */
export interface DeviceFilterRule {
  /** 'a' = block and char devices. */
  type: 'a' | 'b' | 'c';
  /** undefined = any. */
  major?: number | undefined;
  minor?: number | undefined;
  /** Some of r, w, m. */
  access: string;
}

/** What the shim attaches (spec records devcgroup= and devrule=, docs/shim-spec.md). */
export interface DeviceFilter {
  /** The cgroup2 directory; one of the directories the shim joins. */
  cgroup: string;
  rules: DeviceFilterRule[];
}

export type DeviceCgroupResult =
  /**
   * The rules are in place (v1), or are the shim's to attach (v2: `filter`); the shim must also
   * write the pid to each of `dirs`.
   */
  | { supported: true; dirs: string[]; filter?: DeviceFilter | undefined }
  /** Nothing was done; `reason` says why (no devices controller). */
  | { supported: false; reason: string };

export interface CgroupBackend extends CgroupManager {
  /** Where each managed controller lives (its hierarchy's mount); absent = not available on this host. */
  readonly controllers: Readonly<Partial<Record<CgroupController, string>>>;
  /**
   * Restrict device access for a container, in rule order, before its workload starts. On v1 this makes
   * devices/feather/<name> (if needed) and writes the rules. On v2, which has no device files, it turns
   * the rules into an allow-list `filter` for the shim to attach as a BPF program to the container's
   * cgroup (made by create()) before the workload runs.
   */
  setDevices(name: string, rules: readonly DeviceRule[]): DeviceCgroupResult;
}
