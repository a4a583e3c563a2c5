// The daemon when things go wrong, end to end: SIGKILLed while a container runs (the broker
// publishes its retained will; a restart on the same data dir adopts the container; a second
// daemon on that data dir is refused), the broker killed and restarted on the same port, and the
// agent SIGKILLed halfway through a pull. Real daemon processes, real brokers, mosquitto clients.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isPidAlive } from '../../shared/process.js';
import { BROKERS, startMosquitto } from '../helpers/brokers.js';
import {
  busyboxImageTarball, cannotRun, DaemonFixture, daemonTestbed, Device, json, sha256, until, type PsEntry,
} from '../helpers/daemon-fixture.js';

const LOOP = (tag: string): string[] =>
  ['sh', '-c', `echo ${tag}; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done`];

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

const metric = (exposition: string, name: string): string | undefined =>
  exposition.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1];

const why = cannotRun();
if (why !== undefined) {
  t.plan(0, why);
} else {
  const bed = daemonTestbed(t);

  for (const { kind, start } of BROKERS) {
    t.test(`SIGKILL, adoption, one daemon per data dir, broker restart over ${kind}`, async (t) => {
      const { fx } = bed;
      const group = t;
      const broker = await start();
      t.teardown(() => broker.close());
      const id = `${fx.tag}-${kind}`;
      const dev = await Device.open(broker, id, { context: () => fx.tails() });
      t.teardown(() => dev.close());
      const first = await fx.startDaemon({ broker, deviceId: id });
      t.teardown(() => first.stop());
      const keep = fx.name(`${kind}-keep`);
      let pid = -1;

      t.test('SIGKILL while a container runs: the will says offline, the container runs on', async (t) => {
        const run = await dev.ask('container.run', { name: keep, image: 'busybox', args: LOOP('kept') });
        t.match(run, { ok: true });
        pid = (run.result as { pid: number }).pid;
        const after = dev.mark();
        t.same(await first.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
        t.match(json(await dev.status(false, { after })), { online: false, reason: 'connection lost', agentVersion: String });
        const late = await Device.open(broker, id);
        const retained = await late.status(false).finally(() => late.close());
        t.equal(retained.retain, true, 'the will is retained: a later subscriber sees the agent is gone');
        t.match((await fx.ps()).find((c) => c.name === keep), { status: 'running', pid }, 'feather-agent ps: still running');
        t.ok(isPidAlive(pid));
      });

      let second: Awaited<ReturnType<DaemonFixture['startDaemon']>>;
      t.test('a restart on the same data dir adopts it: same pid, still running, listed', async (t) => {
        const after = dev.mark();
        second = await fx.startDaemon({ broker, deviceId: id });
        group.teardown(() => second.stop());
        t.match(json(await dev.status(true, { after })), { online: true });
        t.match(await second.waitForLog('agent.starting'), { reaped: [] }, 'nothing reaped');
        const list = await dev.ask('container.list');
        t.match((list.result as PsEntry[]).find((c) => c.name === keep), { state: 'running', pid });
        t.ok(isPidAlive(pid));
        t.match(await dev.ask('container.logs', { name: keep }), { ok: true, result: { lines: ['kept'] } });
      });

      t.test('a second daemon on the same data dir is refused with a clear message', async (t) => {
        const after = dev.mark();
        const third = await fx.startDaemon({ broker, deviceId: id, wait: false });
        const exit = await Promise.race([third.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000))]);
        t.same(exit, { code: 1, signal: null }, 'exits 1');
        const message = third.lines.join('\n');
        t.match(message, new RegExp(`another feather-agent daemon \\(pid ${second.pid}\\) uses this data dir \\(${fx.dataDir.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\); stop it or use another --data-dir`));
        t.ok(second.running, 'the first one runs on');
        t.match(await dev.ask('ping'), { ok: true });
        t.equal(dev.on('status', after).length, 0, 'and the refused one never touched the status');
        t.ok(existsSync(join(fx.dataDir, 'agent.pid')) && readFileSync(join(fx.dataDir, 'agent.pid'), 'utf8').trim() === String(second.pid), 'the lock still names the running daemon');
      });

      t.test('the broker killed and restarted on the same port: the agent reconnects, online again, answers', async (t) => {
        const mark = second.mark();
        await broker.kill();
        await second.waitForLog('mqtt.connection_lost', { after: mark });
        const down = await get(second.metricsPort, '/metrics');
        t.equal(metric(down.body, 'feather_mqtt_connected'), '0', 'feather_mqtt_connected 0 while it is away');
        t.same(JSON.parse((await get(second.metricsPort, '/healthz')).body), { status: 'ok', mqtt: { connected: false } }, '/healthz still ok, reports the broker');
        t.ok(isPidAlive(pid), 'the container did not notice');
        const after = dev.mark();
        await broker.restart();
        await second.waitForLog('mqtt.connected', { after: mark, ms: 20_000 });
        await dev.sub.ready();
        t.match(json(await dev.status(true, { after, ms: 20_000 })), { online: true });
        t.match(await dev.ask('ping'), { ok: true, result: { pong: true } });
        t.match(await dev.ask('container.list'), { ok: true, result: [{ name: keep, state: 'running', pid }] });
        t.equal(metric((await get(second.metricsPort, '/metrics')).body, 'feather_mqtt_connected'), '1');
      });

      t.test('SIGTERM: the daemon goes, the container stays', async (t) => {
        t.same(await second.stop(), { code: 0, signal: null });
        t.ok(isPidAlive(pid));
        const r = await fx.cli(['rm', '-f', keep]);
        t.equal(r.code, 0, r.stderr);
        t.notOk(isPidAlive(pid));
      });
    });
  }

  t.test('SIGKILL halfway through a pull, then the pull redone after a restart', async (t) => {
    const { fx, http } = bed;
    const broker = await startMosquitto();
    t.teardown(() => broker.close());
    const id = `${fx.tag}-pull`;
    const dev = await Device.open(broker, id, { context: () => fx.tails() });
    t.teardown(() => dev.close());
    const blob = randomBytes(6 * 1024 * 1024);
    const file = join(fx.root, 'big.tar.gz');
    const { sha256: sha, bytes } = await busyboxImageTarball(file, { 'data/blob': blob });
    const path = '/big.tar.gz';
    const url = http.serve(path, readFileSync(file), { firstBytes: 1 << 20, chunkBytes: 32 * 1024, everyMs: 50 });
    const partial = join(fx.dataDir, 'tmp', `${sha}.partial`);

    const first = await fx.startDaemon({ broker, deviceId: id });
    t.teardown(() => first.stop());
    const interrupted = dev.requestId('pull');
    await dev.publish('cmd/image.pull', JSON.stringify({ requestId: interrupted, name: 'big', url, sha256: sha }));
    const size = await until('a partial of 1 MiB', () => {
      try { const s = statSync(partial).size; return s >= 1 << 20 ? s : undefined; } catch { return undefined; }
    }, { context: () => fx.tails() });
    t.ok(size < bytes, `killed at ${size} of ${bytes} bytes`);
    t.same(await first.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
    t.equal(dev.on(`reply/${interrupted}`).length, 0, 'the pull had not answered');
    t.notOk(existsSync(join(fx.dataDir, 'images', 'big.tar.gz')), 'nothing unverified at the destination');

    http.setTrickle(path, undefined);
    const requestsBefore = http.requests.length;
    const second = await fx.startDaemon({ broker, deviceId: id });
    t.teardown(() => second.stop());
    t.match(await dev.ask('image.pull', { requestId: interrupted, name: 'big', url, sha256: sha }),
      { ok: false, error: { code: 'INTERNAL', message: /agent restarted while this command was running/ } },
      'the same requestId after the restart: outcome unknown, not run again');
    const redone = await dev.ask('image.pull', { name: 'big', url, sha256: sha }, 60_000);
    t.match(redone, { ok: true, result: { name: 'big', sha256: sha, bytes } }, 'a new requestId pulls it');
    const fetches = http.requests.slice(requestsBefore);
    t.ok(fetches.length >= 1 && fetches.every((r) => r.path === path), 'fetched again from the server');
    // docs/images.md: "the next pull, after a restart, sends Range: bytes=N-".
    t.ok(fetches.some((r) => r.status === 206 && r.range !== undefined),
      `resumed with Range (requests: ${fetches.map((r) => `${r.status} ${r.range ?? 'no Range'}`).join(', ')})`);

    t.equal(sha256(readFileSync(join(fx.dataDir, 'images', 'big.tar.gz'))), sha, 'the stored tarball is the served one');
    t.same(fx.listDir('tmp'), [], 'no partial or lock left in tmp/');
    const verify = await fx.cli(['image', 'verify', '--json']);
    t.equal(verify.code, 0, `feather-agent image verify: ${verify.stdout} ${verify.stderr}`);
    t.ok((JSON.parse(verify.stdout) as Array<{ name: string; ok: boolean }>).some((r) => r.name === 'big' && r.ok));

    const user = fx.name('big-user');
    t.match(await dev.ask('container.run', { name: user, image: 'big', args: ['sha256sum', '/data/blob'] }), { ok: true });
    await until('the container to exit', async () => (await fx.ps()).find((c) => c.name === user)?.status === 'exited', { context: () => fx.tails() });
    const logs = await dev.ask('container.logs', { name: user });
    t.same(logs.result, { lines: [`${sha256(blob)}  /data/blob`] }, 'the extracted layer holds the whole blob, intact');
    t.equal(sha256(readFileSync(join(fx.dataDir, 'cache', sha, 'data', 'blob'))), sha256(blob), 'and so does cache/<sha256>/');
    t.match(await dev.ask('container.rm', { name: user }), { ok: true });
    t.same(await second.stop(), { code: 0, signal: null });
  });

  t.test('a container of another data dir on this host does not keep the daemon from starting', async (t) => {
    const { fx } = bed;
    // ShimRuntime.gc() takes every cgroup under feather/ that its data dir does not know for an
    // orphan; a busy one (another data dir's running container) cannot be removed.
    const other = await DaemonFixture.create();
    t.teardown(async () => { await other.cleanup(); });
    const foreign = other.name('foreign');
    const r = await other.cli(['run', '-d', '--image', 'busybox', '--name', foreign, '--', 'sleep', '300']);
    t.equal(r.code, 0, r.stderr);
    const pid = (await other.ps()).find((c) => c.name === foreign)?.pid;
    const broker = await startMosquitto();
    t.teardown(() => broker.close());
    const daemon = await fx.startDaemon({ broker, deviceId: `${fx.tag}-foreign` });
    t.ok(daemon.running, 'started');
    t.match((await other.ps()).find((c) => c.name === foreign), { status: 'running', pid }, 'the foreign container runs on');
    t.same(await daemon.stop(), { code: 0, signal: null });
    t.same(await other.cleanup(), { cgroups: [], mounts: [], containers: [] });
  });

  t.test('nothing is left: containers, cgroups, mounts', async (t) => {
    const { fx } = bed;
    const left = await fx.cleanup();
    t.same(left, { cgroups: [], mounts: [], containers: [] });
  });
}
