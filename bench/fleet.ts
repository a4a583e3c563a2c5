// npm run bench -- fleet [--devices 2000] [--telemetry-s 5] [--window 64] [--idle-s 5] [--after-s 10] [--timeout-s 120]
// One feather-controller (a child process, embedded broker, its own temp data dir) and N simulated
// agents in this process: light mqtt.js clients (one event loop, TCP_NODELAY on every socket, no
// reconnect timers, one shared telemetry scheduler that spreads the fleet's publishes over the
// period, payloads encoded once). Each logs in with its own device token (issued in a batch
// through the controller's store before the controller starts, not timed), publishes a retained
// online status and an inventory (six board types: aarch64 CUDA, x86 Edge TPU, aarch64 NPU,
// x86, aarch64 and riscv64 CPU-only), protobuf telemetry every few seconds, and answers every
// `desired` with a retained `reported` (the generation, each workload `running`); no containers.
// Measured: time from applying a deployment whose empty selector matches every device (POST
// /api/v1/deployments) to every device having reported it, and to the controller's status
// saying Available; the controller's RSS and CPU % idle, during and after.
// Anchor, run here: the same clients against Debian's mosquitto with a stand-in controller that
// publishes each device's desired state (the same size) and waits for every reply: the broker
// floor with no scheduling, store or validation. Ratios are controller / anchor.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { encodeTelemetry, type ContainerStatsSample } from '../shared/protocol/telemetry.js';
import { Credentials } from '../controller/broker/credentials.js';
import { Store } from '../controller/store/store.js';
import { configureLogging, createLogger } from '../shared/logging.js';

const CONTROLLER = fileURLToPath(new URL('../controller/main.js', import.meta.url));
const PREFIX = 'feather/v1';
const DEPLOYMENT = 'bench-fleet';
const GiB = 2 ** 30;

interface Options { devices: number; telemetryS: number; window: number; idleS: number; afterS: number; timeoutS: number }

function options(args: string[]): Options {
  const { values } = parseArgs({
    args, strict: true,
    options: {
      devices: { type: 'string' }, 'telemetry-s': { type: 'string' }, window: { type: 'string' },
      'idle-s': { type: 'string' }, 'after-s': { type: 'string' }, 'timeout-s': { type: 'string' },
    },
  });
  const num = (v: string | undefined, d: number): number => {
    const n = v === undefined ? d : Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`bench fleet: ${v} is not a positive number`);
    return n;
  };
  return {
    devices: Math.floor(num(values.devices, 2000)), telemetryS: num(values['telemetry-s'], 5), window: Math.floor(num(values.window, 64)),
    idleS: num(values['idle-s'], 5), afterS: num(values['after-s'], 10), timeoutS: num(values['timeout-s'], 120),
  };
}

// ---- simulated devices ---------------------------------------------------------------------

interface Board { name: string; arch: 'x86_64' | 'aarch64' | 'riscv64'; accel?: 'cuda' | 'edgetpu' | 'npu'; cores: number; memGi: number }
const BOARDS: Board[] = [
  { name: 'jetson-orin', arch: 'aarch64', accel: 'cuda', cores: 6, memGi: 8 },
  { name: 'x86-coral', arch: 'x86_64', accel: 'edgetpu', cores: 4, memGi: 8 },
  { name: 'rk3588', arch: 'aarch64', accel: 'npu', cores: 8, memGi: 16 },
  { name: 'x86-nuc', arch: 'x86_64', cores: 8, memGi: 16 },
  { name: 'pi5', arch: 'aarch64', cores: 4, memGi: 8 },
  { name: 'visionfive2', arch: 'riscv64', cores: 4, memGi: 4 },
];

interface SimDevice {
  id: string;
  token: string | undefined;
  board: Board;
  client: MqttClient | undefined;
  /** performance.now() when the broker acked a `reported` naming the bench deployment's workload. */
  reportedAt: number | undefined;
  running: string[];
}

