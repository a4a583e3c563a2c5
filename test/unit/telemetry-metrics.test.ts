import t from 'tap';
import { Registry, register as globalRegistry } from 'prom-client';
import { createAgentMetrics, MAX_OBSERVE_WEIGHT, type StatsdCounts } from '../../agent/telemetry/metrics.js';
import { FakeContainers } from '../helpers/fake-host.js';

/** Sample lines of an exposition as "name{labels} value", without HELP/TYPE. */
function series(text: string, prefix: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(prefix)).sort();
}

const CONTRACT = [
  'feather_container_cpu_seconds_total', 'feather_container_memory_bytes', 'feather_container_memory_limit_bytes',
  'feather_container_pids', 'feather_container_oom_kills_total', 'feather_container_restarts_total', 'feather_container_up',
  'feather_inference_latency_seconds', 'feather_inference_requests_total', 'feather_image_pull_seconds',
  'feather_image_pull_bytes_total', 'feather_image_pull_failures_total', 'feather_mqtt_connected', 'feather_commands_total',
];

t.test('the contract names, on the registry passed in, never on the global one', async (t) => {
  const registry = new Registry();
  createAgentMetrics(registry);
  const names = registry.getMetricsAsArray().map((m) => m.name);
  for (const n of CONTRACT) t.ok(names.includes(n), n);
  t.ok(names.includes('process_cpu_seconds_total'), 'default process metrics');
  t.ok(names.includes('nodejs_eventloop_lag_seconds'), 'default Node.js metrics');
  t.ok(names.includes('nodejs_active_handles'), 'labelled handle gauge kept');
  t.same(registry.getMetricsAsArray().filter((m) => m.name.endsWith('_total') && String(m.type) !== 'counter').map((m) => m.name), [],
    'no gauge named *_total (promtool rejects them)');
  t.equal(globalRegistry.getMetricsAsArray().length, 0, 'global registry untouched');
  // A second registry in the same process (tests, a second agent) does not collide.
  t.doesNotThrow(() => createAgentMetrics(new Registry(), { defaultMetrics: false }));
});

t.test('container metrics are read from the runtime at scrape time', async (t) => {
  const fake = new FakeContainers();
  fake.add('web', { restarts: 2, usage: { cpuSeconds: 12.5, memoryBytes: 1000, memoryLimitBytes: 4096, pids: 4, oomKills: 1 } });
  fake.add('nolimit', { usage: { memoryLimitBytes: undefined } });
  fake.add('done', { status: 'exited', restarts: 1 });
  const registry = new Registry();
  createAgentMetrics(registry, { containers: fake, defaultMetrics: false });

  const text = await registry.metrics();
  t.same(series(text, 'feather_container_cpu_seconds_total'), [
    'feather_container_cpu_seconds_total{container="nolimit"} 1.5',
    'feather_container_cpu_seconds_total{container="web"} 12.5',
  ]);
  t.same(series(text, 'feather_container_memory_limit_bytes'), ['feather_container_memory_limit_bytes{container="web"} 4096'], 'no limit, no series');
  t.same(series(text, 'feather_container_up'), [
    'feather_container_up{container="done"} 0',
    'feather_container_up{container="nolimit"} 1',
    'feather_container_up{container="web"} 1',
  ]);
  t.same(series(text, 'feather_container_restarts_total'), [
    'feather_container_restarts_total{container="done"} 1',
    'feather_container_restarts_total{container="nolimit"} 0',
    'feather_container_restarts_total{container="web"} 2',
  ]);
  t.same(series(text, 'feather_container_oom_kills_total{container="web"}'), ['feather_container_oom_kills_total{container="web"} 1']);
  t.same(series(text, 'feather_container_pids{container="web"}'), ['feather_container_pids{container="web"} 4']);
  t.equal(fake.usageCalls.get('web'), 1, 'one usage() per container per scrape, shared by every metric');
  t.equal(fake.usageCalls.get('done'), undefined, 'no usage() for a stopped container');

  // Values move with the runtime; a removed container's series disappear.
  const web = fake.containers.get('web');
  if (web?.usage) web.usage.cpuSeconds = 20;
  fake.containers.delete('nolimit');
  const again = await registry.metrics();
  t.same(series(again, 'feather_container_cpu_seconds_total'), ['feather_container_cpu_seconds_total{container="web"} 20']);
  t.equal(fake.usageCalls.get('web'), 2);
});

