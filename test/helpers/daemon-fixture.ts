// `feather-agent daemon` as a real child process, for end-to-end tests (test/integration/daemon-*):
// - DaemonFixture: a temp data dir (busybox image built by the CLI's offline recipe) and run dir;
//   starts daemons on it (JSON log lines on stderr kept for failure messages), runs the CLI
//   (`ps --json`, `rm -f`) on the same data dir, and cleans up, reporting cgroups and mounts left;
// - Device: a person at a shell, with mosquitto_sub on the device's topics and mosquitto_pub;
// - ImageServer: image tarballs over node:http, with Range and an optional trickle;
// - tarball builders: busybox plus files, and busybox-less python3 (a statsd sender).
// Uses brokers.ts (brokers, mosquitto clients) and runtime-fixture.ts (leftover probes) as they are.
import type { Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { addHostPath, hostBundleEntries } from '../../agent/images/hostbundle.js';
import { rootfsSkeleton } from '../../agent/images/recipes.js';
import { writeTarball, type TarEntrySpec } from '../../agent/images/tarwriter.js';
import { freePort, MosquittoSub, mosquittoPub, type PubOptions, type SubMessage } from './brokers.js';
import { cgroupLeftovers, hostMountsUnder } from './runtime-fixture.js';

/** The compiled CLI (`npm run build` first). */
export const CLI = fileURLToPath(new URL('../../dist/agent/cli/main.js', import.meta.url));

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Why these tests cannot run here, or undefined. */
export function cannotRun(): string | undefined {
  if (!isRoot()) return 'the daemon end-to-end tests need root (namespaces, mounts, cgroups)';
  if (!existsSync(CLI)) return `${CLI} is missing: npm run build`;
  return undefined;
}

export const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

/**
 * Poll `fn` every 25 ms until it returns something other than undefined/false; throws naming
 * `what` (and `context()`, e.g. the daemon's last log lines) after `ms`.
 */
export async function until<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { ms?: number; context?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.ms ?? 15_000);
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${opts.ms ?? 15_000} ms waiting for ${what}${opts.context ? `\n${opts.context()}` : ''}`);
    }
    await sleep(25);
  }
}

// ---- the daemon process ----------------------------------------------------------------------

export interface LogLine {
  ts?: string;
  level?: string;
  ns?: string;
  event?: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One `feather-agent daemon` child process and what it wrote to stderr. */
export class AgentProcess {
  /** Every stderr line, as written. */
  readonly lines: string[] = [];
  /** The stderr lines that are JSON log records. */
  readonly logs: LogLine[] = [];
  readonly exited: Promise<Exit>;
  private exitInfo: Exit | undefined;
  private partial = '';

  constructor(readonly child: ChildProcess, readonly metricsPort: number, readonly label: string) {
    this.exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => { this.exitInfo = { code, signal }; resolve(this.exitInfo); });
    });
    child.stderr?.on('data', (d: Buffer) => this.data(d.toString('utf8')));
    child.stdout?.on('data', (d: Buffer) => this.data(d.toString('utf8')));
  }

  private data(chunk: string): void {
    this.partial += chunk;
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      this.lines.push(line);
      if (line.startsWith('{')) {
        try { this.logs.push(JSON.parse(line) as LogLine); } catch { /* not a record */ }
      }
    }
  }

  get pid(): number { return this.child.pid ?? -1; }
  get running(): boolean { return this.exitInfo === undefined; }
  get exit(): Exit | undefined { return this.exitInfo; }

  /** The last `n` stderr lines, for failure messages. */
  tail(n = 40): string {
    const lines = this.lines.slice(-n);
    if (this.partial !== '') lines.push(this.partial);
    const state = this.exitInfo ? `exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal})` : 'running';
    return `--- ${this.label} (pid ${this.pid}, ${state}), last ${lines.length} log lines:\n${lines.join('\n')}`;
  }

  /** Position in `logs`, to wait for records written after it. */
  mark(): number { return this.logs.length; }

  /** The first record with this event (after `after`) that matches. */
  async waitForLog(event: string, opts: { after?: number; match?: (l: LogLine) => boolean; ms?: number } = {}): Promise<LogLine> {
    return until(`log event ${event} from ${this.label}`, () => {
      const found = this.logs.slice(opts.after ?? 0).find((l) => l.event === event && (opts.match?.(l) ?? true));
      if (found) return found;
      if (!this.running) throw new Error(`${this.label} exited before logging ${event}\n${this.tail()}`);
      return undefined;
    }, { ms: opts.ms ?? 15_000, context: () => this.tail() });
  }

  /** Send `signal` and wait for the exit. */
  async kill(signal: NodeJS.Signals): Promise<Exit> {
    if (this.exitInfo) return this.exitInfo;
    this.child.kill(signal);
    return this.exited;
  }

  /** SIGTERM, then SIGKILL if it is still there after `ms`. */
  async stop(ms = 15_000): Promise<Exit> {
    if (this.exitInfo) return this.exitInfo;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), ms);
    try { return await this.exited; } finally { clearTimeout(timer); }
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `feather-agent ps --json` entries (the fields the tests read). */
export interface PsEntry {
  name: string;
  image: string;
  imageSha256: string;
  status: 'created' | 'running' | 'exited';
  pid?: number;
  exitCode?: number;
  labels: Record<string, string>;
  args: string[];
}

export interface DaemonStart {
  broker: { url: string };
  deviceId: string;
  /** Added to the daemon's environment (FEATHER_TELEMETRY_INTERVAL, FEATHER_TELEMETRY_ENCODING, …). */
  env?: Record<string, string>;
  /** Default: a free port. */
  metricsPort?: number;
  /** Wait for `agent.started` and the first `mqtt.connected` (default true). */
  wait?: boolean;
}

export interface Leftovers {
  /** Cgroup directories of containers the tests named. */
  cgroups: string[];
  /** Lines of /proc/self/mountinfo that mention the temp root. */
  mounts: string[];
  /** Containers `rm -f` could not remove. */
  containers: string[];
}

/** A temp data dir with the busybox image, the daemons started on it, and their cleanup. */
export class DaemonFixture {
  readonly dataDir: string;
  readonly runDir: string;
  /** A short random tag in every container name: cgroups are host-wide, other suites run too. */
  readonly tag: string;
  private readonly agents = new Set<AgentProcess>();
  private readonly names = new Set<string>();
  private cleaned: Leftovers | undefined;

  private constructor(readonly root: string) {
    this.dataDir = join(root, 'data');
    this.runDir = join(root, 'run');
    this.tag = `d${Math.random().toString(16).slice(2, 7)}`;
  }

  /** A temp root with data/ holding the busybox image (`feather-agent image build busybox`). */
  static async create(): Promise<DaemonFixture> {
    const fx = new DaemonFixture(mkdtempSync(join(tmpdir(), 'feather-daemon-')));
    mkdirSync(fx.runDir, { recursive: true });
    const built = await fx.cli(['image', 'build', 'busybox', '--json']);
    if (built.code !== 0) throw new Error(`feather-agent image build busybox failed (${built.code}): ${built.stderr}`);
    return fx;
  }

  /** A container name unique to this run (`<tag>-<s>`), remembered for the leftover checks. */
  name(s: string): string {
    const n = `${this.tag}-${s}`;
    this.names.add(n);
    return n;
  }

  /** `feather-agent --data-dir <data> ...args`, to completion. */
  async cli(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
    const child = spawn(process.execPath, [CLI, '--data-dir', this.dataDir, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FEATHER_RUN_DIR: this.runDir, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timer);
    return { code, stdout, stderr };
  }

  /** `feather-agent ps [--all] --json`. */
  async ps(all = true): Promise<PsEntry[]> {
    const r = await this.cli(['ps', ...(all ? ['--all'] : []), '--json']);
    if (r.code !== 0) throw new Error(`feather-agent ps failed (${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as PsEntry[];
  }

  /** Spawn `feather-agent daemon` on this data dir; by default wait until it is up and connected. */
  async startDaemon(opts: DaemonStart): Promise<AgentProcess> {
    const metricsPort = opts.metricsPort ?? (await freePort());
    const args = [
      CLI, '--data-dir', this.dataDir, 'daemon',
      '--broker', opts.broker.url, '--device-id', opts.deviceId, '--metrics-port', String(metricsPort),
    ];
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      FEATHER_RUN_DIR: this.runDir,
      FEATHER_METRICS_HOST: '127.0.0.1',
      FEATHER_LOG_LEVEL: 'info',
      ...opts.env,
    };
    for (const k of ['FEATHER_DATA_DIR', 'FEATHER_CONFIG', 'FEATHER_DEVICE_ID', 'FEATHER_BROKER_URL']) delete env[k];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const agent = new AgentProcess(child, metricsPort, `daemon ${opts.deviceId} #${this.agents.size + 1}`);
    this.agents.add(agent);
    if (opts.wait ?? true) {
      await agent.waitForLog('agent.started', { ms: 20_000 });
      await agent.waitForLog('mqtt.connected', { ms: 20_000 });
    }
    return agent;
  }

  /** Every daemon's last log lines, for failure messages. */
  tails(n = 25): string {
    return [...this.agents].map((a) => a.tail(n)).join('\n');
  }

  /** Where the image store keeps things, for looking at images/ and tmp/. */
  listDir(sub: 'images' | 'tmp' | 'cache' | 'containers'): string[] {
    const dir = join(this.dataDir, sub);
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  }

  /**
   * Stop every daemon (SIGTERM), remove every container (`rm -f`), then report what is left of
   * ours on the host (cgroups, mounts) and delete the temp root. Safe to call twice.
   */
  async cleanup(): Promise<Leftovers> {
    if (this.cleaned) return this.cleaned;
    await Promise.all([...this.agents].map((a) => a.stop()));
    // FEATHER_TEST_DAEMON_LOGS=DIR keeps every daemon's stderr, for reading after a run.
    const keep = process.env['FEATHER_TEST_DAEMON_LOGS'];
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const a of this.agents) writeFileSync(join(keep, `${this.tag}-${a.label.replace(/[^A-Za-z0-9_.-]+/g, '_')}.log`), a.lines.join('\n') + '\n');
    }
    const containers: string[] = [];
    if (existsSync(this.dataDir)) {
      const list = await this.ps(true).catch(() => [] as PsEntry[]);
      for (const c of list) {
        this.names.add(c.name);
        const r = await this.cli(['rm', '-f', c.name]);
        if (r.code !== 0) containers.push(`${c.name}: ${r.stderr.trim()}`);
      }
    }
    const cgroups = [...this.names].flatMap((n) => cgroupLeftovers(n));
    const mounts = hostMountsUnder(this.root);
    if (mounts.length === 0) rmSync(this.root, { recursive: true, force: true });
    this.cleaned = { cgroups, mounts, containers };
    return this.cleaned;
  }
}

