// The daemon's telemetry end to end: /metrics (checked by promtool) and /healthz on the metrics
// port, StatsD lines sent from inside a real container to /run/feather/statsd.sock showing up as
// feather_inference_latency_seconds and in the JSON telemetry on MQTT, also after the agent was
// SIGKILLed and restarted under the running container.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startMosquitto } from '../helpers/brokers.js';
import { cannotRun, DaemonFixture, Device, pythonImageTarball, until, type AgentProcess } from '../helpers/daemon-fixture.js';

// Debian's python3 as PID 1, only its built-in modules: a DogStatsD sender as a workload would have.
const SENDER = [
  'import _socket, _signal, sys, time',
  '_signal.signal(_signal.SIGTERM, lambda *a: sys.exit(0))',
  's = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)',
  'print("sending", flush=True)',
  'while True:',
  '    try:',
  '        s.sendto(b"inference.latency:12.5|ms|#model:resnet18", "/run/feather/statsd.sock")',
  '    except OSError:',
  '        pass',
  '    time.sleep(0.05)',
].join('\n');

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The value of one series, `name{labels}` written exactly as the exposition does (label order kept). */
function sample(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1).split(' ')[0]);
}

/** The value of the first series of `name` whose labels include all of `labels`. */
function find(exposition: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of exposition.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return undefined;
}

async function promtool(exposition: string): Promise<{ code: number | null; out: string }> {
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  child.stdin.end(exposition);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  return { code, out };
}

interface LatencyJson { model: string; p50Ms: number; p95Ms: number; p99Ms: number; count: number; windowCount: number }
interface ContainerJson { name: string; running?: boolean; memoryBytes?: number; pids?: number; latency?: LatencyJson[] }

