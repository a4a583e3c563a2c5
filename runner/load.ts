// A steady, open-loop load: one inference every 1/rate seconds for a duration (or until aborted).
// The schedule does not wait for slow inferences to catch up with a burst: when a run ends more
// than one period past its slot, the schedule restarts from now and the slot counts as late.
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoadOptions {
  rate: number;
  /** 0: until the signal aborts. */
  durationS: number;
  signal: AbortSignal;
  /** One inference; resolves with its latency in ms. */
  inferOnce: () => Promise<number>;
  onLatency?: (ms: number) => void;
  /** Monotonic ms (tests). */
  now?: () => number;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
}

export interface LoadResult extends LatencySummary {
  rate: number;
  durationS: number;
  /** Achieved inferences per second. */
  achievedRate: number;
  /** Slots started more than one period late. */
  late: number;
}

/** Nearest-rank percentile of sorted values (the definition bench/stats.ts uses). */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

/**
 * Latencies with bounded memory: every sample up to `cap`, then a uniform reservoir of `cap`
 * (a load that runs for days keeps a fair sample, not all of it).
 */
export class LatencySamples {
  private values: Float64Array;
  private n = 0;
  private sum = 0;
  private max = 0;
  private seen = 0;

  constructor(private readonly cap = 1_000_000, private readonly random: () => number = Math.random) {
    this.values = new Float64Array(Math.min(cap, 4096));
  }

  add(ms: number): void {
    this.seen++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (this.n < this.cap) {
      if (this.n === this.values.length) {
        const grown = new Float64Array(Math.min(this.cap, this.values.length * 2));
        grown.set(this.values);
        this.values = grown;
      }
      this.values[this.n++] = ms;
      return;
    }
    const j = Math.floor(this.random() * this.seen);
    if (j < this.cap) this.values[j] = ms;
  }

  summary(): LatencySummary {
    const sorted = this.values.slice(0, this.n).sort();
    const r3 = (x: number): number => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : x);
    return {
      count: this.seen,
      p50Ms: r3(percentileSorted(sorted, 50)),
      p90Ms: r3(percentileSorted(sorted, 90)),
      p99Ms: r3(percentileSorted(sorted, 99)),
      meanMs: r3(this.seen === 0 ? NaN : this.sum / this.seen),
      maxMs: r3(this.max),
    };
  }
}

async function waitUntil(t: number, now: () => number, signal: AbortSignal): Promise<void> {
  const delay = t - now();
  if (delay <= 0) return;
  try {
    await sleep(delay, undefined, { signal });
  } catch {
    /* aborted: the loop checks the signal */
  }
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const now = opts.now ?? (() => performance.now());
  const period = 1000 / opts.rate;
  const samples = new LatencySamples();
  const start = now();
  const end = opts.durationS > 0 ? start + opts.durationS * 1000 : Infinity;
  let next = start;
  let late = 0;
  while (!opts.signal.aborted) {
    await waitUntil(next, now, opts.signal);
    if (opts.signal.aborted || now() >= end) break;
    const ms = await opts.inferOnce();
    samples.add(ms);
    opts.onLatency?.(ms);
    next += period;
    const t = now();
    if (t - next > period) {
      late++;
      next = t;
    }
  }
  const elapsedS = (now() - start) / 1000;
  const summary = samples.summary();
  return {
    ...summary,
    rate: opts.rate,
    durationS: Math.round(elapsedS * 1000) / 1000,
    achievedRate: elapsedS > 0 ? Math.round((summary.count / elapsedS) * 100) / 100 : 0,
    late,
  };
}
