// The retained `desired` payload (../../shared/DESIGN.md, "Desired and reported state"), parsed and
// validated at the boundary. Everything past this file trusts a DesiredState: names are valid
// directory names, limits are parsed, references are unique. A bad payload fails as a whole with
// a DesiredStateError (code BAD_REQUEST) that lists every bad field by its path.
import { FeatherError, isFeatherError, messageOf } from '../../shared/errors.js';
import { parseCpus, parseCpuset, parseMemory, parsePids, validateName } from '../runtime/limits.js';
import type { NetworkMode, RestartPolicy } from '../runtime/types.js';

/** An image or a model to fetch: where from and what it must hash to. */
export interface ArtifactRef {
  name: string;
  url: string;
  /** Lower-case hex sha256 of the file as downloaded. */
  sha256: string;
}

/** Limits as the runtime takes them (memory already in bytes); unset = the agent's defaults. */
export interface WorkloadLimits {
  memoryBytes?: number;
  cpus?: number;
  pids?: number;
  cpuset?: string;
}

/** One desired container: the fields of container.run without requestId, defaults filled in. */
export interface Workload {
  name: string;
  image: string;
  args: string[];
  env: Record<string, string>;
  limits: WorkloadLimits;
  network: NetworkMode;
  restart: RestartPolicy;
  models: ArtifactRef[];
  devices: string[];
}

export interface DesiredState {
  /** Rising number set by the controller; 0 for an empty payload (nothing desired). */
  generation: number;
  workloads: Workload[];
  /** Images that may be missing on the device, with where to pull them from. */
  images: ArtifactRef[];
}

export interface FieldIssue {
  /** Where in the payload: "workloads[1].limits.memory"; "" for the payload itself. */
  path: string;
  message: string;
}

/** A desired payload that cannot be used. Code BAD_REQUEST; `issues` names every bad field. */
export class DesiredStateError extends FeatherError {
  readonly issues: readonly FieldIssue[];

  constructor(issues: readonly FieldIssue[]) {
    const list = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
    super('BAD_REQUEST', `desired state rejected: ${list}; fix the payload and publish it again (the agent keeps the last valid desired state meanwhile)`, { issues });
    this.name = 'DesiredStateError';
    this.issues = issues;
  }
}

export function isDesiredStateError(e: unknown): e is DesiredStateError {
  return e instanceof DesiredStateError;
}

/** What an empty payload (retained message cleared) means: the controller wants nothing here. */
export function nothingDesired(): DesiredState {
  return { generation: 0, workloads: [], images: [] };
}

export const MAX_DESIRED_BYTES = 1024 * 1024;

export interface ParseOptions {
  /** Decoder for payloads that are not JSON (protobuf of feather.v1.DesiredState). */
  decodeBinary?: ((payload: Buffer) => unknown) | undefined;
}

/**
 * Parse the retained `desired` payload. Empty (null, zero bytes, only blanks) = nothing desired.
 * A payload whose first non-blank byte is `{` is JSON; any other goes to `decodeBinary`.
 */
export function parseDesired(payload: Buffer | string | null | undefined, opts: ParseOptions = {}): DesiredState {
  const raw = decodeDesired(payload, opts);
  return raw === null ? nothingDesired() : validateDesired(raw);
}

/** The decoded, not yet validated payload; null when it is empty (nothing desired). */
export function decodeDesired(payload: Buffer | string | null | undefined, opts: ParseOptions = {}): unknown {
  if (payload === null || payload === undefined) return null;
  const buf = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (buf.length > MAX_DESIRED_BYTES) {
    throw new DesiredStateError([{ path: '', message: `payload is ${buf.length} bytes, more than the ${MAX_DESIRED_BYTES} accepted` }]);
  }
  const text = buf.toString('utf8').trim();
  if (text === '') return null;
  if (text.startsWith('{')) {
    try {
      return JSON.parse(text) as unknown;
    } catch (e: unknown) {
      throw new DesiredStateError([{ path: '', message: `payload is not valid JSON (${messageOf(e)})` }]);
    }
  }
  if (opts.decodeBinary) {
    let value: unknown;
    try {
      value = opts.decodeBinary(buf);
    } catch (e: unknown) {
      throw new DesiredStateError([{ path: '', message: `payload could not be decoded (${messageOf(e)})` }]);
    }
    return value ?? null;
  }
  throw new DesiredStateError([{ path: '', message: 'payload is neither empty nor a JSON object' }]);
}

