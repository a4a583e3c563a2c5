// npm run bench -- agent [--n 50] [--pull-mb 200] [--pull-runs 3] [--no-pull]
// npm run bench -- pull  [--pull-mb 200] [--pull-runs 3]
//
// The real agent, as a device runs it: a mosquitto broker on a free loopback port, the daemon
// as a child process (node dist/agent/cli/main.js daemon), a busybox image built in its data
// dir, commands published by an mqtt.js client (QoS 1, TCP_NODELAY, JSON as mosquitto_pub
// sends it). Each figure is printed beside an anchor measured in the same run, as a ratio:
//   command-to-running   container.run until its ok reply  vs  the broker's raw request/reply
//                        round trip (one mqtt.js client answering itself), agent ping, CLI run -d
//   agent RSS            idle and with 10 containers at 1 s telemetry  vs  a bare node process
//                        and a node process holding one connected mqtt.js client
//   agent CPU %          10 containers, 1 s telemetry  vs  the same agent idle
//   telemetry bytes      protobuf  vs  JSON (daemon restarted with FEATHER_TELEMETRY_ENCODING=json)
//   pull throughput      see pull.ts
// Everything started here is removed at the end, also on failure or Ctrl-C. The run happens in a
// private mount namespace with its own view of the feather cgroups (see reexecIsolated).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { median, percentile } from './stats.js';

export const DEVICE_ID = 'bench';
const PREFIX = `feather/v1/dev/${DEVICE_ID}`;
const ECHO = 'feather-bench/echo';
export const CLI = fileURLToPath(new URL('../agent/cli/main.js', import.meta.url));
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

// ---- figures -------------------------------------------------------------------------------

export interface Figure {
  name: string;
  /** The figure: a median when there are several samples. */
  value: number;
  p90?: number | undefined;
  n?: number | undefined;
  note?: string | undefined;
}

export function figure(name: string, xs: number[], note?: string): Figure {
  return { name, value: median(xs), p90: percentile(xs, 90), n: xs.length, note };
}

/** A markdown table: each row's value with its ratio to the reference row's. */
export function printFigures(title: string, unit: string, rows: Figure[], reference: string, digits = 2): void {
  const ref = rows.find((r) => r.name === reference)?.value ?? NaN;
  const fmt = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
  console.log(`\n${title}`);
  console.log(`| run | n | ${unit} (median) | p90 | ratio to ${reference.replaceAll('|', '\\|')} |`);
  console.log('| --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const ratio = Number.isFinite(r.value) && Number.isFinite(ref) && ref !== 0 ? (r.value / ref).toFixed(2) : 'n/a';
    const name = `${r.name}${r.note ? ` (${r.note})` : ''}`.replaceAll('|', '\\|');
    console.log(`| ${name} | ${r.n ?? 1} | ${fmt(r.value)} | ${fmt(r.p90)} | ${ratio} |`);
  }
}

// ---- processes -----------------------------------------------------------------------------

export interface CmdResult { code: number; stdout: string; stderr: string; ms: number }

/** Run a command to its end, capturing its output; `ms` is its wall time. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd, detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-8000); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - t0 }));
  });
}

export async function mustRun(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CmdResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r;
}

function procStatusKb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}
/** Resident set size (VmRSS), MB (10^6 bytes). */
export const rssMb = (pid: number): number => (procStatusKb(pid, 'VmRSS') * 1024) / 1e6;
/** Peak resident set size over the process's life (VmHWM), MB. */
export const hwmMb = (pid: number): number => (procStatusKb(pid, 'VmHWM') * 1024) / 1e6;

