// cgroup v1: one hierarchy per controller, <mount>/feather/<name> in each that we use: memory, cpu,
// cpuacct (for usage, when it is its own hierarchy), pids, and cpuset only when pinning is asked.
import { join } from 'node:path';
import { errnoCode } from '../../../shared/errors.js';
import { validateName, type Limits } from '../../../shared/limits.js';
import {
  CPU_PERIOD_US, checkRequest, conflictAt, cpuQuotaUs, createWithRollback, fillUsage, limitOrUndefined, resolveOptions,
  type BackendOptions, type ResolvedOptions, type UsagePart,
} from './common.js';
import { applyV1DeviceRules } from './devices.js';
import { cgroupError, ensureDir, readKeyed, readNumber, readOptional, removeAll, writeFile, type CgroupFs } from './fs.js';
import type { CgroupBackend, CgroupController, CgroupUsage, DeviceCgroupResult, DeviceRule } from './types.js';

export type V1Mounts = Readonly<Partial<Record<CgroupController, string>>>;

export interface V1Options extends BackendOptions {
  /** Each controller's hierarchy mount; co-mounted controllers (cpu,cpuacct) share one path. */
  mounts: V1Mounts;
}

/** One hierarchy a container gets a directory in, with the controllers it carries. */
interface Target {
  mount: string;
  controllers: Set<CgroupController>;
}

const CREATE_ORDER: readonly CgroupController[] = ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset'];
const ALL: readonly CgroupController[] = [...CREATE_ORDER, 'devices'];

/**
 * Set memory.limit_in_bytes and, when swap accounting is on, memory.memsw.limit_in_bytes to the same
 * value (no swap beyond the limit). The kernel keeps memsw >= limit at every step, so when raising
 * memsw goes first, and when lowering (as on create, from unlimited) the limit goes first.
 */
export function setMemoryV1(fs: CgroupFs, dir: string, bytes: number): void {
  const value = String(bytes);
  if (!fs.exists(join(dir, 'memory.memsw.limit_in_bytes'))) {
    writeFile(fs, dir, 'memory.limit_in_bytes', value);
    return;
  }
  const current = readNumber(fs, dir, 'memory.limit_in_bytes') ?? Number.POSITIVE_INFINITY;
  const order = bytes > current
    ? ['memory.memsw.limit_in_bytes', 'memory.limit_in_bytes']
    : ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'];
  for (const file of order) writeFile(fs, dir, file, value);
}

export class V1Cgroups implements CgroupBackend {
  readonly mode = 'v1';
  readonly controllers: V1Mounts;
  private readonly o: ResolvedOptions;

  constructor(opts: V1Options) {
    this.controllers = { ...opts.mounts };
    this.o = resolveOptions(opts);
  }

  owns(c: CgroupController): boolean { return this.controllers[c] !== undefined; }

  /** The hierarchies used for these controllers, in order, co-mounted ones merged. */
  private targets(controllers: readonly CgroupController[]): Target[] {
    const byMount = new Map<string, Target>();
    for (const c of controllers) {
      const mount = this.controllers[c];
      if (mount === undefined) continue;
      const t = byMount.get(mount) ?? { mount, controllers: new Set<CgroupController>() };
      t.controllers.add(c);
      byMount.set(mount, t);
    }
    return [...byMount.values()];
  }

  private createTargets(limits: Limits): Target[] {
    return this.targets(CREATE_ORDER.filter((c) => c !== 'cpuset' || limits.cpuset !== undefined));
  }

  private dirs(name: string, controllers: readonly CgroupController[] = ALL): string[] {
    return this.targets(controllers).map((t) => join(t.mount, 'feather', name));
  }

  exists(name: string): boolean {
    validateName('container', name);
    return this.dirs(name).some((d) => this.o.fs.exists(d));
  }

  create(name: string, limits: Limits): string[] {
    checkRequest(name, limits, this.owns('cpuset'));
    return this.createPart(name, limits);
  }