// ---- a person with mosquitto_pub and mosquitto_sub ----------------------------------------------

export interface Reply {
  requestId: string | null;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

export const json = (m: SubMessage): Record<string, unknown> => JSON.parse(m.text) as Record<string, unknown>;

/** Is this message's payload a JSON object (and not, say, protobuf telemetry)? */
function jsonOrUndefined(m: SubMessage): Record<string, unknown> | undefined {
  if (!m.text.trimStart().startsWith('{')) return undefined;
  try { return JSON.parse(m.text) as Record<string, unknown>; } catch { return undefined; }
}

/**
 * One mosquitto_sub on `feather/v1/dev/<id>/#` (replies, events, status, reported, telemetry),
 * and mosquitto_pub for commands, the way the README tells a person to drive an agent.
 */
export class Device {
  readonly prefix: string;
  private seq = 0;

  private constructor(readonly broker: { port: number }, readonly id: string, readonly sub: MosquittoSub, private readonly context: () => string) {
    this.prefix = `feather/v1/dev/${id}`;
  }

  static async open(broker: { port: number }, id: string, opts: { v5?: boolean; context?: () => string } = {}): Promise<Device> {
    const sub = await MosquittoSub.start(broker, [`feather/v1/dev/${id}/#`], { v5: opts.v5 ?? false });
    return new Device(broker, id, sub, opts.context ?? (() => ''));
  }

