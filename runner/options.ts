// The runner's settings: command-line flags first, then FEATHER_* environment variables, then
// defaults. Pure (no file system): main.ts resolves the model path afterwards.
import { isAbsolute, join } from 'node:path';

export type ListenSpec =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number };

export interface RunnerOptions {
  /** A model file, or a directory holding model.onnx (or a single *.onnx). */
  model: string;
  /** The `model` tag of every latency line. */
  modelName: string;
  /** Serve HTTP here (unix socket path, or [host:]port). */
  listen: ListenSpec | undefined;
  /** Steady load: inferences per second. */
  rate: number | undefined;
  /** Steady load: seconds to run; 0 runs until SIGTERM/SIGINT. */
  durationS: number;
  /** Inferences before serving or loading, not reported. */
  warmup: number;
  /** onnxruntime intra-op threads (1: the calling thread only, no pool). */
  threads: number;
  /** onnxruntime's thread-pool spinning (session.intra_op.allow_spinning); off by default. */
  spinning: boolean;
  /** The StatsD unix datagram socket; undefined = do not report. */
  statsd: string | undefined;
  /** Latency lines are batched into one datagram for at most this long (0: one per inference). */
  flushMs: number;
  /** Largest datagram sent (the agent drops datagrams above 8 KiB). */
  maxDatagramBytes: number;
  /** Seed of the synthetic input (the same input for every generated request). */
  seed: number;
}

export const DEFAULTS = {
  modelsDir: '/models',
  statsd: '/run/feather/statsd.sock',
  durationS: 0,
  warmup: 10,
  threads: 1,
  flushMs: 100,
  maxDatagramBytes: 4096,
  seed: 1,
} as const;

/** What statsd tag values and the agent's model names allow. */
export const MODEL_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export const USAGE = `usage: feather-runner [options]
  --model PATH          model file, or a directory with model.onnx     FEATHER_MODEL
  --model-name NAME     latency tag; alone: PATH = /models/NAME         FEATHER_MODEL_NAME
  --models-dir DIR      where --model-name alone looks (/models)        FEATHER_MODELS_DIR
  --listen SOCK|PORT    serve HTTP on a unix socket path or [host:]port FEATHER_LISTEN
  --rate N              steady load of N inferences per second          FEATHER_RATE
  --duration S          seconds of load (0: until SIGTERM)              FEATHER_DURATION_S
  --warmup N            unreported inferences first (10)                FEATHER_WARMUP
  --threads N           onnxruntime intra-op threads (1)                FEATHER_THREADS
  --spinning            let onnxruntime's thread pool spin (off)        FEATHER_SPINNING=1
  --statsd PATH|off     StatsD socket (/run/feather/statsd.sock)        FEATHER_STATSD
  --flush-ms N          batch latency lines for N ms (100; 0: no batch) FEATHER_FLUSH_MS
  --seed N              synthetic input seed (1)                        FEATHER_SEED
At least one of --listen and --rate is required.`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const FLAGS: Readonly<Record<string, { env: string; boolean?: true }>> = {
  '--model': { env: 'FEATHER_MODEL' },
  '--model-name': { env: 'FEATHER_MODEL_NAME' },
  '--models-dir': { env: 'FEATHER_MODELS_DIR' },
  '--listen': { env: 'FEATHER_LISTEN' },
  '--rate': { env: 'FEATHER_RATE' },
  '--duration': { env: 'FEATHER_DURATION_S' },
  '--warmup': { env: 'FEATHER_WARMUP' },
  '--threads': { env: 'FEATHER_THREADS' },
  '--spinning': { env: 'FEATHER_SPINNING', boolean: true },
  '--statsd': { env: 'FEATHER_STATSD' },
  '--flush-ms': { env: 'FEATHER_FLUSH_MS' },
  '--seed': { env: 'FEATHER_SEED' },
};

function number(flag: string, raw: string, opts: { min: number; max: number; integer?: boolean }): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || v < opts.min || v > opts.max || (opts.integer === true && !Number.isInteger(v))) {
    const kind = opts.integer === true ? 'an integer' : 'a number';
    throw new UsageError(`${flag} takes ${kind} from ${opts.min} to ${opts.max}, not ${JSON.stringify(raw)}`);
  }
  return v;
}

