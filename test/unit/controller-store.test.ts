// The controller's SQLite store (controller/store/): migrations, and every table's typed methods,
// on a database in a temp dir, closed and opened again to show that nothing is lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Inventory } from '../../shared/protocol/inventory.js';
import { appliedMigrations, migrate, openDatabase } from '../../controller/store/db.js';
import { MIGRATIONS } from '../../controller/store/migrations.js';
import { Store, canonicalJson } from '../../controller/store/store.js';
import type { DeploymentSpec, Placement } from '../../controller/model/types.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'feather-ctl-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const inventory: Inventory = {
  id: 'd1', arch: 'aarch64', cpu: { model: 'Cortex-A72', cores: 4, flags: ['neon'] }, memoryBytes: 8e9, disk: { freeBytes: 2e10 },
  kernel: '6.1', cgroup: 'v2', accelerators: [], labels: { site: 'lab' }, runtimes: ['shim'],
};

const spec = (memory = '128Mi'): DeploymentSpec => ({
  name: 'det', model: { name: 'resnet', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'http://m/r.onnx', sha256: 'a'.repeat(64) }] },
  runtime: { variants: [{ arch: 'aarch64', image: 'rt', url: 'http://i/rt.tar.gz', sha256: 'b'.repeat(64) }] },
  replicas: 2, resources: { memory, cpus: 0.5 }, accelerators: ['cpu'],
});

t.test('migrations: applied once, recorded with versions, WAL on, a newer schema refused', async (t) => {
  const dir = tempDir(t);
  const store = Store.open(dir);
  t.equal(store.schemaVersion, MIGRATIONS.at(-1)?.version);
  const applied = appliedMigrations(store.db);
  t.same(applied.map((m) => [m.version, m.name]), MIGRATIONS.map((m) => [m.version, m.name]));
  t.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
  store.close();
  const again = Store.open(dir);
  t.equal(appliedMigrations(again.db).length, MIGRATIONS.length, 'opening again applies nothing twice');
  again.close();

  const db = openDatabase(join(dir, 'controller.db'));
  const extra = { version: 99, name: 'future', sql: 'CREATE TABLE future (x INTEGER) STRICT' };
  t.equal(migrate(db, { migrations: [...MIGRATIONS, extra] }), 99, 'a later migration is applied on top');
  db.close();
  t.throws(() => Store.open(dir), { code: 'INTERNAL', message: /schema version 99, newer/ });

  const broken = openDatabase(join(dir, 'b.db'));
  t.throws(() => migrate(broken, { migrations: [{ version: 1, name: 'bad', sql: 'CREATE TABLE x (; nonsense' }] }), { code: 'INTERNAL', message: /migration 1 \(bad\) failed/ });
  t.same(appliedMigrations(broken), [], 'a failed migration leaves nothing behind');
  broken.close();
});

t.test('devices: status, inventory, reported, telemetry, labels, survive a reopen', async (t) => {
  const dir = tempDir(t);
  let now = 1000;
  let store = Store.open(dir, { now: () => now });
  store.setDeviceStatus('d1', { online: true, ts: 5, agentVersion: '0.1.0' }, true, 1000);
  now = 2000;
  store.setInventory('d1', inventory, 2000, 2000);
  store.setReported('d1', { generation: 3, workloads: [{ name: 'w', phase: 'running', restarts: 0 }] }, 2100);
  store.setTelemetry('d1', { cpuPercent: 5, cpuCores: 4, load1: 0.1, memoryTotalBytes: 8e9, memoryAvailableBytes: 6e9, diskTotalBytes: 3e10, diskFreeBytes: 2e10 }, [{ name: 'w', running: true, cpuPercent: 1, memoryBytes: 1e6, restarts: 0 }], 2500);
  store.setDeviceLabels('d1', { rack: '7' });
  store.touchDevice('d1', 2400);
  store.close();

  store = Store.open(dir, { now: () => now });
  t.teardown(() => store.close());
  const d = store.getDevice('d1');
  t.ok(d);
  t.equal(d?.online, true);
  t.equal(d?.lastSeen, 2500);
  t.equal(d?.stateChangedAt, 1000);
  t.same(d?.status, { online: true, ts: 5, agentVersion: '0.1.0' });
  t.same(d?.inventory, inventory);
  t.equal(d?.reported?.generation, 3);
  t.equal(d?.capacity?.memoryAvailableBytes, 6e9);
  t.equal(d?.containers[0]?.name, 'w');
  t.same(d?.labels, { rack: '7' });

  now = 3000;
  store.setDeviceStatus('d1', { online: false, ts: 6, reason: 'connection lost' }, false, undefined);
  t.equal(store.getDevice('d1')?.stateChangedAt, 3000);
  t.equal(store.getDevice('d1')?.lastSeen, 2500, 'a retained replay does not move last seen');
  store.setDeviceStatus('d2', { online: true, ts: 1 }, true, 3000);
  t.same(store.markAllOffline(), ['d2']);
  t.same(store.listDevices().map((x) => [x.id, x.online]), [['d1', false], ['d2', false]]);
  t.ok(store.deleteDevice('d2'));
  t.equal(store.getDevice('d2'), undefined);
  t.notOk(store.deleteDevice('d2'));
});

