import t from 'tap';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { configureLogging } from '../../shared/logging.js';
import { V1Cgroups, setMemoryV1, type V1Mounts } from '../../agent/runtime/cgroups/v1.js';
import type { Limits } from '../../shared/limits.js';
import { fakeV1, type FakeCgroupFs } from '../helpers/fake-cgroupfs.js';

configureLogging({ level: 'silent' });

interface Teardown { teardown(fn: () => void): void }
const SEED: Limits = { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 };

function mountsOf(fake: FakeCgroupFs, names: Partial<Record<keyof V1Mounts, string>>): V1Mounts {
  return Object.fromEntries(Object.entries(names).map(([c, dir]) => [c, fake.path(dir)]));
}

function setup(t: Teardown, opts: Parameters<typeof fakeV1>[0] = {}): { fake: FakeCgroupFs; cg: V1Cgroups } {
  const fake = fakeV1(opts);
  t.teardown(() => fake.cleanup());
  const mounts = mountsOf(fake, { memory: 'memory', cpu: 'cpu', cpuacct: 'cpuacct', pids: 'pids', cpuset: 'cpuset', devices: 'devices' });
  return { fake, cg: new V1Cgroups({ mounts, fs: fake.fs, busyRetryMs: 30 }) };
}

t.test('create makes one cgroup per hierarchy and writes the v1 files', async (t) => {
  const { fake, cg } = setup(t);
  const dirs = cg.create('web1', SEED);
  t.same(dirs, ['memory', 'cpu', 'cpuacct', 'pids'].map((c) => fake.path(`${c}/feather/web1`)));
  t.equal(fake.read('memory/feather/web1/memory.limit_in_bytes'), '134217728\n');
  t.equal(fake.read('memory/feather/web1/memory.memsw.limit_in_bytes'), '134217728\n');
  t.same(fake.writes.filter((w) => w.path.startsWith('memory/')).map((w) => w.path), [
    'memory/feather/web1/memory.limit_in_bytes', 'memory/feather/web1/memory.memsw.limit_in_bytes',
  ], 'lowering from unlimited: the limit first, then memsw');
  t.equal(fake.read('cpu/feather/web1/cpu.cfs_period_us'), '100000\n');
  t.equal(fake.read('cpu/feather/web1/cpu.cfs_quota_us'), '50000\n');
  t.equal(fake.read('pids/feather/web1/pids.max'), '10\n');
  t.notOk(fake.exists('cpuset/feather'), 'no cpuset without pinning');
  t.notOk(fake.exists('devices/feather'), 'no devices without rules');
  t.same(cg.list(), ['web1']);
});

t.test('setMemoryV1 keeps memsw >= limit when raising and lowering', async (t) => {
  const { fake, cg } = setup(t);
  cg.create('m', SEED);
  const dir = fake.path('memory/feather/m');
  fake.writes.length = 0;
  setMemoryV1(fake.fs, dir, 256 * 2 ** 20);
  t.same(fake.writes.map((w) => w.path.split('/').pop()), ['memory.memsw.limit_in_bytes', 'memory.limit_in_bytes'], 'raise: memsw first');
  fake.writes.length = 0;
  setMemoryV1(fake.fs, dir, 64 * 2 ** 20);
  t.same(fake.writes.map((w) => w.path.split('/').pop()), ['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'], 'lower: limit first');
  t.equal(fake.read('memory/feather/m/memory.memsw.limit_in_bytes'), `${64 * 2 ** 20}\n`);
});

t.test('without swap accounting only memory.limit_in_bytes is written', async (t) => {
  const { fake, cg } = setup(t, { swap: false });
  cg.create('m', SEED);
  t.same(fake.writesTo('memory.memsw.limit_in_bytes'), []);
  t.equal(fake.read('memory/feather/m/memory.limit_in_bytes'), '134217728\n');
});

t.test('co-mounted cpu,cpuacct gets one directory', async (t) => {
  const fake = fakeV1({ v1: ['cpu,cpuacct', 'memory', 'pids'], links: { cpu: 'cpu,cpuacct', cpuacct: 'cpu,cpuacct' } });
  t.teardown(() => fake.cleanup());
  const cg = new V1Cgroups({ mounts: mountsOf(fake, { memory: 'memory', cpu: 'cpu,cpuacct', cpuacct: 'cpu,cpuacct', pids: 'pids' }), fs: fake.fs });
  t.same(cg.create('c', SEED), ['memory', 'cpu,cpuacct', 'pids'].map((d) => fake.path(`${d}/feather/c`)));
  fake.set('cpu,cpuacct/feather/c/cpuacct.usage', '1500000000\n');
  t.equal(cg.usage('c')?.cpuSeconds, 1.5);
  cg.remove('c');
  t.same(cg.list(), []);
});

t.test('cpuset: feather/ gets cpus and mems from the root before the container is made', async (t) => {
  const { fake, cg } = setup(t);
  const dirs = cg.create('pin', { ...SEED, cpuset: '1' });
  t.equal(dirs.at(-1), fake.path('cpuset/feather/pin'));
  t.equal(fake.read('cpuset/feather/cpuset.cpus'), '0-3\n');
  t.equal(fake.read('cpuset/feather/cpuset.mems'), '0\n');
  t.equal(fake.read('cpuset/feather/pin/cpuset.cpus'), '1\n');
  t.equal(fake.read('cpuset/feather/pin/cpuset.mems'), '0\n');
  const order = fake.writes.filter((w) => w.path.startsWith('cpuset/')).map((w) => w.path);
  t.same(order, ['cpuset/feather/cpuset.cpus', 'cpuset/feather/cpuset.mems', 'cpuset/feather/pin/cpuset.cpus', 'cpuset/feather/pin/cpuset.mems']);
  cg.create('pin2', { ...SEED, cpuset: '2' });
  t.equal(fake.writesTo('cpuset.mems').filter((p) => p === 'cpuset/feather/cpuset.mems').length, 1, 'the parent is set once');
});

