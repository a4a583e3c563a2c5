// `feather-agent daemon` end to end, driven as a person would: the real daemon process, a real
// broker (in-process aedes, then Debian's mosquitto), mosquitto_pub/mosquitto_sub, pulls from a
// local HTTP server, real containers. Every command verb, garbage that must not hurt it, telemetry.
import t from 'tap';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { decodeTelemetry } from '../../shared/protocol/telemetry.js';
import { isPidAlive } from '../../shared/process.js';
import { BROKERS } from '../helpers/brokers.js';
import { cgroupLeftovers } from '../helpers/runtime-fixture.js';
import {
  busyboxImageTarball, cannotRun, daemonTestbed, Device, json, sha256, until, type PsEntry,
} from '../helpers/daemon-fixture.js';

// A shell as PID 1 that logs, then exits 0 at once on SIGTERM (busybox sleep as PID 1 ignores it).
const SERVE = (greeting: string): string[] =>
  ['sh', '-c', `echo ${greeting} from $(hostname); cat /data/origin; trap 'echo bye; exit 0' TERM; while :; do sleep 1 & wait $!; done`];

const why = cannotRun();
if (why !== undefined) {
  t.plan(0, why);
} else {
  const bed = daemonTestbed(t);

  for (const { kind, start } of BROKERS) {
    t.test(`commands over ${kind}`, async (t) => {
      const { fx, http } = bed;
      const broker = await start();
      t.teardown(() => broker.close());
      const id = `${fx.tag}-${kind}`;
      const dev = await Device.open(broker, id, { v5: broker.maxProtocol === 5, context: () => fx.tails() });
      t.teardown(() => dev.close());
      const daemon = await fx.startDaemon({ broker, deviceId: id, env: { FEATHER_TELEMETRY_INTERVAL: '1' } });
      t.teardown(() => daemon.stop());
      const image = `bb-${kind}`;
      const web = fx.name(`${kind}-web`);

      t.test('status is online, retained, and ping answers', async (t) => {
        const online = json(await dev.status(true));
        t.match(online, { online: true, ts: Number, agentVersion: String });
        const late = await Device.open(broker, id);
        t.teardown(() => late.close());
        const retained = await late.status(true);
        t.equal(retained.retain, true, 'a subscriber who comes later gets it retained');
        t.match(await dev.ask('ping'), { ok: true, result: { pong: true, ts: Number } });
        const inv = await dev.ask('inventory');
        t.match(inv, { ok: true, result: { id, arch: String, cpu: { cores: Number }, memoryBytes: Number, cgroup: /^v[12]$/, runtimes: Array } });
        const { disk: _disk, ...published } = json(await dev.waitFor('retained inventory', (m) => m.topic === dev.topic('inventory')));
        const { disk: _disk2, ...answered } = inv.result as Record<string, unknown>;
        t.same(published, answered, 'the same document as the retained inventory (free disk aside)');
      });

      t.test('image.pull from HTTP: verified into the store; a wrong sha256 leaves nothing', async (t) => {
        const good = join(fx.root, `${kind}-good.tar.gz`);
        const { sha256: goodSha, bytes } = await busyboxImageTarball(good, { 'data/origin': `pulled over ${kind}\n` });
        const goodUrl = http.serve(`/${kind}/busybox.tar.gz`, readFileSync(good));
        const before = { images: fx.listDir('images'), tmp: fx.listDir('tmp') };
        const after = dev.mark();
        const pulled = await dev.ask('image.pull', { name: image, url: goodUrl, sha256: goodSha });
        t.match(pulled, { ok: true, result: { name: image, sha256: goodSha, bytes, durationMs: Number } });
        t.match(await dev.event('image.pulled', (e) => e['name'] === image, { after }), { sha256: goodSha });
        t.ok(http.requests.some((r) => r.path === `/${kind}/busybox.tar.gz` && r.status === 200), 'fetched from the HTTP server');
        t.equal(sha256(readFileSync(join(fx.dataDir, 'images', `${image}.tar.gz`))), goodSha, 'the stored tarball is the one served');
        const list = await dev.ask('image.list');
        t.match(list, { ok: true, result: Array });
        t.ok((list.result as Array<{ name: string; sha256: string }>).some((i) => i.name === image && i.sha256 === goodSha), 'listed');

        const other = join(fx.root, `${kind}-other.tar.gz`);
        const { sha256: actual } = await busyboxImageTarball(other, { 'data/origin': 'not what was asked for\n' });
        const otherUrl = http.serve(`/${kind}/other.tar.gz`, readFileSync(other));
        const wanted = 'ab'.repeat(32);
        const mark2 = dev.mark();
        const bad = await dev.ask('image.pull', { name: `${image}-bad`, url: otherUrl, sha256: wanted });
        t.match(bad, { ok: false, error: { code: 'CHECKSUM_MISMATCH' } });
        t.match(bad.error?.message, new RegExp(wanted), 'the message names the digest asked for');
        t.match(bad.error?.message, new RegExp(actual), 'and the digest received');
        t.match(await dev.event('pull.failed', (e) => e['name'] === `${image}-bad`, { after: mark2 }), { code: 'CHECKSUM_MISMATCH' });
        t.same(fx.listDir('images'), [...new Set([...before.images, `${image}.tar.gz`])].sort(), 'images/ holds only what verified');
        t.same(fx.listDir('tmp'), before.tmp, 'tmp/ holds no partial or lock');
        const list2 = await dev.ask('image.list');
        t.notOk((list2.result as Array<{ name: string }>).some((i) => i.name === `${image}-bad`), 'not listed');
        const metrics = await (await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)).text();
        t.match(metrics, /^feather_image_pull_failures_total\{reason="CHECKSUM_MISMATCH"\} 1$/m, 'the failure is counted by reason');
        t.match(metrics, /^feather_image_pull_seconds_count 2$/m, 'both pulls are timed');
      });

      t.test('container.run, list, logs, stop, rm', async (t) => {
        const run = await dev.ask('container.run', { name: web, image, args: SERVE('hello'), limits: { memory: '32Mi', cpu: 0.25, pids: 8 } });
        t.match(run, { ok: true, result: { name: web, pid: Number, startedAt: Number } });
        const pid = (run.result as { pid: number }).pid;
        t.ok(isPidAlive(pid), 'its pid is a live process on the host');
        const ps = await fx.ps();
        t.match(ps.find((c) => c.name === web), { status: 'running', pid, image }, 'feather-agent ps --json sees it running');

        const list = await dev.ask('container.list');
        t.match(list, { ok: true });
        t.match((list.result as PsEntry[]).find((c) => c.name === web), { name: web, image, state: 'running', pid, limits: { memoryBytes: 32 * 2 ** 20, cpus: 0.25, pids: 8 } });

        const lines = await until('both log lines', async () => {
          const r = await dev.ask('container.logs', { name: web, tail: 10 });
          const l = (r.result as { lines?: string[] } | undefined)?.lines ?? [];
          return l.length >= 2 ? l : undefined;
        }, { context: () => fx.tails() });
        t.same(lines, [`hello from ${web}`, `pulled over ${kind}`], 'its output, from the pulled image');

        const stop = await dev.ask('container.stop', { name: web, timeoutS: 5 });
        t.same(stop.result, { name: web, exitCode: 0 }, 'it trapped SIGTERM and exited 0');
        t.notOk(isPidAlive(pid), 'the process is gone');
        const all = await dev.ask('container.list', { all: true });
        t.match((all.result as PsEntry[]).find((c) => c.name === web), { state: 'exited', exitCode: 0 });
        const running = await dev.ask('container.list');
        t.notOk((running.result as PsEntry[]).some((c) => c.name === web), 'not among the running');
        t.match(await dev.ask('container.logs', { name: web }), { ok: true, result: { lines: [`hello from ${web}`, `pulled over ${kind}`, 'bye'] } });

        t.match(await dev.ask('container.rm', { name: web }), { ok: true, result: { name: web, exitCode: 0 } });
        t.notOk((await fx.ps()).some((c) => c.name === web), 'ps no longer lists it');
        t.notOk(fx.listDir('containers').includes(web), 'its directory is gone');
        t.same(cgroupLeftovers(web), [], 'and its cgroups');
        t.match(await dev.ask('container.logs', { name: web }), { ok: false, error: { code: 'NOT_FOUND' } });
        t.match(await dev.ask('container.rm', { name: web }), { ok: false, error: { code: 'NOT_FOUND' } });
      });

      t.test('garbage does not hurt it: replies where there is a requestId, events where not, then ping', async (t) => {
        const after = dev.mark();
        // No requestId to answer on: a command.rejected event each.
        await dev.publish('cmd/ping', 'this is not json');
        await dev.publish('cmd/ping', Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x9c, 0x80, 0xff, 0x7f, 0x00, 0xc3]));
        await dev.publish('cmd/ping', '');
        await dev.publish('cmd/ping', '[1,2,3]');
        await dev.publish('cmd/ping', '{"requestId":42}');
        let rejected = 0;
        await until('five command.rejected events', () => {
          rejected = dev.on('events', after).filter((m) => m.text.includes('"command.rejected"')).length;
          return rejected >= 5;
        }, { context: () => `${rejected} seen\n${fx.tails()}` });
        t.ok(rejected >= 5, 'each one is reported on the events topic');
        const first = dev.on('events', after)[0];
        t.match(first && json(first), { type: 'command.rejected', deviceId: id, topic: dev.topic('cmd/ping'), reason: String });

        const truncated = dev.requestId('trunc');
        await dev.publish('cmd/container.run', `{"requestId":"${truncated}","name":"we`);
        t.match(await dev.reply(truncated, { after }), { requestId: truncated, ok: false, error: { code: 'BAD_REQUEST', message: /not valid JSON/ } });
        t.match(await dev.ask('frobnicate', {}), { ok: false, error: { code: 'UNKNOWN_VERB', message: /ping/ } });
        t.match(await dev.ask('container.run', { name: 'x', image, args: 'sleep 60' }), { ok: false, error: { code: 'BAD_REQUEST', message: /args/ } });
        t.match(await dev.ask('container.run', { name: '../etc', image }), { ok: false, error: { code: 'BAD_REQUEST', message: /name/ } });
        t.match(await dev.ask('image.pull', { name: 'y', url: 'http://127.0.0.1:1/x', sha256: 12 }), { ok: false, error: { code: 'BAD_REQUEST', message: /sha256/ } });
        t.match(await dev.ask('container.stop', { name: web, timeoutS: 'soon' }), { ok: false, error: { code: 'BAD_REQUEST', message: /timeoutS/ } });
        t.match(await dev.ask('container.run', { name: 'z', image, limit: { memory: '1Mi' } }), { ok: false, error: { code: 'BAD_REQUEST', message: /unknown field limit/ } });
        const big = dev.requestId('big');
        await dev.publish('cmd/ping', `{"requestId":"${big}","pad":"${'x'.repeat(300 * 1024)}"}`);
        t.match(await dev.reply(big, { after }), { ok: false, error: { code: 'BAD_REQUEST', message: /above this agent's limit/ } });

        t.ok(daemon.running, 'the daemon is still running');
        t.match(await dev.ask('ping'), { ok: true, result: { pong: true } }, 'and answers');
        t.notOk(daemon.logs.some((l) => l.level === 'error' && l.event === 'unhandled.rejection'), 'no unhandled rejection was logged');
      });

      t.test('telemetry is published every interval as protobuf (the default), and decodes', async (t) => {
        const after = dev.mark();
        const m = await dev.waitFor('telemetry', (x) => x.topic === dev.topic('telemetry') && x.payload.length > 0, { after, ms: 10_000 });
        const sample = decodeTelemetry(m.payload);
        t.equal(sample.deviceId, id);
        t.ok(sample.device !== undefined && sample.device.memoryTotalBytes > 0, 'with the device figures');
        if (kind === 'mosquitto') t.equal(m.contentType, 'application/x-protobuf', 'MQTT 5 content type');
      });

      t.test('SIGTERM: a clean stop, status offline with reason shutdown; a retained command is not run again', async (t) => {
        // A retained command reaches a live agent with the retain flag cleared (MQTT-3.3.1-9), so
        // the agent cannot tell it from a plain one; what it must not do is run it again when the
        // broker hands it the retained copy at its next subscription.
        const retainedId = dev.requestId('retained');
        await dev.publish('cmd/ping', JSON.stringify({ requestId: retainedId }), { retain: true });
        await until('the retained ping answered or rejected', () =>
          dev.on(`reply/${retainedId}`).length > 0 || dev.on('events').some((m) => m.text.includes(retainedId) || m.text.includes('retained commands')),
        { context: () => fx.tails() });
        const answeredLive = dev.on(`reply/${retainedId}`).length;
        t.ok(answeredLive <= 1, 'answered at most once');

        const after = dev.mark();
        const exit = await daemon.stop();
        t.same(exit, { code: 0, signal: null });
        t.match(json(await dev.status(false, { after })), { online: false, reason: 'shutdown' });

        const again = await fx.startDaemon({ broker, deviceId: id });
        t.teardown(() => again.stop());
        t.match(await dev.event('command.rejected', (e) => e['topic'] === dev.topic('cmd/ping') && /retained/.test(String(e['reason'])), { after }),
          { reason: /mosquitto_pub -r -n/ }, 'the retained copy is rejected, saying how to clear it');
        t.match(await dev.ask('ping'), { ok: true });
        t.equal(dev.on(`reply/${retainedId}`).length, answeredLive, 'not run (or answered) again');
        await dev.publish('cmd/ping', '', { retain: true });
        const late = await Device.open(broker, id);
        t.teardown(() => late.close());
        await late.status(true);
        t.equal(late.on('cmd/ping').length, 0, 'cleared with mosquitto_pub -r -n');
        t.same(await again.stop(), { code: 0, signal: null });
      });
    });
  }

  t.test('nothing is left: containers, cgroups, mounts', async (t) => {
    const { fx } = bed;
    const left = await fx.cleanup();
    t.same(left, { cgroups: [], mounts: [], containers: [] });
  });
}
