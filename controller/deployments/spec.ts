// Deployment files (featherctl apply -f deployment.yaml): YAML or JSON, parsed and validated at
// the boundary into a DeploymentSpec (../model/types.ts) with defaults filled in. A bad file fails
// as a whole with a DeploymentSpecError (code BAD_REQUEST) that lists every bad field by its path
// ("model.variants[1].sha256: …"). Unknown fields are refused: a typo must not be ignored.
// The format is documented in docs/scheduling.md.
import { parseAllDocuments } from 'yaml';
import { FeatherError } from '../../shared/errors.js';
import { parseCpus, parseMemory, validateName } from '../../shared/limits.js';
import { MAX_LAYERS } from '../../shared/protocol/layers.js';
import { DEVICE_ACCELERATOR_KINDS, MAX_ACCELERATOR_DEVICES } from '../model/accelerators.js';
import type {
  AcceleratorDevices, AcceleratorKind, Arch, DeploymentSpec, DeviceAcceleratorKind, ImageLayer, ModelBuild, ModelVariant, Precision,
  RolloutPolicy, RuntimeVariant,
} from '../model/types.js';

export const ACCELERATOR_KINDS: readonly AcceleratorKind[] = ['tensorrt', 'cuda', 'edgetpu', 'npu', 'gpu', 'cpu'];
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8'];
export const ARCHES: readonly Arch[] = ['x86_64', 'aarch64', 'riscv64'];

export const DEFAULT_STRATEGY = 'spread' as const;
export const DEFAULT_ROLLOUT: Readonly<Required<RolloutPolicy>> = { maxUnavailable: 1, canary: 1, failureThreshold: 2, minReadyS: 5 };
/** The longest `rollout.minReadyS` accepted (one hour). */
export const MAX_MIN_READY_S = 3600;
export const DEFAULT_ACCELERATORS: readonly AcceleratorKind[] = ['cpu'];
export const DEFAULT_PIDS = 256;

/** Containers are named `<deployment>-<replica>`: the name leaves room for the replica number. */
export const MAX_DEPLOYMENT_NAME = 48;
export const MAX_REPLICAS = 100_000;
export const MAX_DEPLOYMENT_FILE_BYTES = 1024 * 1024;

/** Environment variables the controller sets on every replica (see desiredFor). */
export const RESERVED_ENV = ['FEATHER_DEPLOYMENT', 'FEATHER_REPLICA', 'FEATHER_ACCELERATOR', 'FEATHER_PRECISION', 'FEATHER_MODEL_PATH'] as const;

/** A DeploymentSpec as this file returns it: every default spelled out. */
export type NormalizedDeploymentSpec = DeploymentSpec & {
  accelerators: AcceleratorKind[];
  strategy: 'spread' | 'binpack';
  rollout: Required<RolloutPolicy>;
};

export interface FieldIssue {
  /** Where in the file: "resources.memory", "model.variants[0].url"; "" for the document itself. */
  path: string;
  message: string;
}

/** A deployment file that cannot be used. Code BAD_REQUEST; `issues` names every bad field. */
export class DeploymentSpecError extends FeatherError {
  readonly issues: readonly FieldIssue[];

  constructor(issues: readonly FieldIssue[]) {
    const list = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
    super('BAD_REQUEST', `deployment rejected: ${list}; fix the file and apply it again`, { issues });
    this.name = 'DeploymentSpecError';
    this.issues = issues;
  }
}

export function isDeploymentSpecError(e: unknown): e is DeploymentSpecError {
  return e instanceof DeploymentSpecError;
}

/** Parse a file holding exactly one deployment (YAML, or JSON when it starts with `{`). */
export function parseDeployment(text: string | Buffer): NormalizedDeploymentSpec {
  const docs = decodeDocuments(text);
  if (docs.length !== 1) {
    throw new DeploymentSpecError([{ path: '', message: `the file holds ${docs.length} deployments; exactly one is expected here` }]);
  }
  return validateDeployment(docs[0]);
}

/**
 * Parse a file holding one or more deployments: YAML documents separated by `---`, a JSON object,
 * or a JSON array of objects. Issues of the second deployment are prefixed `[1].`. Names must be
 * unique in the file.
 */
