import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configureLogging } from '../../shared/logging.js';
import { detectCgroups, layoutFromMountinfo } from '../../agent/runtime/cgroups/detect.js';
import type { Limits } from '../../shared/limits.js';
import { FakeCgroupFs, fakeHybrid, fakeV1, fakeV2 } from '../helpers/fake-cgroupfs.js';

const logged: string[] = [];
configureLogging({ level: 'warn', sink: (line) => logged.push(line) });

interface Teardown { teardown(fn: () => void): void }
const SEED: Limits = { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 };

function track<F extends FakeCgroupFs>(t: Teardown, fake: F): F {
  t.teardown(() => fake.cleanup());
  return fake;
}

t.test('a root that is itself cgroup2 is v2', async (t) => {
  const fake = track(t, fakeV2());
  const cg = detectCgroups(fake.root, { fs: fake.fs, mountinfo: '' });
  t.equal(cg.mode, 'v2');
  t.same(cg.controllers, { memory: fake.root, cpu: fake.root, pids: fake.root, cpuset: fake.root });
  t.same(cg.create('a', SEED), [fake.path('feather/a')]);
});

t.test('per-controller hierarchies and no cgroup2 are v1', async (t) => {
  const fake = track(t, fakeV1());
  const cg = detectCgroups(fake.root, { fs: fake.fs, mountinfo: '' });
  t.equal(cg.mode, 'v1');
  t.same(Object.keys(cg.controllers).sort(), ['cpu', 'cpuacct', 'cpuset', 'devices', 'memory', 'pids']);
  t.equal(cg.controllers.cpuacct, fake.path('cpuacct'));
});

t.test('hybrid with a hugetlb-only unified mount: everything is v1, unified is not touched', async (t) => {
  const fake = track(t, fakeHybrid(['hugetlb']));
  const cg = detectCgroups(fake.root, { fs: fake.fs, mountinfo: '' });
  t.equal(cg.mode, 'hybrid');
  t.equal(cg.controllers.memory, fake.path('memory'));
  t.same(cg.create('h', SEED), ['memory', 'cpu', 'cpuacct', 'pids'].map((c) => fake.path(`${c}/feather/h`)));
  t.notOk(fake.exists('unified/feather'));
  fake.set('pids/feather/h/pids.current', '1\n');
  t.equal(cg.usage('h')?.pids, 1);
  t.same(cg.list(), ['h']);
  cg.remove('h');
  t.same(cg.list(), []);
});

t.test('hybrid with memory and pids in unified: those on v2, cpu on v1', async (t) => {
  const fake = track(t, fakeHybrid(['memory', 'pids'], { v1: ['cpu', 'cpuacct', 'cpuset', 'devices', 'systemd'] }));
  const cg = detectCgroups(fake.root, { fs: fake.fs, mountinfo: '' });
  t.equal(cg.mode, 'hybrid');
  t.equal(cg.controllers.memory, fake.path('unified'));
  t.equal(cg.controllers.cpu, fake.path('cpu'));
  const dirs = cg.create('h', SEED);
  t.same(dirs, [fake.path('unified/feather/h'), fake.path('cpu/feather/h'), fake.path('cpuacct/feather/h')]);
  t.equal(fake.read('unified/cgroup.subtree_control'), 'memory pids\n');
  t.equal(fake.read('unified/feather/h/memory.max'), '134217728\n');
  t.equal(fake.read('unified/feather/h/pids.max'), '10\n');
  t.notOk(fake.exists('unified/feather/h/cpu.max'));
  t.equal(fake.read('cpu/feather/h/cpu.cfs_quota_us'), '50000\n');
  fake.set('unified/feather/h/memory.current', '4096\n');
  fake.set('unified/feather/h/cpu.stat', 'usage_usec 9000000\n');
  fake.set('cpuacct/feather/h/cpuacct.usage', '3000000000\n');
  const u = cg.usage('h');
  t.equal(u?.memoryBytes, 4096, 'memory from v2');
  t.equal(u?.cpuSeconds, 3, 'cpu from the v1 cpuacct that owns it');
  t.equal(u?.memoryLimitBytes, 128 * 2 ** 20);
  cg.remove('h');
  t.notOk(fake.exists('unified/feather/h'));
  t.notOk(fake.exists('cpu/feather/h'));
});

t.test('hybrid: when the v1 half fails, the v2 half is undone', async (t) => {
  const fake = track(t, fakeHybrid(['memory'], { v1: ['cpu', 'cpuacct', 'pids'] }));
  const cg = detectCgroups(fake.root, { fs: fake.fs, mountinfo: '' });
  fake.failWrites.set('pids.max', 'EINVAL');
  t.throws(() => cg.create('h', SEED), { code: 'RUNTIME_ERROR', message: /pids\.max/ });
  t.notOk(fake.exists('unified/feather/h'));
  t.notOk(fake.exists('cpu/feather/h'));
  t.same(cg.list(), []);
});