function inventoryOf(d: SimDevice): string {
  const b = d.board;
  return JSON.stringify({
    id: d.id, arch: b.arch, cpu: { model: b.name, cores: b.cores, flags: [] }, memoryBytes: b.memGi * GiB,
    disk: { freeBytes: 32 * GiB }, kernel: '6.6.0', cgroup: 'v2',
    accelerators: b.accel ? [{ kind: b.accel, vendor: 'sim', model: b.name, device: `/dev/${b.accel}0` }] : [],
    labels: { board: b.name, site: `site-${Number(d.id.slice(4)) % 20}` }, runtimes: ['shim'],
  });
}

function telemetryOf(d: SimDevice, intervalMs: number): Buffer {
  const containers: ContainerStatsSample[] = d.running.map((name) => ({
    name, running: true, cpuSeconds: 1, cpuPercent: 2, memoryBytes: 20 * 2 ** 20, memoryPeakBytes: 24 * 2 ** 20,
    memoryLimitBytes: 64 * 2 ** 20, pids: 2, oomKills: 0, restarts: 0, latency: [], source: 'CGROUP',
  }));
  return encodeTelemetry({
    deviceId: d.id, tsMs: Date.now(), intervalMs,
    device: { cpuPercent: 12, cpuCores: d.board.cores, load1: 0.4, memoryTotalBytes: d.board.memGi * GiB, memoryAvailableBytes: d.board.memGi * GiB / 2, diskTotalBytes: 64 * GiB, diskFreeBytes: 32 * GiB, temperatures: [], uptimeS: 1000 },
    containers, agent: { cpuPercent: 1, memoryRssBytes: 60 * 2 ** 20 },
  }, 'protobuf').payload;
}

/** N devices in one process: connect in a window, answer desired, publish telemetry on one shared timer. */
class SimFleet {
  readonly devices: SimDevice[];
  private timer: NodeJS.Timeout | undefined;
  errors = 0;

  constructor(ids: string[], tokens: Map<string, string> | undefined, private readonly url: string, private readonly telemetryS: number) {
    this.devices = ids.map((id, i) => ({ id, token: tokens?.get(id), board: BOARDS[i % BOARDS.length] as Board, client: undefined, reportedAt: undefined, running: [] }));
  }

  /** Connect every device, at most `window` CONNECTs in flight; resolves when all are subscribed and announced. */
  async connectAll(window: number): Promise<number> {
    const t0 = performance.now();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < this.devices.length) await this.connect(this.devices[next++] as SimDevice);
    };
    await Promise.all(Array.from({ length: Math.min(window, this.devices.length) }, worker));
    return performance.now() - t0;
  }

  private connect(d: SimDevice): Promise<void> {
    const base = `${PREFIX}/dev/${d.id}`;
    return new Promise((resolve, reject) => {
      const client = mqtt.connect(this.url, {
        clientId: `feather-agent-${d.id}`, protocolVersion: 4, clean: true, keepalive: 120, reconnectPeriod: 0, connectTimeout: 120_000,
        ...(d.token !== undefined ? { username: d.id, password: d.token } : {}),
        will: { topic: `${base}/status`, payload: Buffer.from(JSON.stringify({ online: false, ts: Date.now(), reason: 'connection lost' })), qos: 1, retain: true },
      });
      d.client = client;
      let connected = false;
      client.on('error', (e) => { if (connected) this.errors++; else reject(new Error(`${d.id}: ${e.message}`)); });
      client.on('close', () => { if (d.reportedAt === undefined && this.timer !== undefined) this.errors++; });
      client.on('message', (topic, payload) => { if (topic === `${base}/desired`) this.onDesired(d, payload); });
      client.once('connect', () => {
        connected = true;
        (client.stream as net.Socket).setNoDelay?.(true);
        client.subscribe(`${base}/desired`, { qos: 1 }, (err) => {
          if (err) { reject(err); return; }
          let acks = 0;
          const ack = (e?: Error): void => { if (e) reject(e); else if (++acks === 2) resolve(); };
          client.publish(`${base}/status`, JSON.stringify({ online: true, ts: Date.now(), agentVersion: '0.1.0-sim' }), { qos: 1, retain: true }, ack);
          client.publish(`${base}/inventory`, inventoryOf(d), { qos: 1, retain: true }, ack);
        });
      });
    });
  }

  private onDesired(d: SimDevice, payload: Buffer): void {
    const text = payload.toString('utf8').trim();
    const doc = text === '' ? { generation: 0, workloads: [] } : JSON.parse(text) as { generation: number; workloads: Array<{ name: string }> };
    const names = doc.workloads.map((w) => w.name);
    const reported = { generation: doc.generation, workloads: names.map((name) => ({ name, phase: 'running', restarts: 0 })) };
    d.client?.publish(`${PREFIX}/dev/${d.id}/reported`, JSON.stringify(reported), { qos: 1, retain: true }, (e) => {
      if (e) { this.errors++; return; }
      d.running = names;
      if (d.reportedAt === undefined && names.some((n) => n.startsWith(`${DEPLOYMENT}-`))) d.reportedAt = performance.now();
    });
  }

  /** Every device publishes telemetry once per period, spread over it in 100 ms slices. */
  startTelemetry(): void {
    const slices = Math.max(1, Math.round(this.telemetryS * 10));
    let slice = 0;
    this.timer = setInterval(() => {
      for (let i = slice; i < this.devices.length; i += slices) {
        const d = this.devices[i] as SimDevice;
        d.client?.publish(`${PREFIX}/dev/${d.id}/telemetry`, telemetryOf(d, this.telemetryS * 1000), { qos: 0 });
      }
      slice = (slice + 1) % slices;
    }, 100);
  }

  reported(): number {
    return this.devices.filter((d) => d.reportedAt !== undefined).length;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all(this.devices.map((d) => new Promise<void>((resolve) => { if (d.client) d.client.end(true, {}, () => resolve()); else resolve(); })));
  }
}

