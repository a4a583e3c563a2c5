// AgentRpc (controller/api/rpc.ts) over a fake MQTT link: the command's topic and requestId, the
// reply matched by requestId and device, agent errors with their codes, timeouts, a disconnected
// controller, stop(); and the service-discovery target rules (controller/api/sd.ts).
import t from 'tap';
import type { Inventory } from '../../shared/protocol/inventory.js';
import { ApiError } from '../../controller/api/respond.js';
import { AgentRpc, parseReply } from '../../controller/api/rpc.js';
import { labelName, metricsTarget, prometheusTargets } from '../../controller/api/sd.js';
import type { MessageHandler, MqttLink, PublishOpts } from '../../controller/broker/client.js';
import type { DeviceRecord } from '../../controller/store/types.js';
import { configureLogging, createLogger } from '../../shared/logging.js';

configureLogging({ level: 'silent' });
const log = createLogger('test');

class FakeMqtt implements MqttLink {
  connected = true;
  failPublish = false;
  readonly published: Array<{ topic: string; payload: string; opts: PublishOpts }> = [];
  handler: MessageHandler | undefined;
  filter = '';
  subscribe(filter: string, handler: MessageHandler): void { this.filter = filter; this.handler = handler; }
  onConnect(): () => void { return () => undefined; }
  async publish(topic: string, payload: string | Buffer, opts: PublishOpts): Promise<void> {
    if (this.failPublish) throw new Error('broker gone');
    this.published.push({ topic, payload: payload.toString(), opts });
  }
  reply(topic: string, body: unknown): void { this.handler?.({ topic, payload: Buffer.from(JSON.stringify(body)), retain: false }); }
  lastRequestId(): string { return (JSON.parse(this.published.at(-1)?.payload ?? '{}') as { requestId: string }).requestId; }
}

function rpc(timeoutMs = 200): { rpc: AgentRpc; mqtt: FakeMqtt } {
  const mqtt = new FakeMqtt();
  const r = new AgentRpc({ mqtt, topicPrefix: 'feather/v1/', logger: log, timeoutMs });
  r.start();
  return { rpc: r, mqtt };
}

t.test('a call publishes the verb with a requestId and resolves with the matching reply', async (t) => {
  const { rpc: r, mqtt } = rpc();
  t.equal(mqtt.filter, 'feather/v1/dev/+/reply/+', 'one wildcard subscription');
  const p = r.call('edge-01', 'container.logs', { name: 'web', tail: 5 });
  await Promise.resolve();
  await Promise.resolve();
  const sent = mqtt.published[0];
  t.equal(sent?.topic, 'feather/v1/dev/edge-01/cmd/container.logs');
  t.same(sent?.opts, { qos: 1, retain: false });
  const id = mqtt.lastRequestId();
  t.match(JSON.parse(sent?.payload ?? '{}'), { name: 'web', tail: 5, requestId: /^ctl-[0-9a-f-]{36}$/ });
  mqtt.reply(`feather/v1/dev/other/reply/${id}`, { requestId: id, ok: true, result: 'wrong device' });
  mqtt.reply('feather/v1/dev/edge-01/reply/someone-else', { ok: true, result: 'not ours' });
  mqtt.reply(`feather/v1/dev/edge-01/reply/${id}`, { requestId: id, ok: true, result: { lines: ['a'] } });
  t.same(await p, { lines: ['a'] });
  t.equal(r.waiting, 0);
});

t.test('agent errors keep their code; timeouts, a disconnected link and stop() fail cleanly', async (t) => {
  const { rpc: r, mqtt } = rpc(50);
  const p = r.call('edge-01', 'container.logs', { name: 'x' });
  await new Promise((resolve) => setImmediate(resolve));
  const id = mqtt.lastRequestId();
  mqtt.reply(`feather/v1/dev/edge-01/reply/${id}`, { requestId: id, ok: false, error: { code: 'NOT_FOUND', message: 'no container x' } });
  await t.rejects(p, { code: 'NOT_FOUND', message: 'edge-01: no container x' });

  const slow = r.call('edge-01', 'ping');
  await t.rejects(slow, { code: 'INTERNAL', status: 504, message: /no reply to ping to edge-01 within 50 ms/ });
  t.equal(r.waiting, 0, 'a timed-out call is forgotten');
  await t.rejects(r.call('edge-01', 'ping', {}, { timeoutMs: 10 }), { code: 'INTERNAL', status: 504 });

  mqtt.failPublish = true;
  await t.rejects(r.call('edge-01', 'ping'), { code: 'INTERNAL', message: /cannot publish ping to edge-01: broker gone/ });
  t.equal(r.waiting, 0);
  mqtt.failPublish = false;
  mqtt.connected = false;
  const down = await r.call('edge-01', 'ping').catch((e: unknown) => e);
  t.ok(down instanceof ApiError && down.status === 503, '503 when the controller has no broker connection');
  mqtt.connected = true;

  const pending = r.call('edge-01', 'ping', {}, { timeoutMs: 5000 });
  r.stop();
  await t.rejects(pending, { code: 'INTERNAL', message: /stopping/ });
  t.throws(() => parseReply(Buffer.from('nope'), 'd', 'v'), { code: 'INTERNAL', status: 502 });
  t.throws(() => parseReply(Buffer.from('{"ok":false,"error":{"code":"WHAT"}}'), 'd', 'v'), { code: 'INTERNAL' }, 'an unknown code is INTERNAL');
});

