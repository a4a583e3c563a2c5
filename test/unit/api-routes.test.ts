// The HTTP API (controller/api) in process: a real store, registry, desired publisher and
// deployment reconciler (the real scheduler) over a fake MQTT link, the core's HttpServer on a
// loopback port, requests with node's fetch. Auth, routing (404/405), every route's shape and
// errors, service discovery, and logs through a fake agent that answers container.logs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import type { Inventory } from '../../shared/protocol/inventory.js';
import { createApi } from '../../controller/api/index.js';
import type { DeviceDetail, DeploymentDetail, DeploymentSummary, DeviceSummary, ModelView } from '../../controller/api/views.js';
import { topicMatches } from '../../controller/broker/acl.js';
import type { ControllerMqtt, MessageHandler, MqttLink, PublishOpts } from '../../controller/broker/client.js';
import { Credentials, adminTokenPath } from '../../controller/broker/credentials.js';
import { loadControllerConfig } from '../../controller/config.js';
import { EventBus } from '../../controller/core/bus.js';
import type { ControllerContext } from '../../controller/core/context.js';
import { DeploymentController } from '../../controller/core/deployments.js';
import type { ControllerEvents } from '../../controller/core/events.js';
import { HttpServer } from '../../controller/core/http.js';
import { controllerMetrics } from '../../controller/core/metrics.js';
import { DesiredPublisher } from '../../controller/registry/desired.js';
import { DeviceRegistry } from '../../controller/registry/registry.js';
import { Store } from '../../controller/store/store.js';
import { configureLogging, createLogger } from '../../shared/logging.js';

configureLogging({ level: 'silent' });
const log = createLogger('test');

/** An MQTT link that delivers what is published to matching subscribers, like a broker would. */
class LoopMqtt implements MqttLink {
  connected = true;
  readonly published: Array<{ topic: string; payload: string; opts: PublishOpts }> = [];
  private readonly handlers: Array<{ filter: string; handler: MessageHandler }> = [];
  /** Answers for commands: verb -> reply result (or an error reply). */
  agent: ((deviceId: string, verb: string, body: Record<string, unknown>) => unknown) | undefined;
  subscribe(filter: string, handler: MessageHandler): void { this.handlers.push({ filter, handler }); }
  onConnect(): () => void { return () => undefined; }
  async publish(topic: string, payload: string | Buffer, opts: PublishOpts): Promise<void> {
    this.published.push({ topic, payload: payload.toString(), opts });
    const text = payload.toString();
    queueMicrotask(() => this.deliver(topic, text, false));
    const m = /^feather\/v1\/dev\/([^/]+)\/cmd\/(.+)$/.exec(topic);
    if (m !== null && this.agent !== undefined) {
      const body = JSON.parse(text) as Record<string, unknown>;
      const reply = this.agent(m[1] as string, m[2] as string, body);
      if (reply !== undefined) setTimeout(() => this.deliver(`feather/v1/dev/${m[1] ?? ''}/reply/${String(body['requestId'])}`, JSON.stringify({ requestId: body['requestId'], ...(reply as object) }), false), 5);
    }
  }
  deliver(topic: string, payload: string, retain = false): void {
    for (const h of this.handlers) if (topicMatches(h.filter, topic)) h.handler({ topic, payload: Buffer.from(payload), retain });
  }
}

interface Rig {
  base: string;
  token: string;
  ctx: ControllerContext;
  mqtt: LoopMqtt;
  dir: string;
  fetch(path: string, init?: RequestInit & { auth?: boolean }): Promise<Response>;
  json<T>(path: string, init?: RequestInit): Promise<T>;
}

