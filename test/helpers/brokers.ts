// Real MQTT brokers for integration tests, and the real mosquitto clients to drive them.
// (a) aedes in this process on a free loopback port (MQTT 3.1.1 only);
// (b) Debian's mosquitto (MQTT 5) as a child process with a generated config.
// Both set TCP_NODELAY on the sockets they accept (noDelay: false to measure Nagle).
// A broker can be killed and started again on the same port (reconnect tests).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Aedes } from 'aedes';

export type BrokerKind = 'aedes' | 'mosquitto';

export interface TestBroker {
  readonly kind: BrokerKind;
  readonly port: number;
  readonly url: string;
  /** The newest MQTT version it speaks: 4 (3.1.1) or 5. */
  readonly maxProtocol: 4 | 5;
  readonly running: boolean;
  /** Kill it (mosquitto: SIGKILL; aedes: every connection dropped, listener closed). */
  kill(): Promise<void>;
  /** Start it again on the same port. */
  restart(): Promise<void>;
  /** kill() and clean up; safe to call twice. */
  close(): Promise<void>;
}

export interface BrokerOptions {
  /** Default true: TCP_NODELAY on accepted sockets. */
  noDelay?: boolean;
  port?: number;
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve); });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(25);
  }
}

/** Poll `cond` every 20 ms until it holds; throws naming `what` after `ms`. */
export async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export async function startAedes(opts: BrokerOptions = {}): Promise<TestBroker> {
  const port = opts.port ?? (await freePort());
  let broker: Aedes | undefined;
  let server: net.Server | undefined;
  const sockets = new Set<net.Socket>();

  const start = async (): Promise<void> => {
    const b = await Aedes.createBroker();
    const srv = net.createServer({ noDelay: opts.noDelay ?? true }, (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      b.handle(socket);
    });
    await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(port, '127.0.0.1', resolve); });
    broker = b;
    server = srv;
  };
  const kill = async (): Promise<void> => {
    const b = broker;
    const srv = server;
    broker = undefined;
    server = undefined;
    for (const s of sockets) s.destroy();
    sockets.clear();
    if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
    if (b) await new Promise<void>((resolve) => b.close(() => resolve()));
  };
  await start();
  return {
    kind: 'aedes', port, url: `mqtt://127.0.0.1:${port}`, maxProtocol: 4,
    get running() { return broker !== undefined; },
    kill,
    restart: start,
    close: kill,
  };
}

export async function startMosquitto(opts: BrokerOptions = {}): Promise<TestBroker> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'feather-mosquitto-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    `set_tcp_nodelay ${opts.noDelay === false ? 'false' : 'true'}`,
    'max_queued_messages 100000',
    'max_inflight_messages 0',
    'persistence false',
    'log_type error',
    'log_type warning',
    'log_dest stderr',
    '',
  ].join('\n'));
  let child: ChildProcess | undefined;
  let stderr = '';

  const start = async (): Promise<void> => {
    const c = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    c.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    const exited = new Promise<never>((_, reject) => c.once('exit', (code) => reject(new Error(`mosquitto exited (${code}): ${stderr}`))));
    child = c;
    await Promise.race([waitForPort(port), exited]);
    exited.catch(() => undefined);
  };
  const kill = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGKILL');
    await gone;
  };
  await start();
  return {
    kind: 'mosquitto', port, url: `mqtt://127.0.0.1:${port}`, maxProtocol: 5,
    get running() { return child !== undefined; },
    kill,
    restart: start,
    close: async () => { await kill(); rmSync(dir, { recursive: true, force: true }); },
  };
}

export const BROKERS: ReadonlyArray<{ kind: BrokerKind; start: (opts?: BrokerOptions) => Promise<TestBroker> }> = [
  { kind: 'aedes', start: startAedes },
  { kind: 'mosquitto', start: startMosquitto },
];

// ---- a TCP proxy that can cut the line (a network blip, without restarting the broker) -------

export interface CuttableProxy {
  readonly port: number;
  readonly url: string;
  /** Drop every connection and refuse new ones until up(). */
  down(): void;
  up(): void;
  close(): Promise<void>;
}

