// The retained `desired` payload (../shared/DESIGN.md, "Desired and reported state"), parsed and
// validated at the boundary: by the agent when it arrives, by the controller before it publishes
// one. Everything past this file trusts a DesiredState: names are valid directory names, limits
// are parsed, references are unique. A bad payload fails as a whole with a DesiredStateError
// (code BAD_REQUEST) that lists every bad field by its path.
import { FeatherError, isFeatherError, messageOf } from '../errors.js';
import { readRunBody, validateCommand, type RunBody } from './commands.js';
import { Fields, describe, isPlainObject } from './fields.js';
import { checkLayers } from './layers.js';
import type { NetworkMode, RestartPolicy } from './types.js';

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
  /** Layers stacked above the image, topmost first (agent/images/layers.ts); [] = the image alone. */
  layers: ArtifactRef[];
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
  const at = new Map<Workload, number>();
  for (const [i, w] of arrayField(obj, 'workloads', '', issues).entries()) {
    const workload = validateWorkload(w, `workloads[${i}]`, issues);
    if (workload) {
      workloads.push(workload);
      at.set(workload, i);
    }
  }
  const images: ArtifactRef[] = [];
  for (const [i, im] of arrayField(obj, 'images', '', issues).entries()) {
    const ref = validateImage(im, `images[${i}]`, issues);
    if (ref) images.push(ref);
  }
  duplicates(workloads.map((w) => w.name), 'workloads', 'workload name', issues);
  duplicates(images.map((im) => im.name), 'images', 'image name', issues);
  layersAboveListedImages(workloads, at, images, issues);

  if (issues.length > 0) throw new DesiredStateError(issues);
  return { generation: generation as number, workloads, images };
}

/**
 * One workload: the container.run body without requestId, read by the control plane's own
 * validator (shared/protocol/commands.ts, readRunBody), then defaults filled in. Pushes one issue
 * (the first bad field, which the message names by its full path) and returns undefined when bad.
 */
export function validateWorkload(value: unknown, path: string, issues: FieldIssue[]): Workload | undefined {
  let body: RunBody;
  try {
    const f = Fields.of(value, path, 'a desired workload');
    body = readRunBody(f);
    f.done();
  } catch (e: unknown) {
    if (!isFeatherError(e)) throw e;
    issues.push({ path: fieldPath(e.message, path), message: e.message });
    return undefined;
  }
  const models = body.models ?? [];
  const layers = body.layers ?? [];
  const before = issues.length;
  duplicates(models.map((m) => m.name), `${path}.models`, 'model name', issues);
  try {
    checkLayers(layers);
  } catch (e: unknown) {
    if (!isFeatherError(e)) throw e;
    issues.push({ path: `${path}.layers`, message: e.message });
  }
  if (issues.length > before) return undefined;
  return {
    name: body.name,
    image: body.image,
    args: body.args ?? [],
    env: body.env ?? {},
    limits: { ...(body.limits ?? {}) },
    network: body.network ?? 'none',
    restart: body.restart ?? 'no',
    models,
    layers,
    devices: body.devices ?? [],
  };
}

/** A layer cannot be the workload's own image (overlayfs would stack it twice): checked where `images` says the image's sha256. */
function layersAboveListedImages(workloads: readonly Workload[], at: ReadonlyMap<Workload, number>, images: readonly ArtifactRef[], issues: FieldIssue[]): void {
  const listed = new Map(images.map((im) => [im.name, im.sha256]));
  for (const w of workloads) {
    const sha = listed.get(w.image);
    const j = sha === undefined ? -1 : w.layers.findIndex((l) => l.sha256 === sha);
    if (j >= 0) {
      issues.push({ path: `workloads[${at.get(w) ?? 0}].layers[${j}]`, message: `layer ${w.layers[j]?.name ?? ''} is the image ${w.image} itself (same sha256 in images); remove it from layers` });
    }
  }
}

/** An entry of `images`: the image.pull body ({name, url, sha256}), checked by its validator. */
function validateImage(value: unknown, path: string, issues: FieldIssue[]): ArtifactRef | undefined {
  if (!isPlainObject(value)) {
    issues.push({ path, message: `must be an object, not ${describe(value)}` });
    return undefined;
  }
  try {
    return validateCommand('image.pull', value);
  } catch (e: unknown) {
    if (!isFeatherError(e)) throw e;
    const sub = fieldPath(e.message, '');
    issues.push({ path: sub ? `${path}.${sub}` : path, message: e.message });
    return undefined;
  }
}

/** The field a validator's message names ("field workloads[0].limits.memory: …"), else `fallback`. */
function fieldPath(message: string, fallback: string): string {
  const m = /^(?:field|unknown fields?) ([^\s:,]+)/.exec(message);
  return m?.[1] ?? fallback;
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

function duplicates(names: string[], path: string, what: string, issues: FieldIssue[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) issues.push({ path, message: `${what} "${n}" appears more than once` });
    seen.add(n);
  }
}

