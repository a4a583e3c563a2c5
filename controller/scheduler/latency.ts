// Measured latency, indexed once per scheduling pass: the expected p95 of a model at a precision
// on a device (its own latest measurement, else the median of the latest measurements on devices
// of its board class), and whether a device broke an objective over a window.
import type { Measurement, Precision } from '../model/types.js';

interface ModelIndex {
  /** deviceId -> measurements, oldest first. */
  series: Map<string, Measurement[]>;
  /** deviceId -> latest p95. */
  byDevice: Map<string, number>;
  /** boardClass -> median of its devices' latest p95. */
  byClass: Map<string, number>;
}

/** Latency counts in steps of 25%: noise between boards of one class does not reorder them. */
export const LATENCY_STEP = 1.25;
/** Bucket of an unknown latency: after every measured one. */
export const UNKNOWN_BUCKET = 1_000_000;
const LOG_STEP = Math.log(LATENCY_STEP);

export function latencyBucket(p95Ms: number | undefined): number {
  if (p95Ms === undefined || Number.isNaN(p95Ms)) return UNKNOWN_BUCKET;
  return Math.max(0, Math.floor(Math.log(Math.max(p95Ms, 0.01) / 0.01) / LOG_STEP));
}

export interface Breach {
  samples: number;
  /** The lowest p95 in the window: every sample was above the objective. */
  minP95Ms: number;
}

/** Expected p95 (NaN: unknown) and its bucket, per device index of a pass. */
export interface LatencyTable {
  est: Float64Array;
  bucket: Float64Array;
}

/** What the index needs to know of the pass's devices. */
export interface DeviceIndex {
  nodes: readonly { i: number; cls: number }[];
  byId: ReadonlyMap<string, { i: number }>;
  /** Board class names by index (node.cls). */
  classes: readonly string[];
}

function median(xs: number[]): number {
  xs.sort((a, b) => a - b);
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? (xs[mid] as number) : ((xs[mid - 1] as number) + (xs[mid] as number)) / 2;
}

export class LatencyIndex {
  /** model -> precision -> index. */
  private readonly models = new Map<string, Map<Precision, ModelIndex>>();
  private readonly tables = new Map<ModelIndex, LatencyTable>();

  constructor(measurements: readonly Measurement[], private readonly devices?: DeviceIndex) {
    const classOf = new Map<ModelIndex, Map<string, string>>();
    for (const m of measurements) {
      if (!(m.count > 0) || !Number.isFinite(m.p95Ms)) continue;
      let byPrecision = this.models.get(m.model);
      if (!byPrecision) { byPrecision = new Map(); this.models.set(m.model, byPrecision); }
      let idx = byPrecision.get(m.precision);
      if (!idx) {
        idx = { series: new Map(), byDevice: new Map(), byClass: new Map() };
        byPrecision.set(m.precision, idx);
        classOf.set(idx, new Map());
      }
      const s = idx.series.get(m.deviceId);
      if (s) s.push(m); else idx.series.set(m.deviceId, [m]);
    }
    for (const byPrecision of this.models.values()) {
      for (const idx of byPrecision.values()) {
        const perClass = new Map<string, number[]>();
        for (const [deviceId, s] of idx.series) {
          if (s.length > 1) s.sort((a, b) => a.at - b.at || a.p95Ms - b.p95Ms);
          const latest = s[s.length - 1] as Measurement;
          idx.byDevice.set(deviceId, latest.p95Ms);
          const xs = perClass.get(latest.boardClass);
          if (xs) xs.push(latest.p95Ms); else perClass.set(latest.boardClass, [latest.p95Ms]);
        }
        for (const [cls, xs] of perClass) idx.byClass.set(cls, median(xs));
      }
    }
  }

  private index(model: string, precision: Precision): ModelIndex | undefined {
    return this.models.get(model)?.get(precision);
  }

  /** Expected p95 per device of the pass, computed once per model and precision. */
  table(model: string, precision: Precision): LatencyTable | undefined {
    const idx = this.index(model, precision);
    if (!idx || !this.devices) return undefined;
    let t = this.tables.get(idx);
    if (!t) {
      const n = this.devices.nodes.length;
      t = { est: new Float64Array(n), bucket: new Float64Array(n) };
      const perClass = this.devices.classes.map((c) => idx.byClass.get(c) ?? NaN);
      for (const node of this.devices.nodes) t.est[node.i] = perClass[node.cls] as number;
      for (const [deviceId, p95] of idx.byDevice) {
        const node = this.devices.byId.get(deviceId);
        if (node) t.est[node.i] = p95;
      }
      let lastIn = NaN;
      let lastOut = UNKNOWN_BUCKET;
      for (let i = 0; i < n; i++) {
        const e = t.est[i] as number;
        if (e !== lastIn) { lastIn = e; lastOut = latencyBucket(e); }
        t.bucket[i] = lastOut;
      }
      this.tables.set(idx, t);
    }
    return t;
  }

  /** Expected p95 on a device: its own latest, else its board class's median, else undefined. */
  estimate(model: string, precision: Precision, deviceId: string, boardClass: string): number | undefined {
    const idx = this.index(model, precision);
    return idx ? idx.byDevice.get(deviceId) ?? idx.byClass.get(boardClass) : undefined;
  }

  /** The device's own latest p95 for the model, if measured. */
  measured(model: string, precision: Precision, deviceId: string): number | undefined {
    return this.index(model, precision)?.byDevice.get(deviceId);
  }

  /**
   * Whether the model broke `objectiveMs` on the device over the window (now - windowMs, now]:
   * at least `minSamples` measurements in it, every one above the objective.
   */
  breach(model: string, precision: Precision, deviceId: string, objectiveMs: number, now: number, windowMs: number, minSamples: number): Breach | undefined {
    const s = this.index(model, precision)?.series.get(deviceId);
    if (!s) return undefined;
    let samples = 0;
    let minP95 = Infinity;
    for (let i = s.length - 1; i >= 0; i--) {
      const m = s[i] as Measurement;
      if (m.at > now) continue;
      if (m.at <= now - windowMs) break;
      if (m.p95Ms <= objectiveMs) return undefined;
      samples++;
      minP95 = Math.min(minP95, m.p95Ms);
    }
    return samples >= minSamples ? { samples, minP95Ms: minP95 } : undefined;
  }
}
