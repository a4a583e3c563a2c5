// Commands as they arrive: decoding (JSON or feather.v1 protobuf) and validation per verb.
// Encoding (../shared/DESIGN.md): a payload whose first non-blank byte is '{' is JSON; under
// MQTT 5 the content type application/x-protobuf (or any other payload) means protobuf.
import { FeatherError, messageOf } from '../errors.js';
import { parseCpus, parseCpuset, parseMemory, parsePids, validateName, type Limits } from '../limits.js';
import { Fields, describe, isPlainObject, type JsonObject } from './fields.js';
import { MAX_LAYERS } from './layers.js';
import { decodeCommandProto } from './proto.js';
import { MAX_REQUEST_ID_LENGTH, isValidRequestId } from './topics.js';
import {
  CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF, type ContainerRunFields, type Encoding, type NetworkMode, type RestartPolicy, type Verb,
} from './types.js';

export interface DecodedCommand {
  encoding: Encoding;
  /** The payload's requestId, when it has a usable one. */
  requestId: string | undefined;
  /** Why the payload's requestId cannot be used (wrong type, a '/' in it…); set only when one was given. */
  requestIdProblem: string | undefined;
  /** The command's fields without requestId; undefined when decoding failed. */
  body: JsonObject | undefined;
  /** BAD_REQUEST saying why the payload could not be decoded. */
  error: FeatherError | undefined;
}

export interface DecodeOptions {
  /** The verb from the topic (a protobuf body must be that verb's). */
  verb: string;
  maxPayloadBytes: number;
  /** MQTT 5 content type, when the publisher set one. */
  contentType?: string | undefined;
}

const BLANK = new Set([0x20, 0x09, 0x0a, 0x0d]);

function firstNonBlank(payload: Uint8Array): number | undefined {
  for (const b of payload) if (!BLANK.has(b)) return b;
  return undefined;
}

/** The encoding an MQTT 5 content type names, if it names one of ours. */
function declaredEncoding(contentType: string | undefined): Encoding | undefined {
  const ct = contentType?.split(';')[0]?.trim().toLowerCase();
  if (ct === CONTENT_TYPE_PROTOBUF) return 'protobuf';
  if (ct === CONTENT_TYPE_JSON) return 'json';
  return undefined;
}

export function pickEncoding(payload: Uint8Array, contentType?: string): Encoding {
  const declared = declaredEncoding(contentType);
  if (declared !== undefined) return declared;
  const first = firstNonBlank(payload);
  return first === 0x7b /* { */ || first === undefined ? 'json' : 'protobuf';
}

const SCAN_BYTES = 4096;
const REQUEST_ID_RE = /"requestId"\s*:\s*"((?:[^"\\\u0000-\u001f]|\\.){1,256})"/;

