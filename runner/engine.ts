// The model: an onnxruntime-node session with explicit threading, a synthetic input built from
// the model's own input metadata, timed runs, and tensors to and from JSON.
import './ort-env.js';
import ort from 'onnxruntime-node';

export type Tensor = ort.Tensor;
export type Feeds = Record<string, ort.Tensor>;

export interface EngineOptions {
  /** Intra-op threads (1: run on the calling thread, no pool). */
  threads: number;
  /** Let the intra-op pool spin between ops (burns CPU to shave wake-up latency). */
  spinning: boolean;
  /** Seed of the synthetic input. */
  seed: number;
}

export interface TensorSpec {
  name: string;
  type: ort.Tensor.Type;
  /** As the model declares it: a number, or a symbolic name for a free dimension. */
  shape: (number | string)[];
}

export interface TensorJson {
  type: string;
  dims: number[];
  data: (number | string | boolean)[];
}

/** What the runner needs of a loaded model; tests fake it. */
export interface InferenceEngine {
  readonly inputs: readonly TensorSpec[];
  readonly outputs: readonly TensorSpec[];
  /** The same synthetic feeds every time (built once). */
  syntheticFeeds(): Feeds;
  /** Feeds from a request body `{"inputs": {"x": {"dims": [...], "data": [...]}}}`. */
  feedsFromJson(body: unknown): Feeds;
  /** Run once; `ms` is the wall time from the call to the outputs. */
  infer(feeds: Feeds): Promise<{ outputs: Record<string, TensorJson>; ms: number }>;
  /** Run once without converting the outputs; the wall time in ms. */
  time(feeds: Feeds): Promise<number>;
  close(): Promise<void>;
}

/**
 * One inference at a time. onnxruntime-node runs a session synchronously on the main thread
 * (after a setImmediate), so two overlapping calls would each be timed with the other's run
 * inside; taking turns here makes every reported latency the latency of its own inference.
 */
export class Exclusive {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

export class BadInput extends Error {
  override readonly name = 'BadInput';
}

/**
 * Session options. Threads are set explicitly so that a container's CPU figures mean what they
 * say: one intra-op thread by default, inter-op 1 (sequential execution), and no spinning, so
 * idle pool threads sleep rather than burning CPU the workload did not use for inference.
 */
export function sessionOptions(opts: Pick<EngineOptions, 'threads' | 'spinning'>): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: opts.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // Flattened by the binding into session config entries: session.intra_op.allow_spinning etc.
    extra: {
      session: {
        intra_op: { allow_spinning: opts.spinning ? '1' : '0' },
        inter_op: { allow_spinning: '0' },
      },
    },
  };
}

type NumericArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

const NUMERIC: Partial<Record<ort.Tensor.Type, (n: number) => NumericArray>> = {
  float32: (n) => new Float32Array(n),
  float64: (n) => new Float64Array(n),
  int8: (n) => new Int8Array(n),
  uint8: (n) => new Uint8Array(n),
  int16: (n) => new Int16Array(n),
  uint16: (n) => new Uint16Array(n),
  int32: (n) => new Int32Array(n),
  uint32: (n) => new Uint32Array(n),
};

