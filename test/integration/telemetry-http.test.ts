// /metrics and /healthz over real HTTP; the exposition goes through Debian's `promtool check
// metrics`. Container figures come from the real runtime (a busybox container in a real cgroup)
// when we are root, else from a fake runtime; inference figures from a real statsd socket.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { DataPaths } from '../../agent/paths.js';
import { ImageStore } from '../../agent/images/store.js';
import { buildRecipe } from '../../agent/images/recipes.js';
import { detectCgroups } from '../../agent/runtime/cgroups/detect.js';
import { ShimRuntime } from '../../agent/runtime/runtime.js';
import { MetricsServer } from '../../agent/telemetry/http.js';
import { LatencyTracker } from '../../agent/telemetry/latency.js';
import { createAgentMetrics, type ContainerSource } from '../../agent/telemetry/metrics.js';
import { StatsdIngest } from '../../agent/telemetry/statsd-ingest.js';
import { configureLogging } from '../../shared/logging.js';
import { FakeContainers } from '../helpers/fake-host.js';

configureLogging({ level: 'error' });

/** `promtool check metrics` on an exposition: its exit code and what it said. */
function promtool(exposition: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, output }));
    p.stdin.end(exposition);
  });
}

function sendDatagrams(path: string, lines: string[]): Promise<void> {
  const script = 'import json,socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\nfor l in json.loads(sys.argv[2]): s.sendto(l.encode(), sys.argv[1])';
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', script, path, JSON.stringify(lines)], (err) => (err ? reject(err) : resolve()));
  });
}

interface Containers { source: ContainerSource; kind: string; cleanup(): Promise<void> }

/** The real runtime with one running container, or the fake when that is not possible here. */
async function containers(root: string): Promise<Containers> {
  if (process.getuid?.() === 0) {
    try {
      const paths = new DataPaths(join(root, 'data'));
      const images = new ImageStore(paths);
      await buildRecipe(images, 'busybox', { name: 'busybox' });
      const runtime = new ShimRuntime({ paths, images, cgroups: detectCgroups(), defaults: { memory: '128Mi', cpus: 0.5, pids: 10 }, logMaxBytes: 65536 });
      await runtime.run({ name: 'tlm-web', image: 'busybox', args: ['sleep', '120'], limits: { memoryBytes: 64 * 2 ** 20 } });
      return {
        source: runtime, kind: 'real runtime',
        async cleanup() { await runtime.remove('tlm-web', { force: true }).catch(() => undefined); },
      };
    } catch (e: unknown) {
      t.comment(`real runtime unavailable (${e instanceof Error ? e.message : String(e)}); using the fake`);
    }
  }
  const fake = new FakeContainers();
  fake.add('tlm-web', { usage: { memoryLimitBytes: 64 * 2 ** 20 } });
  fake.add('tlm-old', { status: 'exited', restarts: 2 });
  return { source: fake, kind: 'fake runtime', async cleanup() {} };
}

t.test('metrics and health over HTTP', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-http-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const c = await containers(root);
  t.teardown(() => c.cleanup());
  t.comment(`containers from the ${c.kind}`);

  const registry = new Registry();
  const metrics = createAgentMetrics(registry, { containers: c.source });
  const latency = new LatencyTracker();
  const ingest = new StatsdIngest({ runDir: join(root, 'run'), latency, metrics });
  metrics.setStatsdSource(ingest);
  t.teardown(() => ingest.close());
  let mqtt = false;
  const server = new MetricsServer({ registry, health: () => ({ mqttConnected: mqtt }) }, { host: '127.0.0.1', port: 0 });
  const { port } = await server.start();
  t.teardown(() => server.stop());
  const base = `http://127.0.0.1:${port}`;

  // Something in every family: inference from a real socket, pulls, commands, MQTT.
  const sock = ingest.attach('tlm-web');
  await sendDatagrams(sock, ['inference.latency:12.7|ms|#model:resnet18\ninference.latency:3|ms|#model:"quoted\\model"', 'inference.latency:40|ms', 'junk']);
  for (let i = 0; i < 100 && latency.snapshot('tlm-web').length < 3; i++) await sleep(10);
  metrics.pullFinished({ seconds: 2.5, bytes: 1_234_567 });
  metrics.pullFinished({ seconds: 0.4, failure: 'CHECKSUM_MISMATCH' });
  metrics.commandHandled('container.run', 'ok');
  metrics.commandHandled('nonsense', 'UNKNOWN_VERB');
  metrics.setMqttConnected(true);

  const res = await fetch(`${base}/metrics`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const body = await res.text();
  t.match(body, /^feather_container_up\{container="tlm-web"\} 1$/m);
  t.match(body, /^feather_container_memory_limit_bytes\{container="tlm-web"\} 67108864$/m);
  t.match(body, /^feather_container_cpu_seconds_total\{container="tlm-web"\} \d/m);
  t.match(body, /^feather_container_memory_bytes\{container="tlm-web"\} [1-9]\d*$/m);
  t.match(body, /^feather_container_pids\{container="tlm-web"\} [1-9]$/m);
  t.match(body, /^feather_inference_requests_total\{container="tlm-web",model="resnet18"\} 1$/m);
  t.match(body, /^feather_inference_latency_seconds_count\{container="tlm-web",model="default"\} 1$/m);
  t.match(body, /model="\\"quoted\\\\model\\""/, 'label values are escaped');
  t.match(body, /^feather_image_pull_failures_total\{reason="CHECKSUM_MISMATCH"\} 1$/m);
  t.match(body, /^feather_mqtt_connected 1$/m);
  t.match(body, /^process_resident_memory_bytes \d+/m, 'default process metrics');

  const check = await promtool(body);
  t.equal(check.code, 0, `promtool check metrics exits 0${check.output ? `: ${check.output}` : ''}`);
  t.equal(check.output.trim(), '', 'and has nothing to say');

  // promtool is not a rubber stamp: a counter without _total is reported.
  const bad = await promtool('# HELP x_bytes a counter\n# TYPE x_bytes counter\nx_bytes 1\n');
  t.not(bad.code, 0, 'promtool rejects what breaks its lint');

  const health = await fetch(`${base}/healthz`);
  t.equal(health.status, 200);
  t.equal(health.headers.get('content-type'), 'application/json');
  t.same(await health.json(), { status: 'ok', mqtt: { connected: false } });
  mqtt = true;
  t.same(await (await fetch(`${base}/healthz?verbose=1`)).json(), { status: 'ok', mqtt: { connected: true } });

  const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(await head.text(), '');
  t.equal((await fetch(`${base}/nope`)).status, 404);
  const post = await fetch(`${base}/metrics`, { method: 'POST' });
  t.equal(post.status, 405);
  t.equal(post.headers.get('allow'), 'GET, HEAD');
});

t.test('a taken port is a RUNTIME_ERROR that names it; stop() frees the port', async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  const addr = blocker.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const server = new MetricsServer({ registry: new Registry(), health: () => ({ mqttConnected: false }) }, { host: '127.0.0.1', port });
  await t.rejects(server.start(), { code: 'RUNTIME_ERROR', message: new RegExp(`127\\.0\\.0\\.1:${port}`) });
  await new Promise<void>((r) => blocker.close(() => r()));

  const ok = new MetricsServer({ registry: new Registry(), health: () => ({ mqttConnected: false }) }, { host: '127.0.0.1', port });
  await ok.start();
  t.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  await ok.stop();
  await t.rejects(fetch(`http://127.0.0.1:${port}/healthz`), 'nothing listens after stop()');
});