/** Validate an already decoded desired object. */
export function validateDesired(value: unknown): DesiredState {
  const issues: FieldIssue[] = [];
  const obj = asObject(value, '', issues);
  if (!obj) throw new DesiredStateError(issues);
  checkKeys(obj, '', ['generation', 'workloads', 'images'], issues);

  const generation = obj['generation'];
  if (generation === undefined) issues.push({ path: 'generation', message: 'is required (a whole number >= 0 that rises with every change)' });
  else if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) {
    issues.push({ path: 'generation', message: `${JSON.stringify(generation)} must be a whole number >= 0` });
  }

  const workloads: Workload[] = [];
  for (const [i, w] of arrayField(obj, 'workloads', '', issues).entries()) {
    const workload = validateWorkload(w, `workloads[${i}]`, issues);
    if (workload) workloads.push(workload);
  }
  const images: ArtifactRef[] = [];
  for (const [i, im] of arrayField(obj, 'images', '', issues).entries()) {
    const ref = validateArtifact(im, `images[${i}]`, 'image', issues);
    if (ref) images.push(ref);
  }
  duplicates(workloads.map((w) => w.name), 'workloads', 'workload name', issues);
  duplicates(images.map((im) => im.name), 'images', 'image name', issues);

  if (issues.length > 0) throw new DesiredStateError(issues);
  return { generation: generation as number, workloads, images };
}

const WORKLOAD_KEYS = ['name', 'image', 'args', 'env', 'limits', 'network', 'restart', 'models', 'devices'];
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const DEVICE_RE = /^[a-z0-9][a-z0-9.-]*\/[a-zA-Z0-9][a-zA-Z0-9_.-]*=[a-zA-Z0-9][a-zA-Z0-9_.:-]*$/;
const SHA256_RE = /^[a-fA-F0-9]{64}$/;
const NETWORKS: readonly NetworkMode[] = ['none', 'host'];
const RESTARTS: readonly RestartPolicy[] = ['no', 'on-failure', 'always'];

/** One workload (a container.run body without requestId); pushes issues and returns undefined when bad. */
export function validateWorkload(value: unknown, path: string, issues: FieldIssue[]): Workload | undefined {
  const before = issues.length;
  const obj = asObject(value, path, issues);
  if (!obj) return undefined;
  checkKeys(obj, path, WORKLOAD_KEYS, issues);
  const at = (k: string): string => `${path}.${k}`;

  const name = guard(() => validateName('container', obj['name']), at('name'), issues);
  const image = guard(() => validateName('image', obj['image']), at('image'), issues);

  const args: string[] = [];
  for (const [i, a] of arrayField(obj, 'args', path, issues).entries()) {
    if (typeof a === 'string') args.push(a);
    else issues.push({ path: `${at('args')}[${i}]`, message: 'must be a string' });
  }

  const env: Record<string, string> = {};
  if (obj['env'] !== undefined) {
    const e = asObject(obj['env'], at('env'), issues);
    for (const [k, v] of Object.entries(e ?? {})) {
      if (!ENV_KEY_RE.test(k)) issues.push({ path: `${at('env')}.${k}`, message: 'is not a valid variable name (letters, digits, _)' });
      else if (typeof v !== 'string') issues.push({ path: `${at('env')}.${k}`, message: 'must be a string' });
      else env[k] = v;
    }
  }

  const limits = validateLimits(obj['limits'], at('limits'), issues);
  const network = oneOf(obj['network'], NETWORKS, 'none', at('network'), issues);
  const restart = oneOf(obj['restart'], RESTARTS, 'no', at('restart'), issues);

  const models: ArtifactRef[] = [];
  for (const [i, m] of arrayField(obj, 'models', path, issues).entries()) {
    const ref = validateArtifact(m, `${at('models')}[${i}]`, 'model', issues);
    if (ref) models.push(ref);
  }
  duplicates(models.map((m) => m.name), at('models'), 'model name', issues);

  const devices: string[] = [];
  for (const [i, d] of arrayField(obj, 'devices', path, issues).entries()) {
    if (typeof d === 'string' && DEVICE_RE.test(d)) devices.push(d);
    else issues.push({ path: `${at('devices')}[${i}]`, message: `${JSON.stringify(d)} must name a device like "vendor.com/class=name"` });
  }

  if (issues.length > before || name === undefined || image === undefined) return undefined;
  return { name, image, args, env, limits, network, restart, models, devices };
}

