import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeTelemetry, type DeviceStats } from '../../shared/protocol/telemetry.js';
import { LatencyTracker } from '../../agent/telemetry/latency.js';
import { pidusageSource, TelemetryPublisher, type ProcessUsage, type TelemetryPublisherDeps } from '../../agent/telemetry/publisher.js';
import { configureLogging } from '../../shared/logging.js';
import { FakeContainers } from '../helpers/fake-host.js';

configureLogging({ level: 'silent' });

const DEVICE: DeviceStats = {
  cpuPercent: 12.5, cpuCores: 4, load1: 0.25, memoryTotalBytes: 8e9, memoryAvailableBytes: 6e9,
  diskTotalBytes: 6.4e10, diskFreeBytes: 4e10, temperatures: [{ sensor: 'thermal:cpu-thermal', celsius: 50.5 }], uptimeS: 1000,
};

interface Published { topic: string; payload: Buffer; opts: { qos: 0; contentType: string } }

function rig(over: Partial<TelemetryPublisherDeps> = {}): {
  pub: TelemetryPublisher; fake: FakeContainers; sent: Published[]; clock: { mono: number; wall: number }; latency: LatencyTracker;
  usage: Map<number, ProcessUsage>;
} {
  const fake = new FakeContainers();
  const sent: Published[] = [];
  const clock = { mono: 0, wall: 1_760_000_000_000 };
  const latency = new LatencyTracker({ now: () => clock.mono });
  const usage = new Map<number, ProcessUsage>([[process.pid, { cpuPercent: 2.5, rssBytes: 50e6, cpuSeconds: 3 }]]);
  const pub = new TelemetryPublisher({
    deviceId: 'edge-01', topic: 'feather/v1/dev/edge-01/telemetry', intervalS: 10, encoding: 'protobuf',
    containers: fake, latency, device: { sample: () => DEVICE },
    publish: (topic, payload, opts) => { sent.push({ topic, payload, opts }); },
    processUsage: async (pid) => {
      const u = usage.get(pid);
      if (u === undefined) throw new Error('No matching pid found');
      return u;
    },
    monotonic: () => clock.mono, now: () => clock.wall,
    ...over,
  });
  return { pub, fake, sent, clock, latency, usage };
}

t.test('CPU % from cgroup CPU seconds over monotonic time; protobuf on the telemetry topic at QoS 0', async (t) => {
  const { pub, fake, sent, clock, latency } = rig();
  const web = fake.add('web', { usage: { cpuSeconds: 100 } });
  fake.add('old', { status: 'exited', restarts: 4 });
  await pub.build(); // prime
  clock.mono += 10_000;
  clock.wall += 10_000;
  if (web.usage) web.usage.cpuSeconds = 105; // 5 s of CPU in 10 s: half a core
  latency.record('web', 'yolo', 0.02);

  const s = await pub.tick();
  t.ok(s);
  t.equal(sent.length, 1);
  const msg = sent[0];
  t.equal(msg?.topic, 'feather/v1/dev/edge-01/telemetry');
  t.same(msg?.opts, { qos: 0, contentType: 'application/x-protobuf' });
  const back = decodeTelemetry(msg?.payload ?? Buffer.alloc(0));
  t.equal(back.deviceId, 'edge-01');
  t.equal(back.tsMs, 1_760_000_010_000);
  t.equal(back.intervalMs, 10_000);
  const w = back.containers.find((c) => c.name === 'web');
  t.equal(w?.cpuPercent, 50);
  t.equal(w?.cpuSeconds, 105);
  t.equal(w?.memoryLimitBytes, 128 * 2 ** 20);
  t.equal(w?.source, 'CGROUP');
  t.equal(w?.latency[0]?.model, 'yolo');
  t.ok(Math.abs((w?.latency[0]?.p50Ms ?? 0) - 20) < 0.2, 'latency in ms');
  const old = back.containers.find((c) => c.name === 'old');
  t.same([old?.running, old?.restarts, old?.cpuPercent], [false, 4, 0]);
  t.same(back.agent, { cpuPercent: 2.5, memoryRssBytes: 50e6 });
  t.same(back.device.temperatures, [{ sensor: 'thermal:cpu-thermal', celsius: 50.5 }]);
  t.same(pub.stats(), { published: 1, failed: 0, skipped: 0, lastBytes: msg?.payload.length });
});