/** "anon A, file F": the process's own memory, and pages of files mapped (the node binary, shared with other node processes). */
export function rssSplit(pid: number): string {
  return `anon ${(procStatusKb(pid, 'RssAnon') * 1024 / 1e6).toFixed(1)} MB, file ${(procStatusKb(pid, 'RssFile') * 1024 / 1e6).toFixed(1)} MB`;
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

/** utime + stime of one process, in seconds (/proc/PID/stat fields 14 and 15). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

export interface Observation {
  /** CPU use over the window, percent of one core. */
  cpuPercent: number;
  /** VmRSS sampled every second of the window, MB. */
  rss: number[];
  /** rssSplit() at the end of the window. */
  split: string;
}

/** Watch `pid` for `ms`: its CPU use (utime+stime delta) and its RSS once a second. */
export async function observe(pid: number, ms: number): Promise<Observation> {
  const rss: number[] = [];
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  const timer = setInterval(() => rss.push(rssMb(pid)), 1000);
  await sleep(ms);
  clearInterval(timer);
  const cpu = (100 * (cpuSeconds(pid) - c0)) / ((performance.now() - t0) / 1000);
  return { cpuPercent: cpu, rss, split: rssSplit(pid) };
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve); });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no free port');
  return addr.port;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
async function terminate(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(t);
}

// ---- broker, client, daemon ------------------------------------------------------------------

export interface Broker { port: number; url: string; stop(): Promise<void> }

/** Debian's mosquitto with TCP_NODELAY on its sockets, on a free loopback port. */
async function startMosquitto(dir: string): Promise<Broker> {
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'set_tcp_nodelay true',
    'persistence false', 'max_inflight_messages 0', 'log_type error', 'log_dest stderr', ''].join('\n'));
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  const exited = new Promise<never>((_, reject) => child.once('exit', (c) => reject(new Error(`mosquitto exited (${c})`))));
  exited.catch(() => undefined);
  await Promise.race([waitForPort(port, 10_000), exited]);
  return { port, url: `mqtt://127.0.0.1:${port}`, stop: () => terminate(child, 2000) };
}

export interface Reply { requestId: string; ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } }
interface Received { topic: string; payload: Buffer; at: number }

/** One mqtt.js connection: sends commands and waits for their replies; keeps status and telemetry. */
export class BenchClient {
  readonly telemetry: Received[] = [];
  private readonly status: Received[] = [];
  private readonly pending = new Map<string, (payload: Buffer) => void>();
  private seq = 0;

  private constructor(private readonly client: MqttClient) {
    client.on('message', (topic, payload) => this.message(topic, payload));
  }