function validateLimits(value: unknown, path: string, issues: FieldIssue[]): WorkloadLimits {
  const limits: WorkloadLimits = {};
  if (value === undefined) return limits;
  const obj = asObject(value, path, issues);
  if (!obj) return limits;
  checkKeys(obj, path, ['memory', 'cpu', 'pids', 'cpuset'], issues);
  const memory = obj['memory'];
  if (memory !== undefined) {
    const bytes = typeof memory === 'string' || typeof memory === 'number'
      ? guard(() => parseMemory(memory), `${path}.memory`, issues)
      : fail(`${path}.memory`, 'must be a size like "128Mi" or a number of bytes', issues);
    if (bytes !== undefined) limits.memoryBytes = bytes;
  }
  const cpu = obj['cpu'];
  if (cpu !== undefined) {
    const cpus = typeof cpu === 'number' ? guard(() => parseCpus(cpu), `${path}.cpu`, issues) : fail(`${path}.cpu`, 'must be a number of cores (e.g. 0.5)', issues);
    if (cpus !== undefined) limits.cpus = cpus;
  }
  const pids = obj['pids'];
  if (pids !== undefined) {
    const n = typeof pids === 'number' ? guard(() => parsePids(pids), `${path}.pids`, issues) : fail(`${path}.pids`, 'must be a whole number', issues);
    if (n !== undefined) limits.pids = n;
  }
  const cpuset = obj['cpuset'];
  if (cpuset !== undefined) {
    const s = typeof cpuset === 'string' ? guard(() => parseCpuset(cpuset), `${path}.cpuset`, issues) : fail(`${path}.cpuset`, 'must list cores like "0-1,3"', issues);
    if (s !== undefined) limits.cpuset = s;
  }
  return limits;
}

function validateArtifact(value: unknown, path: string, kind: 'image' | 'model', issues: FieldIssue[]): ArtifactRef | undefined {
  const before = issues.length;
  const obj = asObject(value, path, issues);
  if (!obj) return undefined;
  checkKeys(obj, path, ['name', 'url', 'sha256'], issues);
  const name = guard(() => validateName(kind, obj['name']), `${path}.name`, issues);
  const url = obj['url'];
  if (typeof url !== 'string' || !/^(https?|file):\/\/\S+$/.test(url)) {
    issues.push({ path: `${path}.url`, message: `${JSON.stringify(url)} must be an http://, https:// or file:// URL` });
  }
  const sha256 = obj['sha256'];
  if (typeof sha256 !== 'string' || !SHA256_RE.test(sha256)) {
    issues.push({ path: `${path}.sha256`, message: 'must be 64 hex digits' });
  }
  if (issues.length > before || name === undefined) return undefined;
  return { name, url: url as string, sha256: (sha256 as string).toLowerCase() };
}

// --- helpers -----------------------------------------------------------------------------------

function asObject(value: unknown, path: string, issues: FieldIssue[]): Record<string, unknown> | undefined {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
  issues.push({ path, message: `must be an object, not ${describe(value)}` });
  return undefined;
}

/** An optional array field; absent = []. */
function arrayField(obj: Record<string, unknown>, key: string, path: string, issues: FieldIssue[]): unknown[] {
  const value = obj[key];
  if (value === undefined) return [];
  if (Array.isArray(value)) return value;
  issues.push({ path: path ? `${path}.${key}` : key, message: `must be an array, not ${describe(value)}` });
  return [];
}

function checkKeys(obj: Record<string, unknown>, path: string, allowed: readonly string[], issues: FieldIssue[]): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      issues.push({ path: path ? `${path}.${key}` : key, message: `is not a known field (expected ${allowed.join(', ')})` });
    }
  }
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], dflt: T, path: string, issues: FieldIssue[]): T {
  if (value === undefined) return dflt;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  issues.push({ path, message: `${JSON.stringify(value)} must be one of ${allowed.join(', ')}` });
  return dflt;
}

function duplicates(names: string[], path: string, what: string, issues: FieldIssue[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) issues.push({ path, message: `${what} "${n}" appears more than once` });
    seen.add(n);
  }
}

/** Run a parser that throws FeatherError(BAD_REQUEST); turn its message into an issue. */
function guard<T>(fn: () => T, path: string, issues: FieldIssue[]): T | undefined {
  try {
    return fn();
  } catch (e: unknown) {
    if (!isFeatherError(e)) throw e;
    issues.push({ path, message: e.message });
    return undefined;
  }
}

function fail(path: string, message: string, issues: FieldIssue[]): undefined {
  issues.push({ path, message });
  return undefined;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
