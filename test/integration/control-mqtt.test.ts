// The control plane end to end over real brokers — aedes (MQTT 3.1.1) and mosquitto (MQTT 5) —
// driven with the real mosquitto_pub / mosquitto_sub, the way a person does. The agent runs
// in this process (startControlPlane over the real ShimRuntime and ImageStore), except for the
// will test, which SIGKILLs an agent process: this same file started with
// FEATHER_CONTROL_FIXTURE=1 (see runFixtureAgent at the bottom).
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startControlPlane, type ControlPlane } from '../../agent/control/index.js';
import { readInventory } from '../../agent/devices/inventory.js';
import { ImageStore } from '../../agent/images/store.js';
import { DataPaths } from '../../agent/paths.js';
import { detectCgroups } from '../../agent/runtime/cgroups/detect.js';
import { ShimRuntime } from '../../agent/runtime/runtime.js';
import { loadAgentConfig, type AgentConfig } from '../../shared/config/agent.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { decodeReplyProto, encodeCommandProto } from '../../shared/protocol/proto.js';
import { Topics } from '../../shared/protocol/topics.js';
import {
  BROKERS, MosquittoSub, freePort, messageJson, mosquittoPub, startAedes, startMosquitto, startProxy, until, type SubMessage, type TestBroker,
} from '../helpers/brokers.js';

const MAX_PAYLOAD = 4096;

function agentConfig(o: { url: string; deviceId: string; dataDir: string; protocolVersion?: 4 | 5 }): AgentConfig {
  return loadAgentConfig({
    env: {},
    overrides: {
      deviceId: o.deviceId, dataDir: o.dataDir, runDir: join(o.dataDir, 'run'),
      'broker.url': o.url, 'broker.protocolVersion': o.protocolVersion ?? 5, maxPayloadBytes: MAX_PAYLOAD,
    },
  });
}

/** The agent's real parts, as the daemon will wire them. */
function agentParts(config: AgentConfig) {
  const paths = new DataPaths(config.dataDir);
  const images = new ImageStore(paths);
  const runtime = new ShimRuntime({ paths, images, cgroups: detectCgroups(config.cgroupRoot), defaults: config.defaults, logMaxBytes: config.logMaxBytes });
  const inventory = () => readInventory({ deviceId: config.deviceId, dataDir: config.dataDir, labels: config.labels });
  return { paths, images, runtime, inventory };
}

async function startAgent(config: AgentConfig): Promise<ControlPlane> {
  const parts = agentParts(config);
  return startControlPlane({
    config, runtime: parts.runtime, images: parts.images, inventory: parts.inventory,
    reported: () => ({ generation: 0, workloads: [] }),
    logger: createLogger('agent'),
    options: { reconnect: { minMs: 100, maxMs: 1000 } },
  });
}


const json = messageJson;