  static async connect(url: string): Promise<BenchClient> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clean: true, clientId: `feather-bench-${process.pid}`, reconnectPeriod: 0 });
    if (client.stream instanceof net.Socket) client.stream.setNoDelay(true); // mqtt.js leaves Nagle on
    const c = new BenchClient(client);
    await client.subscribeAsync({ [`${PREFIX}/reply/+`]: { qos: 1 }, [`${PREFIX}/status`]: { qos: 1 }, [`${PREFIX}/telemetry`]: { qos: 0 }, [`${ECHO}/#`]: { qos: 1 } });
    return c;
  }

  private message(topic: string, payload: Buffer): void {
    const at = performance.now();
    if (topic === `${PREFIX}/telemetry`) { this.telemetry.push({ topic, payload, at }); return; }
    if (topic === `${PREFIX}/status`) { this.status.push({ topic, payload, at }); return; }
    if (topic.startsWith(`${ECHO}/req/`)) { // the anchor's responder: answer at once, like an agent would
      this.client.publish(`${ECHO}/rep/${topic.slice(ECHO.length + 5)}`, payload, { qos: 1 });
      return;
    }
    const id = topic.slice(topic.lastIndexOf('/') + 1);
    const waiter = this.pending.get(id);
    if (waiter) { this.pending.delete(id); waiter(payload); }
  }

  private roundTrip(topic: string, id: string, payload: string, timeoutMs: number): Promise<{ ms: number; payload: Buffer }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`no reply to ${topic} (${id}) within ${timeoutMs} ms`)); }, timeoutMs);
      const t0 = performance.now();
      this.pending.set(id, (p) => { clearTimeout(timer); resolve({ ms: performance.now() - t0, payload: p }); });
      this.client.publish(topic, payload, { qos: 1 });
    });
  }

  /** Publish a command as mosquitto_pub would (JSON, QoS 1) and wait for its reply. */
  async command(verb: string, body: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<{ ms: number; reply: Reply }> {
    const requestId = `b${process.pid}-${++this.seq}`;
    const r = await this.roundTrip(`${PREFIX}/cmd/${verb}`, requestId, JSON.stringify({ requestId, ...body }), timeoutMs);
    return { ms: r.ms, reply: JSON.parse(r.payload.toString('utf8')) as Reply };
  }

  /** The same, failing unless the reply is ok. */
  async ok(verb: string, body: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<{ ms: number; result: Record<string, unknown> }> {
    const { ms, reply } = await this.command(verb, body, timeoutMs);
    if (!reply.ok) throw new Error(`${verb} ${JSON.stringify(body)}: ${reply.error?.code} ${reply.error?.message}`);
    return { ms, result: reply.result ?? {} };
  }

  /** The anchor: a request through the broker to a responder (this client) and its reply back. */
  async echo(payload: string): Promise<number> {
    const id = `e${++this.seq}`;
    return (await this.roundTrip(`${ECHO}/req/${id}`, id, payload, 10_000)).ms;
  }

  /** Resolves when the agent has said online:true after `since` (performance.now()). */
  async online(since: number, timeoutMs: number, failed: Promise<never>): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.status.some((s) => s.at >= since && (JSON.parse(s.payload.toString()) as { online?: boolean }).online === true)) {
      if (performance.now() > deadline) throw new Error(`the agent did not come online within ${timeoutMs} ms`);
      await Promise.race([sleep(20), failed]);
    }
  }

  async close(): Promise<void> { await this.client.endAsync(true); }
}

export interface DaemonOptions { dataDir: string; runDir: string; brokerUrl: string; logPath: string; env?: Record<string, string> }

/** feather-agent daemon as a child process; resolves when it has come online on the broker. */
export class Daemon {
  private constructor(private readonly child: ChildProcess, readonly pid: number) {}

  static async start(o: DaemonOptions, client: BenchClient): Promise<Daemon> {
    const log = openSync(o.logPath, 'a');
    const since = performance.now();
    const child = spawn(process.execPath, [CLI, '--data-dir', o.dataDir, 'daemon', '--broker', o.brokerUrl, '--device-id', DEVICE_ID, '--metrics-port', '0'], {
      stdio: ['ignore', log, log],
      detached: true, // its own process group: a Ctrl-C reaches the benchmark only, which stops it in order
      env: { ...process.env, FEATHER_RUN_DIR: o.runDir, FEATHER_TELEMETRY_INTERVAL: '1', ...o.env },
    });
    closeSync(log);
    const failed = new Promise<never>((_, reject) => child.once('exit', (code, sig) =>
      reject(new Error(`the daemon exited (${code ?? sig}); its log: ${o.logPath}\n${readFileSync(o.logPath, 'utf8').slice(-3000)}`))));
    failed.catch(() => undefined);
    const d = new Daemon(child, child.pid ?? -1);
    try {
      await client.online(since, 30_000, failed);
    } catch (e: unknown) {
      await d.stop();
      throw e;
    }
    return d;
  }

  /** SIGTERM (containers keep running); SIGKILL after 20 s. */
  stop(): Promise<void> { return terminate(this.child, 20_000); }
}

// ---- the harness: everything one run needs, and its cleanup -------------------------------

export class Harness {
  readonly dataDir: string;
  readonly runDir: string;
  daemon: Daemon | undefined;
  private daemons = 0;
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private cleaning: Promise<void> | undefined;

  private constructor(readonly root: string, readonly broker: Broker, readonly client: BenchClient) {
    this.dataDir = join(root, 'data');
    this.runDir = join(root, 'run');
  }

