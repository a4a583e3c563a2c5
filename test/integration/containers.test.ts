// The runtime end to end, as root, with real containers on this host's cgroups.
import t, { type Test } from 'tap';
import { chmodSync, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { cgroupLeftovers, hostMountsUnder, isRoot, runtimeFixture, type RuntimeFixture } from '../helpers/runtime-fixture.js';
import { readState } from '../../agent/runtime/state.js';

if (!isRoot()) {
  t.pass('skipped: container tests need root');
} else {
  let fx: RuntimeFixture;
  t.before(async () => { fx = await runtimeFixture(); });
  t.teardown(async () => { await fx.cleanup(); });

  async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 10_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = fn();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(25);
    }
  }

  const exited = (name: string) => waitFor(`${name} to exit`, () => {
    const c = fx.runtime.inspect(name);
    return c.status === 'exited' ? c : undefined;
  }, 20_000);

  function assertNothingLeft(t: Test, name: string): void {
    t.same(cgroupLeftovers(name), [], `no cgroup left for ${name}`);
    t.same(hostMountsUnder(fx.paths.container(name).dir), [], `no mount left for ${name}`);
  }

  t.test('a detached container runs with the seed limits, stops, and leaves nothing', async (t) => {
    const r = await fx.runtime.run({ name: 'sleeper', image: 'busybox', args: ['sleep', '60'] });
    t.ok(r.pid > 0);
    const info = fx.runtime.inspect('sleeper');
    t.equal(info.status, 'running');
    t.same({ ...info.limits }, { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 });
    const usage = fx.runtime.usage('sleeper');
    t.equal(usage?.pids, 1, 'one process in the cgroup');
    t.equal(usage?.memoryLimitBytes, 128 * 2 ** 20);
    t.equal(fx.runtime.list().map((c) => c.name).includes('sleeper'), true);
    const stopped = await fx.runtime.stop('sleeper', 1);
    t.equal(stopped.exitCode, 137, 'sleep ignores SIGTERM as PID 1, so it was SIGKILLed');
    t.equal(fx.runtime.inspect('sleeper').status, 'exited');
    assertNothingLeft(t, 'sleeper');
    await fx.runtime.remove('sleeper');
    t.notOk(existsSync(fx.paths.container('sleeper').dir));
  });

  t.test('inside: PID 1 is the workload, hostname is the name, only lo', async (t) => {
    await fx.runtime.run({ name: 'inside', image: 'busybox', args: ['sh', '-c', 'echo pid=$$; hostname; ls /sys/class/net; ps -o pid,comm | wc -l'] });
    await exited('inside');
    const lines = await fx.runtime.logs('inside');
    t.equal(lines[0], 'pid=1');
    t.equal(lines[1], 'inside');
    t.equal(lines[2], 'lo');
    t.ok(Number(lines[3]) <= 4, `only the container's processes are visible (${lines[3]} lines of ps)`);
    await fx.runtime.remove('inside');
  });

  t.test('a memory hog above the limit is OOM-killed: exit 137, OOM count rises', async (t) => {
    // tail buffers /dev/zero looking for a newline that never comes.
    await fx.runtime.run({ name: 'hog', image: 'busybox', args: ['tail', '/dev/zero'], limits: { memoryBytes: 16 * 2 ** 20 } });
    const c = await exited('hog');
    t.equal(c.exitCode, 137);
    t.equal(c.oomKilled, true);
    const state = readState(fx.paths.container('hog').state);
    t.ok((state?.oomKills ?? 0) >= 1, 'oomKills recorded by the shim');
    assertNothingLeft(t, 'hog');
    await fx.runtime.remove('hog');
  });

  t.test('a fork bomb stops at the pids limit', async (t) => {
    await fx.runtime.run({
      name: 'bomb', image: 'busybox', limits: { pids: 10 },
      // xargs forks sleepers until the kernel refuses; the shell (PID 1) stays to hold them.
      args: ['sh', '-c', 'seq 40 | xargs -P 40 -n 1 sleep 30; sleep 30'],
    });
    const pids = await waitFor('the bomb to fill its cgroup', () => {
      const u = fx.runtime.usage('bomb');
      return u && u.pids >= 10 ? u.pids : undefined;
    });
    t.equal(pids, 10, 'exactly the limit, never more');
    await sleep(300);
    t.equal(fx.runtime.usage('bomb')?.pids, 10);
    t.match((await fx.runtime.logs('bomb')).join('\n'), /Resource temporarily unavailable/, 'the forks past the limit failed with EAGAIN');
    await fx.runtime.stop('bomb', 0);
    assertNothingLeft(t, 'bomb');
    await fx.runtime.remove('bomb');
  });

  t.test('a CPU spinner under --cpus 0.5 gets about half a core', async (t) => {
    await fx.runtime.run({ name: 'spin', image: 'busybox', args: ['sh', '-c', 'while :; do :; done'], limits: { cpus: 0.5 } });
    await sleep(500);
    const a = fx.runtime.usage('spin');
    const t0 = Date.now();
    await sleep(3000);
    const b = fx.runtime.usage('spin');
    const wall = (Date.now() - t0) / 1000;
    const share = ((b?.cpuSeconds ?? 0) - (a?.cpuSeconds ?? 0)) / wall;
    t.ok(share > 0.35 && share < 0.65, `cpu share ${share.toFixed(2)} is about 0.5`);
    await fx.runtime.stop('spin', 0);
    await fx.runtime.remove('spin');
  });

  t.test('writes land in the upper layer, persist across stop/start, and rm removes them', async (t) => {
    const lower = await fx.images.ensureExtracted('busybox');
    await fx.runtime.run({ name: 'persist', image: 'busybox', args: ['sh', '-c', 'echo x >> /count; wc -l < /count; rm /bin/vi'] });
    await exited('persist');
    t.equal((await fx.runtime.logs('persist')).at(-1)?.trim(), '1');
    t.notOk(existsSync(join(lower, 'count')), 'the cached layer is unchanged');
    t.ok(existsSync(join(lower, 'bin/vi')), 'a delete inside does not touch the cached layer');
    t.ok(existsSync(join(fx.paths.container('persist').upper, 'count')), 'the write is in the upper layer');
    await fx.runtime.start('persist');
    await waitFor('second run', () => readState(fx.paths.container('persist').state)?.status === 'exited');
    t.equal((await fx.runtime.logs('persist')).filter((l) => /^\s*\d+$/.test(l)).map((l) => l.trim()).join(','), '1,2', 'the second run sees the first one\'s write');
    await fx.runtime.remove('persist');
    t.notOk(existsSync(fx.paths.container('persist').dir));
  });

  t.test('kill -9 of the shim kills its container and gc leaves nothing', async (t) => {
    await fx.runtime.run({ name: 'orphan', image: 'busybox', args: ['sleep', '60'] });
    const state = readState(fx.paths.container('orphan').state);
    t.ok(state && state.status === 'running');
    process.kill(state!.shimPid, 'SIGKILL');
    await waitFor('the container to die with its supervisor', () => !existsSync(`/proc/${state!.pid}`));
    const report = await fx.runtime.gc();
    t.same(report.reaped, ['orphan']);
    t.equal(fx.runtime.inspect('orphan').status, 'exited');
    assertNothingLeft(t, 'orphan');
    await fx.runtime.remove('orphan');
  });

  t.test('same names, missing images and bad limits are refused cleanly', async (t) => {
    await fx.runtime.run({ name: 'dup', image: 'busybox', args: ['sleep', '30'] });
    await t.rejects(fx.runtime.run({ name: 'dup', image: 'busybox', args: ['true'] }), { code: 'CONFLICT' });
    await t.rejects(fx.runtime.run({ name: 'nope', image: 'no-such-image' }), { code: 'NOT_FOUND' });
    await t.rejects(fx.runtime.run({ name: '../evil', image: 'busybox' }), { code: 'BAD_REQUEST' });
    await t.rejects(fx.runtime.run({ name: 'missing-cmd', image: 'busybox', args: ['/no/such/program'] }), { code: 'RUNTIME_ERROR' });
    t.notOk(existsSync(fx.paths.container('missing-cmd').dir), 'a container that never ran leaves nothing');
    assertNothingLeft(t, 'missing-cmd');
    await fx.runtime.remove('dup', { force: true });
    t.same(readdirSync(fx.paths.containers), []);
  });

  t.test('--userns: container root is an unprivileged host uid, image files still owned by root inside', async (t) => {
    chmodSync(fx.root, 0o711); // mkdtemp made it 0700; the mapped root must traverse it
    const script = 'cat /proc/self/uid_map; stat -c %u /bin/busybox; id -u; echo hi > /mine; stat -c %u /mine';
    await fx.runtime.run({ name: 'userns', image: 'busybox', userns: true, args: ['sh', '-c', script] });
    const c = await exited('userns');
    t.equal(c.exitCode, 0, (await fx.runtime.logs('userns')).join('\n'));
    const lines = (await fx.runtime.logs('userns')).map((l) => l.trim().replace(/\s+/g, ' '));
    t.equal(lines[0], '0 100000 65536', 'uid 0 inside is 100000 outside');
    t.equal(lines[1], '0', 'image files appear owned by root inside');
    t.equal(lines[2], '0');
    t.equal(lines[3], '0');
    t.equal(statSync(join(fx.paths.container('userns').upper, 'mine')).uid, 100000, 'on the host the write belongs to the mapped uid');
    const lower = await fx.images.ensureExtracted('busybox');
    t.equal(statSync(join(lower, 'bin/busybox')).uid, 0, 'the cached layer is not chowned');
    assertNothingLeft(t, 'userns');
    await fx.runtime.remove('userns');
  });

  t.test('the cached layer is shared: one cache dir for many containers', async (t) => {
    await fx.runtime.run({ name: 'share-a', image: 'busybox', args: ['true'] });
    await fx.runtime.run({ name: 'share-b', image: 'busybox', args: ['true'] });
    const a = JSON.parse(readFileSync(fx.paths.container('share-a').config, 'utf8')) as { lowers: string[] };
    const b = JSON.parse(readFileSync(fx.paths.container('share-b').config, 'utf8')) as { lowers: string[] };
    t.same(a.lowers, b.lowers);
    t.equal(readdirSync(fx.paths.cache).filter((d) => !d.startsWith('.')).length, 1);
    await exited('share-a');
    await exited('share-b');
    await fx.runtime.remove('share-a');
    await fx.runtime.remove('share-b');
  });
}