// ---- a process's RSS and CPU, sampled from /proc ------------------------------------------------

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

interface Sample { t: number; ticks: number; rssKb: number }
interface Usage { cpuPercent: number; rssPeakMiB: number; rssEndMiB: number }

class ProcSampler {
  private readonly samples: Sample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 250);
  }

  /** Sample now; returns the sample's time (a window boundary). */
  now(): number { this.sample(); return this.samples[this.samples.length - 1]?.t ?? performance.now(); }

  private sample(): void {
    try {
      const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
      const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      this.samples.push({ t: performance.now(), ticks, rssKb: Number(rss?.[1] ?? 0) });
    } catch { /* exited */ }
  }

  /** CPU % (of one core) and RSS between two times from now(). */
  usage(from: number, to: number): Usage {
    const w = this.samples.filter((s) => s.t >= from && s.t <= to);
    const a = w[0];
    const b = w[w.length - 1];
    if (a === undefined || b === undefined || b.t <= a.t) return { cpuPercent: NaN, rssPeakMiB: NaN, rssEndMiB: NaN };
    return {
      cpuPercent: ((b.ticks - a.ticks) / CLK_TCK) / ((b.t - a.t) / 1000) * 100,
      rssPeakMiB: Math.max(...w.map((s) => s.rssKb)) / 1024,
      rssEndMiB: b.rssKb / 1024,
    };
  }

  stop(): void { clearInterval(this.timer); }
}

// ---- the two runs -----------------------------------------------------------------------------

