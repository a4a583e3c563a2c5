// The statsd socket for real: a unix datagram socket bound through koffi, datagrams sent by
// another process (python3's socket module: Debian's busybox nc has no -U, and socat is not
// installed by default), including a flood.
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { LatencyTracker } from '../../agent/telemetry/latency.js';
import { createAgentMetrics } from '../../agent/telemetry/metrics.js';
import { StatsdIngest } from '../../agent/telemetry/statsd-ingest.js';
import { openStatsdSocket, type StatsdDriver, type StatsdSocket } from '../../agent/telemetry/statsd-socket.js';
import { configureLogging } from '../../shared/logging.js';

configureLogging({ level: 'error' });

const SENDER = `
import json, os, socket, sys
path, count, mode, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]).encode()
uid = int(sys.argv[5])
if uid >= 0:
    os.setgid(uid); os.setuid(uid)
os.chdir(os.path.dirname(path))  # a relative name: sun_path holds 107 bytes at most
name = os.path.basename(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setblocking(mode == 'block')
ok = eagain = errors = 0
last = 0
for i in range(count):
    try:
        s.sendto(payload, name); ok += 1
    except BlockingIOError:
        eagain += 1
    except OSError as e:
        errors += 1; last = e.errno
print(json.dumps({"ok": ok, "eagain": eagain, "errors": errors, "errno": last}))
`;

interface SendResult { ok: number; eagain: number; errors: number; errno: number }

/** Send `count` copies of `payload` from a python3 process; never blocks our event loop. */
function send(path: string, count: number, payload: string, opts: { mode?: 'block' | 'nonblock'; uid?: number } = {}): Promise<SendResult> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', SENDER, path, String(count), opts.mode ?? 'block', JSON.stringify(payload), String(opts.uid ?? -1)],
      { timeout: 120_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`sender failed: ${err.message} ${stderr}`));
        else resolve(JSON.parse(stdout) as SendResult);
      });
  });
}

async function until(what: string, fn: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'feather-statsd-'));
  chmodSync(dir, 0o755); // an unprivileged sender must reach the socket
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

for (const driver of ['poll', 'timer'] as StatsdDriver[]) {
  t.test(`${driver}: datagrams from another process become per-container, per-model latency`, async (t) => {
    const runDir = tempDir(t);
    const registry = new Registry();
    const metrics = createAgentMetrics(registry, { defaultMetrics: false });
    const latency = new LatencyTracker();
    const ingest = new StatsdIngest({ runDir, latency, metrics, socket: { driver } });
    metrics.setStatsdSource(ingest);
    t.teardown(() => ingest.close());

    const camPath = ingest.attach('cam');
    const otherPath = ingest.attach('other');
    t.equal(camPath, join(runDir, 'containers', 'cam', 'statsd.sock'));
    t.ok(statSync(camPath).isSocket());
    t.equal(statSync(camPath).mode & 0o777, 0o666);

    const dgram = 'inference.latency:10|ms|#model:yolo\ninference.latency:30|ms|#model:yolo\ninference.latency:5|ms\nnot statsd\nqueue.depth:3|g';
    const r1 = await send(camPath, 50, dgram);
    const r2 = await send(otherPath, 7, 'inference.latency:100|ms|#model:bert');
    t.same([r1.ok, r2.ok], [50, 7]);
    await until('all datagrams', () => ingest.counts().every(([name, c]) => c.datagrams === (name === 'cam' ? 50 : 7)));

    const cam = latency.snapshot('cam');
    t.same(cam.map((s) => [s.model, s.count]), [['default', 50], ['yolo', 100]]);
    const yolo = cam.find((s) => s.model === 'yolo');
    t.ok(yolo !== undefined && Math.abs(yolo.p99 - 0.03) < 0.0003, 'p99 of yolo is 30 ms');
    t.same(latency.snapshot('other').map((s) => [s.model, s.count]), [['bert', 7]]);
    const counts = new Map(ingest.counts());
    t.same(counts.get('cam'), { datagrams: 50, truncated: 0, throttled: 0, malformed: 50, ignored: 50, overflow: 0 });

    const text = await registry.metrics();
    t.ok(text.includes('feather_inference_requests_total{container="cam",model="yolo"} 100'));
    t.ok(text.includes('feather_inference_latency_seconds_count{container="other",model="bert"} 7'));

    ingest.detach('cam', { forget: true });
    t.notOk(existsSync(camPath), 'socket file removed on detach');
    t.same(latency.snapshot('cam'), []);
  });
}

const notRoot = process.getuid?.() !== 0 ? 'needs root to run the sender as nobody' : false;
t.test('an unprivileged uid can send (mode 0666); with mode 0600 it cannot', { skip: notRoot }, async (t) => {
  const dir = tempDir(t);
  let got = 0;
  const open = openStatsdSocket(join(dir, 'open.sock'), () => { got++; });
  const closed = openStatsdSocket(join(dir, 'closed.sock'), () => { got += 1000; }, { mode: 0o600 });
  t.teardown(() => { open.close(); closed.close(); });
  const ok = await send(open.path, 3, 'inference.latency:1|ms', { uid: 65534 });
  const denied = await send(closed.path, 3, 'inference.latency:1|ms', { uid: 65534 });
  t.same(ok, { ok: 3, eagain: 0, errors: 0, errno: 0 });
  t.same(denied, { ok: 0, eagain: 0, errors: 3, errno: 13 }, 'EACCES');
  await until('3 datagrams', () => got === 3);
  t.equal(got, 3);
});

