// Which cgroup backend this host needs: v2 (unified), v1, or hybrid (v1 hierarchies beside a cgroup2
// mount that holds some controllers). Mounts come from /proc/self/mountinfo when it shows cgroup
// filesystems under the root; otherwise from the directory tree's shape (how tests point it at a fake).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FeatherError } from '../../../shared/errors.js';
import { resolveOptions, type BackendOptions } from './common.js';
import { readOptional, type CgroupFs } from './fs.js';
import { HybridCgroups } from './hybrid.js';
import type { CgroupBackend, CgroupController } from './types.js';
import { V1Cgroups } from './v1.js';
import { V2_CONTROLLERS, V2Cgroups, type V2Controller } from './v2.js';

/** Controller names a v1 mount's options or directory name can carry (name=systemd is not one). */
const V1_CONTROLLERS = new Set([
  'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'blkio', 'perf_event', 'hugetlb', 'pids', 'rdma', 'misc',
]);
const V1_MANAGED: readonly CgroupController[] = ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset', 'devices'];

export interface CgroupLayout {
  /** The cgroup2 mount, if any. */
  v2: string | undefined;
  /** v1 controller → the mount of its hierarchy. */
  v1: Map<string, string>;
}

export interface DetectOptions extends BackendOptions {
  /** The text of /proc/self/mountinfo (read when not given; tests pass their own or ''). */
  mountinfo?: string | undefined;
}

function unescapeMount(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The cgroup mounts at or directly under root, or undefined when mountinfo shows none there. */
export function layoutFromMountinfo(text: string, root: string): CgroupLayout | undefined {
  const layout: CgroupLayout = { v2: undefined, v1: new Map() };
  let found = false;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const mountPoint = unescapeMount(left.split(' ')[4] ?? '');
    const [fstype, , superOpts = ''] = right.split(' ');
    if (mountPoint !== root && dirname(mountPoint) !== root) continue;
    if (fstype === 'cgroup2') {
      if (layout.v2 === undefined || mountPoint === root) layout.v2 = mountPoint;
      found = true;
    } else if (fstype === 'cgroup') {
      for (const opt of superOpts.split(',')) if (V1_CONTROLLERS.has(opt)) layout.v1.set(opt, mountPoint);
      found = true;
    }
  }
  return found ? layout : undefined;
}

/** The same, read from the tree: cgroup.controllers marks cgroup2; a v1 hierarchy is named by its controllers. */
export function layoutFromTree(fs: CgroupFs, root: string): CgroupLayout {
  const layout: CgroupLayout = { v2: undefined, v1: new Map() };
  if (fs.exists(join(root, 'cgroup.controllers'))) {
    layout.v2 = root;
    return layout;
  }
  for (const d of fs.subdirs(root)) {
    const mount = join(root, d);
    if (fs.exists(join(mount, 'cgroup.controllers'))) {
      if (layout.v2 === undefined || d === 'unified') layout.v2 = mount;
    } else if (fs.exists(join(mount, 'cgroup.procs'))) {
      for (const c of d.split(',')) if (V1_CONTROLLERS.has(c)) layout.v1.set(c, mount);
    }
  }
  return layout;
}

function describe(layout: CgroupLayout, v2Available: readonly string[]): string {
  const parts: string[] = [];
  if (layout.v1.size > 0) parts.push(`v1 ${[...layout.v1.keys()].sort().join(',')}`);
  if (layout.v2 !== undefined) parts.push(`cgroup2 at ${layout.v2} with ${v2Available.join(',') || 'no controllers'}`);
  return parts.join('; ') || 'no cgroup filesystem';
}

/**
 * Detect the host's cgroup setup under root and return its backend. Throws RUNTIME_ERROR when
 * neither a memory nor a pids controller can be found (nothing could be limited).
 */
export function detectCgroups(root = '/sys/fs/cgroup', opts: DetectOptions = {}): CgroupBackend {
  const o = resolveOptions(opts);
  const mountinfo = opts.mountinfo ?? readMountinfo();
  const layout = layoutFromMountinfo(mountinfo, root) ?? layoutFromTree(o.fs, root);
  const v2Available = layout.v2 === undefined ? [] : (readOptional(o.fs, layout.v2, 'cgroup.controllers') ?? '').split(/\s+/).filter(Boolean);
  const v2Owned: V2Controller[] = V2_CONTROLLERS.filter((c) => v2Available.includes(c));

  const v1Mounts: Partial<Record<CgroupController, string>> = {};
  for (const c of V1_MANAGED) {
    const mount = layout.v1.get(c);
    const inV2 = (v2Owned as readonly string[]).includes(c === 'cpuacct' ? 'cpu' : c);
    if (mount !== undefined && !inV2) v1Mounts[c] = mount;
  }

  const has = (c: CgroupController): boolean => v1Mounts[c] !== undefined || (v2Owned as readonly string[]).includes(c);
  if (!has('memory') && !has('pids')) {
    throw new FeatherError('RUNTIME_ERROR',
      `no memory or pids cgroup controller under ${root} (found: ${describe(layout, v2Available)}): feather cannot limit containers; ` +
      'mount cgroup2 there with the memory and pids controllers, or the v1 memory and pids hierarchies ' +
      '(some boards need cgroup_enable=memory on the kernel command line)',
      { root });
  }
  for (const c of ['memory', 'cpu', 'pids'] as const) {
    if (!has(c)) o.log.warn('cgroup.controller_missing', { controller: c, root, effect: `${c} limits are not enforced on this host` });
  }

  const backendOpts: BackendOptions = { fs: o.fs, log: o.log, busyRetryMs: o.busyRetryMs };
  const v2 = layout.v2 === undefined || v2Owned.length === 0 ? undefined : new V2Cgroups({ ...backendOpts, mount: layout.v2, controllers: v2Owned });
  if (layout.v1.size === 0 && layout.v2 !== undefined) {
    return v2 ?? new V2Cgroups({ ...backendOpts, mount: layout.v2, controllers: v2Owned });
  }
  const v1 = new V1Cgroups({ ...backendOpts, mounts: v1Mounts });
  if (layout.v2 === undefined) return v1;
  return new HybridCgroups(v2, v1, backendOpts);
}

function readMountinfo(): string {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return '';
  }
}