  /** Broker, client, busybox image, daemon (telemetry every second, protobuf). */
  static async create(): Promise<Harness> {
    const root = mkdtempSync(join(tmpdir(), 'feather-bench-agent-'));
    let broker: Broker | undefined;
    let h: Harness | undefined;
    try {
      broker = await startMosquitto(root);
      h = new Harness(root, broker, await BenchClient.connect(broker.url));
      mkdirSync(h.runDir, { recursive: true });
      await mustRun(process.execPath, [CLI, '--data-dir', h.dataDir, 'image', 'build', 'busybox']);
      await h.startDaemon();
      return h;
    } catch (e: unknown) {
      if (h !== undefined) {
        await h.cleanup();
      } else {
        await broker?.stop();
        rmSync(root, { recursive: true, force: true });
      }
      throw e;
    }
  }

  /** feather-agent --data-dir DATA ARGS; refused once the cleanup has begun (it would race with it). */
  cli(args: string[]): Promise<CmdResult> {
    if (this.cleaning !== undefined) return Promise.reject(new Error('the benchmark is cleaning up'));
    return this.agentCli(args);
  }

  private agentCli(args: string[]): Promise<CmdResult> { return run(process.execPath, [CLI, '--data-dir', this.dataDir, ...args]); }

  async startDaemon(env: Record<string, string> = {}): Promise<Daemon> {
    await this.daemon?.stop();
    this.daemon = await Daemon.start({ dataDir: this.dataDir, runDir: this.runDir, brokerUrl: this.broker.url, logPath: join(this.root, `daemon-${++this.daemons}.log`), env }, this.client);
    return this.daemon;
  }

  get pid(): number {
    if (this.daemon === undefined) throw new Error('no daemon');
    return this.daemon.pid;
  }

  onCleanup(fn: () => Promise<void> | void): void { this.cleanups.push(fn); }

  /**
   * Daemon, every container (feather-agent rm -f), registered extras, client, broker, temp dir.
   * Once: a second call (a signal during the cleanup after a failure) waits for the first.
   */
  cleanup(): Promise<void> {
    this.cleaning ??= this.cleanupOnce();
    return this.cleaning;
  }

  private async cleanupOnce(): Promise<void> {
    const step = async (what: string, fn: () => Promise<unknown> | unknown): Promise<void> => {
      try { await fn(); } catch (e: unknown) { console.error(`cleanup: ${what}: ${e instanceof Error ? e.message : String(e)}`); }
    };
    await step('daemon', () => this.daemon?.stop());
    this.daemon = undefined;
    const containers = async (): Promise<string[]> => {
      const ps = await this.agentCli(['ps', '--all', '--json']);
      if (ps.code !== 0) throw new Error(`feather-agent ps: ${ps.stderr.trim()}`);
      return (JSON.parse(ps.stdout) as { name: string }[]).map((c) => c.name);
    };
    let left: string[] = [];
    await step('containers', async () => {
      for (const name of await containers()) {
        const r = await this.agentCli(['rm', '-f', name]);
        if (r.code !== 0) console.error(`cleanup: feather-agent rm -f ${name}: ${r.stderr.trim()}`);
      }
      left = await containers();
    });
    for (const fn of this.cleanups.splice(0).reverse()) await step('extra', fn);
    await step('client', () => this.client.close());
    await step('broker', () => this.broker.stop());
    if (left.length > 0) {
      // Their state is in the data dir: keep it, so that they can still be removed by hand.
      console.error(`cleanup: containers left: ${left.join(' ')}; kept ${this.root}; remove them with ` +
        `${process.execPath} ${CLI} --data-dir ${this.dataDir} rm -f NAME, then the directory`);
      return;
    }
    await step('temp dir', () => rmSync(this.root, { recursive: true, force: true }));
  }
}

/** Run `body` with a harness that is cleaned up afterwards, also on SIGINT/SIGTERM. */
export async function withHarness(body: (h: Harness) => Promise<void>): Promise<void> {
  const h = await Harness.create();
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`\n${sig}: cleaning up (the run in progress fails)`);
    void h.cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await body(h);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await h.cleanup();
  }
}