export function parseDeployments(text: string | Buffer): NormalizedDeploymentSpec[] {
  const docs = decodeDocuments(text);
  if (docs.length === 0) throw new DeploymentSpecError([{ path: '', message: 'the file holds no deployment' }]);
  if (docs.length === 1) return [validateDeployment(docs[0])];
  const issues: FieldIssue[] = [];
  const out: NormalizedDeploymentSpec[] = [];
  for (const [i, doc] of docs.entries()) {
    try {
      out.push(validateDeployment(doc));
    } catch (e: unknown) {
      if (!isDeploymentSpecError(e)) throw e;
      for (const issue of e.issues) issues.push({ path: issue.path ? `[${i}].${issue.path}` : `[${i}]`, message: issue.message });
    }
  }
  const seen = new Map<string, number>();
  for (const [i, spec] of out.entries()) {
    const first = seen.get(spec.name);
    if (first !== undefined) issues.push({ path: `[${i}].name`, message: `"${spec.name}" is also the name of deployment [${first}]; names are unique` });
    else seen.set(spec.name, i);
  }
  if (issues.length > 0) throw new DeploymentSpecError(issues);
  return out;
}

/** The documents of a file, not yet validated. */
export function decodeDocuments(text: string | Buffer): unknown[] {
  const bytes = typeof text === 'string' ? Buffer.byteLength(text, 'utf8') : text.length;
  if (bytes > MAX_DEPLOYMENT_FILE_BYTES) {
    throw new DeploymentSpecError([{ path: '', message: `the file is ${bytes} bytes, more than the ${MAX_DEPLOYMENT_FILE_BYTES} accepted` }]);
  }
  const source = (typeof text === 'string' ? text : text.toString('utf8')).replace(/^\uFEFF/, '');
  const trimmed = source.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (e: unknown) {
      throw new DeploymentSpecError([{ path: '', message: `the file is not valid JSON (${e instanceof Error ? e.message : String(e)})` }]);
    }
    return Array.isArray(value) ? value : [value];
  }
  const docs = parseAllDocuments(source, { uniqueKeys: true, prettyErrors: true, version: '1.2' });
  const list = Array.isArray(docs) ? docs : [];
  const issues: FieldIssue[] = [];
  for (const [i, doc] of list.entries()) {
    for (const err of doc.errors) {
      const pos = err.linePos?.[0];
      const where = pos ? `line ${pos.line}, column ${pos.col}` : `document ${i + 1}`;
      issues.push({ path: '', message: `YAML error at ${where}: ${err.message.split('\n')[0] ?? err.message}` });
    }
  }
  if (issues.length > 0) throw new DeploymentSpecError(issues);
  // An empty document (only comments, a trailing `---`) is not a deployment.
  return list.map((doc) => doc.toJS({ maxAliasCount: 100 }) as unknown).filter((v) => v !== null && v !== undefined);
}

// ---- validation ----------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${String(v)}`;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const URL_RE = /^(https?:\/\/[^\s/]+\S*|file:\/\/\/\S*)$/;
const SHA256_RE = /^(sha256:)?[0-9a-fA-F]{64}$/;
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
const LABEL_KEY_RE = /^[A-Za-z0-9]([A-Za-z0-9_./-]{0,126}[A-Za-z0-9])?$/;

/** Collects issues; every reader returns undefined when the field is bad (and records why). */
class Checker {
  readonly issues: FieldIssue[] = [];

  add(path: string, message: string): undefined {
    this.issues.push({ path, message });
    return undefined;
  }

  object(v: unknown, path: string): Obj | undefined {
    return isObject(v) ? v : this.add(path, `must be a mapping, got ${describe(v)}`);
  }

  /** Refuse keys nobody reads. */
  keys(obj: Obj, path: string, known: readonly string[]): void {
    for (const k of Object.keys(obj)) {
      if (!known.includes(k)) this.add(join(path, k), `unknown field; known fields here: ${known.join(', ')}`);
    }
  }

  string(v: unknown, path: string, opts: { pattern?: RegExp; hint?: string; max?: number } = {}): string | undefined {
    if (typeof v !== 'string') return this.add(path, `must be a string, got ${describe(v)}${typeof v === 'number' ? ' (quote it)' : ''}`);
    if (v.length > (opts.max ?? 4096)) return this.add(path, `is longer than ${opts.max ?? 4096} characters`);
    if (opts.pattern && !opts.pattern.test(v)) return this.add(path, `${describe(v)} is not valid${opts.hint ? `: ${opts.hint}` : ''}`);
    return v;
  }

  oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T | undefined {
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      return this.add(path, `must be one of ${allowed.join(', ')}, got ${describe(v)}`);
    }
    return v as T;
  }

  /** A finite number (fractions allowed) from min to max. */
  number(v: unknown, path: string, min: number, max: number): number | undefined {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      return this.add(path, `must be a number from ${min} to ${max}, got ${describe(v)}`);
    }
    return v;
  }

  integer(v: unknown, path: string, min: number, max: number): number | undefined {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      return this.add(path, `must be a whole number from ${min} to ${max}, got ${describe(v)}`);
    }
    return v;
  }

  list(v: unknown, path: string, opts: { min: number; max: number }): unknown[] | undefined {
    if (!Array.isArray(v)) return this.add(path, `must be a list, got ${describe(v)}`);
    if (v.length < opts.min) return this.add(path, opts.min === 1 ? 'must have at least one item' : `must have at least ${opts.min} items`);
    if (v.length > opts.max) return this.add(path, `has ${v.length} items; at most ${opts.max} are allowed`);
    return v;
  }

  /** A mapping of strings; numbers and booleans are taken as their text (YAML reads `tier: 1` as a number). */
  stringMap(v: unknown, path: string, keyPattern: RegExp, keyHint: string): Record<string, string> | undefined {
    const obj = this.object(v, path);
    if (!obj) return undefined;
    const out: Record<string, string> = {};
    let ok = true;
    for (const [k, item] of Object.entries(obj)) {
      if (!keyPattern.test(k)) { this.add(join(path, k), `is not a valid key: ${keyHint}`); ok = false; continue; }
      if (typeof item === 'string') out[k] = item;
      else if (typeof item === 'number' || typeof item === 'boolean') out[k] = String(item);
      else { this.add(join(path, k), `must be a string, got ${describe(item)}`); ok = false; }
    }
    return ok ? out : undefined;
  }

  /** Run a parser from shared/limits.ts (it throws BAD_REQUEST with its own message). */
  parsed<T>(v: unknown, path: string, parse: (v: string | number) => T): T | undefined {
    if (typeof v !== 'string' && typeof v !== 'number') return this.add(path, `must be a number or a string, got ${describe(v)}`);
    try {
      return parse(v);
    } catch (e: unknown) {
      if (e instanceof FeatherError) return this.add(path, e.message);
      throw e;
    }
  }

  /** A name checked by validateName (letters, digits, _ . -; starting with a letter or digit). */
  name(v: unknown, path: string, kind: 'container' | 'image' | 'model', max = 63): string | undefined {
    try {
      const name = validateName(kind, v);
      if (name.length > max) return this.add(path, `"${name}" is longer than ${max} characters`);
      return name;
    } catch (e: unknown) {
      if (e instanceof FeatherError) return this.add(path, e.message);
      throw e;
    }
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

const TOP_FIELDS = ['name', 'model', 'runtime', 'replicas', 'selector', 'resources', 'accelerators', 'p95LatencyMs', 'strategy', 'rollout', 'buildHook'];

/** Validate an already decoded deployment; defaults filled in. */
export function validateDeployment(value: unknown): NormalizedDeploymentSpec {
  const c = new Checker();
  const obj = c.object(value, '');
  if (!obj) throw new DeploymentSpecError(c.issues);
  c.keys(obj, '', TOP_FIELDS);

  const name = obj['name'] === undefined
    ? c.add('name', 'is required (1-48 letters, digits, _ . -, starting with a letter or digit)')
    : readDeploymentName(c, obj['name']);
  const model = obj['model'] === undefined ? c.add('model', 'is required (name and variants)') : readModel(c, obj['model']);
  const runtime = obj['runtime'] === undefined ? c.add('runtime', 'is required (variants per architecture)') : readRuntime(c, obj['runtime']);

  let replicas: number | undefined;
  let selector: Record<string, string> | undefined;
  const hasReplicas = obj['replicas'] !== undefined;
  const hasSelector = obj['selector'] !== undefined;
  if (hasReplicas && hasSelector) {
    c.add('selector', 'give either replicas (a count) or selector (one replica per matching device), not both');
  } else if (!hasReplicas && !hasSelector) {
    c.add('replicas', 'is required unless selector is given (one replica per device whose labels match)');
  } else if (hasReplicas) {
    replicas = c.integer(obj['replicas'], 'replicas', 0, MAX_REPLICAS);
  } else {
    selector = c.stringMap(obj['selector'], 'selector', LABEL_KEY_RE, 'label keys are letters, digits, _ . / -');
  }

  const resources = obj['resources'] === undefined
    ? c.add('resources', 'is required (memory, e.g. 256Mi, and cpus, e.g. 0.5)')
    : readResources(c, obj['resources']);

  let accelerators: AcceleratorKind[] | undefined = [...DEFAULT_ACCELERATORS];
  if (obj['accelerators'] !== undefined) accelerators = readAccelerators(c, obj['accelerators']);

  let p95LatencyMs: number | undefined;
  if (obj['p95LatencyMs'] !== undefined) {
    const v = obj['p95LatencyMs'];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 3_600_000) {
      c.add('p95LatencyMs', `must be a number of milliseconds above 0, got ${describe(v)}`);
    } else p95LatencyMs = v;
  }

  const strategy = obj['strategy'] === undefined ? DEFAULT_STRATEGY : c.oneOf(obj['strategy'], 'strategy', ['spread', 'binpack'] as const);
  const rollout = obj['rollout'] === undefined ? { ...DEFAULT_ROLLOUT } : readRollout(c, obj['rollout']);
  const buildHook = obj['buildHook'] === undefined ? undefined : c.string(obj['buildHook'], 'buildHook', { max: 4096 });

  if (model?.build !== undefined && buildHook === undefined) {
    c.add('buildHook', 'is required when model.build lists variants to build (the command that builds them; see docs/scheduling.md, "Build hooks")');
  }

  // Cross-field: the preference list must name an accelerator the model has a variant for (or builds one).
  if (model && accelerators) {
    const withVariant = new Set([...model.variants, ...(model.build ?? [])].map((v) => v.accelerator));
    if (!accelerators.some((a) => withVariant.has(a))) {
      c.add('accelerators', `none of ${accelerators.join(', ')} has a model variant (variants exist for ${[...withVariant].join(', ')}); add one to the list or add a variant`);
    }
  }

  if (c.issues.length > 0 || !name || !model || !runtime || !resources || !accelerators || !strategy || !rollout) {
    throw new DeploymentSpecError(c.issues.length > 0 ? c.issues : [{ path: '', message: 'invalid deployment' }]);
  }
  const spec: NormalizedDeploymentSpec = { name, model, runtime, resources, accelerators, strategy, rollout };
  if (replicas !== undefined) spec.replicas = replicas;
  if (selector !== undefined) spec.selector = selector;
  if (p95LatencyMs !== undefined) spec.p95LatencyMs = p95LatencyMs;
  if (buildHook !== undefined) spec.buildHook = buildHook;
  return spec;
}