interface RunResult {
  name: string;
  connectMs: number;
  /** POST (or the stand-in's publishes) -> every device's reported acked by the broker. */
  allReportedMs: number;
  /** -> the controller's status (the stand-in's view) says every replica runs. */
  seenMs: number;
  applyReturnedMs: number;
  idle: Usage;
  during: Usage;
  after: Usage;
  errors: number;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > deadline) throw new Error(`bench fleet: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function deploymentYaml(): string {
  const sha = (s: string): string => Buffer.from(s.padEnd(32, '.')).toString('hex').slice(0, 64);
  const variants = [['cuda', 'fp16'], ['edgetpu', 'int8'], ['npu', 'int8'], ['cpu', 'fp32']]
    .map(([a, p]) => `    - { accelerator: ${a}, precision: ${p}, url: "http://127.0.0.1:9/det-${a}-${p}.bin", sha256: "${sha(`${a}${p}`)}" }`);
  const runtimes = ['x86_64', 'aarch64', 'riscv64'].map((arch) => `    - { arch: ${arch}, image: det-rt, url: "http://127.0.0.1:9/det-rt-${arch}.tar.gz", sha256: "${sha(arch)}" }`);
  return [`name: ${DEPLOYMENT}`, 'model:', '  name: det', '  variants:', ...variants, 'runtime:', '  variants:', ...runtimes,
    '  args: [/app/detect, --camera, /dev/video0]', '  env: { LOG_LEVEL: info }', 'selector: {}',
    'resources: { memory: 64Mi, cpus: 0.25 }', 'accelerators: [cuda, edgetpu, npu, cpu]', ''].join('\n');
}

/** What the controller would publish to a device, for the anchor's stand-in (same fields and size). */
function standInDesired(d: SimDevice, i: number): string {
  const a = d.board.accel ?? 'cpu';
  const p = a === 'cuda' ? 'fp16' : a === 'cpu' ? 'fp32' : 'int8';
  const sha = 'ab'.repeat(32);
  return JSON.stringify({
    generation: 1,
    workloads: [{
      name: `${DEPLOYMENT}-${i}`, image: `det-rt-${sha.slice(0, 12)}`, args: ['/app/detect', '--camera', '/dev/video0'],
      env: { LOG_LEVEL: 'info', FEATHER_DEPLOYMENT: DEPLOYMENT, FEATHER_REPLICA: String(i), FEATHER_ACCELERATOR: a, FEATHER_PRECISION: p, FEATHER_MODEL_PATH: `/models/det/det-${a}-${p}.bin` },
      limits: { memory: '64Mi', cpu: 0.25, pids: 256 }, restart: 'always',
      models: [{ name: 'det', url: `http://127.0.0.1:9/det-${a}-${p}.bin`, sha256: sha }],
    }],
    images: [{ name: `det-rt-${sha.slice(0, 12)}`, url: `http://127.0.0.1:9/det-rt-${d.board.arch}.tar.gz`, sha256: sha }],
  });
}

function ids(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `sim-${String(i).padStart(5, '0')}`);
}