// ---- the measurements ------------------------------------------------------------------------

async function times(n: number, warmup: number, fn: (i: number) => Promise<number>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await fn(i));
  return out;
}

/** A node process that stays up (optionally holding a connected mqtt.js client): RSS after it settles. */
async function nodeFloorRss(script: string, settleMs: number): Promise<{ mb: number; split: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: PACKAGE_ROOT, stdio: 'ignore', detached: true });
  try {
    await sleep(settleMs);
    if (child.exitCode !== null || child.pid === undefined) throw new Error(`node -e ${script} exited ${child.exitCode}`);
    return { mb: rssMb(child.pid), split: rssSplit(child.pid) };
  } finally {
    await terminate(child, 1000);
  }
}

const runBody = (name: string, image = 'busybox'): Record<string, unknown> =>
  ({ name, image, args: ['sleep', '300'], limits: { memory: '64Mi' } });

/** Telemetry payload sizes received in [from, to) (performance.now()). */
function telemetrySizes(h: Harness, from: number, to = Infinity): number[] {
  return h.client.telemetry.filter((m) => m.at >= from && m.at < to).map((m) => m.payload.length);
}

async function measureAgent(h: Harness, n: number): Promise<void> {
  const { client } = h;
  console.log(`agent benchmark: mosquitto on ${h.broker.url}, daemon pid ${h.pid}, telemetry every 1 s, data dir ${h.dataDir}`);

  // (2a) idle: RSS and CPU of a freshly started agent with nothing to run.
  await sleep(3000);
  const idleFrom = performance.now();
  const idle = await observe(h.pid, 5000);
  const telemetryIdle = telemetrySizes(h, idleFrom);

  // (1) command-to-running.
  const cmdPayload = JSON.stringify({ requestId: 'b0000-00', ...runBody('bench-00') });
  const echo = await times(n, 5, () => client.echo(cmdPayload));
  const ping = await times(n, 5, async () => (await client.ok('ping')).ms);
  const started = await times(n, 3, async (i) => (await client.ok('container.run', runBody(i < 0 ? `warm${-i}` : `bench-${i}`))).ms);
  for (let w = 1; w <= 3; w++) await client.ok('container.rm', { name: `warm${w}`, timeoutS: 0 });
  const cliN = Math.max(3, Math.round(n / 5));
  const cliRun = await times(cliN, 2, async (i) => {
    const r = await h.cli(['run', '-d', '--image', 'busybox', '--memory', '64Mi', '--name', `cli-${i < 0 ? `w${-i}` : i}`, '--', 'sleep', '300']);
    if (r.code !== 0) throw new Error(`feather-agent run -d: ${r.stderr}`);
    return r.ms;
  });
  const cliNames = [...Array(cliN).keys()].map((i) => `cli-${i}`).concat(['cli-w1', 'cli-w2']);
  const cliRm = await h.cli(['rm', '-f', ...cliNames]);
  if (cliRm.code !== 0) throw new Error(`feather-agent rm -f: ${cliRm.stderr}`);
  const keep = Math.min(10, n);
  const removed: number[] = [];
  for (let i = keep; i < n; i++) removed.push((await client.ok('container.rm', { name: `bench-${i}`, timeoutS: 0 })).ms);

  printFigures(`Command to running: container.run of sleep 300 (busybox, 64Mi) until the ok reply, ${n} distinct containers`, 'ms', [
    figure('anchor: broker request/reply round trip', echo, 'mqtt.js client answering itself through mosquitto'),
    figure('agent ping', ping),
    figure('agent container.run', started),
    figure('agent container.rm of a running container', removed, 'timeoutS 0'),
    figure('feather-agent run -d CLI (whole process)', cliRun),
  ], 'anchor: broker request/reply round trip');

  // (2b) 10 containers, telemetry every second: after 15 s, CPU over 10 s and RSS each second of them.
  const busyFrom = performance.now();
  await sleep(15_000);
  const busy = await observe(h.pid, 10_000);
  const protoSizes = telemetrySizes(h, busyFrom + 2000);

  // (3) the same state, telemetry as JSON: restart the daemon (the containers keep running).
  await h.startDaemon({ FEATHER_TELEMETRY_ENCODING: 'json' });
  const jsonFrom = performance.now();
  await sleep(6000);
  const jsonSizes = telemetrySizes(h, jsonFrom + 1500);
  const restarted = await observe(h.pid, 3000);
  for (const s of [protoSizes, jsonSizes]) if (s.length === 0) throw new Error('no telemetry received');

  const nodeFloor = await nodeFloorRss('setInterval(() => {}, 1000);', 1500);
  const mqttScript = (opts: string): string =>
    `import mqtt from 'mqtt'; mqtt.connect(${JSON.stringify(h.broker.url)}${opts}); setInterval(() => {}, 1000);`;
  const mqttFloor = await nodeFloorRss(mqttScript(''), 2000);
  const mqttFloorNoCache = await nodeFloorRss(mqttScript(', { writeCache: false }'), 2000);
  printFigures('Agent RSS (VmRSS of the daemon process; target: under 50 MB; balena-supervisor publishes 85 MB fresh)', 'MB', [
    { name: 'anchor: bare node process', value: nodeFloor.mb, note: `node ${process.version}, setInterval only; ${nodeFloor.split}` },
    { name: 'node + one connected mqtt.js client', value: mqttFloor.mb, note: mqttFloor.split },
    { name: 'node + one connected mqtt.js client, writeCache: false', value: mqttFloorNoCache.mb, note: mqttFloorNoCache.split },
    figure('agent idle', idle.rss, `3-8 s after start, no containers; at the end ${idle.split}`),
    figure(`agent with ${keep} containers, 1 s telemetry`, busy.rss, `15-25 s in; at the end ${busy.split}`),
    figure(`agent restarted with ${keep} containers, JSON telemetry`, restarted.rss, `6-9 s after start; at the end ${restarted.split}`),
  ], 'anchor: bare node process', 1);

  printFigures('Agent CPU (utime+stime of the daemon process, % of one core)', '%', [
    { name: 'anchor: agent idle', value: idle.cpuPercent, note: 'over 5 s, telemetry every 1 s, no containers' },
    { name: `agent with ${keep} containers`, value: busy.cpuPercent, note: 'over 10 s, telemetry every 1 s' },
  ], 'anchor: agent idle', 2);

  printFigures(`Telemetry payload bytes per message (MQTT payload only)`, 'bytes', [
    figure(`anchor: JSON, ${keep} containers`, jsonSizes),
    figure(`protobuf, ${keep} containers`, protoSizes),
    figure('protobuf, no containers', telemetryIdle),
  ], `anchor: JSON, ${keep} containers`, 0);

  for (let i = 0; i < keep; i++) await client.ok('container.rm', { name: `bench-${i}`, timeoutS: 0 });
}

