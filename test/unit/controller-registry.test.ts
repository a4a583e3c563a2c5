// The registry (device state from MQTT into the store, typed events), the desired publisher
// (rising generations, no duplicates, re-publish on connect) and the deployment reconciler
// (scheduler's plan -> placements -> desired states), over a fake MQTT link and a real store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Inventory } from '../../shared/protocol/inventory.js';
import { encodeTelemetry, type TelemetrySample } from '../../shared/protocol/telemetry.js';
import type { MessageHandler, MqttLink, PublishOpts } from '../../controller/broker/client.js';
import { EventBus } from '../../controller/core/bus.js';
import { DeploymentController, RunningSince, replicaHealth } from '../../controller/core/deployments.js';
import type { ControllerEvents } from '../../controller/core/events.js';
import { controllerMetrics } from '../../controller/core/metrics.js';
import type { DeploymentSpec, Placement } from '../../controller/model/types.js';
import { DesiredPublisher } from '../../controller/registry/desired.js';
import { parseInventory } from '../../controller/registry/parse.js';
import { DeviceRegistry } from '../../controller/registry/registry.js';
import { plan as schedulerPlan, type PlanInput, type ReplicaHealth } from '../../controller/scheduler/index.js';
import { Store } from '../../controller/store/store.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { Registry } from 'prom-client';

configureLogging({ level: 'silent' });
const log = createLogger('test');

class FakeMqtt implements MqttLink {
  connected = true;
  readonly published: Array<{ topic: string; payload: string; opts: PublishOpts }> = [];
  readonly handlers: Array<{ filter: string; handler: MessageHandler }> = [];
  private readonly connectListeners: Array<() => void | Promise<void>> = [];
  subscribe(filter: string, handler: MessageHandler): void { this.handlers.push({ filter, handler }); }
  onConnect(l: () => void | Promise<void>): () => void { this.connectListeners.push(l); return () => undefined; }
  async publish(topic: string, payload: string | Buffer, opts: PublishOpts): Promise<void> { this.published.push({ topic, payload: payload.toString(), opts }); }
  async connect(): Promise<void> { for (const l of this.connectListeners) await l(); }
}

interface Rig { store: Store; bus: EventBus<ControllerEvents>; mqtt: FakeMqtt; registry: DeviceRegistry; desired: DesiredPublisher; events: Array<[string, unknown]> }

function rig(t: Test, given?: string, brokerRestarted = false): Rig & { dir: string } {
  const dir = given ?? mkdtempSync(join(tmpdir(), 'feather-ctl-reg-'));
  if (given === undefined) t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = Store.open(dir);
  const bus = new EventBus<ControllerEvents>(log);
  const mqtt = new FakeMqtt();
  const registry = new DeviceRegistry({ store, bus, mqtt, logger: log, topicPrefix: 'feather/v1', brokerRestarted });
  const desired = new DesiredPublisher({ store, mqtt, bus, logger: log, topicPrefix: 'feather/v1' });
  const events: Array<[string, unknown]> = [];
  for (const e of ['device.online', 'device.offline', 'device.inventory', 'device.reported', 'device.measurement', 'device.event'] as const) {
    bus.on(e, (p) => { events.push([e, p]); });
  }
  registry.start();
  desired.start();
  t.teardown(() => store.close());
  return { dir, store, bus, mqtt, registry, desired, events };
}

const msg = (leaf: string, body: unknown, retain = false, id = 'd1'): { topic: string; payload: Buffer; retain: boolean } =>
  ({ topic: `feather/v1/dev/${id}/${leaf}`, payload: Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), retain });

const inventory: Inventory = {
  id: 'd1', arch: 'x86_64', cpu: { model: 'Xeon', cores: 4, flags: [] }, memoryBytes: 8 * 2 ** 30, disk: { freeBytes: 5e10 },
  kernel: '6.1', cgroup: 'v1', accelerators: [], labels: { site: 'lab' }, runtimes: ['shim'],
};