function readDeploymentName(c: Checker, v: unknown): string | undefined {
  if (typeof v !== 'string' || !NAME_RE.test(v) || v.length > MAX_DEPLOYMENT_NAME) {
    return c.add('name', `${describe(v)} is not a valid deployment name: use 1-${MAX_DEPLOYMENT_NAME} letters, digits, _ . -, starting with a letter or digit`);
  }
  return v;
}

function readArtifact(c: Checker, obj: Obj, path: string): { url: string; sha256: string } | undefined {
  const url = obj['url'] === undefined ? c.add(join(path, 'url'), 'is required (http://, https:// or file:///)')
    : c.string(obj['url'], join(path, 'url'), { max: 2048, pattern: URL_RE, hint: 'use an http://, https:// or file:/// URL' });
  const sha = obj['sha256'] === undefined ? c.add(join(path, 'sha256'), 'is required (the 64 hex digits of the SHA-256)')
    : c.string(obj['sha256'], join(path, 'sha256'), { pattern: SHA256_RE, hint: 'use the 64 hex digits of the SHA-256 (quote it in YAML)' });
  if (url === undefined || sha === undefined) return undefined;
  return { url, sha256: sha.replace(/^sha256:/, '').toLowerCase() };
}

function readModel(c: Checker, v: unknown): DeploymentSpec['model'] | undefined {
  const obj = c.object(v, 'model');
  if (!obj) return undefined;
  c.keys(obj, 'model', ['name', 'variants', 'build']);
  const name = obj['name'] === undefined ? c.add('model.name', 'is required') : c.name(obj['name'], 'model.name', 'model');
  const list = c.list(obj['variants'], 'model.variants', { min: 1, max: 64 });
  if (!list) return undefined;
  const variants: ModelVariant[] = [];
  let ok = true;
  const seen = new Map<string, number>();
  for (const [i, item] of list.entries()) {
    const path = `model.variants[${i}]`;
    const o = c.object(item, path);
    if (!o) { ok = false; continue; }
    c.keys(o, path, ['accelerator', 'precision', 'url', 'sha256']);
    const accelerator = c.oneOf(o['accelerator'], join(path, 'accelerator'), ACCELERATOR_KINDS);
    const precision = c.oneOf(o['precision'], join(path, 'precision'), PRECISIONS);
    const art = readArtifact(c, o, path);
    if (!accelerator || !precision || !art) { ok = false; continue; }
    const key = `${accelerator}/${precision}`;
    const first = seen.get(key);
    if (first !== undefined) { c.add(path, `a second ${key} variant (model.variants[${first}] is one); one variant per accelerator and precision`); ok = false; continue; }
    seen.set(key, i);
    variants.push({ accelerator, precision, ...art });
  }
  const build = obj['build'] === undefined ? [] : readBuild(c, obj['build'], seen);
  if (!build) return undefined;
  return ok && name ? (build.length > 0 ? { name, variants, build } : { name, variants }) : undefined;
}

