// What the v1, v2 and hybrid backends share: options, limit arithmetic, checks and rollback.
import { FeatherError, conflict } from '../../../shared/errors.js';
import { createLogger, type Logger } from '../../../shared/logging.js';
import { validateName, type Limits } from '../../../shared/limits.js';
import { nodeCgroupFs, removeDir, type CgroupFs } from './fs.js';
import type { CgroupUsage } from './types.js';

export interface BackendOptions {
  /** The file operations; tests pass a fake kernel (test/helpers/fake-cgroupfs.ts). */
  fs?: CgroupFs | undefined;
  log?: Logger | undefined;
  /** How long remove() retries a cgroup that is still busy (its last process exiting). Default 1000. */
  busyRetryMs?: number | undefined;
}

export interface ResolvedOptions {
  fs: CgroupFs;
  log: Logger;
  busyRetryMs: number;
}

export function resolveOptions(opts: BackendOptions): ResolvedOptions {
  return {
    fs: opts.fs ?? nodeCgroupFs,
    log: opts.log ?? createLogger('agent:runtime:cgroups'),
    busyRetryMs: opts.busyRetryMs ?? 1000,
  };
}

/** Usage fields, grouped by the controller that provides them (a hybrid host takes each group from its owner). */
export type UsagePart = Partial<CgroupUsage>;

export function fillUsage(part: UsagePart): CgroupUsage {
  const memoryBytes = part.memoryBytes ?? 0;
  return {
    cpuSeconds: part.cpuSeconds ?? 0,
    memoryBytes,
    memoryPeakBytes: Math.max(part.memoryPeakBytes ?? 0, memoryBytes),
    memoryLimitBytes: part.memoryLimitBytes,
    pids: part.pids ?? 0,
    oomKills: part.oomKills ?? 0,
  };
}

/** Values above this mean "no limit" (v1 reports PAGE_COUNTER_MAX * page size, about 2^63). */
export const UNLIMITED_THRESHOLD = 2 ** 60;

export function limitOrUndefined(n: number | undefined): number | undefined {
  return n === undefined || n >= UNLIMITED_THRESHOLD ? undefined : n;
}

/** CFS period: 100 ms, the kernel default. */
export const CPU_PERIOD_US = 100_000;

/** CPU cores → CFS quota in µs per period (the kernel's minimum quota is 1 ms). */
export function cpuQuotaUs(cpus: number): number {
  return Math.max(1000, Math.round(cpus * CPU_PERIOD_US));
}

/** Checks at the boundary: a name that is safe as a directory, and limits that make sense. */
export function checkRequest(name: string, limits: Limits, hasCpuset: boolean): void {
  validateName('container', name);
  const bad = (what: string): FeatherError => new FeatherError('BAD_REQUEST', `cgroup limits for ${name}: ${what}`);
  if (!Number.isSafeInteger(limits.memoryBytes) || limits.memoryBytes <= 0) throw bad(`memory ${limits.memoryBytes} must be a positive whole number of bytes`);
  if (!Number.isFinite(limits.cpus) || limits.cpus <= 0) throw bad(`cpu ${limits.cpus} must be a positive number of cores`);
  if (!Number.isSafeInteger(limits.pids) || limits.pids < 1) throw bad(`pids ${limits.pids} must be a whole number of at least 1`);
  if (limits.cpuset !== undefined && !hasCpuset) {
    throw new FeatherError('RUNTIME_ERROR', `cpuset "${limits.cpuset}" was asked for ${name} but this host has no cpuset cgroup controller: drop the cpuset or enable the controller`);
  }
}

export function conflictAt(name: string, dir: string): FeatherError {
  return conflict(`a cgroup for container ${name} already exists at ${dir}: remove the container (feather-agent rm ${name}) or pick another name`);
}

/**
 * Run a creation step by step; `made` collects the directories it creates, in order. On any
 * failure they are removed again, last first, so that a failed create leaves no cgroup behind.
 */
export function createWithRollback<T>(o: ResolvedOptions, fn: (made: string[]) => T): T {
  const made: string[] = [];
  try {
    return fn(made);
  } catch (e: unknown) {
    for (const path of [...made].reverse()) {
      try {
        removeDir(o.fs, path, o.busyRetryMs);
      } catch (re: unknown) {
        o.log.error('cgroup.rollback_failed', { path, error: re });
      }
    }
    throw e;
  }
}