t.test('barrier: resolves when our own message comes back through the broker', async (t) => {
  const { rpc: r, mqtt } = rpc();
  const b = r.barrier('edge-01');
  await new Promise((resolve) => setImmediate(resolve));
  const sent = mqtt.published[0];
  t.match(sent?.topic, /^feather\/v1\/dev\/edge-01\/reply\/ctl-sync-/);
  mqtt.handler?.({ topic: sent?.topic ?? '', payload: Buffer.from(sent?.payload ?? ''), retain: false });
  await b;
  await t.rejects(r.barrier('edge-01', 20), { code: 'INTERNAL', status: 504 });
});

const device = (id: string, over: Partial<DeviceRecord> = {}, inv?: Record<string, unknown>): DeviceRecord => ({
  id, createdAt: 1, online: true, lastSeen: 1, stateChangedAt: 1, status: { online: true, ts: 1, agentVersion: '1.2.3' },
  inventory: inv === undefined ? undefined : ({ id, arch: 'aarch64', cpu: { model: 'A72', cores: 4, flags: [] }, memoryBytes: 1, disk: { freeBytes: 1 }, kernel: '6', cgroup: 'v2', accelerators: [{ kind: 'edgetpu', vendor: 'g', model: 'Coral', device: '/dev/apex_0' }], labels: {}, runtimes: [], ...inv } as unknown as Inventory),
  inventoryAt: 1, reported: undefined, reportedAt: 0, labels: {}, capacity: undefined, containers: [], telemetryAt: 0, ...over,
});

t.test('service discovery: where each agent is scraped, and its labels', async (t) => {
  t.same(metricsTarget(device('a', {}, { metricsAddress: 'board-a.lan:9500' })), { target: 'board-a.lan:9500', source: 'inventory' });
  t.same(metricsTarget(device('a', {}, { metricsAddress: 'no port', address: '192.168.1.20' })), { target: '192.168.1.20:9464', source: 'inventory' });
  t.same(metricsTarget(device('a', {}, { address: 'fd00::5' })), { target: '[fd00::5]:9464', source: 'inventory' });
  t.same(metricsTarget(device('a', {}, { labels: { 'feather/metrics-address': '10.1.1.1:9464' } })), { target: '10.1.1.1:9464', source: 'label' });
  t.same(metricsTarget(device('a', { labels: { 'feather/metrics-address': '10.1.1.2:9464' } }, { labels: { 'feather/metrics-address': '10.1.1.1:9464' } })).target, '10.1.1.2:9464', 'the operator\'s label wins');
  t.same(metricsTarget(device('a', {}, { labels: { 'feather/metrics-address': 'x:99999' } })), { target: 'a:9464', source: 'device-id' }, 'a bad port is ignored');
  t.same(metricsTarget(device('edge-01.lan')), { target: 'edge-01.lan:9464', source: 'device-id' });
  t.equal(labelName('feather.io/tier'), 'feather_io_tier');
  t.equal(labelName('1st'), '_1st');
  const groups = prometheusTargets([device('a', { labels: { zone: 'z1' } }, {}), device('b', { online: false })]);
  t.same(groups[0], {
    targets: ['a:9464'],
    labels: {
      device: 'a', __meta_feather_device_id: 'a', __meta_feather_online: 'true', __meta_feather_target_source: 'device-id',
      __meta_feather_arch: 'aarch64', __meta_feather_accelerators: 'edgetpu', __meta_feather_agent_version: '1.2.3', __meta_feather_label_zone: 'z1',
    },
  });
  t.equal(prometheusTargets([device('b', { online: false })], { onlineOnly: true }).length, 0);
  t.equal(groups[1]?.labels['__meta_feather_online'], 'false');
});