/** model.build: variants the buildHook builds on apply (docs/scheduling.md, "Build hooks"). */
function readBuild(c: Checker, v: unknown, variants: ReadonlyMap<string, number>): ModelBuild[] | undefined {
  const list = c.list(v, 'model.build', { min: 0, max: 16 });
  if (!list) return undefined;
  const out: ModelBuild[] = [];
  let ok = true;
  const seen = new Map<string, number>();
  for (const [i, item] of list.entries()) {
    const path = `model.build[${i}]`;
    const o = c.object(item, path);
    if (!o) { ok = false; continue; }
    c.keys(o, path, ['accelerator', 'precision']);
    const accelerator = c.oneOf(o['accelerator'], join(path, 'accelerator'), ACCELERATOR_KINDS);
    const precision = c.oneOf(o['precision'], join(path, 'precision'), PRECISIONS);
    if (!accelerator || !precision) { ok = false; continue; }
    const key = `${accelerator}/${precision}`;
    const variant = variants.get(key);
    const first = seen.get(key);
    if (variant !== undefined) { c.add(path, `model.variants[${variant}] is already the ${key} variant; build it or list it, not both`); ok = false; continue; }
    if (first !== undefined) { c.add(path, `${key} is also model.build[${first}]`); ok = false; continue; }
    seen.set(key, i);
    out.push({ accelerator, precision });
  }
  return ok ? out : undefined;
}

