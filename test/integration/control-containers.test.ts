// Every container and image verb end to end: mosquitto_pub -> broker -> control plane -> the real
// ShimRuntime and ImageStore (real containers, as root) -> reply and events, over aedes and
// mosquitto alike.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startControlPlane, type ControlPlane } from '../../agent/control/index.js';
import { loadAgentConfig } from '../../shared/config/agent.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { Topics } from '../../shared/protocol/topics.js';
import { BROKERS, MosquittoSub, messageJson, mosquittoPub, until, type SubMessage } from '../helpers/brokers.js';
import { isRoot, runtimeFixture, type RuntimeFixture } from '../helpers/runtime-fixture.js';

const json = messageJson;


if (!isRoot()) {
  t.comment('container verbs over MQTT need root: skipped');
} else {
  let fx: RuntimeFixture;
  t.before(async () => { fx = await runtimeFixture(); });
  t.teardown(async () => { await fx.cleanup(); });

  for (const { kind, start } of BROKERS) {
    t.test(`container and image verbs over ${kind}`, async (t) => {
      configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });
      const broker = await start();
      t.teardown(() => broker.close());
      const deviceId = `ctr-${kind}`;
      const config = loadAgentConfig({ env: {}, overrides: { deviceId, dataDir: fx.paths.root, 'broker.url': broker.url } });
      const plane: ControlPlane = await startControlPlane({
        config, runtime: fx.runtime, images: fx.images, inventory: () => ({ id: deviceId }), logger: createLogger('agent'),
        options: { reconnect: { minMs: 100, maxMs: 1000 }, replyCacheFile: join(fx.root, `replies-${kind}.jsonl`) },
      });
      t.teardown(() => plane.stop());
      await until('connected', () => plane.connected);
      const topics = new Topics(config.topicPrefix, deviceId);
      const replies = await MosquittoSub.start(broker, [topics.replyFilter]);
      const events = await MosquittoSub.start(broker, [topics.events]);
      t.teardown(() => replies.stop());
      t.teardown(() => events.stop());
      const n = (s: string): string => `${kind}-${s}`;
      const ask = async (verb: string, body: Record<string, unknown>): Promise<Record<string, unknown>> => {
        const id = String(body['requestId']);
        await mosquittoPub(broker, topics.cmd(verb), JSON.stringify(body));
        return json(await replies.waitFor((m) => m.topic === topics.reply(id), 30_000));
      };
      const event = (type: string, name: string, ms = 15_000) =>
        events.waitFor((m) => json(m)['type'] === type && json(m)['name'] === name, ms).then(json);

      t.test('container.run starts it; the same requestId again gets the same reply, not a CONFLICT', async (t) => {
        const body = { requestId: n('run-1'), name: n('web'), image: 'busybox', args: ['sh', '-c', 'echo hello from $(hostname); sleep 60'], limits: { memory: '32Mi', cpu: 0.25, pids: 5 }, env: { GREETING: 'hi' } };
        const r1 = await ask('container.run', body);
        t.match(r1, { requestId: n('run-1'), ok: true, result: { name: n('web'), pid: Number, startedAt: Number } });
        await sleep(10);
        await mosquittoPub(broker, topics.cmd('container.run'), JSON.stringify(body));
        await until('second reply', () => replies.received.filter((m) => m.topic === topics.reply(n('run-1'))).length === 2);
        const r2 = json(replies.received.filter((m) => m.topic === topics.reply(n('run-1')))[1] as SubMessage);
        t.same(r2, r1, 'answered from the reply store');
        t.equal(fx.runtime.list().filter((c) => c.name === n('web')).length, 1, 'one container');
        const again = await ask('container.run', { ...body, requestId: n('run-2') });
        t.match(again, { ok: false, error: { code: 'CONFLICT', message: /is in use/ } }, 'a new requestId does run again');
      });

      t.test('container.list and container.logs', async (t) => {
        const list = await ask('container.list', { requestId: n('ls-1') });
        t.match(list, { ok: true, result: [{ name: n('web'), image: 'busybox', state: 'running', pid: Number, exitCode: null, limits: { memoryBytes: 32 * 2 ** 20, cpus: 0.25, pids: 5 } }] });
        await until('log line', () => fx.runtime.inspect(n('web')).status === 'running');
        await sleep(200);
        const logs = await ask('container.logs', { requestId: n('logs-1'), name: n('web'), tail: 10 });
        t.same(logs, { requestId: n('logs-1'), ok: true, result: { lines: [`hello from ${n('web')}`] } });
        t.match(await ask('container.logs', { requestId: n('logs-2'), name: n('nope') }), { ok: false, error: { code: 'NOT_FOUND' } });
      });

      t.test('the broker goes away: containers keep running, the agent catches up', async (t) => {
        await broker.kill();
        await until('disconnected', () => !plane.connected);
        await sleep(500);
        t.equal(fx.runtime.inspect(n('web')).status, 'running', 'the container did not notice');
        await broker.restart();
        await until('reconnected', () => plane.connected);
        // mosquitto_sub reconnects and subscribes again by itself
        await replies.ready();
        await events.ready();
        t.match(await ask('container.list', { requestId: n('ls-after') }), { ok: true, result: [{ name: n('web'), state: 'running' }] });
      });

      t.test('commands on one container are serialized: run then stop, published back to back', async (t) => {
        const events2 = events.received.length;
        await mosquittoPub(broker, topics.cmd('container.run'), JSON.stringify({ requestId: n('seq-run'), name: n('seq'), image: 'busybox', args: ['sleep', '30'] }));
        await mosquittoPub(broker, topics.cmd('container.stop'), JSON.stringify({ requestId: n('seq-stop'), name: n('seq'), timeoutS: 1 }));
        const run = json(await replies.waitFor((m) => m.topic === topics.reply(n('seq-run')), 30_000));
        const stop = json(await replies.waitFor((m) => m.topic === topics.reply(n('seq-stop')), 30_000));
        t.match(run, { ok: true });
        t.match(stop, { ok: true, result: { name: n('seq'), exitCode: 137 } }, 'the stop waited for the run (sleep ignores SIGTERM as PID 1)');
        const ev = await events.waitFor((m) => events.received.indexOf(m) >= events2 && json(m)['type'] === 'container.exited' && json(m)['name'] === n('seq'));
        t.match(json(ev), { type: 'container.exited', deviceId, name: n('seq'), exitCode: 137, oomKilled: false });
      });

      t.test('container.rm stops a running container and removes it', async (t) => {
        t.match(await ask('container.rm', { requestId: n('rm-1'), name: n('web'), timeoutS: 1 }), { ok: true, result: { name: n('web') } });
        t.match(await ask('container.rm', { requestId: n('rm-2'), name: n('seq') }), { ok: true, result: { name: n('seq'), exitCode: 137 } });
        t.equal(fx.runtime.list({ all: true }).some((c) => c.name === n('web') || c.name === n('seq')), false);
        t.match(await ask('container.rm', { requestId: n('rm-3'), name: n('web') }), { ok: false, error: { code: 'NOT_FOUND' } });
        t.match(await ask('container.stop', { requestId: n('stop-x'), name: n('web') }), { ok: false, error: { code: 'NOT_FOUND' } });
      });

      t.test('an OOM kill is published as container.oom', async (t) => {
        await ask('container.run', { requestId: n('oom-run'), name: n('hog'), image: 'busybox', args: ['sh', '-c', 'sleep 1.5; tail /dev/zero'], limits: { memory: '16Mi' } });
        t.match(await event('container.oom', n('hog'), 20_000), { type: 'container.oom', name: n('hog'), exitCode: 137, oomKilled: true });
        await ask('container.rm', { requestId: n('oom-rm'), name: n('hog') });
      });

      t.test('container.run of an image that is not here: NOT_FOUND', async (t) => {
        t.match(await ask('container.run', { requestId: n('nf-1'), name: n('x'), image: 'not-here' }), { ok: false, error: { code: 'NOT_FOUND', message: /image "not-here" is not on this device/ } });
      });

      t.test('image.pull (file://), image.list, image.rm, with their events', async (t) => {
        const tarball = fx.paths.imageTarball('busybox');
        const sha = createHash('sha256').update(readFileSync(tarball)).digest('hex');
        const url = pathToFileURL(tarball).href;
        const pulled = await ask('image.pull', { requestId: n('pull-1'), name: n('bb'), url, sha256: sha });
        t.match(pulled, { ok: true, result: { name: n('bb'), sha256: sha, bytes: Number, durationMs: Number } });
        t.match(await event('image.pulled', n('bb')), { sha256: sha });
        const bad = await ask('image.pull', { requestId: n('pull-2'), name: n('bb2'), url, sha256: '0'.repeat(64) });
        t.match(bad, { ok: false, error: { code: 'CHECKSUM_MISMATCH' } });
        t.match(await event('pull.failed', n('bb2')), { code: 'CHECKSUM_MISMATCH', url });
        const list = await ask('image.list', { requestId: n('il-1') });
        t.match(list, { ok: true, result: Array });
        t.ok((list['result'] as Array<{ name: string }>).some((i) => i.name === n('bb')));
        await ask('container.run', { requestId: n('use-bb'), name: n('user'), image: n('bb'), args: ['sleep', '30'] });
        t.match(await ask('image.rm', { requestId: n('irm-1'), name: n('bb') }), { ok: false, error: { code: 'CONFLICT', message: new RegExp(n('user')) } }, 'in use');
        await ask('container.rm', { requestId: n('user-rm'), name: n('user'), timeoutS: 0 });
        t.same(await ask('image.rm', { requestId: n('irm-2'), name: n('bb') }), { requestId: n('irm-2'), ok: true, result: {} });
        t.match(await ask('image.rm', { requestId: n('irm-3'), name: n('bb') }), { ok: false, error: { code: 'NOT_FOUND' } });
      });

      t.test('models named in container.run are fetched first and mounted read-only under /models', async (t) => {
        const model = join(fx.root, `${kind}-weights.bin`);
        writeFileSync(model, `weights for ${kind}\n`);
        const sha = createHash('sha256').update(readFileSync(model)).digest('hex');
        const r = await ask('container.run', {
          requestId: n('m-run'), name: n('infer'), image: 'busybox',
          args: ['sh', '-c', `cat /models/det/${kind}-weights.bin; touch /models/det/x 2>/dev/null || echo read-only`],
          models: [{ name: 'det', url: pathToFileURL(model).href, sha256: sha }],
        });
        t.match(r, { ok: true });
        await until('exit', () => fx.runtime.inspect(n('infer')).status === 'exited');
        t.same(await fx.runtime.logs(n('infer')), [`weights for ${kind}`, 'read-only']);
        await ask('container.rm', { requestId: n('m-rm'), name: n('infer') });
        const bad = await ask('container.run', { requestId: n('m-bad'), name: n('infer2'), image: 'busybox', models: [{ name: 'det', url: pathToFileURL(model).href, sha256: 'f'.repeat(64) }] });
        t.match(bad, { ok: false, error: { code: 'CHECKSUM_MISMATCH', message: /^model det: / } });
        t.equal(fx.runtime.list({ all: true }).some((c) => c.name === n('infer2')), false, 'nothing was started');
      });
    });
  }
}