interface Options { n: number; pullMb: number; pullRuns: number; pull: boolean }

function options(args: string[]): Options {
  const { values } = parseArgs({
    args, allowPositionals: true,
    options: { n: { type: 'string' }, 'pull-mb': { type: 'string' }, 'pull-runs': { type: 'string' }, 'no-pull': { type: 'boolean' } },
  });
  const num = (v: string | undefined, d: number): number => {
    const x = v === undefined ? d : Number(v);
    if (!Number.isInteger(x) || x < 1) throw new Error(`expected a positive whole number, got ${v}`);
    return x;
  };
  return { n: num(values.n, 50), pullMb: num(values['pull-mb'], 200), pullRuns: num(values['pull-runs'], 3), pull: !values['no-pull'] };
}

// ---- a private view of the feather cgroups ----------------------------------------------------
//
// Cgroups are host-wide while data dirs are not: an agent's start-up gc treats every cgroup
// under <controller>/feather/ that its own data dir does not know as an orphan and removes it
// (EBUSY, and the daemon fails to start, when another agent's container is in it). So that this
// benchmark and agents or tests running beside it leave each other alone, it runs in a private
// mount namespace where each controller's feather/ is a bind mount of feather-bench-<pid>/.

const CGROUP_ROOT = '/sys/fs/cgroup';
const MANAGED = new Set(['memory', 'cpu', 'cpuacct', 'pids', 'cpuset', 'devices']);

