// A fake cgroup filesystem for unit tests: a temp directory laid out like /sys/fs/cgroup, with the
// real files' names and formats, and a CgroupFs that plays the kernel's part: mkdir fills the new
// cgroup with its controllers' files, writes go only to files that exist (no O_CREAT), the
// v2 cgroup.subtree_control takes "+memory"/"-cpu", v1 keeps memsw >= limit, and rmdir refuses
// a cgroup with processes or children (EBUSY). Tests set usage by writing files (set()).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { nodeCgroupFs, type CgroupFs } from '../../agent/runtime/cgroups/fs.js';

export interface FakeCgroupOptions {
  /** A cgroup2 mount: at '' (the root itself: pure v2) or a subdirectory ('unified'), with its cgroup.controllers. */
  v2?: { at: string; controllers: string[] } | undefined;
  /** v1 hierarchies by directory name ('memory', 'cpu,cpuacct', 'systemd' for name=systemd). */
  v1?: string[] | undefined;
  /** Symlinks beside co-mounted hierarchies, as distributions make them: { cpu: 'cpu,cpuacct' }. */
  links?: Record<string, string> | undefined;
  /** Swap accounting (memory.swap.max / memory.memsw.*). Default true. */
  swap?: boolean | undefined;
  /** memory.peak (kernel 5.19+). Default true. */
  peak?: boolean | undefined;
  cpus?: string | undefined;
}

const UNLIMITED_V1 = '9223372036854771712';
const V2_ORDER = ['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids', 'rdma', 'misc'];

function errno(code: string, op: string, path: string): Error {
  return Object.assign(new Error(`${code}: fake kernel, ${op} '${path}'`), { code });
}

export class FakeCgroupFs {
  readonly root: string;
  /** Every write the code under test made, in order, with paths relative to root. */
  readonly writes: Array<{ path: string; value: string }> = [];
  /** Make writes to these files (relative path, or a bare file name for any cgroup) fail with an errno. */
  readonly failWrites = new Map<string, string>();
  /** Runs after the fake kernel filled a new cgroup (to break it on purpose). */
  afterMkdir: ((dir: string) => void) | undefined;
  readonly fs: CgroupFs;
  private readonly v2Mount: string | undefined;
  private readonly v1Mounts = new Map<string, string[]>();

  constructor(private readonly opts: FakeCgroupOptions) {
    this.root = mkdtempSync(join(tmpdir(), 'feather-fake-cgroup-'));
    if (opts.v2 !== undefined) {
      this.v2Mount = opts.v2.at === '' ? this.root : join(this.root, opts.v2.at);
      mkdirSync(this.v2Mount, { recursive: true });
      this.fillV2Root(this.v2Mount, opts.v2.controllers);
    }
    for (const name of opts.v1 ?? []) {
      const mount = join(this.root, name);
      mkdirSync(mount);
      const controllers = name.split(',');
      this.v1Mounts.set(mount, controllers);
      this.fillV1(mount, controllers, true);
    }
    for (const [link, target] of Object.entries(opts.links ?? {})) symlinkSync(target, join(this.root, link));
    this.fs = {
      ...nodeCgroupFs,
      mkdir: (path) => this.mkdir(path),
      rmdir: (path) => this.rmdir(path),
      write: (path, data) => this.write(path, data),
    };
  }

  path(rel: string): string { return join(this.root, rel); }
  read(rel: string): string { return readFileSync(this.path(rel), 'utf8'); }
  exists(rel: string): boolean { return existsSync(this.path(rel)); }
  /** Set a file as the kernel would (usage counters, a pid in cgroup.procs). */
  set(rel: string, value: string): void { writeFileSync(this.path(rel), value); }
  writesTo(file: string): string[] { return this.writes.filter((w) => basename(w.path) === file).map((w) => w.path); }
  cleanup(): void { rmSync(this.root, { recursive: true, force: true }); }

  private files(dir: string, files: Record<string, string>): void {
    for (const [name, value] of Object.entries(files)) writeFileSync(join(dir, name), value);
  }

  private fillV2Root(dir: string, controllers: string[]): void {
    this.files(dir, {
      'cgroup.controllers': controllers.join(' ') + '\n', 'cgroup.subtree_control': '\n', 'cgroup.procs': '',
      'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n',
    });
    if (controllers.includes('cpuset')) {
      this.files(dir, { 'cpuset.cpus.effective': `${this.opts.cpus ?? '0-3'}\n`, 'cpuset.mems.effective': '0\n' });
    }
  }