function telemetry(p95Ms: number, windowCount: number): TelemetrySample {
  return {
    deviceId: 'd1', tsMs: 1_700_000_000_000, intervalMs: 10_000,
    device: { cpuPercent: 12, cpuCores: 4, load1: 0.5, memoryTotalBytes: 8e9, memoryAvailableBytes: 5e9, diskTotalBytes: 1e11, diskFreeBytes: 5e10, temperatures: [], uptimeS: 100 },
    containers: [{ name: 'det-0', running: true, cpuSeconds: 1, cpuPercent: 3, memoryBytes: 1e7, memoryPeakBytes: 2e7, pids: 2, oomKills: 0, restarts: 0, source: 'CGROUP',
      latency: [{ model: 'resnet', p50Ms: p95Ms / 2, p95Ms, p99Ms: p95Ms * 1.2, count: 100, windowCount }] }],
    agent: { cpuPercent: 1, memoryRssBytes: 5e7 },
  };
}

t.test('registry: status, inventory, reported, telemetry (protobuf and JSON), events', async (t) => {
  const r = rig(t);
  t.same(r.mqtt.handlers.map((h) => h.filter), ['status', 'inventory', 'reported', 'telemetry', 'events'].map((l) => `feather/v1/dev/+/${l}`));
  r.registry.ingest(msg('status', { online: true, ts: 1, agentVersion: '0.1.0' }));
  r.registry.ingest(msg('inventory', inventory));
  r.registry.ingest(msg('inventory', inventory)); // same again: no event
  r.registry.ingest(msg('reported', { generation: 2, workloads: [{ name: 'det-0', phase: 'running', restarts: 0 }] }));
  r.registry.ingest(msg('telemetry', encodeTelemetry(telemetry(14.5, 30), 'protobuf').payload));
  r.registry.ingest(msg('telemetry', encodeTelemetry(telemetry(99, 0), 'json').payload)); // idle window: no measurement
  r.registry.ingest(msg('events', { type: 'container.exited', ts: 5, deviceId: 'd1', name: 'det-0', exitCode: 1 }));
  r.registry.ingest(msg('status', '{"online":')); // refused: the state stays
  r.registry.ingest(msg('inventory', { id: 'd1', arch: 'sparc' }));

  const d = r.store.getDevice('d1');
  t.equal(d?.online, true);
  t.ok((d?.lastSeen ?? 0) > 0);
  t.same(d?.inventory, inventory);
  t.equal(d?.reported?.generation, 2);
  t.equal(d?.capacity?.memoryAvailableBytes, 5e9);
  t.same(d?.containers.map((c) => c.name), ['det-0']);
  const m = r.store.listMeasurements({ deviceId: 'd1' });
  t.equal(m.length, 1);
  t.equal(m[0]?.p95Ms, 14.5);
  t.equal(m[0]?.boardClass, 'x86_64/Xeon/none');
  t.equal(r.store.listEvents({ deviceId: 'd1' })[0]?.body['exitCode'], 1);
  t.same(r.events.map(([e]) => e), ['device.online', 'device.inventory', 'device.reported', 'device.measurement', 'device.event']);
  t.same(r.registry.counts(), { online: 1, offline: 0 });
  t.same(r.registry.views()[0]?.labels, { site: 'lab' });

  r.registry.ingest(msg('status', { online: false, ts: 1, reason: 'connection lost' }));
  t.equal(r.events.at(-1)?.[0], 'device.offline');
  t.equal(r.store.getDevice('d1')?.online, false);
  r.registry.ingest(msg('status', '', true)); // cleared retained status
  t.equal(r.events.filter(([e]) => e === 'device.offline').length, 1, 'already offline: no second event');
  r.registry.ingest({ topic: 'feather/v1/dev/d1/cmd/ping', payload: Buffer.from('{}'), retain: false });
  r.registry.ingest({ topic: 'elsewhere/x', payload: Buffer.from('{}'), retain: false });
});