t.test('handles for other modules: pulls, MQTT, commands', async (t) => {
  const registry = new Registry();
  const m = createAgentMetrics(registry, { defaultMetrics: false });
  m.pullFinished({ seconds: 3, bytes: 5000 });
  m.pullFinished({ seconds: 1, failure: 'CHECKSUM_MISMATCH' });
  m.commandHandled('container.run', 'ok');
  m.commandHandled('container.run', 'ok');
  m.commandHandled('container.run', 'CONFLICT');
  m.imagePullFailures.inc({ reason: 'PULL_FAILED' });
  const text0 = await registry.metrics();
  t.same(series(text0, 'feather_mqtt_connected'), ['feather_mqtt_connected 0']);
  m.setMqttConnected(true);
  const text = await registry.metrics();
  t.same(series(text, 'feather_mqtt_connected'), ['feather_mqtt_connected 1']);
  t.same(series(text, 'feather_image_pull_bytes_total'), ['feather_image_pull_bytes_total 5000']);
  t.same(series(text, 'feather_image_pull_seconds_count'), ['feather_image_pull_seconds_count 2']);
  t.same(series(text, 'feather_image_pull_failures_total'), [
    'feather_image_pull_failures_total{reason="CHECKSUM_MISMATCH"} 1',
    'feather_image_pull_failures_total{reason="PULL_FAILED"} 1',
  ]);
  t.same(series(text, 'feather_commands_total'), [
    'feather_commands_total{verb="container.run",outcome="CONFLICT"} 1',
    'feather_commands_total{verb="container.run",outcome="ok"} 2',
  ]);
});

t.test('inference histogram: weights, bounded repeats, forgetting a container', async (t) => {
  const registry = new Registry();
  const m = createAgentMetrics(registry, { defaultMetrics: false });
  m.observeInference('cam', 'yolo', 0.012, 1);
  m.observeInference('cam', 'yolo', 0.3, 4); // @0.25
  m.observeInference('cam', 'bert', 0.05, 1e6); // absurd rate: bounded work
  m.observeInference('other', 'default', 0.001, 1);
  let text = await registry.metrics();
  t.same(series(text, 'feather_inference_latency_seconds_count'), [
    `feather_inference_latency_seconds_count{container="cam",model="bert"} ${MAX_OBSERVE_WEIGHT}`,
    'feather_inference_latency_seconds_count{container="cam",model="yolo"} 5',
    'feather_inference_latency_seconds_count{container="other",model="default"} 1',
  ]);
  t.same(series(text, 'feather_inference_requests_total'), [
    'feather_inference_requests_total{container="cam",model="bert"} 1000000',
    'feather_inference_requests_total{container="cam",model="yolo"} 5',
    'feather_inference_requests_total{container="other",model="default"} 1',
  ]);
  t.ok(text.includes('feather_inference_latency_seconds_bucket{le="0.025",container="cam",model="yolo"} 1'), 'bucket counts');
  m.forgetContainer('cam');
  text = await registry.metrics();
  t.same(series(text, 'feather_inference_requests_total'), ['feather_inference_requests_total{container="other",model="default"} 1']);
  t.same(series(text, 'feather_inference_latency_seconds_count'), ['feather_inference_latency_seconds_count{container="other",model="default"} 1']);
});

t.test('statsd counters come from the ingest at scrape time', async (t) => {
  const registry = new Registry();
  const m = createAgentMetrics(registry, { defaultMetrics: false });
  const counts: StatsdCounts = { datagrams: 10, truncated: 1, throttled: 2, malformed: 3, ignored: 4, overflow: 0 };
  m.setStatsdSource({ counts: () => [['cam', counts]] });
  const text = await registry.metrics();
  t.same(series(text, 'feather_statsd_datagrams_total'), [
    'feather_statsd_datagrams_total{container="cam",outcome="accepted"} 10',
    'feather_statsd_datagrams_total{container="cam",outcome="truncated"} 1',
  ]);
  t.same(series(text, 'feather_statsd_throttled_total'), ['feather_statsd_throttled_total{container="cam"} 2']);
  t.same(series(text, 'feather_statsd_lines_rejected_total{container="cam",reason="malformed"}'), ['feather_statsd_lines_rejected_total{container="cam",reason="malformed"} 3']);
});
