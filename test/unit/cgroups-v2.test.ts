import t from 'tap';
import { mkdirSync, rmSync } from 'node:fs';
import { configureLogging } from '../../shared/logging.js';
import { V2Cgroups, type V2Controller } from '../../agent/runtime/cgroups/v2.js';
import { formatDeviceFilterRule, toDeviceFilterRules } from '../../agent/runtime/cgroups/devices.js';
import type { DeviceRule } from '../../agent/runtime/cgroups/types.js';
import { BASELINE_DEVICE_RULES } from '../../agent/devices/cdi/container.js';
import type { Limits } from '../../shared/limits.js';
import { fakeV2, type FakeCgroupFs } from '../helpers/fake-cgroupfs.js';

configureLogging({ level: 'silent' });

interface Teardown { teardown(fn: () => void): void }

const SEED: Limits = { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 };

function setup(t: Teardown, opts: Parameters<typeof fakeV2>[0] = {}, controllers: V2Controller[] = ['memory', 'cpu', 'pids', 'cpuset']): { fake: FakeCgroupFs; cg: V2Cgroups } {
  const fake = fakeV2(opts);
  t.teardown(() => fake.cleanup());
  return { fake, cg: new V2Cgroups({ mount: fake.root, controllers, fs: fake.fs, busyRetryMs: 30 }) };
}

t.test('create enables controllers root first and writes the limits in the kernel formats', async (t) => {
  const { fake, cg } = setup(t);
  const dirs = cg.create('web1', SEED);
  t.same(dirs, [fake.path('feather/web1')]);
  t.equal(fake.read('cgroup.subtree_control'), 'cpu memory pids\n');
  t.equal(fake.read('feather/cgroup.subtree_control'), 'cpu memory pids\n');
  const order = fake.writes.filter((w) => w.path.endsWith('cgroup.subtree_control')).map((w) => `${w.path}=${w.value}`);
  t.same(order, [
    'cgroup.subtree_control=+memory', 'cgroup.subtree_control=+cpu', 'cgroup.subtree_control=+pids',
    'feather/cgroup.subtree_control=+memory', 'feather/cgroup.subtree_control=+cpu', 'feather/cgroup.subtree_control=+pids',
  ]);
  t.equal(fake.read('feather/web1/memory.max'), '134217728\n');
  t.equal(fake.read('feather/web1/memory.swap.max'), '0\n');
  t.equal(fake.read('feather/web1/cpu.max'), '50000 100000\n');
  t.equal(fake.read('feather/web1/pids.max'), '10\n');
  t.notOk(fake.exists('feather/web1/cpuset.cpus'), 'cpuset not enabled without pinning');
  t.same(cg.list(), ['web1']);
});

t.test('a second container does not enable controllers again', async (t) => {
  const { fake, cg } = setup(t);
  cg.create('a', SEED);
  const before = fake.writesTo('cgroup.subtree_control').length;
  cg.create('b', { ...SEED, cpus: 2 });
  t.equal(fake.writesTo('cgroup.subtree_control').length, before);
  t.equal(fake.read('feather/b/cpu.max'), '200000 100000\n');
  t.same(cg.list(), ['a', 'b']);
});

t.test('no memory.swap.max (swap accounting off): not written; tiny cpu gets the 1ms minimum quota', async (t) => {
  const { fake, cg } = setup(t, { swap: false });
  cg.create('web1', { ...SEED, cpus: 0.001 });
  t.notOk(fake.exists('feather/web1/memory.swap.max'));
  t.same(fake.writesTo('memory.swap.max'), []);
  t.equal(fake.read('feather/web1/cpu.max'), '1000 100000\n');
});

t.test('cpuset pinning enables +cpuset and copies mems from the parent', async (t) => {
  const { fake, cg } = setup(t);
  cg.create('pin', { ...SEED, cpuset: '1-2' });
  t.equal(fake.read('cgroup.subtree_control'), 'cpuset cpu memory pids\n');
  t.equal(fake.read('feather/pin/cpuset.cpus'), '1-2\n');
  t.equal(fake.read('feather/pin/cpuset.mems'), '0\n');
});

t.test('cpuset asked for without a cpuset controller is refused before anything is made', async (t) => {
  const { fake, cg } = setup(t, {}, ['memory', 'cpu', 'pids']);
  t.throws(() => cg.create('pin', { ...SEED, cpuset: '0' }), { code: 'RUNTIME_ERROR', message: /no cpuset cgroup controller/ });
  t.notOk(fake.exists('feather'));
});