t.test('registry after a restart: the store is the view; an embedded broker restart marks all offline', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'feather-ctl-reg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = Store.open(dir);
  first.setDeviceStatus('d1', { online: true, ts: 1 }, true, Date.now());
  first.close();
  const external = rig(t, dir, false);
  t.same(external.registry.counts(), { online: 1, offline: 0 });
  external.store.close();
  const embedded = rig(t, dir, true);
  t.same(embedded.registry.counts(), { online: 0, offline: 1 });
  t.equal(embedded.events[0]?.[0], 'device.offline');
});

t.test('registry views: a second read without changes parses nothing again; every change is seen', async (t) => {
  const { registry, store } = rig(t);
  registry.ingest(msg('status', { online: true, ts: 1 }));
  registry.ingest(msg('inventory', inventory));
  registry.ingest(msg('status', { online: true, ts: 1 }, false, 'd2'));
  const a = registry.devices();
  const b = registry.devices();
  t.same(a.map((d) => d.id), ['d1', 'd2']);
  t.equal(b[0], a[0], 'the same parsed record while nothing changed');
  registry.ingest(msg('status', { online: false, ts: 2, reason: 'bye' }, false, 'd2'));
  store.setDeviceLabels('d1', { zone: 'north' }); // the API writes labels through the store
  const views = registry.views();
  t.same(views.map((v) => [v.id, v.online]), [['d1', true], ['d2', false]]);
  t.equal(views[0]?.labels['zone'], 'north');
  t.equal(views[0]?.boardClass, registry.views()[0]?.boardClass);
});

t.test('bus: a throwing or rejecting listener does not stop the others', async (t) => {
  const bus = new EventBus<{ ping: { n: number } }>(log);
  const seen: number[] = [];
  bus.on('ping', () => { throw new Error('boom'); });
  bus.on('ping', async () => { throw new Error('async boom'); });
  const off = bus.on('ping', ({ n }) => { seen.push(n); });
  bus.emit('ping', { n: 1 });
  off();
  bus.emit('ping', { n: 2 });
  await new Promise((r) => setImmediate(r));
  t.same(seen, [1]);
  t.equal(bus.listenerCount('ping'), 2);
});

t.test('desired: validated, rising generation, same content publishes nothing, re-published on connect', async (t) => {
  const r = rig(t);
  const w = [{ name: 'web', image: 'busybox', args: ['sleep', '60'], limits: { memory: '64Mi' } }];
  const first = await r.desired.publishDesired('d1', w);
  t.same(first, { deviceId: 'd1', generation: 1, changed: true });
  t.equal(r.mqtt.published.length, 1);
  t.same(r.mqtt.published[0]?.opts, { qos: 1, retain: true });
  t.equal(r.mqtt.published[0]?.topic, 'feather/v1/dev/d1/desired');
  t.same(JSON.parse(r.mqtt.published[0]?.payload ?? ''), { generation: 1, workloads: w, images: [] });

  t.same(await r.desired.publishDesired('d1', JSON.parse(JSON.stringify(w)) as typeof w), { deviceId: 'd1', generation: 1, changed: false });
  t.equal(r.mqtt.published.length, 1, 'nothing published for the same content');

  // A new revision with the same workloads (only its rollout settings changed): nothing is sent,
  // but the stored revisions move on, or its rollout would wait for the replicas forever.
  await r.desired.publishDesired('d1', w, [], { revisions: { web: 1 } });
  t.same(await r.desired.publishDesired('d1', w, [], { revisions: { web: 2 } }), { deviceId: 'd1', generation: 1, changed: false, revisionsMoved: true }, 'says so, so the caller looks again');
  t.equal(r.mqtt.published.length, 1, 'still nothing published');
  t.same(r.desired.desired('d1')?.revisions, { web: 2 }, 'the replica is at the new revision');
  t.equal(r.desired.desired('d1')?.generation, 1, 'same generation');

  r.registry.ingest(msg('reported', { generation: 7, workloads: [] }));
  const next = await r.desired.publishDesired('d1', [{ ...w[0]!, args: ['sleep', '61'] }]);
  t.equal(next.generation, 8, 'above what the device reports (the store was older than the device)');

  await t.rejects(r.desired.publishDesired('d1', [{ name: 'bad name!', image: 'x' }]), { code: 'BAD_REQUEST', message: /workloads\[0\]: container name/ });
  await t.rejects(r.desired.publishDesired('a/b', w), { code: 'BAD_REQUEST' });
  await t.rejects(r.desired.publishDesired('d1', [{ name: 'x', image: 'x', limit: {} } as never]), { code: 'BAD_REQUEST' });

  await r.desired.publishDesired('d2', w);
  await r.desired.clearDesired('d2');
  t.equal(r.mqtt.published.at(-1)?.payload, '', 'cleared: an empty retained payload');
  r.mqtt.published.length = 0;
  await r.mqtt.connect();
  t.same(r.mqtt.published.map((p) => [p.topic, (JSON.parse(p.payload) as { generation: number }).generation]), [['feather/v1/dev/d1/desired', 8]], 'every owned, uncleared desired state again, same generation');
  const again = await r.desired.publishDesired('d2', w);
  t.equal(again.generation, 2, 'after a clear the generation keeps rising');

  r.mqtt.connected = false;
  r.mqtt.published.length = 0;
  const offline = await r.desired.publishDesired('d1', w);
  t.ok(offline.changed);
  t.equal(r.mqtt.published.length, 0, 'offline: stored now, published at the next connect');
});