  private fillV2Child(dir: string): void {
    const enabled = readFileSync(join(dirname(dir), 'cgroup.subtree_control'), 'utf8').split(/\s+/).filter(Boolean);
    this.files(dir, {
      'cgroup.controllers': enabled.join(' ') + '\n', 'cgroup.subtree_control': '\n', 'cgroup.procs': '',
      'cgroup.events': 'populated 0\nfrozen 0\n',
      'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
    });
    if (enabled.includes('memory')) {
      this.files(dir, {
        'memory.current': '0\n', 'memory.max': 'max\n', 'memory.high': 'max\n',
        'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n',
      });
      if (this.opts.peak !== false) this.files(dir, { 'memory.peak': '0\n' });
      if (this.opts.swap !== false) this.files(dir, { 'memory.swap.max': 'max\n', 'memory.swap.current': '0\n' });
    }
    if (enabled.includes('cpu')) this.files(dir, { 'cpu.max': 'max 100000\n', 'cpu.weight': '100\n' });
    if (enabled.includes('pids')) this.files(dir, { 'pids.max': 'max\n', 'pids.current': '0\n', 'pids.events': 'max 0\n' });
    if (enabled.includes('cpuset')) {
      const parent = dirname(dir);
      this.files(dir, {
        'cpuset.cpus': '\n', 'cpuset.mems': '\n',
        'cpuset.cpus.effective': readFileSync(join(parent, 'cpuset.cpus.effective'), 'utf8'),
        'cpuset.mems.effective': readFileSync(join(parent, 'cpuset.mems.effective'), 'utf8'),
      });
    }
  }

  private fillV1(dir: string, controllers: string[], isRoot: boolean): void {
    this.files(dir, { 'cgroup.procs': '', tasks: '', 'cgroup.clone_children': '0\n', notify_on_release: '0\n' });
    if (isRoot) this.files(dir, { 'cgroup.sane_behavior': '0\n', release_agent: '\n' });
    const cpus = this.opts.cpus ?? '0-3';
    for (const c of controllers) {
      if (c === 'memory') {
        this.files(dir, {
          'memory.limit_in_bytes': `${UNLIMITED_V1}\n`, 'memory.usage_in_bytes': '0\n', 'memory.max_usage_in_bytes': '0\n',
          'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n', 'memory.use_hierarchy': '1\n', 'memory.failcnt': '0\n',
        });
        if (this.opts.swap !== false) this.files(dir, { 'memory.memsw.limit_in_bytes': `${UNLIMITED_V1}\n`, 'memory.memsw.usage_in_bytes': '0\n' });
      } else if (c === 'cpu') {
        this.files(dir, {
          'cpu.cfs_period_us': '100000\n', 'cpu.cfs_quota_us': '-1\n', 'cpu.shares': '1024\n',
          'cpu.stat': 'nr_periods 0\nnr_throttled 0\nthrottled_time 0\n',
        });
      } else if (c === 'cpuacct') {
        this.files(dir, { 'cpuacct.usage': '0\n', 'cpuacct.stat': 'user 0\nsystem 0\n' });
      } else if (c === 'pids' && !isRoot) {
        this.files(dir, { 'pids.max': 'max\n', 'pids.current': '0\n', 'pids.events': 'max 0\n' });
      } else if (c === 'cpuset') {
        this.files(dir, isRoot
          ? { 'cpuset.cpus': `${cpus}\n`, 'cpuset.mems': '0\n', 'cpuset.effective_cpus': `${cpus}\n`, 'cpuset.effective_mems': '0\n' }
          : { 'cpuset.cpus': '\n', 'cpuset.mems': '\n', 'cpuset.effective_cpus': '\n', 'cpuset.effective_mems': '\n' });
      } else if (c === 'devices') {
        this.files(dir, { 'devices.allow': '', 'devices.deny': '', 'devices.list': 'a *:* rwm\n' });
      }
    }
  }

  private mountOf(path: string): { kind: 'v1'; controllers: string[] } | { kind: 'v2' } {
    for (const [mount, controllers] of this.v1Mounts) if (path.startsWith(mount + '/')) return { kind: 'v1', controllers };
    if (this.v2Mount !== undefined && path.startsWith(this.v2Mount + '/')) return { kind: 'v2' };
    throw errno('ENOENT', 'mkdir', path);
  }

