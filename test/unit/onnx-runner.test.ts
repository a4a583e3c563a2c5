// The runner's parts on the host: options, StatsD lines and batching, the load loop, the engine
// (a real onnxruntime session on a generated model) and the HTTP API on a unix socket.
import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BadInput, Exclusive, OrtEngine, prng, sessionOptions, syntheticTensor } from '../../runner/engine.js';
import { LatencySamples, percentileSorted, runLoad } from '../../runner/load.js';
import { DEFAULTS, UsageError, nameFromPath, parseListen, parseOptions } from '../../runner/options.js';
import { createApi } from '../../runner/server.js';
import { StatsdClient, latencyLine, type DatagramSink, type SendOutcome } from '../../runner/statsd.js';
import { tinyMlp, writeModel } from '../helpers/onnx-models.js';

t.test('options: flags, then FEATHER_* env, then defaults', async (t) => {
  const o = parseOptions(['--model-name', 'resnet18', '--listen', '8080'], {});
  t.same(o, {
    model: '/models/resnet18', modelName: 'resnet18', listen: { kind: 'tcp', host: '0.0.0.0', port: 8080 }, rate: undefined,
    durationS: 0, warmup: 10, threads: 1, spinning: false, statsd: '/run/feather/statsd.sock', flushMs: 100,
    maxDatagramBytes: DEFAULTS.maxDatagramBytes, seed: 1,
  });
  const env = { FEATHER_MODEL: '/m/yolo/model.onnx', FEATHER_RATE: '50', FEATHER_THREADS: '2', FEATHER_SPINNING: '1', FEATHER_STATSD: 'off' };
  const e = parseOptions([], env);
  t.match(e, { model: '/m/yolo/model.onnx', modelName: 'yolo', rate: 50, threads: 2, spinning: true, statsd: undefined });
  t.equal(parseOptions(['--threads=4'], env).threads, 4, 'a flag beats the environment');
  t.equal(parseOptions(['--models-dir', '/srv/m', '--model-name', 'a', '--rate', '1'], {}).model, '/srv/m/a');
  t.equal(parseOptions(['--model', '/x/y.onnx', '--model-name', 'custom', '--rate', '1'], {}).modelName, 'custom');
});

t.test('options: what is refused', async (t) => {
  const bad: [string[], RegExp][] = [
    [['--rate', '1'], /name a model/],
    [['--model-name', 'a'], /nothing to do/],
    [['--model-name', 'a', '--rate', '0'], /--rate takes a number/],
    [['--model-name', 'a', '--rate', 'fast'], /--rate/],
    [['--model-name', 'a', '--rate', '1', '--threads', '1.5'], /--threads takes an integer/],
    [['--model-name', 'a b', '--rate', '1'], /model name/],
    [['--model', '/m/x:y.onnx', '--rate', '1'], /model name "x:y"/],
    [['--model-name', 'a', '--listen', 'relative/sock'], /must be absolute/],
    [['--model-name', 'a', '--listen', '70000'], /--listen takes an integer/],
    [['--model-name', 'a', '--rate', '1', '--bogus'], /unknown argument/],
    [['--model-name'], /needs a value/],
    [['--model-name', 'a', '--rate', '1', '--spinning=maybe'], /--spinning/],
  ];
  for (const [argv, re] of bad) t.throws(() => parseOptions(argv, {}), { name: 'UsageError', message: re }, argv.join(' '));
  t.ok(new UsageError('x') instanceof Error);
});

t.test('options: listen specs and names from paths', async (t) => {
  t.same(parseListen('/run/api/runner.sock'), { kind: 'unix', path: '/run/api/runner.sock' });
  t.same(parseListen('127.0.0.1:9000'), { kind: 'tcp', host: '127.0.0.1', port: 9000 });
  t.same(parseListen('9000'), { kind: 'tcp', host: '0.0.0.0', port: 9000 });
  t.equal(nameFromPath('/models/resnet18/model.onnx'), 'resnet18');
  t.equal(nameFromPath('/models/resnet18'), 'resnet18');
  t.equal(nameFromPath('/models/resnet18/'), 'resnet18');
  t.equal(nameFromPath('/data/bert-base.onnx'), 'bert-base');
});

class FakeSink implements DatagramSink {
  sent: string[] = [];
  refuse = false;
  closed = false;
  send(data: Buffer): SendOutcome {
    if (this.refuse) return 'dropped';
    this.sent.push(data.toString());
    return 'sent';
  }
  close(): void { this.closed = true; }
}