const spec = (over: Partial<DeploymentSpec> = {}): DeploymentSpec => ({
  name: 'det', model: { name: 'resnet', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'http://m.example/resnet.onnx', sha256: 'a'.repeat(64) }] },
  runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'http://i.example/rt.tar.gz', sha256: 'b'.repeat(64) }] },
  replicas: 1, resources: { memory: '64Mi', cpus: 0.25 }, accelerators: ['cpu'], ...over,
});

t.test('deployments: the scheduler places, desired states follow; same spec changes nothing; delete empties', async (t) => {
  const r = rig(t);
  const metrics = controllerMetrics(new Registry(), { deviceCounts: () => r.registry.counts(), mqttConnected: () => true });
  const deployments = new DeploymentController({ store: r.store, registry: r.registry, desired: r.desired, bus: r.bus, metrics, logger: log, offlineGraceS: 60, debounceMs: 5 });
  deployments.start();
  t.teardown(() => deployments.stop());
  r.registry.ingest(msg('status', { online: true, ts: 1 }));
  r.registry.ingest(msg('inventory', inventory));

  const applied = await deployments.apply(spec());
  t.ok(applied.created);
  const placements = r.store.listPlacements();
  t.equal(placements.length, 1);
  t.equal(placements[0]?.deviceId, 'd1');
  const d = r.store.getDesired('d1');
  t.equal(d?.generation, 1);
  t.equal(d?.workloads[0]?.name, placements[0]?.container);
  t.same(d?.revisions, { [placements[0]?.container ?? '']: 1 });
  t.equal(d?.images.length, 1);
  t.equal((await metrics.placementsTotal.get()).values[0]?.value, 1);
  const published = r.mqtt.published.length;

  const same = await deployments.apply(spec());
  t.notOk(same.changed);
  await deployments.replan('test');
  t.equal(r.mqtt.published.length, published, 'a pass with nothing new publishes nothing');

  t.ok(await deployments.delete('det'));
  t.same(r.store.listPlacements(), []);
  t.same([r.store.getDesired('d1')?.generation, r.store.getDesired('d1')?.workloads], [2, []]);
  t.notOk(await deployments.delete('det'));
});

t.test('replica health: which revision a reported workload runs', async (t) => {
  const p: Placement = { deployment: 'det', revision: 2, replica: 0, deviceId: 'd1', accelerator: 'cpu', precision: 'fp32', container: 'det-0' };
  const device = (generation: number, phase: 'running' | 'failed'): Map<string, never> =>
    new Map([['d1', { reported: { generation, workloads: [{ name: 'det-0', phase, restarts: 1 }] } } as never]]);
  const desired = { generation: 5, revisions: { 'det-0': 2 }, previousRevisions: { 'det-0': 1 } };
  t.same(replicaHealth([p], device(5, 'running'), () => desired).map((h) => [h.revision, h.phase]), [[2, 'running']], 'caught up: the new revision');
  t.same(replicaHealth([p], device(4, 'running'), () => desired).map((h) => [h.revision, h.phase]), [[1, 'running']], 'behind and running: still the old one');
  t.same(replicaHealth([p], device(4, 'failed'), () => desired).map((h) => [h.revision, h.phase]), [[2, 'failed']], 'behind and failing: the new one fails');
  t.same(replicaHealth([p], new Map(), () => desired), [], 'nothing reported: no health');
});

