// Hybrid hosts: v1 hierarchies beside a cgroup2 mount (usually /sys/fs/cgroup/unified). A controller
// the v2 mount holds is managed there, the rest in v1. When v2 holds none that we use (the common
// case: hugetlb only, or nothing), the v2 half is absent and everything is v1.
import { validateName, type Limits } from '../../../shared/limits.js';
import { checkRequest, fillUsage, resolveOptions, type BackendOptions, type ResolvedOptions, type UsagePart } from './common.js';
import type { CgroupBackend, CgroupController, CgroupUsage, DeviceCgroupResult, DeviceRule } from './types.js';
import type { V1Cgroups } from './v1.js';
import type { V2Cgroups } from './v2.js';

export class HybridCgroups implements CgroupBackend {
  readonly mode = 'hybrid';
  readonly controllers: Readonly<Partial<Record<CgroupController, string>>>;
  private readonly o: ResolvedOptions;

  constructor(readonly v2: V2Cgroups | undefined, readonly v1: V1Cgroups, opts: BackendOptions = {}) {
    // v2 wins where both claim one (the detection never hands a controller to both).
    this.controllers = { ...v1.controllers, ...(v2?.controllers ?? {}) };
    this.o = resolveOptions(opts);
  }

  create(name: string, limits: Limits): string[] {
    checkRequest(name, limits, this.controllers.cpuset !== undefined);
    const v2 = this.v2;
    if (v2 === undefined) return this.v1.createPart(name, limits);
    // Each half refuses (CONFLICT) before it makes anything, so undoing the v2 half when the
    // v1 half fails only ever removes what this call made.
    const v2dirs = v2.createPart(name, limits);
    try {
      return [...v2dirs, ...this.v1.createPart(name, limits)];
    } catch (e: unknown) {
      try {
        v2.remove(name);
      } catch (re: unknown) {
        this.o.log.error('cgroup.rollback_failed', { name, error: re });
      }
      throw e;
    }
  }

  usage(name: string): CgroupUsage | undefined {
    const p2 = this.v2?.usagePart(name);
    const p1 = this.v1.usagePart(name);
    if (p1 === undefined && p2 === undefined) return undefined;
    const from = (c: CgroupController): UsagePart => (this.v2?.controllers[c] !== undefined ? p2 : p1) ?? {};
    const cpu = from('cpu');
    const mem = from('memory');
    return fillUsage({
      cpuSeconds: cpu.cpuSeconds ?? p1?.cpuSeconds ?? p2?.cpuSeconds,
      memoryBytes: mem.memoryBytes,
      memoryPeakBytes: mem.memoryPeakBytes,
      memoryLimitBytes: mem.memoryLimitBytes,
      oomKills: mem.oomKills,
      pids: from('pids').pids,
    });
  }

  remove(name: string): void {
    validateName('container', name);
    let first: unknown;
    for (const half of [this.v1, this.v2]) {
      try {
        half?.remove(name);
      } catch (e: unknown) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }

  list(): string[] {
    return [...new Set([...this.v1.list(), ...(this.v2?.list() ?? [])])].sort();
  }

  setDevices(name: string, rules: readonly DeviceRule[]): DeviceCgroupResult {
    // The devices controller has no v2 file interface, so on a hybrid host it is a v1 matter.
    return this.v1.setDevices(name, rules);
  }
}