t.test('hybrid: a CONFLICT on the v1 side leaves the existing container alone', async (t) => {
  const fake = track(t, fakeHybrid(['memory'], { v1: ['cpu', 'cpuacct', 'pids'] }));
  const cg = detectCgroups(fake.root, { fs: fake.fs, mountinfo: '' });
  cg.create('h', SEED);
  t.throws(() => cg.create('h', SEED), { code: 'CONFLICT' });
  t.ok(fake.exists('unified/feather/h'));
  t.ok(fake.exists('pids/feather/h'));
});

t.test('mountinfo decides when it shows cgroup mounts under the root', async (t) => {
  const fake = track(t, fakeHybrid(['hugetlb'], { v1: ['cpu,cpuacct', 'memory', 'pids'] }));
  const r = fake.root;
  // As on a real host; the mounts' directory names do not matter, their options do.
  const mountinfo = [
    `22 1 0:20 / /proc rw,nosuid - proc proc rw`,
    `31 23 0:28 / ${r} rw,relatime - tmpfs tmpfs rw,mode=755`,
    `32 31 0:29 / ${r}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct`,
    `35 31 0:32 / ${r}/memory rw,relatime - cgroup cgroup rw,memory`,
    `39 31 0:36 / ${r}/pids rw,relatime - cgroup cgroup rw,pids`,
    `40 31 0:37 / ${r}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd`,
    `41 31 0:38 / ${r}/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate`,
  ].join('\n');
  const layout = layoutFromMountinfo(mountinfo, r);
  t.equal(layout?.v2, `${r}/unified`);
  t.same(Object.fromEntries(layout?.v1 ?? []), { cpu: `${r}/cpu,cpuacct`, cpuacct: `${r}/cpu,cpuacct`, memory: `${r}/memory`, pids: `${r}/pids` });
  const cg = detectCgroups(r, { fs: fake.fs, mountinfo });
  t.equal(cg.mode, 'hybrid');
  t.same(cg.create('m', SEED), [`${r}/memory/feather/m`, `${r}/cpu,cpuacct/feather/m`, `${r}/pids/feather/m`]);
  t.equal(layoutFromMountinfo(mountinfo, '/elsewhere'), undefined, 'nothing there: the tree decides');
  t.equal(layoutFromMountinfo(`41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw`, '/sys/fs/cgroup')?.v2, '/sys/fs/cgroup');
  t.equal(layoutFromMountinfo(`41 31 0:38 / /a\\040b/c rw - cgroup2 cgroup2 rw`, '/a b')?.v2, '/a b/c', 'octal escapes');
});

t.test('no memory and no pids controller: a clear RUNTIME_ERROR', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'feather-empty-cg-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  t.throws(() => detectCgroups(empty, { mountinfo: '' }), { code: 'RUNTIME_ERROR', message: /no memory or pids cgroup controller.*found: no cgroup filesystem/ });
  t.throws(() => detectCgroups(join(empty, 'missing'), { mountinfo: '' }), { code: 'RUNTIME_ERROR' });

  const freezerOnly = track(t, fakeV1({ v1: ['freezer', 'systemd'] }));
  t.throws(() => detectCgroups(freezerOnly.root, { fs: freezerOnly.fs, mountinfo: '' }), { code: 'RUNTIME_ERROR', message: /found: v1 freezer/ });

  const hugetlbOnly = track(t, fakeV2({ controllers: ['hugetlb', 'io'] }));
  t.throws(() => detectCgroups(hugetlbOnly.root, { fs: hugetlbOnly.fs, mountinfo: '' }), { message: /cgroup2 at .* with hugetlb,io/ });

  // A plain directory beside the hierarchies (no cgroup.procs) is not a hierarchy.
  mkdirSync(join(empty, 'memory'));
  writeFileSync(join(empty, 'memory', 'README'), '');
  t.throws(() => detectCgroups(empty, { mountinfo: '' }), { code: 'RUNTIME_ERROR' });
});

t.test('a missing cpu controller is logged, and the rest works', async (t) => {
  const fake = track(t, fakeV1({ v1: ['memory', 'pids'] }));
  logged.length = 0;
  const cg = detectCgroups(fake.root, { fs: fake.fs, mountinfo: '' });
  t.match(logged.join('\n'), /cgroup\.controller_missing.*"controller":"cpu"/);
  t.same(cg.create('x', SEED), [fake.path('memory/feather/x'), fake.path('pids/feather/x')]);
  t.throws(() => cg.create('y', { ...SEED, cpuset: '0' }), { code: 'RUNTIME_ERROR', message: /no cpuset/ });
});