async function rig(t: Test): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'feather-api-'));
  const config = loadControllerConfig({ env: {}, overrides: { dataDir: dir, 'http.host': '127.0.0.1', 'http.port': 0 } });
  const store = Store.open(dir);
  const credentials = new Credentials(store, log);
  await credentials.initAdmin(dir);
  const bus = new EventBus<ControllerEvents>(log);
  const mqtt = new LoopMqtt();
  const registry = new DeviceRegistry({ store, bus, mqtt, logger: log, topicPrefix: 'feather/v1', brokerRestarted: false });
  const desired = new DesiredPublisher({ store, mqtt, bus, logger: log, topicPrefix: 'feather/v1' });
  const metrics = new Registry();
  const m = controllerMetrics(metrics, { deviceCounts: () => registry.counts(), mqttConnected: () => true });
  const deployments = new DeploymentController({ store, registry, desired, bus, metrics: m, logger: log, offlineGraceS: 60 });
  const http = new HttpServer({ host: '127.0.0.1', port: 0, metrics, logger: log, health: () => ({}) });
  const ctx: ControllerContext = {
    config, logger: log, store, bus, metrics, credentials, broker: undefined, mqtt: mqtt as unknown as ControllerMqtt,
    registry, desired, deployments, http, adminTokenFile: adminTokenPath(dir),
  };
  registry.start();
  desired.start();
  deployments.start();
  await http.start();
  const api = createApi(ctx, { rpcTimeoutMs: 500 });
  await api.start();
  t.teardown(async () => {
    api.stop();
    await deployments.stop();
    await http.stop();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const base = `http://127.0.0.1:${http.port}`;
  const token = credentials.admin;
  const doFetch = (path: string, init: RequestInit & { auth?: boolean } = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (init.auth !== false && !headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
    return fetch(base + path, { ...init, headers });
  };
  return {
    base, token, ctx, mqtt, dir, fetch: doFetch,
    json: async <T>(path: string, init?: RequestInit): Promise<T> => {
      const r = await doFetch(path, init);
      if (!r.ok) throw new Error(`${init?.method ?? 'GET'} ${path}: ${r.status} ${await r.text()}`);
      return (await r.json()) as T;
    },
  };
}

const SHA = (c: string): string => c.repeat(64);
const DEPLOYMENT = `
name: det
model:
  name: resnet
  variants:
    - { accelerator: cpu, precision: fp32, url: "http://blobs.example/m.onnx", sha256: "${SHA('a')}" }
runtime:
  variants:
    - { arch: x86_64, image: rt, url: "http://blobs.example/rt.tar.gz", sha256: "${SHA('b')}" }
replicas: 1
resources: { memory: 64Mi, cpus: 0.25 }
p95LatencyMs: 50
`;

const inventory = (id: string, extra: Record<string, unknown> = {}): Inventory & Record<string, unknown> => ({
  id, arch: 'x86_64', cpu: { model: 'Xeon', cores: 4, flags: [] }, memoryBytes: 8 * 2 ** 30, disk: { freeBytes: 5e10 },
  kernel: '6.1', cgroup: 'v2', accelerators: [], labels: {}, runtimes: ['shim'], ...extra,
});

function online(r: Rig, id: string, extra: Record<string, unknown> = {}): void {
  r.mqtt.deliver(`feather/v1/dev/${id}/status`, JSON.stringify({ online: true, ts: Date.now(), agentVersion: '0.1.0' }));
  r.mqtt.deliver(`feather/v1/dev/${id}/inventory`, JSON.stringify(inventory(id, extra)));
}

async function errorOf(res: Response): Promise<{ status: number; code: string; message: string; issues?: unknown }> {
  const body = (await res.json()) as { error: { code: string; message: string; issues?: unknown } };
  return { status: res.status, ...body.error };
}

t.test('every route wants the admin token; errors are JSON with the contract codes', async (t) => {
  const r = await rig(t);
  const none = await r.fetch('/api/v1/devices', { auth: false });
  t.equal(none.status, 401);
  t.equal(none.headers.get('www-authenticate'), 'Bearer realm="feather"');
  t.match(await errorOf(none), { code: 'UNAUTHORIZED', message: /missing token/ });
  const wrong = await r.fetch('/api/v1/devices', { headers: { authorization: 'Bearer nope' } });
  t.match(await errorOf(wrong), { status: 401, code: 'UNAUTHORIZED', message: /refused/ });
  t.equal((await r.fetch('/api/v1/devices', { headers: { authorization: `Basic ${r.token}` } })).status, 401, 'not Basic');
  t.equal((await r.fetch('/sd/prometheus', { headers: { authorization: r.token } })).status, 200, 'a bare token (Prometheus http_sd without type: Bearer)');
  t.equal((await r.fetch('/api/v1/devices', { headers: { authorization: 'Bearer' } })).status, 401);
  t.equal((await r.fetch('/sd/prometheus', { auth: false })).status, 401, 'service discovery too');
  t.equal((await r.fetch('/api/v1/nope', { auth: false })).status, 401, 'no route is revealed without a token');

  t.match(await errorOf(await r.fetch('/api/v1/nope')), { status: 404, code: 'NOT_FOUND' });
  const m = await r.fetch('/api/v1/devices', { method: 'PATCH' });
  t.equal(m.status, 405);
  t.equal(m.headers.get('allow'), 'GET, POST');
  t.match(await errorOf(m), { code: 'BAD_REQUEST', message: /PATCH is not allowed/ });
  t.equal((await r.fetch('/api/v1/devices', { method: 'HEAD' })).status, 200, 'HEAD is GET without a body');
  const big = await r.fetch('/api/v1/devices', { method: 'POST', body: 'x'.repeat(70_000) });
  t.match(await errorOf(big), { status: 413, code: 'BAD_REQUEST' });
  const notJson = await r.fetch('/api/v1/devices', { method: 'POST', body: '{nope' });
  t.match(await errorOf(notJson), { status: 400, code: 'BAD_REQUEST', message: /not JSON/ });
  const info = await r.json<{ version: string; devices: unknown; broker: { mode: string } }>('/api/v1/info');
  t.match(info, { version: /\d+\.\d+|unknown/, devices: { online: 0, offline: 0 }, broker: { mode: 'embedded' } });
});

t.test('devices: add (token once, 409 again unless rotate), get, list, rm', async (t) => {
  const r = await rig(t);
  const add = await r.fetch('/api/v1/devices', { method: 'POST', body: JSON.stringify({ id: 'edge-01' }) });
  t.equal(add.status, 201);
  const issued = (await add.json()) as { id: string; token: string };
  t.equal(issued.id, 'edge-01');
  t.match(issued.token, /^[A-Za-z0-9_-]{43}$/);
  t.ok(await r.ctx.credentials.verify('edge-01', issued.token), 'the token works on the broker side');
  t.match(await errorOf(await r.fetch('/api/v1/devices', { method: 'POST', body: JSON.stringify({ id: 'edge-01' }) })), { status: 409, code: 'CONFLICT', message: /--rotate/ });
  const rotated = await r.json<{ token: string }>('/api/v1/devices', { method: 'POST', body: JSON.stringify({ id: 'edge-01', rotate: true }) });
  t.not(rotated.token, issued.token);
  t.notOk(await r.ctx.credentials.verify('edge-01', issued.token), 'the old token stops working');
  t.match(await errorOf(await r.fetch('/api/v1/devices', { method: 'POST', body: JSON.stringify({ id: 'a/b' }) })), { status: 400, code: 'BAD_REQUEST' });
  t.match(await errorOf(await r.fetch('/api/v1/devices', { method: 'POST', body: JSON.stringify({ id: 'admin' }) })), { status: 400 });

  let list = (await r.json<{ items: DeviceSummary[] }>('/api/v1/devices')).items;
  t.match(list, [{ id: 'edge-01', state: 'unseen', token: true, metricsTarget: 'edge-01:9464', lastSeen: null }]);

  online(r, 'edge-01', { labels: { site: 'lab' } });
  r.mqtt.deliver('feather/v1/dev/edge-01/reported', JSON.stringify({ generation: 0, workloads: [{ name: 'w1', phase: 'running', restarts: 2 }] }));
  r.mqtt.deliver('feather/v1/dev/edge-01/events', JSON.stringify({ type: 'container.exited', ts: 1000, name: 'w1', exitCode: 1 }));
  const d = await r.json<DeviceDetail>('/api/v1/devices/edge-01');
  t.match(d, { id: 'edge-01', online: true, state: 'online', arch: 'x86_64', cpu: { model: 'Xeon', cores: 4 }, labels: { site: 'lab' }, agentVersion: '0.1.0' });
  t.match(d.inventory, { id: 'edge-01', runtimes: ['shim'] });
  t.match(d.containers, [{ name: 'w1', phase: 'running', restarts: 2, desired: false }]);
  t.match(d.events, [{ type: 'container.exited', body: { name: 'w1', exitCode: 1 } }]);
  t.ok((d.lastSeen ?? 0) > 0, 'last seen');
  t.match(await errorOf(await r.fetch('/api/v1/devices/nope')), { status: 404, code: 'NOT_FOUND' });

  const rm = await r.json<{ id: string; revoked: number; removed: boolean }>('/api/v1/devices/edge-01', { method: 'DELETE' });
  t.match(rm, { id: 'edge-01', revoked: 1, removed: true });
  t.notOk(await r.ctx.credentials.verify('edge-01', rotated.token), 'revoked');
  t.equal(r.ctx.store.getDevice('edge-01'), undefined, 'forgotten');
  const cleared = r.mqtt.published.filter((p) => p.opts.retain && p.payload === '').map((p) => p.topic).sort();
  t.same(cleared, ['feather/v1/dev/edge-01/desired', 'feather/v1/dev/edge-01/inventory', 'feather/v1/dev/edge-01/reported', 'feather/v1/dev/edge-01/status'], 'retained topics cleared: the device does not come back');
  list = (await r.json<{ items: DeviceSummary[] }>('/api/v1/devices')).items;
  t.same(list, []);
  t.match(await errorOf(await r.fetch('/api/v1/devices/edge-01', { method: 'DELETE' })), { status: 404 });
});

t.test('deployments: apply YAML and JSON, revisions, detail, rollout undo, delete', async (t) => {
  const r = await rig(t);
  online(r, 'edge-01');
  const created = await r.fetch('/api/v1/deployments', { method: 'POST', body: DEPLOYMENT, headers: { 'content-type': 'application/yaml' } });
  t.equal(created.status, 201);
  t.match(await created.json(), { items: [{ name: 'det', revision: 1, action: 'created' }] });
  t.match(await r.json('/api/v1/deployments', { method: 'POST', body: DEPLOYMENT }), { items: [{ revision: 1, action: 'unchanged' }] });
  const two = DEPLOYMENT.replace('memory: 64Mi', 'memory: 96Mi');
  t.match(await r.json('/api/v1/deployments', { method: 'POST', body: two }), { items: [{ revision: 2, action: 'configured' }] });

  const list = (await r.json<{ items: DeploymentSummary[] }>('/api/v1/deployments')).items;
  t.match(list, [{ name: 'det', revision: 2, model: 'resnet', desired: 1, placed: 1, objectiveMs: 50 }]);
  const d = await r.json<DeploymentDetail>('/api/v1/deployments/det');
  t.equal(d.spec.resources.memory, '96Mi');
  t.match(d.replicas, [{ replica: 0, deviceId: 'edge-01', container: 'det-0' }]);
  t.same(d.revisions.map((x) => [x.revision, x.current]), [[1, false], [2, true]]);
  t.equal(r.ctx.store.getDesired('edge-01')?.workloads[0]?.name, 'det-0', 'planned onto the device');

  // A measurement of the model on the device shows as the replica's and the deployment's p95.
  r.ctx.store.putMeasurement({ deviceId: 'edge-01', model: 'resnet', precision: 'fp32', boardClass: 'x', p95Ms: 12.5, count: 10, at: Date.now() });
  t.equal((await r.json<DeploymentDetail>('/api/v1/deployments/det')).p95Ms, 12.5);
  t.match((await r.json<{ items: ModelView[] }>('/api/v1/models')).items, [{ name: 'resnet', deployments: ['det'], variants: [{ accelerator: 'cpu', precision: 'fp32' }], measurements: [{ p95Ms: 12.5, devices: 1 }] }]);
  t.match(await errorOf(await r.fetch('/api/v1/models/nope')), { status: 404 });

  const rollout = await r.json<{ name: string; revision: number; rollout: { phase: string } | null }>('/api/v1/deployments/det/rollout');
  t.match(rollout, { name: 'det', revision: 2 });
  const undo = await r.json<{ revision: number; from: number; to: number; action: string }>('/api/v1/deployments/det/rollout/undo', { method: 'POST', body: '{}' });
  t.match(undo, { from: 2, to: 1, revision: 3, action: 'configured' });
  t.equal((await r.json<DeploymentDetail>('/api/v1/deployments/det')).spec.resources.memory, '64Mi', 'the spec of revision 1 again');
  t.match(await r.json('/api/v1/deployments/det/rollout/undo', { method: 'POST', body: JSON.stringify({ toRevision: 2 }) }), { from: 3, to: 2, revision: 4 });
  t.match(await errorOf(await r.fetch('/api/v1/deployments/det/rollout/undo', { method: 'POST', body: JSON.stringify({ toRevision: 9 }) })), { status: 404 });
  t.match(await errorOf(await r.fetch('/api/v1/deployments/det/rollout/undo', { method: 'POST', body: JSON.stringify({ toRevision: 4 }) })), { status: 409, code: 'CONFLICT' });

  const bad = await r.fetch('/api/v1/deployments', { method: 'POST', body: 'name: x\nreplicas: -1\n' });
  const e = await errorOf(bad);
  t.match(e, { status: 400, code: 'BAD_REQUEST', message: /deployment rejected/ });
  t.ok(Array.isArray(e.issues) && e.issues.length > 0, 'issues name every bad field');
  const json = JSON.stringify({ name: 'other', model: { name: 'm', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'http://x/m', sha256: SHA('c') }] }, runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'http://x/rt', sha256: SHA('d') }] }, replicas: 0, resources: { memory: '32Mi', cpus: 0.1 } });
  t.match(await r.json('/api/v1/deployments', { method: 'POST', body: json, headers: { 'content-type': 'application/json' } }), { items: [{ name: 'other', action: 'created' }] });
  t.match(await errorOf(await r.fetch('/api/v1/deployments/wrong', { method: 'PUT', body: json })), { status: 400, message: /must match/ });
  t.match(await r.json('/api/v1/deployments/other', { method: 'PUT', body: json }), { name: 'other', action: 'unchanged' });

  t.match(await r.json('/api/v1/deployments/det', { method: 'DELETE' }), { name: 'det', deleted: true });
  t.match(await errorOf(await r.fetch('/api/v1/deployments/det')), { status: 404 });
  t.match(await errorOf(await r.fetch('/api/v1/deployments/det', { method: 'DELETE' })), { status: 404 });
  t.same(r.ctx.store.getDesired('edge-01')?.workloads, [], 'its workload left the device');
});