t.test('running since: kept while running at the same restart count; reset by another phase, a restart, a new revision or device', async (t) => {
  const rs = new RunningSince();
  const h = (o: Partial<ReplicaHealth> = {}): ReplicaHealth => ({ deployment: 'det', replica: 0, deviceId: 'd1', revision: 2, phase: 'running', restarts: 0, ...o });
  const since = (list: ReplicaHealth[]): Array<number | undefined> => list.map((x) => x.runningSince);
  t.same(since(rs.annotate([h()], 1000)), [1000], 'first seen running');
  t.same(since(rs.annotate([h()], 2000)), [1000], 'still running: the same start');
  t.same(since(rs.annotate([h({ restarts: 1 })], 3000)), [3000], 'a restart starts again');
  t.same(since(rs.annotate([h({ restarts: 1 }), h({ replica: 1 })], 4000)), [3000, 4000], 'replicas apart');
  t.same(since(rs.annotate([h({ restarts: 1, phase: 'failed' }), h({ replica: 1 })], 5000)), [undefined, 4000], 'not running: no time');
  t.same(since(rs.annotate([h({ restarts: 1 })], 6000)), [6000], 'running again after failing: from now');
  t.same(since(rs.annotate([h({ restarts: 1, revision: 3 })], 7000)), [7000], 'another revision: its own time');
  t.same(since(rs.annotate([h({ restarts: 1, revision: 3, deviceId: 'd2' })], 8000)), [8000], 'another device: its own time');
  t.same(since(rs.annotate([], 9000)), [], 'not reported');
  t.same(since(rs.annotate([h({ restarts: 1, revision: 3, deviceId: 'd2' })], 10_000)), [10_000], 'not reported in between: from now');
});

t.test('inventory: accelerators[].cdi must be CDI names (they go into desired workloads as they are)', async (t) => {
  const withCdi = (cdi: unknown): Buffer => Buffer.from(JSON.stringify({ ...inventory, accelerators: [{ kind: 'edgetpu', vendor: 'google', model: 'Coral', device: '/dev/apex_0', cdi }] }));
  t.same(parseInventory(withCdi(['google.com/edgetpu=apex_0'])).accelerators[0]?.cdi, ['google.com/edgetpu=apex_0']);
  t.same(parseInventory(withCdi([])).accelerators[0]?.cdi, [], 'none: kept as []');
  t.throws(() => parseInventory(withCdi(['apex_0'])), { code: 'BAD_REQUEST', message: /accelerators\[0\]\.cdi must be an array of CDI names/ });
  t.throws(() => parseInventory(withCdi('google.com/edgetpu=apex_0')), { code: 'BAD_REQUEST' });
  t.throws(() => parseInventory(withCdi([`google.com/edgetpu=${'a'.repeat(300)}`])), { code: 'BAD_REQUEST' }, 'too long for container.run');
});

