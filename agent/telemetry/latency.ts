// Inference latency per container and model: p50/p95/p99 over a sliding window, plus counts.
//
// Each (container, model) keeps a small log-bucket sketch (the DDSketch idea) per time slot:
// a value v lands in bucket ceil(log_γ v) with γ = (1+α)/(1-α), and a quantile read back from a
// bucket is within α (1 %) of the true sample quantile, whatever the rate. The window is
// `slots` slots of windowMs/slots each, so it slides in slot steps: a snapshot covers the
// current slot and the slots-1 before it. Memory is bounded: values are clamped to
// [1 µs, 1000 s], which is at most ~1040 buckets per slot, and a container holds at most
// maxModels models (further models are refused and counted by the caller).
//
// A ring buffer of raw samples would be exact, but at high request rates it only holds the last
// fraction of a second of the window and misses spikes earlier in it; the sketch does not.

export interface LatencyStats {
  model: string;
  /** Seconds. 0 when the window is empty. */
  p50: number;
  p95: number;
  p99: number;
  /** Requests since the series started (sample rates applied: @0.1 counts 10). */
  count: number;
  /** Requests in the current window. */
  windowCount: number;
}

export interface LatencyOptions {
  /** Window length (default 60 000 ms). */
  windowMs?: number;
  /** Slots the window is cut into (default 6). */
  slots?: number;
  /** Relative accuracy α (default 0.01). */
  accuracy?: number;
  /** Distinct models per container; more are refused (default 16). */
  maxModels?: number;
  /** Monotonic milliseconds (default performance.now). */
  now?: () => number;
}

export const MIN_LATENCY_S = 1e-6;
export const MAX_LATENCY_S = 1e3;
export const MODEL_NAME_MAX = 64;
export const DEFAULT_MODEL = 'default';

interface Slot {
  epoch: number;
  total: number;
  buckets: Map<number, number>;
}

/** One (container, model) series. Exported for tests; use LatencyTracker. */
export class LatencySketch {
  private readonly lnGamma: number;
  private readonly gamma: number;
  private readonly slotMs: number;
  private readonly ring: Slot[];
  private total = 0;

  constructor(
    windowMs: number,
    private readonly slots: number,
    accuracy: number,
  ) {
    if (!(accuracy > 0 && accuracy < 1)) throw new RangeError('accuracy must be in (0, 1)');
    if (!(windowMs > 0) || !Number.isInteger(slots) || slots < 1) throw new RangeError('bad window');
    this.gamma = (1 + accuracy) / (1 - accuracy);
    this.lnGamma = Math.log(this.gamma);
    this.slotMs = windowMs / slots;
    this.ring = Array.from({ length: slots }, () => ({ epoch: -1, total: 0, buckets: new Map<number, number>() }));
  }

  get count(): number { return this.total; }

  record(seconds: number, nowMs: number, weight = 1): void {
    if (!Number.isFinite(seconds) || !(weight > 0)) return;
    const v = Math.min(MAX_LATENCY_S, Math.max(MIN_LATENCY_S, seconds));
    const key = Math.ceil(Math.log(v) / this.lnGamma);
    const slot = this.slotAt(nowMs);
    slot.buckets.set(key, (slot.buckets.get(key) ?? 0) + weight);
    slot.total += weight;
    this.total += weight;
  }

  /** Quantiles (q in (0,1]) over the window ending at nowMs; nearest-rank on the merged buckets. */
  quantiles(qs: readonly number[], nowMs: number): { values: number[]; windowCount: number } {
    const current = Math.floor(nowMs / this.slotMs);
    const merged = new Map<number, number>();
    let n = 0;
    for (const slot of this.ring) {
      if (slot.epoch < 0 || slot.epoch > current || current - slot.epoch >= this.slots) continue;
      for (const [k, c] of slot.buckets) merged.set(k, (merged.get(k) ?? 0) + c);
      n += slot.total;
    }
    if (n === 0) return { values: qs.map(() => 0), windowCount: 0 };
    const keys = [...merged.keys()].sort((a, b) => a - b);
    const values = qs.map((q) => {
      const target = Math.max(Number.MIN_VALUE, q * n) * (1 - 1e-12);
      let cum = 0;
      for (const k of keys) {
        cum += merged.get(k) ?? 0;
        if (cum >= target) return this.valueOf(k);
      }
      return this.valueOf(keys[keys.length - 1] ?? 0);
    });
    return { values, windowCount: n };
  }

  /** The bucket's representative: within α of every value that falls in it. */
  private valueOf(key: number): number {
    return (2 * this.gamma ** key) / (this.gamma + 1);
  }

  private slotAt(nowMs: number): Slot {
    const epoch = Math.floor(nowMs / this.slotMs);
    const index = ((epoch % this.slots) + this.slots) % this.slots;
    const slot = this.ring[index] as Slot;
    if (slot.epoch !== epoch) {
      slot.epoch = epoch;
      slot.total = 0;
      slot.buckets.clear();
    }
    return slot;
  }
}

export class LatencyTracker {
  private readonly series = new Map<string, Map<string, LatencySketch>>();
  private readonly windowMs: number;
  private readonly slots: number;
  private readonly accuracy: number;
  private readonly maxModels: number;
  private readonly now: () => number;

  constructor(opts: LatencyOptions = {}) {
    this.windowMs = opts.windowMs ?? 60_000;
    this.slots = opts.slots ?? 6;
    this.accuracy = opts.accuracy ?? 0.01;
    this.maxModels = opts.maxModels ?? 16;
    this.now = opts.now ?? (() => performance.now());
  }

  /**
   * Record one latency (seconds) with a weight (1/sample rate). Returns false, recording nothing,
   * when the container already has maxModels other models.
   */
  record(container: string, model: string, seconds: number, weight = 1): boolean {
    let models = this.series.get(container);
    if (models === undefined) {
      models = new Map();
      this.series.set(container, models);
    }
    let sketch = models.get(model);
    if (sketch === undefined) {
      if (models.size >= this.maxModels) return false;
      sketch = new LatencySketch(this.windowMs, this.slots, this.accuracy);
      models.set(model, sketch);
    }
    sketch.record(seconds, this.now(), weight);
    return true;
  }

  /** Per-model stats of one container, sorted by model; [] when it sent nothing. */
  snapshot(container: string): LatencyStats[] {
    const models = this.series.get(container);
    if (models === undefined) return [];
    const now = this.now();
    const out: LatencyStats[] = [];
    for (const [model, sketch] of models) {
      const { values, windowCount } = sketch.quantiles([0.5, 0.95, 0.99], now);
      out.push({ model, p50: values[0] ?? 0, p95: values[1] ?? 0, p99: values[2] ?? 0, count: sketch.count, windowCount });
    }
    return out.sort((a, b) => (a.model < b.model ? -1 : a.model > b.model ? 1 : 0));
  }

  containers(): string[] {
    return [...this.series.keys()];
  }

  /** Drop a container's series (it was removed). */
  forget(container: string): void {
    this.series.delete(container);
  }
}