/** Best effort: the requestId of a JSON payload that will not parse (truncated, oversized), from its first 4 KiB. */
export function scanRequestId(payload: Uint8Array): string | undefined {
  const head = Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.length, SCAN_BYTES)).toString('utf8');
  const m = REQUEST_ID_RE.exec(head);
  if (!m) return undefined;
  try {
    const id: unknown = JSON.parse(`"${m[1] ?? ''}"`);
    return isValidRequestId(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

function requestIdProblem(v: unknown): string | undefined {
  if (v === undefined || isValidRequestId(v)) return undefined;
  if (typeof v !== 'string') return `requestId must be a string, got ${describe(v)}`;
  return `requestId ${JSON.stringify(v.slice(0, 140))} is not usable in a reply topic: use 1-${MAX_REQUEST_ID_LENGTH} printable characters without spaces, '/', '+' or '#'`;
}

const JSON_EXAMPLE = `{"requestId":"r1",…}`;

/** Decode one command payload. Never throws: a bad payload comes back with `error` set. */
export function decodeCommand(payload: Uint8Array, opts: DecodeOptions): DecodedCommand {
  const encoding = pickEncoding(payload, opts.contentType);
  const failed = (message: string, requestId: string | undefined): DecodedCommand =>
    ({ encoding, requestId, requestIdProblem: undefined, body: undefined, error: new FeatherError('BAD_REQUEST', message) });

  if (payload.length > opts.maxPayloadBytes) {
    return failed(`payload is ${payload.length} bytes, above this agent's limit of ${opts.maxPayloadBytes} (maxPayloadBytes); send a smaller command`,
      encoding === 'json' ? scanRequestId(payload) : undefined);
  }
  if (encoding === 'json') {
    const text = Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8');
    if (text.trim() === '') return failed(`payload is empty; send a JSON object like ${JSON_EXAMPLE}`, undefined);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e: unknown) {
      return failed(`payload is not valid JSON (${messageOf(e)}); send one JSON object like ${JSON_EXAMPLE}`, scanRequestId(payload));
    }
    return fromObject(encoding, parsed);
  }
  // Text that parses as JSON but is not an object ([…], "…", 42): say so rather than blame protobuf.
  if (declaredEncoding(opts.contentType) === undefined) {
    const asJson = tryJson(payload);
    if (asJson.ok) return failed(`payload is ${describe(asJson.value)}, not a JSON object; send one JSON object like ${JSON_EXAMPLE}`, undefined);
  }
  try {
    const cmd = decodeCommandProto(payload);
    if (cmd.bodyVerb !== undefined && cmd.bodyVerb !== opts.verb) {
      return failed(`the protobuf body is for verb ${cmd.bodyVerb} but the topic says ${opts.verb}; publish it to .../cmd/${cmd.bodyVerb}`, cmd.requestId);
    }
    return { encoding, requestId: cmd.requestId, requestIdProblem: undefined, body: cmd.body, error: undefined };
  } catch (e: unknown) {
    return failed(messageOf(e), undefined);
  }
}

function tryJson(payload: Uint8Array): { ok: true; value: unknown } | { ok: false } {
  const first = firstNonBlank(payload);
  // JSON text starts with one of [ " - 0-9 t f n; anything else is not worth parsing.
  if (first === undefined || !/[["\-0-9tfn]/.test(String.fromCharCode(first))) return { ok: false };
  try {
    return { ok: true, value: JSON.parse(Buffer.from(payload).toString('utf8')) };
  } catch {
    return { ok: false };
  }
}

function fromObject(encoding: Encoding, parsed: unknown): DecodedCommand {
  if (!isPlainObject(parsed)) {
    return { encoding, requestId: undefined, requestIdProblem: undefined, body: undefined,
      error: new FeatherError('BAD_REQUEST', `payload is ${describe(parsed)}, not a JSON object; send one JSON object like ${JSON_EXAMPLE}`) };
  }
  const { requestId, ...body } = parsed;
  const problem = requestIdProblem(requestId);
  return { encoding, requestId: problem === undefined ? (requestId as string | undefined) : undefined, requestIdProblem: problem, body, error: undefined };
}

// ---- validation per verb -------------------------------------------------------------------

export interface ModelRef { name: string; url: string; sha256: string }

/** container.run as validated (also a desired workload's fields): the runtime's fields, with models, layers and devices still by name. */
export interface RunBody extends ContainerRunFields {
  models?: ModelRef[] | undefined;
  /** Layers stacked above the image, topmost first (agent/images/layers.ts); each a verified tarball. */
  layers?: ModelRef[] | undefined;
  /** CDI names ("vendor.com/class=name"), resolved to device nodes by the executor. */
  devices?: string[] | undefined;
}

/** The container.run command body: the same fields as a desired workload. */
export type RunCommandBody = RunBody;

export type EmptyBody = Record<string, never>;

export interface CommandBodies {
  'ping': EmptyBody;
  'inventory': EmptyBody;
  'image.pull': { name: string; url: string; sha256: string };
  'image.list': EmptyBody;
  'image.rm': { name: string };
  'container.run': RunCommandBody;
  'container.stop': { name: string; timeoutS?: number | undefined };
  'container.rm': { name: string; timeoutS?: number | undefined };
  'container.list': { all: boolean };
  'container.logs': { name: string; tail: number };
}

export const DEFAULT_LOG_TAIL = 100;
export const MAX_LOG_TAIL = 10_000;
const MAX_STOP_TIMEOUT_S = 3600;

const URL_RE = /^(https?:\/\/[^\s/]+\S*|file:\/\/\/\S*)$/;
const SHA256_RE = /^(sha256:)?[0-9a-fA-F]{64}$/;
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
/** A fully qualified CDI device name: vendor.com/class=name. */
export const CDI_RE = /^[a-zA-Z0-9][a-zA-Z0-9.-]*\/[a-zA-Z0-9][a-zA-Z0-9_.-]*=[a-zA-Z0-9][a-zA-Z0-9_.:-]*$/;

const containerName = (v: unknown): string => validateName('container', v);
const imageName = (v: unknown): string => validateName('image', v);

function url(f: Fields): string {
  return f.string('url', { max: 2048, pattern: URL_RE, hint: 'use an http://, https:// or file:/// URL' });
}

function sha256(f: Fields): string {
  return f.string('sha256', { pattern: SHA256_RE, hint: 'use the 64 hex digits of the SHA-256' }).replace(/^sha256:/, '').toLowerCase();
}

function readLimits(f: Fields): Partial<Limits> {
  const limits: Partial<Limits> = {};
  const memoryBytes = f.optParsed('memory', parseMemory);
  const cpus = f.optParsed('cpu', parseCpus);
  const pids = f.optParsed('pids', parsePids);
  const cpuset = f.optParsed('cpuset', (v) => parseCpuset(String(v)));
  if (memoryBytes !== undefined) limits.memoryBytes = memoryBytes;
  if (cpus !== undefined) limits.cpus = cpus;
  if (pids !== undefined) limits.pids = pids;
  if (cpuset !== undefined) limits.cpuset = cpuset;
  return limits;
}

/** The fields of container.run (also a desired workload's, for the reconciler). */
export function readRunBody(f: Fields): RunBody {
  return {
    name: f.name('name', containerName),
    image: f.name('image', imageName),
    args: f.optStringArray('args', { maxItems: 1024 }),
    env: f.optStringMap('env', { maxEntries: 1024, keyPattern: ENV_KEY_RE, keyHint: 'environment variable names are letters, digits and _, not starting with a digit' }),
    limits: f.optObject('limits', readLimits),
    network: f.optEnum<NetworkMode>('network', ['none', 'host']),
    restart: f.optEnum<RestartPolicy>('restart', ['no', 'on-failure', 'always']),
    models: f.optArray('models', 64, (m) => ({ name: m.name('name', (v) => validateName('model', v)), url: url(m), sha256: sha256(m) })),
    layers: f.optArray('layers', MAX_LAYERS, (m) => ({ name: m.name('name', imageName), url: url(m), sha256: sha256(m) })),
    devices: f.optStringArray('devices', { maxItems: 64, maxLength: 255, pattern: CDI_RE, hint: 'use a CDI name like vendor.com/class=name' }),
  };
}

const VALIDATORS: { [V in Verb]: (f: Fields) => CommandBodies[V] } = {
  'ping': () => ({}),
  'inventory': () => ({}),
  'image.pull': (f) => ({ name: f.name('name', imageName), url: url(f), sha256: sha256(f) }),
  'image.list': () => ({}),
  'image.rm': (f) => ({ name: f.name('name', imageName) }),
  'container.run': readRunBody,
  'container.stop': (f) => ({ name: f.name('name', containerName), timeoutS: f.optInteger('timeoutS', 0, MAX_STOP_TIMEOUT_S) }),
  'container.rm': (f) => ({ name: f.name('name', containerName), timeoutS: f.optInteger('timeoutS', 0, MAX_STOP_TIMEOUT_S) }),
  'container.list': (f) => ({ all: f.optBoolean('all') ?? false }),
  'container.logs': (f) => ({ name: f.name('name', containerName), tail: f.optInteger('tail', 1, MAX_LOG_TAIL) ?? DEFAULT_LOG_TAIL }),
};

/** Validate a decoded body for `verb`; BAD_REQUEST names the first bad field. */
export function validateCommand<V extends Verb>(verb: V, body: JsonObject): CommandBodies[V] {
  const f = new Fields(body, '', verb);
  const out = VALIDATORS[verb](f);
  f.done();
  return out;
}