t.test('statsd: the line the agent parses, µs precision', async (t) => {
  t.equal(latencyLine(12.7, 'resnet18'), 'inference.latency:12.7|ms|#model:resnet18');
  t.equal(latencyLine(0.123456, 'm'), 'inference.latency:0.123|ms|#model:m');
  t.equal(latencyLine(3, 'm'), 'inference.latency:3|ms|#model:m');
  t.equal(latencyLine(-1, 'm'), 'inference.latency:0|ms|#model:m');
});

t.test('statsd: flushMs 0 sends a datagram per line; batches never pass maxDatagramBytes', async (t) => {
  const one = new FakeSink();
  const c1 = new StatsdClient(one, { flushMs: 0, maxDatagramBytes: 4096 });
  c1.add('a'); c1.add('b');
  t.same(one.sent, ['a', 'b']);

  const sink = new FakeSink();
  const c = new StatsdClient(sink, { flushMs: 60_000, maxDatagramBytes: 20 });
  for (let i = 0; i < 7; i++) c.add(`line-${i}`); // 6 bytes each, "\n" between: 3 lines = 20 bytes
  t.same(sink.sent, ['line-0\nline-1\nline-2', 'line-3\nline-4\nline-5'], 'full batches go at once');
  c.close();
  t.same(sink.sent.at(-1), 'line-6', 'close flushes the rest');
  t.ok(sink.closed);
  t.ok(sink.sent.every((d) => Buffer.byteLength(d) <= 20));
  t.same(c.counts(), { lines: 7, datagrams: 3, droppedLines: 0 });
});

t.test('statsd: the timer flushes a partial batch; refused datagrams are counted, not retried', async (t) => {
  const sink = new FakeSink();
  const c = new StatsdClient(sink, { flushMs: 5, maxDatagramBytes: 4096 });
  c.add('x'); c.add('y');
  t.same(sink.sent, []);
  await new Promise((r) => setTimeout(r, 50));
  t.same(sink.sent, ['x\ny']);
  sink.refuse = true;
  c.add('z');
  c.flush();
  t.same(c.counts(), { lines: 3, datagrams: 1, droppedLines: 1 });
});

t.test('load: percentiles, the reservoir, the abort, late slots', async (t) => {
  t.equal(percentileSorted([1, 2, 3, 4], 50), 2);
  t.equal(percentileSorted([1, 2, 3, 4], 99), 4);
  t.ok(Number.isNaN(percentileSorted([], 50)));
  const s = new LatencySamples(10, prng(3));
  for (let i = 1; i <= 1000; i++) s.add(i);
  const sum = s.summary();
  t.equal(sum.count, 1000);
  t.equal(sum.maxMs, 1000);
  t.equal(sum.meanMs, 500.5);
  t.ok(sum.p50Ms >= 1 && sum.p50Ms <= 1000, 'a reservoir of 10 still gives a percentile');

  const stop = new AbortController();
  let n = 0;
  const seen: number[] = [];
  const r = await runLoad({
    rate: 1000, durationS: 0, signal: stop.signal, onLatency: (ms) => seen.push(ms),
    inferOnce: async () => { if (++n === 25) stop.abort(); return n; },
  });
  t.equal(r.count, 25, 'duration 0 runs until aborted');
  t.same(seen, Array.from({ length: 25 }, (_v, i) => i + 1));
  t.equal(r.p50Ms, 13);

  // A fake clock: each inference takes 25 ms against a 10 ms period, so every slot is late.
  let clock = 0;
  const slow = await runLoad({
    rate: 100, durationS: 1, signal: new AbortController().signal, now: () => clock,
    inferOnce: async () => { clock += 25; return 25; },
  });
  t.equal(slow.count, 40, '1 s of 25 ms inferences');
  t.equal(slow.late, 40, 'no catch-up burst: each late slot restarts the schedule');
});

t.test('exclusive: overlapping inferences take turns', async (t) => {
  const ex = new Exclusive();
  const order: string[] = [];
  const job = (name: string, ms: number) => ex.run(async () => {
    order.push(`${name}+`);
    await new Promise((r) => setTimeout(r, ms));
    order.push(`${name}-`);
  });
  await Promise.all([job('a', 20), job('b', 1), ex.run(async () => { throw new Error('c fails'); }).catch(() => order.push('c!')), job('d', 1)]);
  t.same(order, ['a+', 'a-', 'b+', 'b-', 'c!', 'd+', 'd-']);
});