t.test('deployments: each replica gets its Edge TPU by CDI name; an inventory that names it later names it in the desired state', async (t) => {
  const r = rig(t);
  const metrics = controllerMetrics(new Registry(), { deviceCounts: () => r.registry.counts(), mqttConnected: () => true });
  const deployments = new DeploymentController({ store: r.store, registry: r.registry, desired: r.desired, bus: r.bus, metrics, logger: log, offlineGraceS: 60, debounceMs: 5 });
  deployments.start();
  t.teardown(() => deployments.stop());
  const coral = (n: number, cdi?: string[]): Inventory['accelerators'][number] => ({ kind: 'edgetpu', vendor: 'google', model: 'Coral', device: `/dev/apex_${n}`, ...(cdi ? { cdi } : {}) });
  r.registry.ingest(msg('status', { online: true, ts: 1 }));
  r.registry.ingest(msg('inventory', { ...inventory, accelerators: [coral(0), coral(1)] })); // an agent that does not name them
  const tpu = spec({
    replicas: 2, accelerators: ['edgetpu'],
    model: { name: 'resnet', variants: [{ accelerator: 'edgetpu', precision: 'int8', url: 'http://m.example/resnet_edgetpu.tflite', sha256: 'c'.repeat(64) }] },
  });
  await deployments.apply(tpu);
  const devicesOf = (): Array<[string, string[] | undefined]> => (r.store.getDesired('d1')?.workloads ?? []).map((w) => [w.name, w.devices]);
  t.same(devicesOf(), [['det-0', undefined], ['det-1', undefined]], 'no names in the inventory: none in the workloads');
  const generation = r.store.getDesired('d1')?.generation ?? 0;

  // The agent, upgraded, names its TPUs: the same placements, their devices now named.
  r.registry.ingest(msg('inventory', { ...inventory, accelerators: [coral(0, ['google.com/edgetpu=apex_0']), coral(1, ['google.com/edgetpu=apex_1'])] }));
  for (let i = 0; i < 100 && devicesOf()[0]?.[1] === undefined; i++) await new Promise((res) => setTimeout(res, 20));
  t.same(devicesOf(), [['det-0', ['google.com/edgetpu=apex_0']], ['det-1', ['google.com/edgetpu=apex_1']]]);
  t.equal(r.store.getDesired('d1')?.generation, generation + 1, 'one new generation');
  t.same(r.store.listPlacements().map((p) => p.container), ['det-0', 'det-1'], 'nothing moved');

  // Scaled down to one: det-0 keeps apex_0. Its container is untouched.
  await deployments.apply({ ...tpu, replicas: 1 });
  t.same(devicesOf(), [['det-0', ['google.com/edgetpu=apex_0']]]);
  const p = JSON.parse(r.mqtt.published.filter((m) => m.topic === 'feather/v1/dev/d1/desired').at(-1)?.payload ?? '{}') as { workloads?: Array<{ devices?: string[] }> };
  t.same(p.workloads?.map((w) => w.devices), [['google.com/edgetpu=apex_0']], 'as published to the agent');
});

t.test('deployments: a pass follows by itself when a replica reaches rollout.minReadyS (readyAt)', async (t) => {
  const r = rig(t);
  const metrics = controllerMetrics(new Registry(), { deviceCounts: () => r.registry.counts(), mqttConnected: () => true });
  const inputs: PlanInput[] = [];
  let clock = 1_000_000;
  let armNext = false;
  const deployments = new DeploymentController({
    store: r.store, registry: r.registry, desired: r.desired, bus: r.bus, metrics, logger: log, offlineGraceS: 60, debounceMs: 5,
    now: () => clock,
    plan: (input) => {
      inputs.push(input);
      const out = schedulerPlan(input);
      // The pass of the apply says a replica gets ready 80 ms from now.
      if (!armNext) return out;
      armNext = false;
      return { ...out, rollouts: out.rollouts.map((x) => ({ ...x, readyAt: clock + 80 })) };
    },
  });
  deployments.start();
  t.teardown(() => deployments.stop());
  r.registry.ingest(msg('status', { online: true, ts: 1 }));
  r.registry.ingest(msg('inventory', inventory));
  await new Promise((res) => setTimeout(res, 100)); // the passes the device's events trigger
  const before = inputs.length;
  armNext = true;
  await deployments.apply(spec());
  t.equal(inputs.length, before + 1);
  clock += 80;
  await new Promise((res) => setTimeout(res, 300));
  t.equal(inputs.length, before + 2, 'planned again at readyAt, with no other event');
  t.equal(inputs[before + 1]?.now, clock);
  await new Promise((res) => setTimeout(res, 200));
  t.equal(inputs.length, before + 2, 'no readyAt: no timer');
});