t.test('credentials: one active per identity, revocable', async (t) => {
  const store = Store.open(tempDir(t));
  t.teardown(() => store.close());
  const c1 = store.addCredential({ identity: 'd1', kind: 'device', hash: 'h1', mosquittoHash: 'm1' });
  const c2 = store.addCredential({ identity: 'd1', kind: 'device', hash: 'h2', mosquittoHash: 'm2' });
  t.not(c1.id, c2.id);
  t.same(store.activeCredentials('d1').map((c) => c.hash), ['h2'], 'a new one replaces the old');
  store.addCredential({ identity: 'admin', kind: 'admin', hash: 'ha', mosquittoHash: 'ma' });
  t.same(store.activeCredentials().map((c) => c.identity), ['admin', 'd1']);
  t.equal(store.revokeCredentials('d1'), 1);
  t.same(store.activeCredentials('d1'), []);
  t.throws(() => store.addCredential({ identity: 'x', kind: 'bogus' as 'device', hash: 'h', mosquittoHash: 'm' }));
});

t.test('models, deployments with revisions, placements (cascade on delete)', async (t) => {
  const store = Store.open(tempDir(t));
  t.teardown(() => store.close());
  store.putModel('resnet', [{ accelerator: 'cpu', precision: 'fp32', url: 'u', sha256: 's' }]);
  store.putModel('resnet', [{ accelerator: 'cuda', precision: 'fp16', url: 'u2', sha256: 's2' }]);
  t.equal(store.getModel('resnet')?.variants[0]?.accelerator, 'cuda');
  t.same(store.listModels().map((m) => m.name), ['resnet']);
  t.ok(store.deleteModel('resnet'));

  const a = store.applyDeployment(spec());
  t.same([a.created, a.changed, a.deployment.revision, a.deployment.phase], [true, true, 1, 'Progressing']);
  const same = store.applyDeployment(JSON.parse(canonicalJson(spec())) as DeploymentSpec);
  t.same([same.created, same.changed, same.deployment.revision], [false, false, 1], 'the same spec (any key order) is no new revision');
  const b = store.applyDeployment(spec('256Mi'));
  t.same([b.created, b.changed, b.deployment.revision], [false, true, 2]);
  t.equal(store.getDeployment('det')?.spec.resources.memory, '256Mi');
  t.same(store.listRevisions('det').map((r) => [r.revision, r.spec.resources.memory]), [[1, '128Mi'], [2, '256Mi']]);
  store.setDeploymentStatus('det', { phase: 'Available', message: '2/2 running' });
  t.same([store.getDeployment('det')?.phase, store.getDeployment('det')?.message], ['Available', '2/2 running']);

  const ps: Placement[] = [
    { deployment: 'det', revision: 2, replica: 0, deviceId: 'd1', accelerator: 'cpu', precision: 'fp32', container: 'det-0', arch: 'aarch64' },
    { deployment: 'det', revision: 2, replica: 1, deviceId: 'd2', accelerator: 'cpu', precision: 'fp32', container: 'det-1', avoid: ['d3'] },
  ];
  store.replacePlacements(['det'], ps);
  t.same(store.listPlacements(), ps, 'placements round-trip, arch and avoid included');
  t.same(store.listPlacements({ deviceId: 'd2' }).map((p) => p.container), ['det-1']);
  store.replacePlacements(['det'], ps.slice(0, 1));
  t.equal(store.listPlacements({ deployment: 'det' }).length, 1);
  t.ok(store.deleteDeployment('det'));
  t.same(store.listPlacements(), [], 'placements go with their deployment');
  t.same(store.listRevisions('det'), [], 'revisions too');
  t.equal(store.getDeployment('det'), undefined);
});