t.test('JSON by config', async (t) => {
  const { pub, fake, sent } = rig({ encoding: 'json' });
  fake.add('web');
  await pub.tick();
  t.equal(sent[0]?.opts.contentType, 'application/json');
  const obj = JSON.parse(sent[0]?.payload.toString() ?? '{}') as { containers: Array<{ name: string }> };
  t.equal(obj.containers[0]?.name, 'web');
});

t.test('no cgroup: the main process through pidusage (source PROCESS); a restart reads 0 %, not negative', async (t) => {
  const { pub, fake, clock, usage } = rig();
  fake.add('nocg', { pid: 777, usage: null });
  usage.set(777, { cpuPercent: 99, rssBytes: 5e6, cpuSeconds: 20 });
  const web = fake.add('web', { usage: { cpuSeconds: 50 } });
  await pub.build();
  clock.mono += 2_000;
  usage.set(777, { cpuPercent: 99, rssBytes: 6e6, cpuSeconds: 21 });
  if (web.usage) web.usage.cpuSeconds = 1; // the cgroup was recreated
  const s = await pub.build();
  const nocg = s.containers.find((c) => c.name === 'nocg');
  t.same([nocg?.source, nocg?.memoryBytes, nocg?.cpuSeconds, nocg?.cpuPercent], ['PROCESS', 6e6, 21, 50]);
  t.equal(s.containers.find((c) => c.name === 'web')?.cpuPercent, 0);
  // A pid pidusage cannot read: zeros, still a sample.
  usage.delete(777);
  clock.mono += 2_000;
  const s2 = await pub.build();
  t.same(s2.containers.find((c) => c.name === 'nocg')?.memoryBytes, 0);
});

t.test('a failing publish is counted; the next tick publishes again', async (t) => {
  let fail = true;
  const sent: Buffer[] = [];
  const { pub } = rig({
    publish: async (_topic, payload) => {
      if (fail) throw new Error('not connected');
      sent.push(payload);
    },
  });
  t.equal(await pub.tick(), undefined);
  fail = false;
  t.ok(await pub.tick());
  t.same({ ...pub.stats(), lastBytes: 0 }, { published: 1, failed: 1, skipped: 0, lastBytes: 0 });
  t.equal(sent.length, 1);
});

t.test('one sample at a time: a tick while one is publishing is skipped', async (t) => {
  let release: () => void = () => undefined;
  const { pub } = rig({ publish: () => new Promise<void>((r) => { release = r; }) });
  const first = pub.tick();
  await sleep(5);
  t.equal(await pub.tick(), undefined, 'skipped');
  release();
  t.ok(await first);
  t.same({ ...pub.stats(), lastBytes: 0 }, { published: 1, failed: 0, skipped: 1, lastBytes: 0 });
});

t.test('start() publishes every interval; stop() stops', async (t) => {
  const { pub, sent } = rig({ intervalS: 0.1, monotonic: () => performance.now() });
  pub.start();
  const deadline = Date.now() + 5_000;
  while (sent.length < 2 && Date.now() < deadline) await sleep(20);
  await pub.stop();
  const n = sent.length;
  t.ok(n >= 2, `kept publishing (${n} samples)`);
  await sleep(250);
  t.equal(sent.length, n, 'nothing after stop()');
});

t.test('pidusage reads this process', async (t) => {
  const u = await pidusageSource()(process.pid);
  t.ok(u.rssBytes > 10e6, `rss ${u.rssBytes}`);
  t.ok(u.cpuSeconds > 0);
  t.ok(u.cpuPercent >= 0);
  await t.rejects(pidusageSource()(2 ** 22 + 12345));
});