  private mkdir(path: string): void {
    const m = this.mountOf(path);
    nodeCgroupFs.mkdir(path);
    if (m.kind === 'v2') this.fillV2Child(path);
    else this.fillV1(path, m.controllers, false);
    this.afterMkdir?.(path);
  }

  private rmdir(path: string): void {
    if (!existsSync(path)) throw errno('ENOENT', 'rmdir', path);
    const procs = existsSync(join(path, 'cgroup.procs')) ? readFileSync(join(path, 'cgroup.procs'), 'utf8').trim() : '';
    const children = nodeCgroupFs.subdirs(path).filter((d) => existsSync(join(path, d, 'cgroup.procs')));
    if (procs !== '' || children.length > 0) throw errno('EBUSY', 'rmdir', path);
    rmSync(path, { recursive: true });
  }

  private write(path: string, data: string): void {
    const rel = relative(this.root, path);
    const injected = this.failWrites.get(rel) ?? this.failWrites.get(basename(path));
    if (injected !== undefined) throw errno(injected, 'write', path);
    if (!existsSync(path)) throw errno('ENOENT', 'open', path);
    if (statSync(path).isDirectory()) throw errno('EISDIR', 'open', path);
    this.writes.push({ path: rel, value: data });
    const file = basename(path);
    const dir = dirname(path);
    if (file === 'cgroup.subtree_control') return this.writeSubtreeControl(dir, data);
    if (file === 'memory.limit_in_bytes' || file === 'memory.memsw.limit_in_bytes') this.checkMemsw(dir, file, Number(data));
    writeFileSync(path, data.endsWith('\n') ? data : data + '\n');
  }

  private writeSubtreeControl(dir: string, data: string): void {
    const available = readFileSync(join(dir, 'cgroup.controllers'), 'utf8').split(/\s+/).filter(Boolean);
    const on = new Set(readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8').split(/\s+/).filter(Boolean));
    for (const token of data.trim().split(/\s+/)) {
      const name = token.slice(1);
      if (!/^[+-]/.test(token) || !available.includes(name)) throw errno('EINVAL', 'write', join(dir, 'cgroup.subtree_control'));
      if (token.startsWith('+')) on.add(name);
      else on.delete(name);
    }
    writeFileSync(join(dir, 'cgroup.subtree_control'), V2_ORDER.filter((c) => on.has(c)).join(' ') + '\n');
  }

  /** v1 refuses a memory limit above memsw, and memsw below the limit. */
  private checkMemsw(dir: string, file: string, value: number): void {
    const memswPath = join(dir, 'memory.memsw.limit_in_bytes');
    if (!existsSync(memswPath)) return;
    const limit = Number(readFileSync(join(dir, 'memory.limit_in_bytes'), 'utf8'));
    const memsw = Number(readFileSync(memswPath, 'utf8'));
    if (!Number.isFinite(value) || value <= 0) throw errno('EINVAL', 'write', join(dir, file));
    if (file === 'memory.limit_in_bytes' && value > memsw) throw errno('EINVAL', 'write', join(dir, file));
    if (file === 'memory.memsw.limit_in_bytes' && value < limit) throw errno('EINVAL', 'write', join(dir, file));
  }
}

/** Pure v2, the root itself a cgroup2 mount. */
export function fakeV2(opts: Omit<FakeCgroupOptions, 'v2' | 'v1'> & { controllers?: string[] } = {}): FakeCgroupFs {
  return new FakeCgroupFs({ ...opts, v2: { at: '', controllers: opts.controllers ?? ['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids'] } });
}

/** v1 as on this project's test host: cpu and cpuacct separate, plus the usual others. */
export function fakeV1(opts: Omit<FakeCgroupOptions, 'v2'> = {}): FakeCgroupFs {
  return new FakeCgroupFs({ ...opts, v1: opts.v1 ?? ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd'] });
}

/** Hybrid: the v1 hierarchies plus cgroup2 at unified/ holding the given controllers (default hugetlb only). */
export function fakeHybrid(unified: string[] = ['hugetlb'], opts: Omit<FakeCgroupOptions, 'v2'> = {}): FakeCgroupFs {
  return new FakeCgroupFs({
    ...opts,
    v1: opts.v1 ?? ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd'],
    v2: { at: 'unified', controllers: unified },
  });
}