t.test('a path longer than sun_path is bound through /proc/self/fd', async (t) => {
  const dir = tempDir(t);
  const deep = join(dir, 'x'.repeat(60), 'y'.repeat(60));
  mkdirSync(deep, { recursive: true, mode: 0o755 });
  const path = join(deep, 'statsd.sock');
  t.ok(Buffer.byteLength(path) > 107);
  let got = 0;
  const s = openStatsdSocket(path, () => { got++; });
  t.teardown(() => s.close());
  t.ok(statSync(path).isSocket(), 'the socket is at the long path');
  await send(path, 5, 'a:1|c');
  await until('5 datagrams', () => got === 5);
  t.pass('delivered');
});

t.test('oversized datagrams are dropped whole and counted; a stale socket is replaced; a file is not', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'statsd.sock');
  const lengths: number[] = [];
  const first = openStatsdSocket(path, (d) => { lengths.push(d.length); }, { maxDatagramBytes: 1024 });
  first.close();
  t.notOk(existsSync(path));
  // A socket file left by a crashed agent: bind over it.
  const stale = openStatsdSocket(path, () => undefined);
  const s = openStatsdSocket(path, (d) => { lengths.push(d.length); }, { maxDatagramBytes: 1024 });
  t.teardown(() => s.close());
  stale.close(); // not ours any more: must not unlink the new socket
  t.ok(existsSync(path), 'closing the replaced socket left the new one alone');
  await send(path, 2, 'x'.repeat(1025));
  await send(path, 1, 'y'.repeat(1024));
  await until('3 datagrams seen', () => s.stats().truncated + s.stats().received === 3);
  t.same(lengths, [1024]);
  t.match(s.stats(), { received: 1, truncated: 2, bytes: 1024 });

  const file = join(dir, 'not-a-socket');
  writeFileSync(file, 'precious');
  t.throws(() => openStatsdSocket(file, () => undefined), { code: 'CONFLICT' });
  t.ok(existsSync(file), 'a regular file is never removed');
});

t.test('a blocking sender loses nothing: backpressure, not loss', async (t) => {
  const dir = tempDir(t);
  let got = 0;
  const s = openStatsdSocket(join(dir, 'statsd.sock'), () => { got++; }, { maxDatagramsPerSecond: 10_000 });
  t.teardown(() => s.close());
  const r = await send(s.path, 20_000, 'inference.latency:12.7|ms|#model:resnet18', { mode: 'block' });
  t.equal(r.ok, 20_000);
  await until('every datagram', () => got === 20_000);
  t.ok(s.stats().throttled > 0, 'the sender was held back by the rate limit');
});

for (const driver of ['poll', 'timer'] as StatsdDriver[]) {
  t.test(`${driver}: a flood of 100k datagrams: bounded work per loop turn, the loop keeps turning, every datagram accounted for`, async (t) => {
    const dir = tempDir(t);
    const batch = 64;
    let perTurn = 0;
    let maxPerTurn = 0;
    let got = 0;
    const s: StatsdSocket = openStatsdSocket(join(dir, 'statsd.sock'), () => { got++; perTurn++; }, { batch, driver, maxDatagramsPerSecond: 50_000 });
    t.teardown(() => s.close());

    // A setImmediate chain runs once per loop turn: the datagrams handled between two of its
    // runs were handled in one turn.
    let turning = true;
    const turn = (): void => {
      maxPerTurn = Math.max(maxPerTurn, perTurn);
      perTurn = 0;
      if (turning) setImmediate(turn);
    };
    setImmediate(turn);
    // Timers must keep firing while the socket is flooded.
    let ticks = 0;
    const ticker = setInterval(() => { ticks++; }, 5);
    const lag = monitorEventLoopDelay({ resolution: 5 });
    lag.enable();

    const started = Date.now();
    const r = await send(s.path, 100_000, 'inference.latency:12.7|ms|#model:resnet18', { mode: 'nonblock' });
    const floodMs = Date.now() - started;
    const ticksDuringFlood = ticks;
    await until('the queue to drain', () => got === r.ok);
    turning = false;
    clearInterval(ticker);
    lag.disable();

    t.equal(r.ok + r.eagain, 100_000, 'every send either went in or was refused by the kernel');
    t.equal(r.errors, 0);
    t.equal(s.stats().received, r.ok, 'everything the kernel accepted reached the handler: no silent loss');
    t.equal(s.stats().truncated, 0);
    const perTurnBound = driver === 'poll' ? batch : Math.ceil((50_000 * 20) / 1000);
    t.ok(maxPerTurn <= perTurnBound, `at most ${perTurnBound} datagrams in one loop turn (saw ${maxPerTurn})`);
    t.ok(ticksDuringFlood > 0, `a 5 ms timer kept firing during the flood (${ticksDuringFlood} times)`);
    t.comment(`${driver}: flood ${floodMs} ms; sender: ${r.ok} accepted, ${r.eagain} refused (EAGAIN); agent: ${s.stats().received} received, throttled ${s.stats().throttled}x; event-loop delay max ${(lag.max / 1e6).toFixed(1)} ms, p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms`);
  });
}

t.test('a handler that throws is counted; the socket keeps reading', async (t) => {
  const dir = tempDir(t);
  let calls = 0;
  const s = openStatsdSocket(join(dir, 'statsd.sock'), () => {
    calls++;
    if (calls === 1) throw new Error('boom');
  });
  t.teardown(() => s.close());
  await send(s.path, 3, 'a:1|c');
  await until('3 datagrams', () => calls === 3);
  t.match(s.stats(), { received: 3, errors: 1 });
});