/** Mount points of the cgroup2 and managed v1 hierarchies directly under /sys/fs/cgroup. */
function cgroupMounts(): string[] {
  const mounts = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const point = left.split(' ')[4] ?? '';
    const [fstype, , superOpts = ''] = right.split(' ');
    if (point !== CGROUP_ROOT && dirname(point) !== CGROUP_ROOT) continue;
    if (fstype === 'cgroup2' || (fstype === 'cgroup' && superOpts.split(',').some((o) => MANAGED.has(o)))) mounts.add(point);
  }
  return [...mounts];
}

function rmdirTree(dir: string): void {
  let subdirs: string[] = [];
  try {
    subdirs = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch { return; }
  for (const d of subdirs) rmdirTree(join(dir, d));
  try { rmdirSync(dir); } catch (e: unknown) { console.error(`cleanup: cgroup ${dir}: ${e instanceof Error ? e.message : String(e)}`); }
}

/** Re-run this benchmark inside the private namespace; false when already inside it. */
function reexecIsolated(bench: string, args: string[]): boolean {
  if (process.env['FEATHER_BENCH_CGROUP_NS'] === '1') return false;
  const tag = `feather-bench-${process.pid}`;
  const mounts = cgroupMounts();
  const script = 'set -e; for m in $FEATHER_BENCH_CG_MOUNTS; do mkdir -p "$m/feather" "$m/$FEATHER_BENCH_CG_TAG"; ' +
    'mount --bind "$m/$FEATHER_BENCH_CG_TAG" "$m/feather"; done; exec "$@"';
  const self = fileURLToPath(new URL('./main.js', import.meta.url));
  const keepAlive = (): void => { console.error('(interrupted: the benchmark cleans up)'); };
  process.on('SIGINT', keepAlive); // outlive the child's cleanup, then remove the cgroup dirs
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', process.execPath, self, bench, ...args], {
    stdio: 'inherit',
    env: { ...process.env, FEATHER_BENCH_CGROUP_NS: '1', FEATHER_BENCH_CG_MOUNTS: mounts.join(' '), FEATHER_BENCH_CG_TAG: tag },
  });
  process.off('SIGINT', keepAlive);
  for (const m of mounts) rmdirTree(join(m, tag));
  process.exitCode = r.status ?? 1;
  return true;
}

export async function benchAgent(args: string[]): Promise<void> {
  if (reexecIsolated('agent', args)) return;
  const o = options(args);
  const t0 = performance.now();
  console.log(`host: ${cpus().length} cpus, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} (other work on the host moves these figures)`);
  await withHarness(async (h) => {
    await measureAgent(h, o.n);
    // pull.ts builds on this file's harness: loaded here, so the two modules do not import each other.
    if (o.pull) await (await import('./pull.js')).measurePull(h, { mb: o.pullMb, runs: o.pullRuns });
  });
  console.log(`\n(agent benchmark took ${((performance.now() - t0) / 1000).toFixed(0)} s; load average now ${loadavg().map((x) => x.toFixed(1)).join(' ')})`);
}

export async function benchPull(args: string[]): Promise<void> {
  if (reexecIsolated('pull', args)) return;
  const o = options(args);
  const { measurePull } = await import('./pull.js');
  await withHarness((h) => measurePull(h, { mb: o.pullMb, runs: o.pullRuns }));
}