function readRuntime(c: Checker, v: unknown): DeploymentSpec['runtime'] | undefined {
  const obj = c.object(v, 'runtime');
  if (!obj) return undefined;
  c.keys(obj, 'runtime', ['variants', 'args', 'env']);
  const list = c.list(obj['variants'], 'runtime.variants', { min: 1, max: ARCHES.length });
  let ok = list !== undefined;
  const variants: RuntimeVariant[] = [];
  const seen = new Map<Arch, number>();
  for (const [i, item] of (list ?? []).entries()) {
    const path = `runtime.variants[${i}]`;
    const o = c.object(item, path);
    if (!o) { ok = false; continue; }
    c.keys(o, path, ['arch', 'image', 'url', 'sha256', 'layers']);
    const arch = c.oneOf(o['arch'], join(path, 'arch'), ARCHES);
    // The device-side image name gets "-<12 hex of the sha256>" (desiredFor): 50 + 13 = 63.
    const image = o['image'] === undefined ? c.add(join(path, 'image'), 'is required (the image name on the device)')
      : c.name(o['image'], join(path, 'image'), 'image', 50);
    const art = readArtifact(c, o, path);
    const layers = o['layers'] === undefined ? [] : readLayers(c, o['layers'], join(path, 'layers'), art?.sha256);
    if (!arch || !image || !art || !layers) { ok = false; continue; }
    const first = seen.get(arch);
    if (first !== undefined) { c.add(join(path, 'arch'), `a second ${arch} variant (runtime.variants[${first}] is one); one image per architecture`); ok = false; continue; }
    seen.set(arch, i);
    variants.push(layers.length > 0 ? { arch, image, ...art, layers } : { arch, image, ...art });
  }
  const runtime: DeploymentSpec['runtime'] = { variants };
  if (obj['args'] !== undefined) {
    const args = c.list(obj['args'], 'runtime.args', { min: 0, max: 1024 });
    if (args) {
      const out: string[] = [];
      for (const [i, a] of args.entries()) {
        if (typeof a === 'string') out.push(a);
        else if (typeof a === 'number' || typeof a === 'boolean') out.push(String(a));
        else { c.add(`runtime.args[${i}]`, `must be a string, got ${describe(a)}`); ok = false; }
      }
      runtime.args = out;
    } else ok = false;
  }
  if (obj['env'] !== undefined) {
    const env = c.stringMap(obj['env'], 'runtime.env', ENV_KEY_RE, 'environment variable names are letters, digits and _, not starting with a digit');
    if (env) {
      for (const k of Object.keys(env)) {
        if ((RESERVED_ENV as readonly string[]).includes(k)) { c.add(`runtime.env.${k}`, 'is set by the controller on every replica; use another name'); ok = false; }
      }
      runtime.env = env;
    } else ok = false;
  }
  return ok ? runtime : undefined;
}

/**
 * A runtime variant's layers, topmost first: the contract's rules (shared/protocol/layers.ts,
 * checkLayers) checked here so a file the devices would refuse is refused at apply.
 */
function readLayers(c: Checker, v: unknown, path: string, imageSha256: string | undefined): ImageLayer[] | undefined {
  const list = c.list(v, path, { min: 0, max: MAX_LAYERS });
  if (!list) return undefined;
  const out: ImageLayer[] = [];
  let ok = true;
  const seen = new Map<string, number>();
  for (const [i, item] of list.entries()) {
    const at = `${path}[${i}]`;
    const o = c.object(item, at);
    if (!o) { ok = false; continue; }
    c.keys(o, at, ['name', 'url', 'sha256']);
    const name = o['name'] === undefined ? c.add(join(at, 'name'), 'is required (names the layer on the device, e.g. onnxruntime)') : c.name(o['name'], join(at, 'name'), 'image');
    const art = readArtifact(c, o, at);
    if (!name || !art) { ok = false; continue; }
    const first = seen.get(art.sha256);
    if (first !== undefined) { c.add(join(at, 'sha256'), `is also the sha256 of ${path}[${first}]; a layer can be stacked once`); ok = false; continue; }
    if (art.sha256 === imageSha256) { c.add(join(at, 'sha256'), 'is the sha256 of the variant\'s own image; remove the layer'); ok = false; continue; }
    seen.set(art.sha256, i);
    out.push({ name, ...art });
  }
  return ok ? out : undefined;
}

function readResources(c: Checker, v: unknown): DeploymentSpec['resources'] | undefined {
  const obj = c.object(v, 'resources');
  if (!obj) return undefined;
  c.keys(obj, 'resources', ['memory', 'cpus', 'pids', 'accelerators']);
  const memory = obj['memory'] === undefined ? c.add('resources.memory', 'is required (e.g. 256Mi)') : c.parsed(obj['memory'], 'resources.memory', parseMemory);
  const cpus = obj['cpus'] === undefined ? c.add('resources.cpus', 'is required (cores, e.g. 0.5)') : c.parsed(obj['cpus'], 'resources.cpus', parseCpus);
  const pids = obj['pids'] === undefined ? DEFAULT_PIDS : c.integer(obj['pids'], 'resources.pids', 1, 1_000_000);
  const accelerators = obj['accelerators'] === undefined ? null : readAcceleratorDevices(c, obj['accelerators']);
  if (memory === undefined || cpus === undefined || pids === undefined || accelerators === undefined) return undefined;
  const raw = obj['memory'];
  const out: DeploymentSpec['resources'] = { memory: typeof raw === 'number' ? String(raw) : String(raw).trim(), cpus, pids };
  if (accelerators !== null) out.accelerators = accelerators;
  return out;
}