  topic(leaf: string): string { return `${this.prefix}/${leaf}`; }

  /** Position in the received messages, to wait for those that come after it. */
  mark(): number { return this.sub.messages.length; }

  /** A fresh requestId. */
  requestId(what: string): string { return `${what}-${++this.seq}-${Math.random().toString(36).slice(2, 6)}`; }

  /** Publish raw bytes (or text) as a person would with mosquitto_pub. */
  publish(leaf: string, payload: string | Buffer, opts: PubOptions = {}): Promise<void> {
    return mosquittoPub(this.broker, this.topic(leaf), payload, opts);
  }

  /** The first message after `after` that matches. */
  async waitFor(what: string, match: (m: SubMessage) => boolean, opts: { after?: number; ms?: number } = {}): Promise<SubMessage> {
    const after = opts.after ?? 0;
    try {
      return await this.sub.waitFor((m) => this.sub.messages.indexOf(m) >= after && match(m), opts.ms ?? 15_000);
    } catch (e: unknown) {
      throw new Error(`${what}: ${e instanceof Error ? e.message.slice(0, 3000) : String(e)}\n${this.context()}`);
    }
  }

  /** Send `verb` with `body` (a requestId is added when missing) and wait for its reply. */
  async ask(verb: string, body: Record<string, unknown> = {}, ms = 30_000): Promise<Reply> {
    const requestId = typeof body['requestId'] === 'string' ? body['requestId'] : this.requestId(verb);
    const after = this.mark();
    await this.publish(`cmd/${verb}`, JSON.stringify({ requestId, ...body }));
    return this.reply(requestId, { after, ms });
  }

