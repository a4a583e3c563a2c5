// cgroup v2 (unified): <mount>/feather/<name>. Also the v2 half of a hybrid host, where `controllers`
// is the subset its mount holds.
import { join } from 'node:path';
import { errnoCode, FeatherError } from '../../../shared/errors.js';
import { validateName, type Limits } from '../../../shared/limits.js';
import {
  CPU_PERIOD_US, checkRequest, conflictAt, cpuQuotaUs, createWithRollback, fillUsage, resolveOptions,
  type BackendOptions, type ResolvedOptions, type UsagePart,
} from './common.js';
import { toDeviceFilterRules } from './devices.js';
import { cgroupError, ensureDir, readFile, readKeyed, readNumber, readOptional, removeDir, writeFile } from './fs.js';
import type { CgroupBackend, CgroupController, CgroupUsage, DeviceCgroupResult, DeviceRule } from './types.js';

export type V2Controller = 'memory' | 'cpu' | 'pids' | 'cpuset';
export const V2_CONTROLLERS: readonly V2Controller[] = ['memory', 'cpu', 'pids', 'cpuset'];

export interface V2Options extends BackendOptions {
  /** The cgroup2 mount: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host. */
  mount: string;
  /** The controllers managed here (those in the mount's cgroup.controllers that we use). */
  controllers: readonly V2Controller[];
}

export class V2Cgroups implements CgroupBackend {
  readonly mode = 'v2';
  readonly mount: string;
  readonly controllers: Readonly<Partial<Record<CgroupController, string>>>;
  private readonly o: ResolvedOptions;
  /** Highest memory.current seen, per container, for kernels without memory.peak (before 5.19). */
  private readonly peaks = new Map<string, number>();

  constructor(opts: V2Options) {
    this.mount = opts.mount;
    this.controllers = Object.fromEntries(opts.controllers.map((c) => [c, opts.mount]));
    this.o = resolveOptions(opts);
  }

  get parent(): string { return join(this.mount, 'feather'); }
  dir(name: string): string { return join(this.parent, name); }
  owns(c: CgroupController): boolean { return this.controllers[c] !== undefined; }

  create(name: string, limits: Limits): string[] {
    checkRequest(name, limits, this.owns('cpuset'));
    return this.createPart(name, limits);
  }

  /** Create without the cpuset check (the hybrid backend checks over both halves). */
  createPart(name: string, limits: Limits): string[] {
    const { fs } = this.o;
    const dir = this.dir(name);
    if (fs.exists(dir)) throw conflictAt(name, dir);
    const enable = V2_CONTROLLERS.filter((c) => this.owns(c) && (c !== 'cpuset' || limits.cpuset !== undefined));
    return createWithRollback(this.o, (made) => {
      // Controllers flow down: the mount's subtree_control first, then feather/'s, then the leaf.
      this.enable(this.mount, enable);
      ensureDir(fs, this.parent);
      this.enable(this.parent, enable);
      try {
        fs.mkdir(dir);
      } catch (e: unknown) {
        throw errnoCode(e) === 'EEXIST' ? conflictAt(name, dir) : cgroupError('create', dir, e);
      }
      made.push(dir);
      this.writeLimits(dir, limits);
      this.o.log.debug('cgroup.created', { name, dir, mode: 'v2' });
      return [dir];
    });
  }

  private enable(dir: string, controllers: readonly V2Controller[]): void {
    const on = new Set(readFile(this.o.fs, dir, 'cgroup.subtree_control').split(/\s+/).filter(Boolean));
    for (const c of controllers) {
      if (!on.has(c)) writeFile(this.o.fs, dir, 'cgroup.subtree_control', `+${c}`);
    }
  }

  private writeLimits(dir: string, limits: Limits): void {
    const { fs } = this.o;
    if (this.owns('memory')) {
      writeFile(fs, dir, 'memory.max', String(limits.memoryBytes));
      // No swap beyond the limit: the limit is the container's whole footprint.
      if (fs.exists(join(dir, 'memory.swap.max'))) writeFile(fs, dir, 'memory.swap.max', '0');
    }
    if (this.owns('cpu')) writeFile(fs, dir, 'cpu.max', `${cpuQuotaUs(limits.cpus)} ${CPU_PERIOD_US}`);
    if (this.owns('pids')) writeFile(fs, dir, 'pids.max', String(limits.pids));
    if (this.owns('cpuset') && limits.cpuset !== undefined) {
      writeFile(fs, dir, 'cpuset.cpus', limits.cpuset);
      const mems = readOptional(fs, this.parent, 'cpuset.mems.effective');
      if (mems !== undefined && mems !== '') writeFile(fs, dir, 'cpuset.mems', mems);
    }
  }

  usage(name: string): CgroupUsage | undefined {
    const part = this.usagePart(name);
    return part === undefined ? undefined : fillUsage(part);
  }

  /** What this half can tell; cpuSeconds comes from cpu.stat, which v2 has with or without the cpu controller. */
  usagePart(name: string): UsagePart | undefined {
    const { fs } = this.o;
    const dir = this.dir(validateName('container', name));
    if (!fs.exists(dir)) return undefined;
    const part: UsagePart = {};
    const usec = readKeyed(fs, dir, 'cpu.stat', 'usage_usec');
    if (usec !== undefined) part.cpuSeconds = usec / 1e6;
    if (this.owns('memory')) {
      const current = readNumber(fs, dir, 'memory.current') ?? 0;
      const peak = readNumber(fs, dir, 'memory.peak') ?? Math.max(current, this.peaks.get(name) ?? 0);
      this.peaks.set(name, peak);
      part.memoryBytes = current;
      part.memoryPeakBytes = peak;
      part.memoryLimitBytes = readNumber(fs, dir, 'memory.max');
      part.oomKills = readKeyed(fs, dir, 'memory.events', 'oom_kill') ?? 0;
    }
    if (this.owns('pids')) part.pids = readNumber(fs, dir, 'pids.current') ?? 0;
    return part;
  }

  remove(name: string): void {
    const dir = this.dir(validateName('container', name));
    removeDir(this.o.fs, dir, this.o.busyRetryMs);
    this.peaks.delete(name);
    this.o.log.debug('cgroup.removed', { name, dir, mode: 'v2' });
  }

  list(): string[] {
    return this.o.fs.subdirs(this.parent);
  }

  /**
   * v2 has no device files: the rules become the allow-list of a BPF device program that the shim
   * attaches to the container's cgroup before the workload runs. Nothing is written here, and no
   * directory is added to the ones create() returned (the shim joins that one already).
   */
  setDevices(name: string, rules: readonly DeviceRule[]): DeviceCgroupResult {
    const dir = this.dir(validateName('container', name));
    const filter = toDeviceFilterRules(rules);
    if (!this.o.fs.exists(dir)) {
      throw new FeatherError('RUNTIME_ERROR', `cannot filter devices of container "${name}": its cgroup ${dir} does not exist (create() makes it)`);
    }
    return { supported: true, dirs: [], filter: { cgroup: dir, rules: filter } };
  }
}