/** Start a child under `ulimit -n 65536` (as far as the hard limit allows); exec keeps its pid. */
function spawnWithFiles(cmd: string[], stderrFile: string): ChildProcess {
  const fd = openSync(stderrFile, 'w');
  const child = spawn('sh', ['-c', 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"', 'sh', ...cmd], { stdio: ['ignore', 'ignore', fd] });
  closeSync(fd);
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await gone;
  clearTimeout(timer);
}

async function runController(o: Options, root: string): Promise<RunResult> {
  const dataDir = join(root, 'controller');
  // Device tokens in a batch, through the controller's own credentials code, before it starts.
  const t0 = performance.now();
  const store = Store.open(dataDir);
  const credentials = new Credentials(store, createLogger('bench'));
  const tokens = new Map<string, string>();
  const list = ids(o.devices);
  for (let i = 0; i < list.length; i += 32) {
    for (const r of await Promise.all(list.slice(i, i + 32).map((id) => credentials.issue(id)))) tokens.set(r.identity, r.token);
  }
  store.close();
  console.log(`  ${o.devices} device tokens issued in ${((performance.now() - t0) / 1000).toFixed(1)} s (not timed below)`);

  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  const log = join(root, 'controller.log');
  const child = spawnWithFiles([process.execPath, CONTROLLER, '--data-dir', dataDir, '--mqtt-port', String(mqttPort), '--http-port', String(httpPort)], log);
  const sampler = new ProcSampler(child.pid ?? -1);
  const sims = new SimFleet(list, tokens, `mqtt://127.0.0.1:${mqttPort}`, o.telemetryS);
  const base = `http://127.0.0.1:${httpPort}`;
  try {
    await waitUntil('the controller /healthz', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok === true, 30_000);
    const admin = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const api = (path: string, init: RequestInit = {}): Promise<Response> => fetch(`${base}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${admin}`, ...init.headers } });
    const probe = await api('/deployments');
    if (probe.status === 404) throw new Error('bench fleet: the controller has no HTTP API (/api/v1): build controller/api first');
    const connectMs = await sims.connectAll(o.window);
    sims.startTelemetry();
    await waitUntil('every device online at the controller', async () => {
      const h = await (await fetch(`${base}/healthz`)).json() as { devices?: { online?: number } };
      return (h.devices?.online ?? 0) >= o.devices;
    }, 60_000, 200);
    const idleFrom = sampler.now();
    await sleep(o.idleS * 1000);
    const applyAt = sampler.now();
    const posted = await api('/deployments', { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: deploymentYaml() });
    if (!posted.ok) throw new Error(`bench fleet: POST /api/v1/deployments: ${posted.status} ${await posted.text()}`);
    const applyReturnedMs = performance.now() - applyAt;
    let seenAt = 0;
    await waitUntil(`every device's reported (and the controller's Available)`, async () => {
      if (seenAt === 0) {
        const r = await (await api(`/deployments/${DEPLOYMENT}/rollout`)).json() as { phase?: string; running?: number };
        if (r.phase === 'Available' && r.running === o.devices) seenAt = performance.now();
      }
      return seenAt > 0 && sims.reported() === o.devices;
    }, o.timeoutS * 1000, 250).catch((e: unknown) => {
      throw new Error(`${e instanceof Error ? e.message : String(e)}: ${sims.reported()} of ${o.devices} reported`);
    });
    const lastReport = Math.max(...sims.devices.map((d) => d.reportedAt ?? 0));
    const doneAt = sampler.now();
    await sleep(o.afterS * 1000);
    const afterTo = sampler.now();
    const result: RunResult = {
      name: 'feather-controller (embedded aedes)', connectMs, allReportedMs: lastReport - applyAt, seenMs: seenAt - applyAt, applyReturnedMs,
      idle: sampler.usage(idleFrom, applyAt), during: sampler.usage(applyAt, doneAt), after: sampler.usage(doneAt, afterTo), errors: sims.errors,
    };
    const logText = readFileSync(log, 'utf8');
    const count = (level: string): number => logText.split('\n').filter((l) => l.includes(`"level":"${level}"`)).length;
    console.log(`  controller log: ${count('error')} errors, ${count('warn')} warnings, ${(logText.length / 2 ** 20).toFixed(1)} MiB`);
    return result;
  } finally {
    await sims.close();
    sampler.stop();
    await stopChild(child);
  }
}

function mosquittoVersion(): string {
  const r = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' });
  return /mosquitto version ([\d.]+)/.exec(`${r.stdout}${r.stderr}`)?.[0] ?? 'mosquitto';
}

async function runMosquitto(o: Options, root: string): Promise<RunResult> {
  const port = await freePort();
  const conf = join(root, 'mosquitto.conf');
  writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'set_tcp_nodelay true', 'max_queued_messages 100000',
    'max_inflight_messages 0', 'persistence false', 'log_type error', 'log_dest stderr', ''].join('\n'));
  const child = spawnWithFiles(['mosquitto', '-c', conf], join(root, 'mosquitto.log'));
  const sampler = new ProcSampler(child.pid ?? -1);
  const url = `mqtt://127.0.0.1:${port}`;
  const sims = new SimFleet(ids(o.devices), undefined, url, o.telemetryS);
  let standIn: MqttClient | undefined;
  try {
    await waitUntil('mosquitto', () => new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    }), 10_000);
    // The stand-in controller subscribes to what the controller follows.
    const client = mqtt.connect(url, { clientId: 'stand-in-controller', protocolVersion: 4, reconnectPeriod: 0 });
    standIn = client;
    const seen = new Set<string>();
    client.on('message', (topic, payload) => {
      if (topic.endsWith('/reported') && payload.includes(`"${DEPLOYMENT}-`)) seen.add(topic);
    });
    await new Promise<void>((resolve, reject) => { client.once('connect', () => resolve()); client.once('error', reject); });
    (client.stream as net.Socket).setNoDelay?.(true);
    await client.subscribeAsync(['status', 'inventory', 'reported', 'telemetry', 'events'].map((l) => `${PREFIX}/dev/+/${l}`), { qos: 1 });

    const connectMs = await sims.connectAll(o.window);
    sims.startTelemetry();
    const idleFrom = sampler.now();
    await sleep(o.idleS * 1000);
    const applyAt = sampler.now();
    await Promise.all(sims.devices.map((d, i) => client.publishAsync(`${PREFIX}/dev/${d.id}/desired`, standInDesired(d, i), { qos: 1, retain: true })));
    const applyReturnedMs = performance.now() - applyAt;
    let seenAt = 0;
    await waitUntil('every device\'s reported', () => {
      if (seenAt === 0 && seen.size === o.devices) seenAt = performance.now();
      return seenAt > 0 && sims.reported() === o.devices;
    }, o.timeoutS * 1000, 20);
    const lastReport = Math.max(...sims.devices.map((d) => d.reportedAt ?? 0));
    const doneAt = sampler.now();
    await sleep(o.afterS * 1000);
    const afterTo = sampler.now();
    return {
      name: `${mosquittoVersion()} + stand-in (anchor)`, connectMs, allReportedMs: lastReport - applyAt, seenMs: seenAt - applyAt, applyReturnedMs,
      idle: sampler.usage(idleFrom, applyAt), during: sampler.usage(applyAt, doneAt), after: sampler.usage(doneAt, afterTo), errors: sims.errors,
    };
  } finally {
    await sims.close();
    standIn?.end(true);
    sampler.stop();
    await stopChild(child);
  }
}