t.test('events, service discovery, mosquitto files', async (t) => {
  const r = await rig(t);
  await r.ctx.credentials.issue('a');
  online(r, 'a', { metricsAddress: '10.0.0.7:9500' });
  online(r, 'b', { labels: { 'feather/metrics-address': '10.0.0.8:9464', 'feather.io/tier': 'edge' } });
  online(r, 'c', { address: '10.0.0.9' });
  r.mqtt.deliver('feather/v1/dev/d/status', JSON.stringify({ online: false, ts: 1 }));
  for (let i = 0; i < 3; i++) r.mqtt.deliver('feather/v1/dev/a/events', JSON.stringify({ type: 'image.pulled', ts: 1000 + i, name: `i${i}` }));
  r.mqtt.deliver('feather/v1/dev/b/events', JSON.stringify({ type: 'container.oom', ts: 2000, name: 'x' }));

  const all = (await r.json<{ items: Array<{ id: number; type: string; deviceId: string }> }>('/api/v1/events')).items;
  t.same(all.map((e) => e.type), ['container.oom', 'image.pulled', 'image.pulled', 'image.pulled'], 'newest first');
  t.same((await r.json<{ items: unknown[] }>('/api/v1/events?device=a&limit=2')).items.length, 2);
  t.same((await r.json<{ items: Array<{ type: string }> }>('/api/v1/events?type=container.oom')).items.map((e) => e.type), ['container.oom']);
  const before = all[1]?.id ?? 0;
  t.equal((await r.json<{ items: unknown[] }>(`/api/v1/events?before=${before}`)).items.length, 2);
  t.match(await errorOf(await r.fetch('/api/v1/events?limit=0')), { status: 400, message: /limit/ });

  const sd = await r.json<Array<{ targets: string[]; labels: Record<string, string> }>>('/sd/prometheus');
  t.same(sd.map((g) => g.targets[0]), ['10.0.0.7:9500', '10.0.0.8:9464', '10.0.0.9:9464', 'd:9464']);
  t.match(sd[0]?.labels, { device: 'a', __meta_feather_online: 'true', __meta_feather_arch: 'x86_64', __meta_feather_target_source: 'inventory' });
  t.match(sd[1]?.labels, { __meta_feather_label_feather_io_tier: 'edge', __meta_feather_target_source: 'label' });
  t.match(sd[3]?.labels, { device: 'd', __meta_feather_online: 'false', __meta_feather_target_source: 'device-id' });
  t.same(await r.json('/api/v1/sd/prometheus?online=true'), sd.slice(0, 3), 'the same under /api/v1, and ?online=true drops offline devices');
  t.equal((await r.fetch('/sd/prometheus/x')).status, 404);
  t.equal((await r.fetch('/sd/prometheus', { method: 'POST' })).status, 405);

  const files = await r.json<{ passwd: string; acl: string; users: number }>('/api/v1/mosquitto-files');
  t.equal(files.users, 2, 'admin and device a');
  t.match(files.passwd, /^admin:\$7\$/m);
  t.match(files.passwd, /^a:\$7\$/m);
  t.match(files.acl, /^user a$/m);
});