t.test('events (pruned to the newest N), measurements, desired state', async (t) => {
  const store = Store.open(tempDir(t), { eventsKept: 150 });
  t.teardown(() => store.close());
  for (let i = 0; i < 250; i++) store.addEvent({ ts: i, deviceId: i % 2 ? 'd1' : 'd2', type: 'container.exited', body: { i } });
  const newest = store.listEvents({ limit: 1 });
  t.equal(newest[0]?.body['i'], 249);
  t.ok(store.listEvents({ limit: 1000 }).length <= 250 && store.listEvents({ limit: 1000 }).length >= 150, 'older events pruned');
  t.ok(store.listEvents({ deviceId: 'd1', limit: 5 }).every((e) => e.deviceId === 'd1'));

  store.putMeasurement({ deviceId: 'd1', model: 'resnet', precision: 'fp32', boardClass: 'x', p95Ms: 12, count: 10, at: 1 });
  store.putMeasurement({ deviceId: 'd1', model: 'resnet', precision: 'fp32', boardClass: 'x', p95Ms: 9, count: 20, at: 2 });
  store.putMeasurement({ deviceId: 'd2', model: 'resnet', precision: 'int8', boardClass: 'y', p95Ms: 3, count: 5, at: 2 });
  t.same(store.listMeasurements({ deviceId: 'd1' }).map((m) => [m.p95Ms, m.count]), [[9, 20]], 'one row per device, model and precision');
  t.equal(store.listMeasurements({ model: 'resnet' }).length, 2);

  store.putDesired({ deviceId: 'd1', generation: 1, workloads: [{ name: 'w', image: 'i' }], images: [], hash: 'h1', revisions: { w: 1 } });
  store.putDesired({ deviceId: 'd1', generation: 2, workloads: [{ name: 'w', image: 'j' }], images: [], hash: 'h2', revisions: { w: 2 } });
  const d = store.getDesired('d1');
  t.same([d?.generation, d?.workloads[0]?.image, d?.revisions, d?.previousRevisions, d?.cleared], [2, 'j', { w: 2 }, { w: 1 }, false]);
  store.putDesired({ deviceId: 'd2', generation: 4, workloads: [], images: [], hash: '', cleared: true });
  t.same(store.listDesired().map((x) => x.deviceId), ['d1'], 'cleared desired states are not re-published');
  t.equal(store.listDesired({ includeCleared: true }).length, 2);
});

t.test('prepared statements are prepared once per SQL text', async (t) => {
  const store = Store.open(tempDir(t));
  t.teardown(() => store.close());
  const prepared: string[] = [];
  const prepare = store.db.prepare.bind(store.db);
  (store.db as unknown as { prepare: (sql: string) => unknown }).prepare = (sql: string) => { prepared.push(sql); return prepare(sql); };
  for (let i = 0; i < 5; i++) {
    store.setDeviceStatus(`d${i}`, { online: true, ts: 1 }, true, 1);
    store.setTelemetry(`d${i}`, { cpuPercent: 1, cpuCores: 4, load1: 0, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskTotalBytes: 1, diskFreeBytes: 1 }, [], 2);
    store.getDevice(`d${i}`);
  }
  t.equal(prepared.length, new Set(prepared).size, 'no SQL text prepared twice');
  t.equal(store.getDevice('d4')?.telemetryAt, 2);
});

t.test('listDevices: parsed rows kept between calls, every device write seen', async (t) => {
  const store = Store.open(tempDir(t));
  t.teardown(() => store.close());
  store.setDeviceStatus('b', { online: true, ts: 1 }, true, 10);
  store.setInventory('a', { ...inventory, id: 'a' }, 5, 5);
  const first = store.listDevices();
  t.same(first.map((d) => d.id), ['a', 'b']);
  const again = store.listDevices();
  t.equal(again[0], first[0], 'unchanged rows are not parsed again');
  t.not(again, first, 'a new array each call');

  store.setReported('a', { generation: 3, workloads: [] } as never, 20, 20);
  store.setDeviceLabels('b', { zone: 'north' });
  store.ensureDevice('0first');
  let list = store.listDevices();
  t.same(list.map((d) => d.id), ['0first', 'a', 'b'], 'a new device in id order');
  t.equal(list[1]?.reported?.generation, 3);
  t.same(list[2]?.labels, { zone: 'north' });
  t.not(list[1], first[0], 'a changed row is read again');

  store.touchDevice('b', 99);
  t.equal(store.listDevices()[2]?.lastSeen, 99);
  t.same(store.markAllOffline(), ['b']);
  t.equal(store.listDevices().filter((d) => d.online).length, 0, 'markAllOffline seen');
  store.setTelemetry('a', { cpuPercent: 1, cpuCores: 4, load1: 0, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskTotalBytes: 1, diskFreeBytes: 1 }, [], 42);
  t.equal(store.listDevices()[1]?.telemetryAt, 42);
  t.equal(store.deleteDevice('0first'), true);
  t.same(store.listDevices().map((d) => d.id), ['a', 'b'], 'a deleted device is gone');

  // A transaction that rolls back leaves the cache as the database is.
  t.throws(() => store.transaction(() => {
    store.setDeviceLabels('a', { x: 'y' });
    t.same(store.listDevices()[0]?.labels, { x: 'y' }, 'inside the transaction: what it wrote');
    throw new Error('rollback');
  }));
  t.same(store.listDevices()[0]?.labels, {}, 'after the rollback: the committed row');
  t.same(store.listDevices().map((d) => d.id), (store.db.prepare('SELECT id FROM devices ORDER BY id').all() as Array<{ id: string }>).map((r) => r.id));
});
