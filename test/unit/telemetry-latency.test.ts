import t from 'tap';
import { LatencySketch, LatencyTracker, MAX_LATENCY_S, MIN_LATENCY_S } from '../../agent/telemetry/latency.js';

/** A seeded PRNG (mulberry32) so the distributions are the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Nearest-rank quantile of raw samples: the reference the sketch must be within 1 % of. */
function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

/** For t.ok(...within(…)): true when actual is within rel of expected, and a message saying so. */
function within(actual: number, expected: number, rel: number, msg: string): [boolean, string] {
  return [Math.abs(actual - expected) <= rel * expected, `${msg}: ${actual} vs ${expected} (±${rel * 100}%)`];
}

t.test('uniform 1..1000 ms: p50/p95/p99 within 1 % of 500/950/990 ms', async (t) => {
  const tr = new LatencyTracker({ now: () => 1000 });
  for (let ms = 1; ms <= 1000; ms++) tr.record('c', 'm', ms / 1000);
  const [s] = tr.snapshot('c');
  t.ok(s);
  if (!s) return;
  t.ok(...within(s.p50, 0.5, 0.01, 'p50'));
  t.ok(...within(s.p95, 0.95, 0.01, 'p95'));
  t.ok(...within(s.p99, 0.99, 0.01, 'p99'));
  t.equal(s.count, 1000);
  t.equal(s.windowCount, 1000);
});

t.test('known distributions: sketch quantiles within 1 % of the exact sample quantiles', async (t) => {
  const rand = rng(42);
  const gaussian = (): number => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const dists: Record<string, () => number> = {
    // mean 20 ms
    exponential: () => -Math.log(1 - rand()) * 0.02,
    // median 15 ms, heavy right tail
    lognormal: () => Math.exp(Math.log(0.015) + 0.6 * gaussian()),
    // two modes: 90 % fast (5 ms), 10 % slow (200 ms)
    bimodal: () => (rand() < 0.9 ? 0.005 * (1 + 0.1 * gaussian()) : 0.2 * (1 + 0.1 * gaussian())),
  };
  for (const [name, draw] of Object.entries(dists)) {
    const sketch = new LatencySketch(60_000, 6, 0.01);
    const raw: number[] = [];
    for (let i = 0; i < 50_000; i++) {
      const v = Math.max(MIN_LATENCY_S, draw());
      raw.push(v);
      sketch.record(v, 0);
    }
    raw.sort((a, b) => a - b);
    const qs = [0.5, 0.95, 0.99];
    const { values, windowCount } = sketch.quantiles(qs, 0);
    t.equal(windowCount, 50_000, `${name} count`);
    qs.forEach((q, i) => t.ok(...within(values[i] ?? NaN, exactQuantile(raw, q), 0.0101, `${name} p${q * 100}`)));
  }
  // And against the theory: exponential quantiles are -ln(1-q)·mean (sampling error, 3 %).
  const sketch = new LatencySketch(60_000, 6, 0.01);
  for (let i = 0; i < 200_000; i++) sketch.record(dists['exponential']?.() ?? 0, 0);
  const { values } = sketch.quantiles([0.5, 0.95, 0.99], 0);
  t.ok(...within(values[0] ?? NaN, -Math.log(0.5) * 0.02, 0.03, 'exp theory p50'));
  t.ok(...within(values[1] ?? NaN, -Math.log(0.05) * 0.02, 0.03, 'exp theory p95'));
  t.ok(...within(values[2] ?? NaN, -Math.log(0.01) * 0.02, 0.03, 'exp theory p99'));
});

t.test('the window slides: old samples leave, the total count stays', async (t) => {
  let now = 0;
  const tr = new LatencyTracker({ windowMs: 60_000, slots: 6, now: () => now });
  for (let i = 0; i < 100; i++) tr.record('c', 'm', 0.1);
  now = 30_000;
  for (let i = 0; i < 100; i++) tr.record('c', 'm', 0.001);
  let [s] = tr.snapshot('c');
  t.equal(s?.windowCount, 200);
  t.ok(...within(s?.p99 ?? NaN, 0.1, 0.01, 'slow samples still in the window'));
  now = 65_000; // the slot of t=0..10 s has left the window
  [s] = tr.snapshot('c');
  t.equal(s?.windowCount, 100);
  t.ok(...within(s?.p99 ?? NaN, 0.001, 0.01, 'only the fast ones remain'));
  t.equal(s?.count, 200);
  now = 200_000;
  [s] = tr.snapshot('c');
  t.same([s?.windowCount, s?.p50, s?.count], [0, 0, 200], 'empty window: zeros, count kept');
});

t.test('sample rates weigh counts', async (t) => {
  const tr = new LatencyTracker({ now: () => 0 });
  tr.record('c', 'm', 0.01, 10);
  tr.record('c', 'm', 0.02, 10);
  const [s] = tr.snapshot('c');
  t.equal(s?.count, 20);
  t.equal(s?.windowCount, 20);
});

t.test('per container and per model, sorted by model; a bounded number of models', async (t) => {
  const tr = new LatencyTracker({ now: () => 0, maxModels: 3 });
  t.ok(tr.record('a', 'yolo', 0.01));
  t.ok(tr.record('a', 'default', 0.02));
  t.ok(tr.record('b', 'resnet', 0.03));
  t.ok(tr.record('a', 'bert', 0.04));
  t.notOk(tr.record('a', 'fourth', 0.05), 'a fourth model is refused');
  t.ok(tr.record('a', 'yolo', 0.01), 'known models still record');
  t.same(tr.snapshot('a').map((s) => s.model), ['bert', 'default', 'yolo']);
  t.same(tr.snapshot('b').map((s) => s.model), ['resnet']);
  t.same(tr.snapshot('nobody'), []);
  tr.forget('a');
  t.same(tr.snapshot('a'), []);
  t.same(tr.containers(), ['b']);
});

t.test('values outside [1 µs, 1000 s] are clamped, junk is ignored', async (t) => {
  const sk = new LatencySketch(60_000, 6, 0.01);
  sk.record(0, 0);
  sk.record(1e9, 0);
  sk.record(Number.NaN, 0);
  sk.record(0.01, 0, 0);
  const { values, windowCount } = sk.quantiles([0.01, 1], 0);
  t.equal(windowCount, 2);
  t.ok(...within(values[0] ?? NaN, MIN_LATENCY_S, 0.01, 'low clamp'));
  t.ok(...within(values[1] ?? NaN, MAX_LATENCY_S, 0.01, 'high clamp'));
});