// ---- output -----------------------------------------------------------------------------------

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

function print(o: Options, runs: RunResult[]): void {
  console.log(`\nfleet: ${o.devices} simulated agents, telemetry every ${o.telemetryS} s, connect window ${o.window}`);
  console.log('| run | connect all, s | apply returned, ms | apply -> all reported, ms | apply -> seen by controller, ms | RSS idle / peak / after, MiB | CPU % idle / during / after | client errors |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of runs) {
    console.log(`| ${r.name} | ${fmt(r.connectMs / 1000, 1)} | ${fmt(r.applyReturnedMs)} | ${fmt(r.allReportedMs)} | ${fmt(r.seenMs)} | ${fmt(r.idle.rssEndMiB)} / ${fmt(r.during.rssPeakMiB)} / ${fmt(r.after.rssEndMiB)} | ${fmt(r.idle.cpuPercent)} / ${fmt(r.during.cpuPercent)} / ${fmt(r.after.cpuPercent)} | ${r.errors} |`);
  }
  const [c, m] = runs;
  if (c === undefined || m === undefined) return;
  const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? (a / b).toFixed(1) : 'n/a');
  console.log('\n| controller / anchor | ratio |');
  console.log('| --- | --- |');
  console.log(`| connect ${o.devices} (with token checks vs none) | ${ratio(c.connectMs, m.connectMs)} |`);
  console.log(`| apply -> all reported | ${ratio(c.allReportedMs, m.allReportedMs)} |`);
  console.log(`| apply -> seen as running | ${ratio(c.seenMs, m.seenMs)} |`);
  console.log(`| RSS after | ${ratio(c.after.rssEndMiB, m.after.rssEndMiB)} |`);
  console.log(`| CPU % idle (telemetry only) | ${ratio(c.idle.cpuPercent, m.idle.cpuPercent)} |`);
  console.log(`| CPU % during the rollout | ${ratio(c.during.cpuPercent, m.during.cpuPercent)} |`);
}

export async function benchFleet(args: string[]): Promise<void> {
  const o = options(args);
  configureLogging({ level: 'silent' });
  const limit = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout.trim());
  if (Number.isFinite(limit) && limit < o.devices + 512) {
    throw new Error(`bench fleet: this process may open ${limit} files, ${o.devices} clients need more; run it as: sh -c 'ulimit -n 65536 && npm run bench -- fleet'`);
  }
  const root = mkdtempSync(join(tmpdir(), 'feather-bench-fleet-'));
  try {
    console.log('anchor: mosquitto …');
    const anchor = await runMosquitto(o, root);
    console.log('feather-controller …');
    const controller = await runController(o, root);
    print(o, [controller, anchor]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