  /** The reply to `requestId` (after `after`). */
  async reply(requestId: string, opts: { after?: number; ms?: number } = {}): Promise<Reply> {
    const m = await this.waitFor(`reply to ${requestId}`, (x) => x.topic === this.topic(`reply/${requestId}`), opts);
    return json(m) as unknown as Reply;
  }

  /** An event of `type` (after `after`) whose body matches. */
  async event(type: string, match: (e: Record<string, unknown>) => boolean = () => true, opts: { after?: number; ms?: number } = {}): Promise<Record<string, unknown>> {
    const m = await this.waitFor(`event ${type}`, (x) => {
      if (x.topic !== this.topic('events')) return false;
      const e = jsonOrUndefined(x);
      return e !== undefined && e['type'] === type && match(e);
    }, opts);
    return json(m);
  }

  /** A status message (after `after`) with this `online` value. */
  async status(online: boolean, opts: { after?: number; ms?: number } = {}): Promise<SubMessage> {
    return this.waitFor(`status online=${online}`, (x) => x.topic === this.topic('status') && jsonOrUndefined(x)?.['online'] === online, opts);
  }

  /** A `reported` document (after `after`) that matches. */
  async reported(what: string, match: (r: ReportedDoc) => boolean, opts: { after?: number; ms?: number } = {}): Promise<ReportedDoc> {
    const m = await this.waitFor(`reported: ${what}`, (x) => {
      if (x.topic !== this.topic('reported')) return false;
      const r = jsonOrUndefined(x) as ReportedDoc | undefined;
      return r !== undefined && match(r);
    }, opts);
    return json(m) as unknown as ReportedDoc;
  }

  /** Messages received on `leaf` (after `after`). */
  on(leaf: string, after = 0): SubMessage[] {
    return this.sub.messages.slice(after).filter((m) => m.topic === this.topic(leaf));
  }

  close(): Promise<void> { return this.sub.stop(); }
}

export interface ReportedDoc {
  generation: number;
  reason?: string;
  workloads: Array<{ name: string; phase: string; reason?: string; restarts: number; exitCode?: number }>;
}

// ---- image tarballs over HTTP ------------------------------------------------------------------

export interface Trickle {
  /** Sent at once. */
  firstBytes: number;
  /** Then this many bytes … */
  chunkBytes: number;
  /** … every this many ms. */
  everyMs: number;
}

export interface ServedRequest {
  path: string;
  range: string | undefined;
  status: number;
  /** Bytes written before the response ended or the client went away. */
  sent: number;
  done: boolean;
}

/** A local HTTP server for image pulls: GET with `Range: bytes=N-` (206), optionally trickled. */
export class ImageServer {
  readonly requests: ServedRequest[] = [];
  private readonly files = new Map<string, { data: Buffer; trickle: Trickle | undefined }>();

  private constructor(private readonly server: http.Server) {}

  static async start(): Promise<ImageServer> {
    let self: ImageServer | undefined;
    const server = http.createServer((req, res) => self?.handle(req, res));
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
    self = new ImageServer(server);
    return self;
  }

  get port(): number { return (this.server.address() as AddressInfo).port; }