export async function startProxy(target: { port: number }): Promise<CuttableProxy> {
  const pairs = new Set<net.Socket>();
  let refusing = false;
  const server = net.createServer({ noDelay: true }, (client) => {
    if (refusing) { client.destroy(); return; }
    const upstream = net.connect({ port: target.port, host: '127.0.0.1', noDelay: true });
    for (const s of [client, upstream]) {
      pairs.add(s);
      s.on('error', () => { client.destroy(); upstream.destroy(); });
      s.on('close', () => { pairs.delete(s); client.destroy(); upstream.destroy(); });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  const down = (): void => { refusing = true; for (const s of pairs) s.destroy(); };
  return {
    port: addr.port,
    url: `mqtt://127.0.0.1:${addr.port}`,
    down,
    up() { refusing = false; },
    async close() { down(); await new Promise<void>((resolve) => server.close(() => resolve())); },
  };
}

// ---- the mosquitto command-line clients ---------------------------------------------------------

export interface PubOptions {
  qos?: 0 | 1;
  retain?: boolean;
  /** Speak MQTT 5 (-V mqttv5). */
  v5?: boolean;
  /** MQTT 5 publish properties: [['response-topic', 'x'], ['correlation-data', 'c1'], ['content-type', '…']]. */
  properties?: Array<[string, string]>;
}

/** mosquitto_pub: the payload goes through stdin (-s), so any bytes work; '' sends an empty message (-n). */
export async function mosquittoPub(broker: { port: number }, topic: string, payload: string | Buffer, opts: PubOptions = {}): Promise<void> {
  const args = ['-h', '127.0.0.1', '-p', String(broker.port), '-t', topic, '-q', String(opts.qos ?? 1)];
  if (opts.retain) args.push('-r');
  if (opts.v5) args.push('-V', 'mqttv5');
  for (const [name, value] of opts.properties ?? []) args.push('-D', 'publish', name, value);
  const empty = payload.length === 0;
  args.push(empty ? '-n' : '-s');
  const child = spawn('mosquitto_pub', args, { stdio: [empty ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  if (!empty) child.stdin?.end(payload);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  if (code !== 0) throw new Error(`mosquitto_pub ${args.join(' ')} exited ${code}: ${stderr}`);
}

export interface SubMessage {
  topic: string;
  retain: boolean;
  /** MQTT 5 content type ('' when absent or under 3.1.1). */
  contentType: string;
  /** MQTT 5 correlation data as text ('' when absent); tests use printable ones. */
  correlationData: string;
  payload: Buffer;
  text: string;
}

/** A received message's payload as a JSON object. */
export function messageJson(m: SubMessage): Record<string, unknown> {
  return JSON.parse(m.text) as Record<string, unknown>;
}

/** mosquitto_sub in the background; every message is kept and can be awaited. */
export class MosquittoSub {
  readonly messages: SubMessage[] = [];
  private buffered = '';
  private readonly waiters = new Set<() => void>();
  private readonly probeTopic: string;

  private constructor(private readonly child: ChildProcess, private readonly broker: { port: number }, probeTopic: string) {
    this.probeTopic = probeTopic;
    child.stdout?.on('data', (d: Buffer) => this.data(d.toString('latin1')));
  }

  /** Subscribe to `topics` and resolve once the subscription is live. */
  static async start(broker: { port: number }, topics: string[], opts: { v5?: boolean } = {}): Promise<MosquittoSub> {
    const probe = `feather-test/probe/${process.pid}/${Math.random().toString(36).slice(2)}`;
    const args = ['-h', '127.0.0.1', '-p', String(broker.port), '-q', '1', '-F', '%t\t%r\t%C\t%D\t%x'];
    if (opts.v5) args.push('-V', 'mqttv5');
    for (const t of [...topics, probe]) args.push('-t', t);
    const child = spawn('mosquitto_sub', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    const sub = new MosquittoSub(child, broker, probe);
    await sub.ready();
    return sub;
  }

  /**
   * Resolves once the subscription is live: a probe published now comes back. Call it again
   * after a broker restart (mosquitto_sub reconnects and subscribes again by itself, a bit later).
   */
  async ready(timeoutMs = 15_000): Promise<void> {
    const seen = this.messages.length;
    const deadline = Date.now() + timeoutMs;
    const back = (m: SubMessage): boolean => m.topic === this.probeTopic && this.messages.indexOf(m) >= seen;
    while (!this.messages.some(back)) {
      if (Date.now() > deadline) throw new Error('mosquitto_sub did not become ready');
      await mosquittoPub(this.broker, this.probeTopic, 'probe', { qos: 0 }).catch(() => undefined);
      await this.waitForAny(back, 200).catch(() => undefined);
    }
  }

  private data(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      const [topic = '', retain = '0', contentType = '', correlationData = '', hex = ''] = line.split('\t');
      const payload = Buffer.from(hex, 'hex');
      this.messages.push({ topic, retain: retain === '1', contentType, correlationData, payload, text: payload.toString('utf8') });
    }
    for (const w of this.waiters) w();
  }

  /** The first message (already received or coming), readiness probes aside, that matches. */
  waitFor(match: (m: SubMessage) => boolean, timeoutMs = 10_000): Promise<SubMessage> {
    return this.waitForAny((m) => m.topic !== this.probeTopic && match(m), timeoutMs);
  }

  private async waitForAny(match: (m: SubMessage) => boolean, timeoutMs: number): Promise<SubMessage> {
    const found = this.messages.find(match);
    if (found) return found;
    return new Promise<SubMessage>((resolve, reject) => {
      const check = (): void => {
        const m = this.messages.find(match);
        if (m) { cleanup(); resolve(m); }
      };
      const timer = setTimeout(() => { cleanup(); reject(new Error(`no matching message within ${timeoutMs} ms; got ${this.messages.filter((m) => m.topic !== this.probeTopic).map((m) => `${m.topic} ${m.text.slice(0, 120)}`).join(' | ') || 'nothing'}`)); }, timeoutMs);
      const cleanup = (): void => { clearTimeout(timer); this.waiters.delete(check); };
      this.waiters.add(check);
    });
  }

  /** Messages other than the readiness probes. */
  get received(): SubMessage[] { return this.messages.filter((m) => m.topic !== this.probeTopic); }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await gone;
  }

  get port(): number { return this.broker.port; }
}