/** Free dimensions become 1 (batch of one). */
export function concreteDims(shape: readonly (number | string)[]): number[] {
  return shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** A small deterministic generator (mulberry32): the same seed gives the same input anywhere. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A tensor of the spec's type and shape filled from `seed`: floats in [-1, 1), integers 0..9. */
export function syntheticTensor(spec: TensorSpec, seed: number): ort.Tensor {
  const dims = concreteDims(spec.shape);
  const n = product(dims);
  const next = prng(seed);
  const make = NUMERIC[spec.type];
  if (make !== undefined) {
    const data = make(n);
    const float = spec.type === 'float32' || spec.type === 'float64';
    for (let i = 0; i < n; i++) data[i] = float ? next() * 2 - 1 : Math.floor(next() * 10);
    return new ort.Tensor(spec.type, data, dims);
  }
  if (spec.type === 'int64') {
    return new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(Math.floor(next() * 10))), dims);
  }
  if (spec.type === 'bool') return new ort.Tensor('bool', Uint8Array.from({ length: n }, () => (next() < 0.5 ? 1 : 0)), dims);
  throw new BadInput(`input ${spec.name}: no synthetic data for type ${spec.type}; send inputs in the request`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One JSON input against the model's spec: dims must fit the declared shape, data its size. */
export function tensorFromJson(spec: TensorSpec, value: unknown): ort.Tensor {
  if (!isRecord(value)) throw new BadInput(`input ${spec.name}: expected {"dims": [...], "data": [...]}`);
  const data = value['data'];
  if (!Array.isArray(data)) throw new BadInput(`input ${spec.name}: "data" must be an array`);
  const rawDims = value['dims'] ?? concreteDims(spec.shape);
  if (!Array.isArray(rawDims) || !rawDims.every((d): d is number => Number.isInteger(d) && (d as number) >= 0)) {
    throw new BadInput(`input ${spec.name}: "dims" must be an array of non-negative integers`);
  }
  const dims = rawDims;
  if (spec.shape.length > 0 && dims.length !== spec.shape.length) {
    throw new BadInput(`input ${spec.name}: ${dims.length} dims given, the model has ${spec.shape.length} (${JSON.stringify(spec.shape)})`);
  }
  spec.shape.forEach((d, i) => {
    if (typeof d === 'number' && d > 0 && dims[i] !== d) throw new BadInput(`input ${spec.name}: dim ${i} is ${String(dims[i])}, the model wants ${d}`);
  });
  const n = product(dims);
  if (data.length !== n) throw new BadInput(`input ${spec.name}: ${data.length} values for dims ${JSON.stringify(dims)} (${n} needed)`);
  if (!data.every((x) => typeof x === 'number' && Number.isFinite(x))) throw new BadInput(`input ${spec.name}: "data" must hold finite numbers`);
  const nums = data as number[];
  const make = NUMERIC[spec.type];
  if (make !== undefined) {
    const arr = make(n);
    arr.set(nums);
    return new ort.Tensor(spec.type, arr, dims);
  }
  if (spec.type === 'int64') {
    if (!nums.every((x) => Number.isSafeInteger(x))) throw new BadInput(`input ${spec.name}: int64 data must be integers`);
    return new ort.Tensor('int64', BigInt64Array.from(nums, (x) => BigInt(x)), dims);
  }
  if (spec.type === 'bool') return new ort.Tensor('bool', Uint8Array.from(nums, (x) => (x !== 0 ? 1 : 0)), dims);
  throw new BadInput(`input ${spec.name}: type ${spec.type} is not accepted as JSON`);
}

export function tensorToJson(t: ort.Tensor): TensorJson {
  const src = t.data as ArrayLike<number | bigint | string | boolean>;
  const data: (number | string | boolean)[] = new Array<number | string | boolean>(src.length);
  for (let i = 0; i < src.length; i++) {
    const v = src[i] as number | bigint | string | boolean;
    data[i] = typeof v === 'bigint' ? Number(v) : v;
  }
  return { type: t.type, dims: [...t.dims], data };
}

function specs(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorSpec[] {
  return meta.map((m) => {
    if (!m.isTensor) throw new Error(`${m.name} is not a tensor; the runner handles tensor inputs and outputs only`);
    return { name: m.name, type: m.type, shape: [...m.shape] };
  });
}

export class OrtEngine implements InferenceEngine {
  private synthetic: Feeds | undefined;

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputs: readonly TensorSpec[],
    readonly outputs: readonly TensorSpec[],
    private readonly seed: number,
  ) {}

  static async load(modelPath: string, opts: EngineOptions): Promise<OrtEngine> {
    const session = await ort.InferenceSession.create(modelPath, sessionOptions(opts));
    return new OrtEngine(session, specs(session.inputMetadata), specs(session.outputMetadata), opts.seed);
  }

  syntheticFeeds(): Feeds {
    if (this.synthetic === undefined) {
      const feeds: Feeds = {};
      this.inputs.forEach((spec, i) => { feeds[spec.name] = syntheticTensor(spec, this.seed + i); });
      this.synthetic = feeds;
    }
    return this.synthetic;
  }

  feedsFromJson(body: unknown): Feeds {
    if (body === undefined || (isRecord(body) && body['inputs'] === undefined)) return this.syntheticFeeds();
    const inputs = isRecord(body) ? body['inputs'] : undefined;
    if (!isRecord(inputs)) throw new BadInput('the body must be {"inputs": {"<name>": {"dims": [...], "data": [...]}}} or empty');
    for (const name of Object.keys(inputs)) {
      if (!this.inputs.some((s) => s.name === name)) throw new BadInput(`the model has no input ${JSON.stringify(name)} (inputs: ${this.inputs.map((s) => s.name).join(', ')})`);
    }
    const feeds: Feeds = {};
    for (const spec of this.inputs) {
      if (!(spec.name in inputs)) throw new BadInput(`input ${spec.name} is missing`);
      feeds[spec.name] = tensorFromJson(spec, inputs[spec.name]);
    }
    return feeds;
  }

  async infer(feeds: Feeds): Promise<{ outputs: Record<string, TensorJson>; ms: number }> {
    const t0 = process.hrtime.bigint();
    const result = await this.session.run(feeds);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const outputs: Record<string, TensorJson> = {};
    for (const [name, value] of Object.entries(result)) outputs[name] = tensorToJson(value as ort.Tensor);
    return { outputs, ms };
  }

  async time(feeds: Feeds): Promise<number> {
    const t0 = process.hrtime.bigint();
    await this.session.run(feeds);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