t.test('only the controllers it owns are written', async (t) => {
  const { fake, cg } = setup(t, { controllers: ['cpu', 'pids'] }, ['cpu', 'pids']);
  cg.create('c', SEED);
  t.notOk(fake.exists('feather/c/memory.max'));
  t.equal(fake.read('feather/c/pids.max'), '10\n');
  t.equal(cg.usage('c')?.memoryLimitBytes, undefined);
});

t.test('usage parses cpu.stat, memory.*, pids.current and memory.events', async (t) => {
  const { fake, cg } = setup(t);
  t.equal(cg.usage('web1'), undefined, 'no cgroup, no usage');
  cg.create('web1', SEED);
  fake.set('feather/web1/cpu.stat', 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 3\n');
  fake.set('feather/web1/memory.current', '1048576\n');
  fake.set('feather/web1/memory.peak', '4194304\n');
  fake.set('feather/web1/pids.current', '3\n');
  fake.set('feather/web1/memory.events', 'low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n');
  t.same(cg.usage('web1'), {
    cpuSeconds: 2.5, memoryBytes: 1048576, memoryPeakBytes: 4194304, memoryLimitBytes: 134217728, pids: 3, oomKills: 2,
  });
  fake.set('feather/web1/memory.max', 'max\n');
  t.equal(cg.usage('web1')?.memoryLimitBytes, undefined, '"max" is no limit');
});

t.test('without memory.peak the highest memory.current seen is the peak', async (t) => {
  const { fake, cg } = setup(t, { peak: false });
  cg.create('m', SEED);
  fake.set('feather/m/memory.current', '5000\n');
  t.equal(cg.usage('m')?.memoryPeakBytes, 5000);
  fake.set('feather/m/memory.current', '3000\n');
  t.equal(cg.usage('m')?.memoryPeakBytes, 5000);
  t.equal(cg.usage('m')?.memoryBytes, 3000);
});

t.test('create on an existing cgroup is CONFLICT and leaves it alone', async (t) => {
  const { fake, cg } = setup(t);
  cg.create('web1', SEED);
  fake.set('feather/web1/cgroup.procs', '4242\n');
  t.throws(() => cg.create('web1', SEED), { code: 'CONFLICT', message: /already exists/ });
  t.equal(fake.read('feather/web1/cgroup.procs'), '4242\n');
});

t.test('a failed write removes the container cgroup (pids.max made a directory)', async (t) => {
  const { fake, cg } = setup(t);
  fake.afterMkdir = (dir) => {
    if (!dir.endsWith('/feather/bad')) return;
    rmSync(fake.path('feather/bad/pids.max'));
    mkdirSync(fake.path('feather/bad/pids.max'));
  };
  t.throws(() => cg.create('bad', SEED), { code: 'RUNTIME_ERROR', message: /pids\.max.*EISDIR/ });
  t.notOk(fake.exists('feather/bad'), 'nothing left behind');
  t.same(cg.list(), []);
});

t.test('errors name the file, the value, the errno and what to do', async (t) => {
  const { fake, cg } = setup(t);
  fake.failWrites.set('memory.max', 'EINVAL');
  t.throws(() => cg.create('x', SEED), {
    code: 'RUNTIME_ERROR',
    message: /^cannot write "134217728" to memory\.max \(.*feather\/x\/memory\.max\): EINVAL: the kernel refused the value/,
  });
  t.notOk(fake.exists('feather/x'));
  const fresh = setup(t);
  fresh.fake.failWrites.set('cgroup.subtree_control', 'EBUSY');
  t.throws(() => fresh.cg.create('y', SEED), { message: /cgroup\.subtree_control.*EBUSY.*no internal processes/ });
  t.notOk(fresh.fake.exists('feather/y'));
});

t.test('remove: missing is fine, busy is retried then reported, never killed', async (t) => {
  const { fake, cg } = setup(t);
  t.doesNotThrow(() => cg.remove('nothing'));
  cg.create('web1', SEED);
  fake.set('feather/web1/cgroup.procs', '4242\n');
  t.throws(() => cg.remove('web1'), { code: 'RUNTIME_ERROR', message: /EBUSY.*stop the container first/ });
  t.ok(fake.exists('feather/web1'));
  fake.set('feather/web1/cgroup.procs', '');
  cg.remove('web1');
  t.notOk(fake.exists('feather/web1'));
  t.same(cg.list(), []);
  t.equal(cg.usage('web1'), undefined);
});

t.test('names are checked before they become paths', async (t) => {
  const { cg } = setup(t);
  t.throws(() => cg.create('../escape', SEED), { code: 'BAD_REQUEST' });
  t.throws(() => cg.remove('a/b'), { code: 'BAD_REQUEST' });
  t.throws(() => cg.create('ok', { ...SEED, pids: 0 }), { code: 'BAD_REQUEST' });
});

t.test('devices on v2: the rules become the allow-list the shim attaches to the container cgroup; nothing is written', async (t) => {
  const { fake, cg } = setup(t);
  cg.create('web1', SEED);
  const writes = fake.writes.length;
  const r = cg.setDevices('web1', [...BASELINE_DEVICE_RULES, { allow: true, type: 'c', major: 240, minor: 3, access: 'rw' }]);
  if (!r.supported) throw new Error(r.reason);
  t.same(r.dirs, [], 'no directory beyond the one create() returned');
  t.equal(r.filter?.cgroup, fake.path('feather/web1'));
  t.same(r.filter?.rules.map(formatDeviceFilterRule), [
    'c * * m', 'b * * m', 'c 1 3 rwm', 'c 1 5 rwm', 'c 1 7 rwm', 'c 1 8 rwm', 'c 1 9 rwm', 'c 5 0 rwm', 'c 5 2 rwm', 'c 136 * rwm', 'c 240 3 rw',
  ]);
  t.equal(fake.writes.length, writes, 'v2 has no device files to write');
});

t.test('devices on v2: refused before the cgroup exists, for bad names and for bad rules', async (t) => {
  const { cg } = setup(t);
  t.throws(() => cg.setDevices('web1', BASELINE_DEVICE_RULES), { code: 'RUNTIME_ERROR', message: /feather\/web1 does not exist/ });
  t.throws(() => cg.setDevices('../x', BASELINE_DEVICE_RULES), { code: 'BAD_REQUEST' });
  cg.create('web1', SEED);
  t.throws(() => cg.setDevices('web1', [{ allow: true, type: 'c', major: 1, minor: 3, access: 'rwx' }]), { code: 'BAD_REQUEST' });
  t.throws(() => cg.setDevices('web1', [{ allow: true, type: 'c', major: -1, minor: 3, access: 'r' }]), { code: 'BAD_REQUEST' });
});

t.test('toDeviceFilterRules follows v1 devices.allow/deny semantics', async (t) => {
  const allow = (type: 'a' | 'b' | 'c', major: number | undefined, minor: number | undefined, access: string): DeviceRule => ({ allow: true, type, major, minor, access });
  const deny = (type: 'a' | 'b' | 'c', major: number | undefined, minor: number | undefined, access: string): DeviceRule => ({ allow: false, type, major, minor, access });
  const f = (rules: DeviceRule[]): string[] => toDeviceFilterRules(rules).map(formatDeviceFilterRule);
  t.same(f([deny('a', undefined, undefined, 'rwm')]), [], '"a" deny alone: an empty allow-list (everything denied)');
  t.same(f([deny('a', undefined, undefined, 'rwm'), allow('c', 1, 3, 'r'), allow('c', 1, 3, 'm')]), ['c 1 3 rm'], 'an allow for the same numbers widens the entry');
  t.same(f([deny('a', undefined, undefined, 'rwm'), allow('c', 1, 3, 'rwm'), deny('c', 1, 3, 'w')]), ['c 1 3 rm'], 'a deny takes its bits away');
  t.same(f([deny('a', undefined, undefined, 'rwm'), allow('c', 1, 3, 'rw'), deny('c', 1, 3, 'rw')]), [], 'and the entry goes when none are left');
  t.same(f([deny('a', undefined, undefined, 'rwm'), allow('c', 1, 3, 'rw'), deny('c', 1, 5, 'rw')]), ['c 1 3 rw'], 'a deny of other numbers changes nothing');
  t.same(f([allow('c', 1, 3, 'rw'), deny('a', undefined, undefined, 'rwm'), allow('c', 1, 5, 'r')]), ['c 1 5 r'], '"a" deny starts over');
  t.same(f([]), ['a * * rwm'], 'no rules: the default allows everything, as an untouched v1 cgroup');
  t.same(f([deny('a', undefined, undefined, 'rwm'), allow('c', 1, 3, 'r'), allow('a', undefined, undefined, 'rwm')]), ['a * * rwm'], '"a" allow: everything');
  t.same(f([allow('a', undefined, undefined, 'rwm'), deny('c', 1, 3, 'r'), allow('c', 1, 3, 'r')]), ['a * * rwm'], 'a deny undone by the same allow');
  t.throws(() => f([allow('a', undefined, undefined, 'rwm'), deny('c', 1, 3, 'r')]), { code: 'BAD_REQUEST', message: /deny c 1 3 r under an allowing default/ }, 'a deny-list is refused');
});