t.test('logs: container.logs to the agent over MQTT, its errors, offline and silent agents', async (t) => {
  const r = await rig(t);
  online(r, 'edge-01');
  r.mqtt.agent = (_id, verb, body) => {
    if (verb !== 'container.logs') return { ok: false, error: { code: 'UNKNOWN_VERB', message: 'no' } };
    if (body['name'] === 'silent') return undefined;
    if (body['name'] !== 'web') return { ok: false, error: { code: 'NOT_FOUND', message: `no container ${String(body['name'])}` } };
    return { ok: true, result: { lines: Array.from({ length: Number(body['tail']) }, (_, i) => `line ${i}`) } };
  };
  const logs = await r.json<{ device: string; container: string; lines: string[] }>('/api/v1/devices/edge-01/containers/web/logs?tail=3');
  t.same(logs, { device: 'edge-01', container: 'web', lines: ['line 0', 'line 1', 'line 2'] });
  const cmd = r.mqtt.published.find((p) => p.topic === 'feather/v1/dev/edge-01/cmd/container.logs');
  t.match(JSON.parse(cmd?.payload ?? '{}'), { name: 'web', tail: 3, requestId: /^ctl-/ });
  t.equal(cmd?.opts.qos, 1);
  t.match(await errorOf(await r.fetch('/api/v1/devices/edge-01/containers/nope/logs')), { status: 404, code: 'NOT_FOUND', message: /edge-01: no container nope/ });
  t.match(await errorOf(await r.fetch('/api/v1/devices/edge-01/containers/silent/logs')), { status: 504, code: 'INTERNAL', message: /no reply/ });
  t.match(await errorOf(await r.fetch('/api/v1/devices/edge-01/containers/web/logs?tail=0')), { status: 400 });
  r.mqtt.deliver('feather/v1/dev/edge-01/status', JSON.stringify({ online: false, ts: Date.now() }));
  t.match(await errorOf(await r.fetch('/api/v1/devices/edge-01/containers/web/logs')), { status: 409, code: 'CONFLICT', message: /offline/ });
  t.match(await errorOf(await r.fetch('/api/v1/devices/ghost/containers/web/logs')), { status: 404 });
});