const why = cannotRun();
if (why !== undefined) {
  t.plan(0, why);
} else {
  let fx: DaemonFixture;
  t.before(async () => {
    fx = await DaemonFixture.create();
    const file = join(fx.root, 'python.tar.gz');
    await pythonImageTarball(file);
    const r = await fx.cli(['image', 'import', file, '--name', 'py']);
    if (r.code !== 0) throw new Error(`feather-agent image import failed: ${r.stderr}`);
  });
  t.teardown(async () => { await fx?.cleanup(); });

  t.test('metrics, healthz, statsd and telemetry over mosquitto', async (t) => {
    const broker = await startMosquitto();
    t.teardown(() => broker.close());
    const id = `${fx.tag}-tel`;
    const dev = await Device.open(broker, id, { v5: true, context: () => fx.tails() });
    t.teardown(() => dev.close());
    const env = { FEATHER_TELEMETRY_INTERVAL: '1', FEATHER_TELEMETRY_ENCODING: 'json' };
    let daemon: AgentProcess = await fx.startDaemon({ broker, deviceId: id, env });
    t.teardown(() => daemon.stop());
    const py = fx.name('py');
    const latencySeries = { container: py, model: 'resnet18' };

    t.test('/healthz', async (t) => {
      const h = await get(daemon.metricsPort, '/healthz');
      t.equal(h.status, 200);
      t.same(JSON.parse(h.body), { status: 'ok', mqtt: { connected: true } });
      t.equal((await get(daemon.metricsPort, '/nope')).status, 404);
    });

    t.test('a container sending statsd lines to /run/feather/statsd.sock', async (t) => {
      const run = await dev.ask('container.run', { name: py, image: 'py', args: ['/usr/bin/python3', '-S', '-I', '-c', SENDER], limits: { memory: '64Mi' } });
      t.match(run, { ok: true, result: { name: py, pid: Number } });
      t.ok(existsSync(join(fx.runDir, 'containers', py, 'statsd.sock')), 'its socket is in FEATHER_RUN_DIR');
      await until('the sender to start', async () => {
        const r = await dev.ask('container.logs', { name: py });
        return ((r.result as { lines?: string[] } | undefined)?.lines ?? []).includes('sending');
      }, { context: () => fx.tails() });
    });

    t.test('/metrics: feather_container_* for it, its inference latency, mqtt connected; promtool passes', async (t) => {
      const body = await until('latency samples in /metrics', async () => {
        const b = (await get(daemon.metricsPort, '/metrics')).body;
        return (find(b, 'feather_inference_latency_seconds_count', latencySeries) ?? 0) >= 5 ? b : undefined;
      }, { context: () => fx.tails() });
      const check = await promtool(body);
      t.equal(check.code, 0, `promtool check metrics: ${check.out}`);
      t.equal(check.out.trim(), '', 'no lint findings');
      t.equal(sample(body, 'feather_mqtt_connected'), 1);
      t.equal(find(body, 'feather_container_up', { container: py }), 1);
      t.ok((find(body, 'feather_container_memory_bytes', { container: py }) ?? 0) > 0, 'memory charged to its cgroup');
      t.equal(find(body, 'feather_container_memory_limit_bytes', { container: py }), 64 * 2 ** 20);
      t.ok((find(body, 'feather_container_pids', { container: py }) ?? 0) >= 1, 'pids');
      t.ok(find(body, 'feather_container_cpu_seconds_total', { container: py }) !== undefined, 'cpu seconds');
      t.equal(find(body, 'feather_container_oom_kills_total', { container: py }), 0);
      t.equal(find(body, 'feather_container_restarts_total', { container: py }), 0);
      t.equal(find(body, 'feather_commands_total', { verb: 'container.run', outcome: 'ok' }), 1);
      const count = find(body, 'feather_inference_latency_seconds_count', latencySeries) ?? 0;
      const sum = find(body, 'feather_inference_latency_seconds_sum', latencySeries) ?? 0;
      t.ok(Math.abs(sum / count - 0.0125) < 1e-6, `12.5 ms each (sum ${sum} / count ${count})`);
      t.equal(find(body, 'feather_inference_latency_seconds_bucket', { ...latencySeries, le: '0.01' }), 0, 'none under 10 ms');
      t.equal(find(body, 'feather_inference_latency_seconds_bucket', { ...latencySeries, le: '+Inf' }), count);
      t.ok((find(body, 'feather_inference_requests_total', latencySeries) ?? 0) >= count, 'requests counted');
    });

    t.test('JSON telemetry on MQTT carries the container and its latency percentiles', async (t) => {
      const after = dev.mark();
      const m = await dev.waitFor('telemetry with resnet18 latency', (x) => {
        if (x.topic !== dev.topic('telemetry')) return false;
        const c = (JSON.parse(x.text) as { containers?: ContainerJson[] }).containers?.find((y) => y.name === py);
        return (c?.latency ?? []).some((l) => l.model === 'resnet18');
      }, { after, ms: 10_000 });
      t.equal(m.contentType, 'application/json');
      const doc = JSON.parse(m.text) as { deviceId: string; containers: ContainerJson[] };
      t.equal(doc.deviceId, id);
      const c = doc.containers.find((y) => y.name === py) as ContainerJson;
      t.match(c, { name: py, running: true });
      const l = (c.latency ?? []).find((y) => y.model === 'resnet18') as LatencyJson;
      for (const q of ['p50Ms', 'p95Ms', 'p99Ms'] as const) t.ok(Math.abs(l[q] - 12.5) <= 0.125, `${q} ${l[q]} within 1% of 12.5`);
      t.ok(l.count >= 1 && l.windowCount >= 1);
    });

    t.test('SIGKILL and restart under the running sender: its socket is back, samples flow again', async (t) => {
      const pid = (await fx.ps()).find((c) => c.name === py)?.pid;
      await daemon.kill('SIGKILL');
      daemon = await fx.startDaemon({ broker, deviceId: id, env });
      t.equal((await fx.ps()).find((c) => c.name === py)?.pid, pid, 'the same process');
      const body = await until('latency samples in the new daemon\'s /metrics', async () => {
        const b = (await get(daemon.metricsPort, '/metrics')).body;
        return (find(b, 'feather_inference_latency_seconds_count', latencySeries) ?? 0) >= 3 ? b : undefined;
      }, { context: () => fx.tails() });
      t.equal(find(body, 'feather_container_up', { container: py }), 1);
      t.equal((await promtool(body)).code, 0, 'promtool still passes');
    });

    t.test('rm: the container and its series go', async (t) => {
      t.match(await dev.ask('container.rm', { name: py, timeoutS: 5 }), { ok: true, result: { name: py, exitCode: 0 } });
      const body = (await get(daemon.metricsPort, '/metrics')).body;
      t.equal(find(body, 'feather_container_up', { container: py }), undefined, 'no feather_container_up for it');
      t.notOk(existsSync(join(fx.runDir, 'containers', py)), 'its statsd socket directory is gone from the run dir');
      t.same(await daemon.stop(), { code: 0, signal: null });
    });
  });

  t.test('nothing is left: containers, cgroups, mounts', async (t) => {
    const left = await fx.cleanup();
    t.same(left, { cgroups: [], mounts: [], containers: [] });
  });
}
