// Reading one CDI spec file (JSON or YAML) into a validated CdiSpec. Every refusal is a
// BAD_REQUEST that names the file and the field ("CDI spec /etc/cdi/hailo.yaml: field
// devices[0].containerEdits.deviceNodes[0].path is required"). As in the reference implementation,
// unknown fields are refused, and so are fields newer than the spec's own cdiVersion.
import { extname } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { FeatherError, isFeatherError } from '../../../shared/errors.js';
import { Fields, describe, isPlainObject, type JsonObject } from '../../../shared/protocol/fields.js';
import {
  CDI_HOOK_NAMES, type CdiContainerEdits, type CdiDeviceNodeSpec, type CdiDeviceSpec, type CdiHookSpec,
  type CdiMountSpec, type CdiNetDeviceSpec, type CdiSpec,
} from './types.js';

/** Versions feather reads: 0.5.0 up to any 1.x. */
export const CDI_MIN_VERSION = '0.5.0';
export const CDI_MAX_MAJOR = 1;
/** The version feather writes its own specs in. */
export const CDI_WRITE_VERSION = '0.6.0';

export const SPEC_EXTENSIONS: readonly string[] = ['.json', '.yaml', '.yml'];

const VENDOR_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const CLASS_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const DEVICE_RE = /^[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?$/;
const ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*=/;
const PERMISSIONS_RE = /^(?!.*(.).*\1)[rwm]{1,3}$/;
const UINT32 = 2 ** 32 - 1;
const MAX_ITEMS = 4096;

type Version = readonly [number, number, number];

export function parseCdiVersion(v: string): Version | undefined {
  const m = /^v?(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function atLeast(v: Version, min: string): boolean {
  const m = parseCdiVersion(min) as Version;
  for (let i = 0; i < 3; i++) {
    if ((v[i] as number) !== (m[i] as number)) return (v[i] as number) > (m[i] as number);
  }
  return true;
}

/** "vendor.com/class" split and checked; undefined when malformed. */
export function parseKind(kind: string): { vendor: string; class: string } | undefined {
  const slash = kind.indexOf('/');
  if (slash < 0) return undefined;
  const vendor = kind.slice(0, slash);
  const cls = kind.slice(slash + 1);
  if (!VENDOR_RE.test(vendor) || !CLASS_RE.test(cls) || vendor.length > 253 || cls.length > 63) return undefined;
  return { vendor, class: cls };
}

export function isValidDeviceName(name: string): boolean {
  return DEVICE_RE.test(name) && name.length <= 255;
}

/** "vendor.com/class=name" split and checked; undefined when malformed. */
export function parseQualifiedName(name: string): { kind: string; name: string } | undefined {
  const eq = name.indexOf('=');
  if (eq < 0) return undefined;
  const kind = name.slice(0, eq);
  const device = name.slice(eq + 1);
  if (parseKind(kind) === undefined || !isValidDeviceName(device)) return undefined;
  return { kind, name: device };
}

const bad = (message: string): FeatherError => new FeatherError('BAD_REQUEST', message);

/** Fields a spec may only use from some version on ("annotations" came with 0.6.0). */
class VersionGate {
  constructor(private readonly version: Version, private readonly cdiVersion: string) {}

  check(obj: unknown, key: string, min: string, path: string): void {
    if (isPlainObject(obj) && obj[key] !== undefined && obj[key] !== null && !atLeast(this.version, min)) {
      throw bad(`field ${path}${key} needs cdiVersion ${min} or later, but the spec declares ${this.cdiVersion}; raise cdiVersion or remove the field`);
    }
  }
}

function absolute(f: Fields, key: string, path: string, required: boolean): string | undefined {
  const v = required ? f.string(key) : f.optString(key);
  if (v !== undefined && !v.startsWith('/')) throw bad(`field ${path}${key} ${describe(v)} must be an absolute path`);
  return v;
}

function readDeviceNode(f: Fields, path: string): CdiDeviceNodeSpec {
  const node: CdiDeviceNodeSpec = { path: absolute(f, 'path', path, true) as string };
  const hostPath = absolute(f, 'hostPath', path, false);
  if (hostPath !== undefined) node.hostPath = hostPath;
  const type = f.optEnum('type', ['b', 'c', 'u', 'p'] as const);
  if (type !== undefined) node.type = type;
  const major = f.optInteger('major', 0, UINT32);
  const minor = f.optInteger('minor', 0, UINT32);
  if (major !== undefined) node.major = major;
  if (minor !== undefined) node.minor = minor;
  if ((major === undefined) !== (minor === undefined)) throw bad(`field ${path}${major === undefined ? 'major' : 'minor'} is required when ${major === undefined ? 'minor' : 'major'} is set`);
  if (type === 'p' && major !== undefined) throw bad(`field ${path}major must not be set for a fifo (type "p")`);
  const fileMode = f.optInteger('fileMode', 0, UINT32);
  if (fileMode !== undefined) node.fileMode = fileMode;
  const permissions = f.optString('permissions', { max: 3 });
  if (permissions !== undefined) {
    if (!PERMISSIONS_RE.test(permissions)) throw bad(`field ${path}permissions ${describe(permissions)} must be some of r, w, m (e.g. "rw" or "rwm")`);
    node.permissions = permissions;
  }
  const uid = f.optInteger('uid', 0, UINT32);
  const gid = f.optInteger('gid', 0, UINT32);
  if (uid !== undefined) node.uid = uid;
  if (gid !== undefined) node.gid = gid;
  return node;
}

function readMount(f: Fields, path: string): CdiMountSpec {
  const mount: CdiMountSpec = {
    hostPath: f.string('hostPath'),
    containerPath: absolute(f, 'containerPath', path, true) as string,
  };
  const options = f.optStringArray('options', { maxItems: 64, maxLength: 256 });
  if (options !== undefined) mount.options = options;
  const type = f.optString('type', { max: 64 });
  if (type !== undefined) mount.type = type;
  return mount;
}

function readHook(f: Fields, path: string): CdiHookSpec {
  const hookName = f.optEnum('hookName', CDI_HOOK_NAMES);
  if (hookName === undefined) throw bad(`field ${path}hookName is required (one of ${CDI_HOOK_NAMES.join(', ')})`);
  const hook: CdiHookSpec = { hookName, path: absolute(f, 'path', path, true) as string };
  const args = f.optStringArray('args', { maxItems: 1024 });
  const env = f.optStringArray('env', { maxItems: 1024, pattern: ENV_RE, hint: 'use KEY=VALUE' });
  const timeout = f.optInteger('timeout', 1, 24 * 3600);
  if (args !== undefined) hook.args = args;
  if (env !== undefined) hook.env = env;
  if (timeout !== undefined) hook.timeout = timeout;
  return hook;
}

/** One containerEdits object at `path` ("devices[0].containerEdits"). */
function readEdits(raw: unknown, path: string, gate: VersionGate): CdiContainerEdits {
  const f = Fields.of(raw, path, 'a CDI spec');
  const p = `${path}.`;
  gate.check(raw, 'additionalGids', '0.7.0', p);
  gate.check(raw, 'intelRdt', '0.7.0', p);
  gate.check(raw, 'netDevices', '1.1.0', p);
  const edits: CdiContainerEdits = {};
  const env = f.optStringArray('env', { maxItems: MAX_ITEMS, pattern: ENV_RE, hint: 'use KEY=VALUE' });
  const deviceNodes = f.optArray('deviceNodes', MAX_ITEMS, (g, i) => readDeviceNode(g, `${p}deviceNodes[${i}].`));
  const mounts = f.optArray('mounts', MAX_ITEMS, (g, i) => readMount(g, `${p}mounts[${i}].`));
  const hooks = f.optArray('hooks', MAX_ITEMS, (g, i) => readHook(g, `${p}hooks[${i}].`));
  const netDevices = f.optArray('netDevices', MAX_ITEMS, (g): CdiNetDeviceSpec => ({ hostInterfaceName: g.string('hostInterfaceName'), name: g.string('name') }));
  if (env !== undefined) edits.env = env;
  if (deviceNodes !== undefined) edits.deviceNodes = deviceNodes;
  if (mounts !== undefined) edits.mounts = mounts;
  if (hooks !== undefined) edits.hooks = hooks;
  if (netDevices !== undefined) edits.netDevices = netDevices;
  const obj = raw as JsonObject;
  const gids = obj['additionalGids'];
  if (gids !== undefined && gids !== null) {
    if (!Array.isArray(gids)) throw bad(`field ${p}additionalGids must be an array of group ids, got ${describe(gids)}`);
    edits.additionalGids = gids.map((g: unknown, i) => {
      if (typeof g !== 'number' || !Number.isSafeInteger(g) || g < 0 || g > UINT32) throw bad(`field ${p}additionalGids[${i}] must be a whole number from 0 to ${UINT32}, got ${describe(g)}`);
      return g;
    });
  }
  const rdt = obj['intelRdt'];
  if (rdt !== undefined && rdt !== null) {
    if (!isPlainObject(rdt)) throw bad(`field ${p}intelRdt must be an object, got ${describe(rdt)}`);
    edits.intelRdt = rdt;
  }
  f.done(['additionalGids', 'intelRdt']);
  return edits;
}

function isEmptyEdits(e: CdiContainerEdits): boolean {
  return (e.env?.length ?? 0) + (e.deviceNodes?.length ?? 0) + (e.mounts?.length ?? 0) + (e.hooks?.length ?? 0)
    + (e.additionalGids?.length ?? 0) + (e.netDevices?.length ?? 0) === 0 && e.intelRdt === undefined;
}

/** Validate an already parsed document (the object of a JSON or YAML file). */
export function validateCdiSpec(doc: unknown): CdiSpec {
  if (!isPlainObject(doc)) throw bad(`the document must be an object, got ${describe(doc)}`);
  const f = new Fields(doc, '', 'a CDI spec');
  const cdiVersion = f.string('cdiVersion', { max: 64, hint: `the CDI version the spec follows, e.g. "${CDI_WRITE_VERSION}"` });
  const version = parseCdiVersion(cdiVersion);
  if (version === undefined) throw bad(`field cdiVersion ${describe(cdiVersion)} is not a version like "0.6.0"`);
  if (!atLeast(version, CDI_MIN_VERSION) || version[0] > CDI_MAX_MAJOR) {
    throw bad(`field cdiVersion "${cdiVersion}" is not supported: feather reads CDI ${CDI_MIN_VERSION} to ${CDI_MAX_MAJOR}.x`);
  }
  const gate = new VersionGate(version, cdiVersion);
  const kind = f.string('kind', { max: 320, hint: 'vendor.com/class' });
  const parsedKind = parseKind(kind);
  if (parsedKind === undefined) throw bad(`field kind ${describe(kind)} is not valid: use vendor.com/class (letters, digits, '-', '_' and '.')`);
  if (parsedKind.class.includes('.') && !atLeast(version, '0.6.0')) {
    throw bad(`field kind "${kind}": a '.' in the class needs cdiVersion 0.6.0 or later, but the spec declares ${cdiVersion}`);
  }
  gate.check(doc, 'annotations', '0.6.0', '');
  const annotations = f.optStringMap('annotations', { maxEntries: 1024, keyPattern: /^.{1,}$/, keyHint: 'keys must not be empty' });
  const rawDevices = doc['devices'];
  if (rawDevices === undefined || rawDevices === null) throw bad('field devices is required and must list at least one device');
  if (!Array.isArray(rawDevices)) throw bad(`field devices must be an array, got ${describe(rawDevices)}`);
  if (rawDevices.length === 0) throw bad('field devices must list at least one device');
  if (rawDevices.length > MAX_ITEMS) throw bad(`field devices has ${rawDevices.length} items; at most ${MAX_ITEMS} are allowed`);
  const devices = rawDevices.map((raw: unknown, i): CdiDeviceSpec => {
    const path = `devices[${i}]`;
    const g = Fields.of(raw, path, 'a CDI spec');
    gate.check(raw, 'annotations', '0.6.0', `${path}.`);
    const name = g.string('name', { max: 255 });
    if (!isValidDeviceName(name)) throw bad(`field ${path}.name ${describe(name)} is not valid: letters, digits, '-', '_', '.', ':', starting and ending with a letter or digit`);
    const rawEdits = (raw as JsonObject)['containerEdits'];
    if (rawEdits === undefined || rawEdits === null) throw bad(`field ${path}.containerEdits is required`);
    const edits = readEdits(rawEdits, `${path}.containerEdits`, gate);
    if (isEmptyEdits(edits)) throw bad(`field ${path}.containerEdits is empty: a device must change something in the container`);
    const device: CdiDeviceSpec = { name, containerEdits: edits };
    const ann = g.optStringMap('annotations', { maxEntries: 1024, keyPattern: /^.{1,}$/, keyHint: 'keys must not be empty' });
    if (ann !== undefined) device.annotations = ann;
    g.done(['containerEdits']);
    return device;
  });
  const seen = new Map<string, number>();
  for (const [i, d] of devices.entries()) {
    const first = seen.get(d.name);
    if (first !== undefined) throw bad(`field devices[${i}].name "${d.name}" is already used by devices[${first}]`);
    seen.set(d.name, i);
  }
  const rawTopEdits = doc['containerEdits'];
  const containerEdits = rawTopEdits === undefined || rawTopEdits === null ? undefined : readEdits(rawTopEdits, 'containerEdits', gate);
  f.done(['devices', 'containerEdits']);
  const spec: CdiSpec = { cdiVersion, kind, devices };
  if (annotations !== undefined) spec.annotations = annotations;
  if (containerEdits !== undefined) spec.containerEdits = containerEdits;
  return spec;
}

/** The document in a spec file's text (JSON or YAML by its extension), not yet validated. Errors name `file`. */
export function parseCdiDocument(text: string, file: string): unknown {
  const ext = extname(file).toLowerCase();
  try {
    if (ext === '.json') return JSON.parse(text) as unknown;
    if (ext === '.yaml' || ext === '.yml') return parseYaml(text, { uniqueKeys: true, prettyErrors: true }) as unknown;
  } catch (e: unknown) {
    if (e instanceof YAMLParseError) {
      // prettyErrors appends " at line L, column C:" and a snippet; keep the first line's reason.
      const reason = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:$/, '');
      const at = e.linePos?.[0];
      throw bad(`CDI spec ${file}: not valid YAML${at ? ` at line ${at.line}, column ${at.col}` : ''}: ${reason}`);
    }
    throw bad(`CDI spec ${file}: not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  throw bad(`CDI spec ${file}: unknown file type "${ext}"; CDI specs end in ${SPEC_EXTENSIONS.join(', ')}`);
}

/** Validate a parsed document; errors are prefixed with the file. */
export function validateCdiDocument(doc: unknown, file: string): CdiSpec {
  try {
    return validateCdiSpec(doc);
  } catch (e: unknown) {
    if (isFeatherError(e)) throw new FeatherError(e.code, `CDI spec ${file}: ${e.message}`, { file }, { cause: e });
    throw e;
  }
}

/** Parse and validate the text of a spec file; JSON or YAML by its extension. Errors name `file`. */
export function parseCdiSpec(text: string, file: string): CdiSpec {
  return validateCdiDocument(parseCdiDocument(text, file), file);
}