t.test('engine: explicit threads and no spinning in the session options', async (t) => {
  t.match(sessionOptions({ threads: 1, spinning: false }), {
    intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
  t.match(sessionOptions({ threads: 4, spinning: true }), { intraOpNumThreads: 4, extra: { session: { intra_op: { allow_spinning: '1' } } } });
  const a = syntheticTensor({ name: 'x', type: 'float32', shape: ['N', 3] }, 5);
  t.same(a.dims, [1, 3], 'free dimensions become 1');
  t.same([...(a.data as Float32Array)], [...(syntheticTensor({ name: 'x', type: 'float32', shape: [1, 3] }, 5).data as Float32Array)], 'same seed, same data');
  t.same(syntheticTensor({ name: 'i', type: 'int64', shape: [2] }, 1).type, 'int64');
  t.throws(() => syntheticTensor({ name: 's', type: 'string', shape: [1] }, 1), BadInput);
});

t.test('engine and HTTP API on a real model', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'feather-runner-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tiny = tinyMlp();
  const w = writeModel(dir, 'tiny', tiny.bytes);
  const engine = await OrtEngine.load(w.file, { threads: 1, spinning: false, seed: 1 });
  t.teardown(() => engine.close());
  t.same(engine.inputs, [{ name: 'x', type: 'float32', shape: [1, 4] }]);

  const refusals: [unknown, RegExp][] = [
    [{ inputs: 3 }, /must be \{"inputs"/],
    [{ inputs: {} }, /input x is missing/],
    [{ inputs: { x: { data: [1, 2, 3, 4] }, z: {} } }, /no input "z"/],
    [{ inputs: { x: { dims: [1, 4], data: [1, 2, 3] } } }, /3 values for dims \[1,4\]/],
    [{ inputs: { x: { dims: [4], data: [1, 2, 3, 4] } } }, /1 dims given, the model has 2/],
    [{ inputs: { x: { dims: [1, 4], data: [1, 2, 3, 'x'] } } }, /finite numbers/],
    [{ inputs: { x: [1, 2, 3, 4] } }, /expected \{"dims"/],
  ];
  for (const [body, re] of refusals) t.throws(() => engine.feedsFromJson(body), { name: 'BadInput', message: re }, JSON.stringify(body));
  t.equal(engine.feedsFromJson(undefined), engine.syntheticFeeds(), 'no body: the synthetic input');
  const feeds = engine.feedsFromJson({ inputs: { x: { data: [1, 2, 3, 4] } } });
  t.same(feeds['x']?.dims, [1, 4], 'dims default to the model\'s');

  const sock = join(dir, 'api.sock');
  const latencies: number[] = [];
  const ex = new Exclusive();
  const server = createApi({ engine, model: 'tiny', exclusive: (fn) => ex.run(fn), onLatency: (ms) => latencies.push(ms), maxBodyBytes: 1024 });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const call = (method: string, path: string, body = ''): Promise<{ status: number; json: Record<string, unknown> }> => new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, method, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(body);
  });

  t.match(await call('GET', '/healthz'), { status: 200, json: { status: 'ok', model: 'tiny' } });
  const ok = await call('POST', '/v1/infer', JSON.stringify({ inputs: { x: { dims: [1, 4], data: [0.1, 0.2, 0.3, 0.4] } } }));
  t.equal(ok.status, 200);
  t.match(ok.json, { model: 'tiny', outputs: { y: { type: 'float32', dims: [1, 3] } } });
  t.equal(latencies.length, 1);
  t.equal(ok.json['latencyMs'], Math.round((latencies[0] as number) * 1000) / 1000);
  t.match(await call('POST', '/v1/infer', '{nope'), { status: 400, json: { error: { code: 'BAD_REQUEST', message: /not JSON/ } } });
  t.match(await call('POST', '/v1/infer', JSON.stringify({ inputs: { x: { data: [1] } } })), { status: 400, json: { error: { code: 'BAD_REQUEST' } } });
  t.match(await call('POST', '/v1/infer', 'x'.repeat(2000)), { status: 413 });
  t.match(await call('GET', '/v1/infer'), { status: 405 });
  t.match(await call('GET', '/nope'), { status: 404, json: { error: { code: 'NOT_FOUND' } } });
  t.equal(latencies.length, 1, 'refused requests report no latency');
});

t.test('the runner is self-contained: it imports only node:*, onnxruntime-node, koffi and itself', async (t) => {
  const dir = fileURLToPath(new URL('../../runner/', import.meta.url));
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  t.ok(files.includes('main.ts'));
  for (const f of files) {
    const src = readFileSync(join(dir, f), 'utf8');
    const specs = [...src.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm)].map((m) => m[1] ?? m[2] ?? '');
    const foreign = specs.filter((s) => !(s.startsWith('node:') || s === 'onnxruntime-node' || s === 'koffi' || /^\.\/[a-z-]+\.js$/.test(s)));
    t.same(foreign, [], `${f} imports nothing from the rest of the project`);
  }
});