  /** Serve `data` at `path`; returns its URL. */
  serve(path: string, data: Buffer, trickle?: Trickle): string {
    this.files.set(path, { data, trickle });
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Change (or end, with undefined) the trickle of a served path. */
  setTrickle(path: string, trickle: Trickle | undefined): void {
    const f = this.files.get(path);
    if (f) f.trickle = trickle;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const file = this.files.get(path);
    const rec: ServedRequest = { path, range: req.headers.range, status: 200, sent: 0, done: false };
    this.requests.push(rec);
    if (!file || req.method !== 'GET') {
      rec.status = file ? 405 : 404;
      res.writeHead(rec.status).end();
      return;
    }
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      start = Number(m[1]);
      if (start >= file.data.length) {
        rec.status = 416;
        res.writeHead(416, { 'Content-Range': `bytes */${file.data.length}` }).end();
        return;
      }
      rec.status = 206;
      res.writeHead(206, {
        'Content-Type': 'application/gzip', 'Content-Length': file.data.length - start,
        'Content-Range': `bytes ${start}-${file.data.length - 1}/${file.data.length}`, 'Accept-Ranges': 'bytes',
      });
    } else {
      res.writeHead(200, { 'Content-Type': 'application/gzip', 'Content-Length': file.data.length, 'Accept-Ranges': 'bytes' });
    }
    const body = file.data.subarray(start);
    const trickle = file.trickle;
    if (!trickle) {
      res.end(body, () => { rec.sent = body.length; rec.done = true; });
      return;
    }
    let off = Math.min(trickle.firstBytes, body.length);
    res.write(body.subarray(0, off));
    rec.sent = off;
    const timer = setInterval(() => {
      if (res.destroyed) { clearInterval(timer); return; }
      const next = Math.min(off + trickle.chunkBytes, body.length);
      res.write(body.subarray(off, next));
      rec.sent = next;
      off = next;
      if (off >= body.length) { clearInterval(timer); res.end(() => { rec.done = true; }); }
    }, trickle.everyMs);
    res.once('close', () => clearInterval(timer));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---- tarballs ----------------------------------------------------------------------------------

const BUSYBOX = existsSync('/bin/busybox') ? '/bin/busybox' : '/usr/bin/busybox';
const APPLETS = ['sh', 'sleep', 'cat', 'echo', 'ls', 'sha256sum', 'hostname', 'true', 'false'];

/**
 * A busybox root filesystem with `files` added (path -> content, mode 0644): a few applets only,
 * enough for the tests' shells. Files make each image's digest distinct.
 */
export async function busyboxImageTarball(dest: string, files: Record<string, Buffer | string> = {}): Promise<{ sha256: string; bytes: number }> {
  const entries: TarEntrySpec[] = [
    ...rootfsSkeleton(),
    { type: 'dir', path: 'bin' },
    { type: 'file', path: 'bin/busybox', source: BUSYBOX, mode: 0o755 },
    ...APPLETS.map((a): TarEntrySpec => ({ type: 'symlink', path: `bin/${a}`, target: 'busybox' })),
    { type: 'dir', path: 'data' },
    ...Object.entries(files).map(([path, data]): TarEntrySpec => ({ type: 'file', path, data, mode: 0o644 })),
  ];
  return writeTarball(dest, entries);
}

/**
 * Debian's /usr/bin/python3 with its libraries and loader (the `host` recipe's bundle) plus the
 * few stdlib files its start needs (encodings, and os.py and lib-dynload as the landmarks that
 * tell it where its prefix is). Run it as `python3 -S -I`: `_socket`, `time` and `sys` are built
 * in, which is all a statsd sender needs.
 */
export async function pythonImageTarball(dest: string): Promise<{ sha256: string; bytes: number }> {
  const acc = new Map<string, TarEntrySpec>();
  for (const e of rootfsSkeleton()) acc.set(e.path, e);
  for (const e of await hostBundleEntries(['/usr/bin/python3'])) acc.set(e.path, e);
  const lib = '/usr/lib/python3.11';
  for (const p of [`${lib}/encodings/__init__.py`, `${lib}/encodings/aliases.py`, `${lib}/encodings/utf_8.py`, `${lib}/os.py`, `${lib}/lib-dynload`]) {
    await addHostPath(p, acc);
  }
  return writeTarball(dest, acc.values());
}

/**
 * What the daemon test files share: one DaemonFixture and one ImageServer, made before the file's
 * tests and removed after them. Read `fx` and `http` inside a test (before() has run by then).
 */
export function daemonTestbed(t: Test): { readonly fx: DaemonFixture; readonly http: ImageServer } {
  let fx: DaemonFixture | undefined;
  let http: ImageServer | undefined;
  t.before(async () => {
    fx = await DaemonFixture.create();
    http = await ImageServer.start();
  });
  t.teardown(async () => {
    await fx?.cleanup();
    await http?.close();
  });
  const made = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`daemonTestbed: ${what} is read before the file's before() made it`);
    return v;
  };
  return { get fx() { return made(fx, 'fx'); }, get http() { return made(http, 'http'); } };
}