t.test('usage reads cpuacct.usage, memory.*, memory.oom_control and pids.current', async (t) => {
  const { fake, cg } = setup(t);
  t.equal(cg.usage('web1'), undefined);
  cg.create('web1', SEED);
  fake.set('cpuacct/feather/web1/cpuacct.usage', '2500000000\n');
  fake.set('memory/feather/web1/memory.usage_in_bytes', '1048576\n');
  fake.set('memory/feather/web1/memory.max_usage_in_bytes', '2097152\n');
  fake.set('memory/feather/web1/memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 4\n');
  fake.set('pids/feather/web1/pids.current', '2\n');
  t.same(cg.usage('web1'), {
    cpuSeconds: 2.5, memoryBytes: 1048576, memoryPeakBytes: 2097152, memoryLimitBytes: 134217728, pids: 2, oomKills: 4,
  });
  fake.set('memory/feather/web1/memory.limit_in_bytes', '9223372036854771712\n');
  t.equal(cg.usage('web1')?.memoryLimitBytes, undefined, 'the v1 "unlimited" value is no limit');
});

t.test('CONFLICT when any controller already has the cgroup; nothing is made', async (t) => {
  const { fake, cg } = setup(t);
  mkdirSync(fake.path('pids/feather/old'), { recursive: true });
  fake.set('pids/feather/old/cgroup.procs', '');
  t.throws(() => cg.create('old', SEED), { code: 'CONFLICT' });
  t.notOk(fake.exists('memory/feather/old'));
  t.same(cg.list(), ['old'], 'list is the union over controllers');
});

t.test('a failure half way removes every directory already made', async (t) => {
  const { fake, cg } = setup(t);
  fake.afterMkdir = (dir) => {
    if (dir !== fake.path('pids/feather/bad')) return;
    rmSync(join(dir, 'pids.max'));
    mkdirSync(join(dir, 'pids.max'));
  };
  t.throws(() => cg.create('bad', SEED), { code: 'RUNTIME_ERROR', message: /pids\.max.*EISDIR/ });
  for (const c of ['memory', 'cpu', 'cpuacct', 'pids']) t.notOk(fake.exists(`${c}/feather/bad`), `${c} cleaned`);
  t.same(cg.list(), []);
});

t.test('a memory limit the kernel refuses is reported with the file and errno', async (t) => {
  const { fake, cg } = setup(t);
  fake.failWrites.set('memory.limit_in_bytes', 'EBUSY');
  t.throws(() => cg.create('x', SEED), { message: /^cannot write "134217728" to memory\.limit_in_bytes .*: EBUSY: / });
  t.notOk(fake.exists('memory/feather/x'));
});

t.test('remove takes every hierarchy, tolerates missing ones, retries then reports busy ones', async (t) => {
  const { fake, cg } = setup(t);
  cg.create('web1', SEED);
  rmSync(fake.path('cpuacct/feather/web1'), { recursive: true });
  fake.set('pids/feather/web1/cgroup.procs', '77\n');
  t.throws(() => cg.remove('web1'), { code: 'RUNTIME_ERROR', message: /pids\/feather\/web1.*EBUSY/ });
  t.notOk(fake.exists('memory/feather/web1'), 'the others went anyway');
  t.same(cg.list(), ['web1']);
  fake.set('pids/feather/web1/cgroup.procs', '');
  cg.remove('web1');
  t.same(cg.list(), []);
});

t.test('devices: rules in order on devices/feather/<name>, removed with the rest', async (t) => {
  const { fake, cg } = setup(t);
  cg.create('gpu', SEED);
  const r = cg.setDevices('gpu', [
    { allow: false, type: 'a', access: 'rwm' },
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
    { allow: true, type: 'c', major: 195, access: 'rw' },
  ]);
  t.same(r, { supported: true, dirs: [fake.path('devices/feather/gpu')] });
  t.same(fake.writes.filter((w) => w.path.startsWith('devices/')).map((w) => `${w.path.split('/').pop()} ${w.value}`), [
    'devices.deny a', 'devices.allow c 1:3 rwm', 'devices.allow c 195:* rw',
  ]);
  cg.remove('gpu');
  t.notOk(fake.exists('devices/feather/gpu'));
});

t.test('devices: a bad rule is refused and leaves nothing; no devices hierarchy says so', async (t) => {
  const { fake, cg } = setup(t);
  t.throws(() => cg.setDevices('x', [{ allow: true, type: 'c', major: 1, minor: 3, access: 'rwx' }]), { code: 'BAD_REQUEST' });
  t.notOk(fake.exists('devices/feather/x'));
  fake.failWrites.set('devices.allow', 'EPERM');
  t.throws(() => cg.setDevices('x', [{ allow: true, type: 'c', major: 1, minor: 3, access: 'r' }]), { message: /devices\.allow.*EPERM.*run feather-agent as root/ });
  t.notOk(fake.exists('devices/feather/x'));
  const bare = new V1Cgroups({ mounts: mountsOf(fake, { memory: 'memory' }), fs: fake.fs });
  const r = bare.setDevices('x', []);
  t.equal(r.supported, false);
});