/** resources.accelerators: one count for every kind, or counts per kind (docs/scheduling.md, "Accelerator devices"). */
function readAcceleratorDevices(c: Checker, v: unknown): AcceleratorDevices | undefined {
  const path = 'resources.accelerators';
  if (typeof v === 'number') return c.integer(v, path, 0, MAX_ACCELERATOR_DEVICES);
  if (!isObject(v)) return c.add(path, `must be a count of devices (0-${MAX_ACCELERATOR_DEVICES}) or a mapping of accelerator kind to count, got ${describe(v)}`);
  const out: Partial<Record<DeviceAcceleratorKind, number>> = {};
  let ok = true;
  for (const [k, item] of Object.entries(v)) {
    if (!(DEVICE_ACCELERATOR_KINDS as readonly string[]).includes(k)) {
      c.add(join(path, k), k === 'cpu' ? 'cpu is not a device a replica holds; resources.cpus counts cores' : `unknown accelerator kind; use ${DEVICE_ACCELERATOR_KINDS.join(', ')}`);
      ok = false;
      continue;
    }
    const n = c.integer(item, join(path, k), 0, MAX_ACCELERATOR_DEVICES);
    if (n === undefined) ok = false; else out[k as DeviceAcceleratorKind] = n;
  }
  return ok ? out : undefined;
}

function readAccelerators(c: Checker, v: unknown): AcceleratorKind[] | undefined {
  const list = c.list(v, 'accelerators', { min: 1, max: ACCELERATOR_KINDS.length });
  if (!list) return undefined;
  const out: AcceleratorKind[] = [];
  let ok = true;
  for (const [i, item] of list.entries()) {
    const kind = c.oneOf(item, `accelerators[${i}]`, ACCELERATOR_KINDS);
    if (!kind) { ok = false; continue; }
    if (out.includes(kind)) { c.add(`accelerators[${i}]`, `${kind} is listed twice`); ok = false; continue; }
    out.push(kind);
  }
  return ok ? out : undefined;
}

function readRollout(c: Checker, v: unknown): Required<RolloutPolicy> | undefined {
  const obj = c.object(v, 'rollout');
  if (!obj) return undefined;
  c.keys(obj, 'rollout', ['maxUnavailable', 'canary', 'failureThreshold', 'minReadyS']);
  const maxUnavailable = obj['maxUnavailable'] === undefined ? DEFAULT_ROLLOUT.maxUnavailable : c.integer(obj['maxUnavailable'], 'rollout.maxUnavailable', 1, MAX_REPLICAS);
  const canary = obj['canary'] === undefined ? DEFAULT_ROLLOUT.canary : c.integer(obj['canary'], 'rollout.canary', 0, MAX_REPLICAS);
  const failureThreshold = obj['failureThreshold'] === undefined ? DEFAULT_ROLLOUT.failureThreshold : c.integer(obj['failureThreshold'], 'rollout.failureThreshold', 1, 1_000_000);
  const minReadyS = obj['minReadyS'] === undefined ? DEFAULT_ROLLOUT.minReadyS : c.number(obj['minReadyS'], 'rollout.minReadyS', 0, MAX_MIN_READY_S);
  if (maxUnavailable === undefined || canary === undefined || failureThreshold === undefined || minReadyS === undefined) return undefined;
  return { maxUnavailable, canary, failureThreshold, minReadyS };
}

/** The spec with defaults spelled out (for specs built in code rather than parsed). */
export function withDefaults(spec: DeploymentSpec): NormalizedDeploymentSpec {
  return {
    ...spec,
    accelerators: spec.accelerators.length > 0 ? spec.accelerators : [...DEFAULT_ACCELERATORS],
    strategy: spec.strategy ?? DEFAULT_STRATEGY,
    rollout: rolloutWithDefaults(spec.rollout),
  };
}

/** A rollout policy with every field spelled out (a spec stored before `minReadyS` existed gets its default). */
export function rolloutWithDefaults(r: RolloutPolicy | undefined): Required<RolloutPolicy> {
  if (r === undefined) return { ...DEFAULT_ROLLOUT };
  return { maxUnavailable: r.maxUnavailable, canary: r.canary, failureThreshold: r.failureThreshold, minReadyS: r.minReadyS ?? DEFAULT_ROLLOUT.minReadyS };
}