export function parseListen(raw: string): ListenSpec {
  if (raw.includes('/')) {
    if (!isAbsolute(raw)) throw new UsageError(`--listen: a unix socket path must be absolute, not ${JSON.stringify(raw)}`);
    return { kind: 'unix', path: raw };
  }
  const colon = raw.lastIndexOf(':');
  const host = colon < 0 ? '0.0.0.0' : raw.slice(0, colon);
  const port = number('--listen', colon < 0 ? raw : raw.slice(colon + 1), { min: 1, max: 65535, integer: true });
  if (host === '') throw new UsageError(`--listen: empty host in ${JSON.stringify(raw)}`);
  return { kind: 'tcp', host, port };
}

/** The model's name from its path: /models/<name>/model.onnx, /models/<name>, or <name>.onnx. */
export function nameFromPath(model: string): string {
  const parts = model.split('/').filter((s) => s !== '');
  const last = parts[parts.length - 1] ?? '';
  if (last === 'model.onnx') return parts[parts.length - 2] ?? 'model';
  return last.endsWith('.onnx') ? last.slice(0, -'.onnx'.length) : last;
}

/** Flags and environment into options; UsageError says what is wrong. `--help` is the caller's. */
export function parseOptions(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): RunnerOptions {
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const spec = FLAGS[flag];
    if (spec === undefined) throw new UsageError(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
    if (spec.boolean === true) {
      given.set(flag, eq > 0 ? arg.slice(eq + 1) : '1');
    } else if (eq > 0) {
      given.set(flag, arg.slice(eq + 1));
    } else {
      const value = argv[i + 1];
      if (value === undefined) throw new UsageError(`${flag} needs a value`);
      given.set(flag, value);
      i++;
    }
  }
  const get = (flag: string): string | undefined => {
    const v = given.get(flag) ?? env[(FLAGS[flag] as { env: string }).env];
    return v === undefined || v === '' ? undefined : v;
  };

  const name = get('--model-name');
  const modelsDir = get('--models-dir') ?? DEFAULTS.modelsDir;
  let model = get('--model');
  if (model === undefined) {
    if (name === undefined) throw new UsageError(`name a model: --model PATH or --model-name NAME\n${USAGE}`);
    model = join(modelsDir, name);
  }
  const modelName = name ?? nameFromPath(model);
  if (!MODEL_NAME.test(modelName)) {
    throw new UsageError(`model name ${JSON.stringify(modelName)}: use 1 to 64 of A-Z a-z 0-9 _ . - (set --model-name)`);
  }

  const listenRaw = get('--listen');
  const rateRaw = get('--rate');
  if (listenRaw === undefined && rateRaw === undefined) throw new UsageError(`nothing to do: give --listen, --rate or both\n${USAGE}`);
  const statsdRaw = get('--statsd') ?? DEFAULTS.statsd;
  const spinningRaw = get('--spinning');
  if (spinningRaw !== undefined && !['0', '1', 'true', 'false'].includes(spinningRaw)) {
    throw new UsageError(`--spinning / FEATHER_SPINNING takes 0, 1, true or false, not ${JSON.stringify(spinningRaw)}`);
  }
  const optional = (flag: string, fallback: number, range: { min: number; max: number; integer?: boolean }): number => {
    const raw = get(flag);
    return raw === undefined ? fallback : number(flag, raw, range);
  };

  return {
    model,
    modelName,
    listen: listenRaw === undefined ? undefined : parseListen(listenRaw),
    rate: rateRaw === undefined ? undefined : number('--rate', rateRaw, { min: 0.001, max: 100_000 }),
    durationS: optional('--duration', DEFAULTS.durationS, { min: 0, max: 365 * 86400 }),
    warmup: optional('--warmup', DEFAULTS.warmup, { min: 0, max: 100_000, integer: true }),
    threads: optional('--threads', DEFAULTS.threads, { min: 1, max: 1024, integer: true }),
    spinning: spinningRaw === '1' || spinningRaw === 'true',
    statsd: statsdRaw === 'off' ? undefined : statsdRaw,
    flushMs: optional('--flush-ms', DEFAULTS.flushMs, { min: 0, max: 60_000, integer: true }),
    maxDatagramBytes: DEFAULTS.maxDatagramBytes,
    seed: optional('--seed', DEFAULTS.seed, { min: 0, max: 2 ** 31 - 1, integer: true }),
  };
}