async function runTests(): Promise<void> {
  configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });
  const root = mkdtempSync(join(tmpdir(), 'feather-control-it-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));

  for (const { kind, start } of BROKERS) {
    t.test(`against ${kind}`, async (t) => {
      const broker = await start();
      t.teardown(() => broker.close());
      const deviceId = `edge-${kind}`;
      const dataDir = join(root, kind);
      const config = agentConfig({ url: broker.url, deviceId, dataDir });
      const topics = new Topics(config.topicPrefix, deviceId);
      let plane = await startAgent(config);
      t.teardown(() => plane.stop());
      await until('connected', () => plane.connected);

      const replies = await MosquittoSub.start(broker, [`feather/v1/dev/+/reply/#`]);
      const events = await MosquittoSub.start(broker, [topics.events]);
      t.teardown(() => replies.stop());
      t.teardown(() => events.stop());
      const replyTo = (id: string, timeoutMs?: number) => replies.waitFor((m) => m.topic === topics.reply(id), timeoutMs).then(json);
      const pub = (verb: string, payload: string | Buffer) => mosquittoPub(broker, topics.cmd(verb), payload);

      t.test('speaks MQTT 5 where it can, falls back to 3.1.1 on aedes', async (t) => {
        t.equal(plane.protocolVersion, broker.maxProtocol);
      });

      t.test('connect publishes retained status, inventory and reported', async (t) => {
        const sub = await MosquittoSub.start(broker, [topics.status, topics.inventory, topics.reported]);
        t.teardown(() => sub.stop());
        const status = await sub.waitFor((m) => m.topic === topics.status);
        t.equal(status.retain, true);
        t.match(json(status), { online: true, ts: Number, agentVersion: /^\d+\.\d+\.\d+/ });
        const inv = await sub.waitFor((m) => m.topic === topics.inventory);
        t.equal(inv.retain, true);
        t.match(json(inv), { id: deviceId, arch: /^(x86_64|aarch64|riscv64)$/, cpu: { cores: Number }, memoryBytes: Number, cgroup: /^v[12]$/ });
        const rep = await sub.waitFor((m) => m.topic === topics.reported);
        t.same(json(rep), { generation: 0, workloads: [] });
      });

      t.test('ping, inventory and container.list answer on reply/{requestId}', async (t) => {
        await pub('ping', '{"requestId":"p-1"}');
        t.match(await replyTo('p-1'), { requestId: 'p-1', ok: true, result: { pong: true, ts: Number } });
        await pub('inventory', '{"requestId":"inv-1"}');
        t.match(await replyTo('inv-1'), { ok: true, result: { id: deviceId } });
        await pub('container.list', '{"requestId":"ls-1","all":true}');
        t.match(await replyTo('ls-1'), { ok: true, result: Array });
        await pub('image.list', '{"requestId":"il-1"}');
        t.match(await replyTo('il-1'), { ok: true, result: Array });
      });

      t.test('garbage gets an error reply or a command.rejected event, and the agent carries on', async (t) => {
        const withId: Array<[string, string | Buffer, string, string, RegExp]> = [
          ['truncated JSON', '{"requestId":"g-trunc","name":"we', 'container.stop', 'BAD_REQUEST', /not valid JSON/],
          ['unknown verb', '{"requestId":"g-verb"}', 'container.fly', 'UNKNOWN_VERB', /unknown verb "container.fly"/],
          ['wrong field type', '{"requestId":"g-type","name":"web1","image":"busybox","args":"sleep 60"}', 'container.run', 'BAD_REQUEST', /field args must be an array of strings/],
          ['wrong limits', '{"requestId":"g-lim","name":"web1","image":"busybox","limits":{"memory":true}}', 'container.run', 'BAD_REQUEST', /field limits.memory must be a number or a string/],
          ['invalid name', '{"requestId":"g-name","name":"../../etc","image":"busybox"}', 'container.run', 'BAD_REQUEST', /container name "..\/..\/etc" is invalid/],
          ['oversized', `{"requestId":"g-big","pad":"${'x'.repeat(MAX_PAYLOAD)}"}`, 'ping', 'BAD_REQUEST', /above this agent's limit of 4096/],
        ];
        for (const [what, payload, verb, code, message] of withId) {
          await pub(verb, payload);
          const id = /"requestId":"([^"]+)"/.exec(String(payload))?.[1] ?? '';
          t.match(await replyTo(id), { requestId: id, ok: false, error: { code, message } }, what);
        }
        const noId: Array<[string, string | Buffer, RegExp]> = [
          ['not JSON', 'hello agent', /neither JSON .* nor a feather.v1.Command protobuf/],
          ['binary junk', Buffer.from([0xff, 0xfe, 0x00, 0x13, 0x37, 0xff, 0xff, 0xff, 0xff]), /neither JSON/],
          ['JSON array', '[{"requestId":"g-arr"}]', /an array, not a JSON object/],
          ['missing requestId', '{"name":"web1"}', /requestId is missing/],
          ['requestId of the wrong type', '{"requestId":42}', /requestId must be a string/],
          ['empty payload', '', /payload is empty/],
        ];
        for (const [what, payload, reason] of noId) {
          const before = events.received.length;
          await pub('ping', payload);
          const ev = await events.waitFor((m) => events.received.indexOf(m) >= before && json(m)['type'] === 'command.rejected');
          t.match(json(ev), { type: 'command.rejected', deviceId, verb: 'ping', reason }, what);
        }
        await pub('ping', '{"requestId":"g-after"}');
        t.match(await replyTo('g-after'), { ok: true, result: { pong: true } }, 'ping still answers');
      });

      t.test('a repeated requestId gets the first reply again', async (t) => {
        await pub('ping', '{"requestId":"dup-1"}');
        const first = await replyTo('dup-1');
        await sleep(5);
        await pub('ping', '{"requestId":"dup-1"}');
        await until('second reply', () => replies.received.filter((m) => m.topic === topics.reply('dup-1')).length === 2);
        const second = json(replies.received.filter((m) => m.topic === topics.reply('dup-1'))[1] as SubMessage);
        t.same(second, first, 'same ts: answered from the store, not pinged again');
      });

      t.test('fleet commands reply on the agent\'s own reply topic; other devices\' commands are ignored', async (t) => {
        await mosquittoPub(broker, topics.fleetCmd('ping'), '{"requestId":"fleet-1"}');
        t.match(await replyTo('fleet-1'), { ok: true });
        const other = topics.forDevice('someone-else');
        await mosquittoPub(broker, other.cmd('ping'), '{"requestId":"other-1"}');
        await pub('ping', '{"requestId":"other-2"}');
        await replyTo('other-2');
        t.notOk(replies.received.some((m) => m.topic.endsWith('/reply/other-1')), 'no one answered for someone-else');
      });

      if (broker.maxProtocol === 5) {
        t.test('MQTT 5: response topic, correlation data and content type', async (t) => {
          const sub5 = await MosquittoSub.start(broker, ['ctl/inbox/#'], { v5: true });
          t.teardown(() => sub5.stop());
          await mosquittoPub(broker, topics.cmd('ping'), '{}', { v5: true, properties: [['response-topic', 'ctl/inbox/a'], ['correlation-data', 'corr-42']] });
          const r = await sub5.waitFor((m) => m.topic === 'ctl/inbox/a');
          t.equal(r.correlationData, 'corr-42');
          t.equal(r.contentType, 'application/json');
          t.match(json(r), { requestId: 'corr-42', ok: true, result: { pong: true } });

          await mosquittoPub(broker, topics.cmd('container.run'), '{"requestId":"v5-bad","name":"x"}', { v5: true, properties: [['response-topic', 'ctl/inbox/b'], ['correlation-data', 'c-b']] });
          t.match(json(await sub5.waitFor((m) => m.topic === 'ctl/inbox/b')), { requestId: 'v5-bad', ok: false, error: { code: 'BAD_REQUEST', message: /field image is required/ } });

          // protobuf, told by the content type
          await mosquittoPub(broker, topics.cmd('ping'), encodeCommandProto('ping', 'pb-1'), { v5: true, properties: [['response-topic', 'ctl/inbox/pb'], ['content-type', 'application/x-protobuf']] });
          const pb = await sub5.waitFor((m) => m.topic === 'ctl/inbox/pb');
          t.equal(pb.contentType, 'application/x-protobuf');
          t.match(decodeReplyProto(pb.payload), { requestId: 'pb-1', ok: true, result: { pong: true, ts: Number } });

          await mosquittoPub(broker, topics.cmd('inventory'), encodeCommandProto('inventory', 'pb-inv'), { v5: true, properties: [['content-type', 'application/x-protobuf']] });
          const inv = await replies.waitFor((m) => m.topic === topics.reply('pb-inv'));
          t.match(decodeReplyProto(inv.payload), { ok: true, result: { id: deviceId, cpu: { cores: Number } } }, 'the inventory travels as feather.v1.Inventory');
        });

        t.test('MQTT 3.1.1 against an MQTT 5 broker', async (t) => {
          const cfg = agentConfig({ url: broker.url, deviceId: 'edge-v4', dataDir: join(root, 'v4'), protocolVersion: 4 });
          const p4 = await startAgent(cfg);
          t.teardown(() => p4.stop());
          await until('connected', () => p4.connected);
          t.equal(p4.protocolVersion, 4);
          const tp = new Topics(cfg.topicPrefix, 'edge-v4');
          await mosquittoPub(broker, tp.cmd('ping'), '{"requestId":"v4-1"}');
          t.match(json(await replies.waitFor((m) => m.topic === tp.reply('v4-1'))), { ok: true });
        });
      } else {
        t.test('a protobuf ping under MQTT 3.1.1: the first byte decides', async (t) => {
          await pub('ping', encodeCommandProto('ping', 'pb-311'));
          const pb = await replies.waitFor((m) => m.topic === topics.reply('pb-311'));
          t.match(decodeReplyProto(pb.payload), { requestId: 'pb-311', ok: true, result: { pong: true } });
        });
      }

      t.test('commands sent while the agent is away are answered when it returns (persistent session)', async (t) => {
        const status = await MosquittoSub.start(broker, [topics.status]);
        t.teardown(() => status.stop());
        await plane.stop();
        await status.waitFor((m) => m.topic === topics.status && json(m)['online'] === false && json(m)['reason'] === 'shutdown');
        await pub('ping', '{"requestId":"away-1"}');
        await pub('container.list', '{"requestId":"away-2"}');
        plane = await startAgent(config);
        t.match(await replyTo('away-1'), { ok: true });
        t.match(await replyTo('away-2'), { ok: true });
        await status.waitFor((m) => status.received.indexOf(m) > 0 && json(m)['online'] === true);
      });

      t.test('a network blip: the will fires, the agent comes back, re-reads desired and gets what was sent meanwhile', async (t) => {
        const proxy = await startProxy(broker);
        t.teardown(() => proxy.close());
        const id = `edge-blip-${kind}`;
        const tp = new Topics(config.topicPrefix, id);
        const desired = '{"generation":3,"workloads":[]}';
        await mosquittoPub(broker, tp.desired, desired, { retain: true });
        t.teardown(() => mosquittoPub(broker, tp.desired, '', { retain: true }));
        const p = await startAgent(agentConfig({ url: proxy.url, deviceId: id, dataDir: join(root, `blip-${kind}`) }));
        t.teardown(() => p.stop());
        const seen: string[] = [];
        p.onDesired((payload) => seen.push(payload.toString()));
        await until('desired', () => seen.length === 1);
        t.same(seen, [desired]);
        const status = await MosquittoSub.start(broker, [tp.status]);
        t.teardown(() => status.stop());
        await status.waitFor((m) => json(m)['online'] === true);

        proxy.down();
        await status.waitFor((m) => json(m)['online'] === false);
        t.match(json(status.received[status.received.length - 1] as SubMessage), { online: false, reason: 'connection lost' }, 'the will');
        await until('agent noticed', () => !p.connected);
        await mosquittoPub(broker, tp.cmd('ping'), '{"requestId":"blip-1"}');
        await sleep(300);
        proxy.up();
        t.match(json(await replies.waitFor((m) => m.topic === tp.reply('blip-1'), 15_000)), { ok: true }, 'queued in the session, answered on return');
        await until('desired again', () => seen.length === 2);
        t.same(seen, [desired, desired], 'the retained desired state is delivered again on resubscribe');
        const back = await status.waitFor((m) => status.received.indexOf(m) > 1 && json(m)['online'] === true);
        t.match(json(back), { online: true });
      });

      t.test('broker killed and restarted: the agent reconnects, republishes and answers', async (t) => {
        await broker.kill();
        await until('disconnected', () => !plane.connected);
        await sleep(300);
        await broker.restart();
        await until('reconnected', () => plane.connected, 15_000);
        // the retained messages were lost with the broker; the agent put them back
        const sub = await MosquittoSub.start(broker, [topics.status, topics.inventory]);
        t.teardown(() => sub.stop());
        t.match(json(await sub.waitFor((m) => m.topic === topics.status)), { online: true });
        await sub.waitFor((m) => m.topic === topics.inventory);
        const again = await MosquittoSub.start(broker, [`feather/v1/dev/+/reply/#`]);
        t.teardown(() => again.stop());
        await pub('ping', '{"requestId":"after-restart"}');
        t.match(json(await again.waitFor((m) => m.topic === topics.reply('after-restart'))), { ok: true });
      });
    });
  }

  t.test('broker absent at start: the agent retries and connects when it appears', async (t) => {
    const port = await freePort();
    const cfg = agentConfig({ url: `mqtt://127.0.0.1:${port}`, deviceId: 'edge-late', dataDir: join(root, 'late') });
    const plane = await startAgent(cfg);
    t.teardown(() => plane.stop());
    await sleep(800);
    t.equal(plane.connected, false);
    const broker = await startMosquitto({ port });
    t.teardown(() => broker.close());
    await until('connected', () => plane.connected, 10_000);
    const tp = new Topics(cfg.topicPrefix, 'edge-late');
    const sub = await MosquittoSub.start(broker, [tp.replyFilter]);
    t.teardown(() => sub.stop());
    await mosquittoPub(broker, tp.cmd('ping'), '{"requestId":"late-1"}');
    t.match(json(await sub.waitFor((m) => m.topic === tp.reply('late-1'))), { ok: true });
  });

  for (const startBroker of [startAedes, startMosquitto]) {
    t.test('SIGKILLed agent process: the broker publishes the retained will {"online":false}', async (t) => {
      const broker: TestBroker = await startBroker();
      t.teardown(() => broker.close());
      const deviceId = `edge-will-${broker.kind}`;
      const tp = new Topics('feather/v1', deviceId);
      const status = await MosquittoSub.start(broker, [tp.status]);
      t.teardown(() => status.stop());
      const replies = await MosquittoSub.start(broker, [tp.replyFilter]);
      t.teardown(() => replies.stop());

      const child = spawn(process.execPath, [...process.execArgv.filter((a) => a.includes('typescript')), fileURLToPath(import.meta.url)], {
        env: { ...process.env, FEATHER_CONTROL_FIXTURE: '1', FEATHER_BROKER_URL: broker.url, FEATHER_DEVICE_ID: deviceId, FEATHER_DATA_DIR: join(root, `will-${broker.kind}`), FEATHER_LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
      await status.waitFor((m) => json(m)['online'] === true, 20_000);

      // garbage does not bring the process down either
      await mosquittoPub(broker, tp.cmd('ping'), Buffer.from([0x00, 0xff, 0x7b]));
      await mosquittoPub(broker, tp.cmd('container.run'), '{"requestId":"w-1","name":1}');
      t.match(json(await replies.waitFor((m) => m.topic === tp.reply('w-1'))), { ok: false, error: { code: 'BAD_REQUEST' } });
      await mosquittoPub(broker, tp.cmd('ping'), '{"requestId":"w-2"}');
      t.match(json(await replies.waitFor((m) => m.topic === tp.reply('w-2'))), { ok: true });
      t.equal(child.exitCode, null, 'still running');

      child.kill('SIGKILL');
      const will = await status.waitFor((m) => json(m)['online'] === false, 10_000);
      t.match(json(will), { online: false, ts: Number, reason: 'connection lost' });
      const late = await MosquittoSub.start(broker, [tp.status]);
      t.teardown(() => late.stop());
      const kept = await late.waitFor((m) => m.topic === tp.status);
      t.equal(kept.retain, true, 'retained for whoever looks later');
      t.match(json(kept), { online: false });
    });
  }
}

/** The agent process the will test kills: the control plane over the real runtime, config from FEATHER_* env. */
async function runFixtureAgent(): Promise<void> {
  const config = loadAgentConfig({ env: process.env });
  const parts = agentParts(config);
  await startControlPlane({
    config, runtime: parts.runtime, images: parts.images, inventory: parts.inventory,
    logger: createLogger('fixture-agent'), options: { reconnect: { minMs: 100, maxMs: 1000 } },
  });
  setInterval(() => undefined, 60_000);
}

if (process.env['FEATHER_CONTROL_FIXTURE'] === '1') await runFixtureAgent();
else await runTests();