  /** Create without the cpuset check (the hybrid backend checks over both halves). */
  createPart(name: string, limits: Limits): string[] {
    const { fs } = this.o;
    const targets = this.createTargets(limits);
    for (const t of targets) {
      const dir = join(t.mount, 'feather', name);
      if (fs.exists(dir)) throw conflictAt(name, dir);
    }
    return createWithRollback(this.o, (made) => {
      for (const t of targets) {
        const parent = join(t.mount, 'feather');
        const dir = join(parent, name);
        ensureDir(fs, parent);
        if (t.controllers.has('cpuset')) this.prepareCpusetParent(t.mount, parent);
        try {
          fs.mkdir(dir);
        } catch (e: unknown) {
          throw errnoCode(e) === 'EEXIST' ? conflictAt(name, dir) : cgroupError('create', dir, e);
        }
        made.push(dir);
        this.writeLimits(t, parent, dir, limits);
      }
      this.o.log.debug('cgroup.created', { name, dirs: made, mode: 'v1' });
      return [...made];
    });
  }

  /** A v1 cpuset with empty cpus or mems cannot take tasks nor children with any: copy them down. */
  private prepareCpusetParent(mount: string, parent: string): void {
    const { fs } = this.o;
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if ((readOptional(fs, parent, file) ?? '') !== '') continue;
      const from = readOptional(fs, mount, file) ?? '';
      if (from !== '') writeFile(fs, parent, file, from);
    }
  }

  private writeLimits(t: Target, parent: string, dir: string, limits: Limits): void {
    const { fs } = this.o;
    if (t.controllers.has('memory')) setMemoryV1(fs, dir, limits.memoryBytes);
    if (t.controllers.has('cpu')) {
      writeFile(fs, dir, 'cpu.cfs_period_us', String(CPU_PERIOD_US));
      writeFile(fs, dir, 'cpu.cfs_quota_us', String(cpuQuotaUs(limits.cpus)));
    }
    if (t.controllers.has('pids')) writeFile(fs, dir, 'pids.max', String(limits.pids));
    if (t.controllers.has('cpuset') && limits.cpuset !== undefined) {
      writeFile(fs, dir, 'cpuset.cpus', limits.cpuset);
      writeFile(fs, dir, 'cpuset.mems', readOptional(fs, parent, 'cpuset.mems') ?? '');
    }
  }

  usage(name: string): CgroupUsage | undefined {
    const part = this.usagePart(name);
    return part === undefined ? undefined : fillUsage(part);
  }

  usagePart(name: string): UsagePart | undefined {
    const { fs } = this.o;
    if (!this.exists(name)) return undefined;
    const at = (c: CgroupController): string | undefined => {
      const mount = this.controllers[c];
      return mount === undefined ? undefined : join(mount, 'feather', name);
    };
    const part: UsagePart = {};
    const acct = at('cpuacct');
    const cpu = at('cpu');
    const ns = acct === undefined ? undefined : readNumber(fs, acct, 'cpuacct.usage');
    const usec = ns === undefined && cpu !== undefined ? readKeyed(fs, cpu, 'cpu.stat', 'usage_usec') : undefined;
    if (ns !== undefined) part.cpuSeconds = ns / 1e9;
    else if (usec !== undefined) part.cpuSeconds = usec / 1e6;
    const mem = at('memory');
    if (mem !== undefined && fs.exists(mem)) {
      part.memoryBytes = readNumber(fs, mem, 'memory.usage_in_bytes') ?? 0;
      part.memoryPeakBytes = readNumber(fs, mem, 'memory.max_usage_in_bytes') ?? part.memoryBytes;
      part.memoryLimitBytes = limitOrUndefined(readNumber(fs, mem, 'memory.limit_in_bytes'));
      part.oomKills = readKeyed(fs, mem, 'memory.oom_control', 'oom_kill') ?? 0;
    }
    const pids = at('pids');
    if (pids !== undefined && fs.exists(pids)) part.pids = readNumber(fs, pids, 'pids.current') ?? 0;
    return part;
  }

  remove(name: string): void {
    validateName('container', name);
    const dirs = this.dirs(name);
    removeAll(this.o.fs, dirs, this.o.busyRetryMs);
    this.o.log.debug('cgroup.removed', { name, dirs, mode: 'v1' });
  }

  list(): string[] {
    const names = new Set<string>();
    for (const t of this.targets(ALL)) {
      for (const n of this.o.fs.subdirs(join(t.mount, 'feather'))) names.add(n);
    }
    return [...names].sort();
  }

  setDevices(name: string, rules: readonly DeviceRule[]): DeviceCgroupResult {
    validateName('container', name);
    const mount = this.controllers.devices;
    if (mount === undefined) return { supported: false, reason: 'no devices cgroup controller is mounted: no device rules were applied' };
    return applyV1DeviceRules(this.o, mount, name, rules);
  }
}
