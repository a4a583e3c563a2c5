// Resolving CDI names ("vendor.com/class=name", "vendor.com/class=all") to the edits they make to
// a container, merged in request order: for each device, its spec file's top-level containerEdits
// (once per file) and then the device's own. Host paths in specs are read under the CDI root.
//
// Errors say which name, file and field: BAD_REQUEST for a malformed name or a spec that cannot
// be applied, NOT_FOUND for an unknown kind or device or a missing host node or mount source,
// CONFLICT for a device two files of one directory define.
import { statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { FeatherError } from '../../../shared/errors.js';
import type { CdiDeviceEntry, CdiRegistry } from './registry.js';
import { DEVICE_RULES_ANNOTATION, parseDeviceRules } from './rules.js';
import { parseQualifiedName } from './spec.js';
import type { CdiContainerEdits, CdiSpecFile, ResolvedDeviceNode, ResolvedEdits } from './types.js';

/** What a host path is, for device nodes: its type and numbers. */
export interface NodeInfo {
  type: 'c' | 'b' | 'p' | 'other';
  major: number;
  minor: number;
}

export type StatNode = (path: string) => NodeInfo | undefined;

/** stat(2) of a host path: undefined when it does not exist. */
export function statNode(path: string): NodeInfo | undefined {
  let s: Stats;
  try {
    s = statSync(path);
  } catch {
    return undefined;
  }
  const type = s.isCharacterDevice() ? 'c' : s.isBlockDevice() ? 'b' : s.isFIFO() ? 'p' : 'other';
  // Linux dev_t (glibc's gnu_dev_major/minor): major in bits 8-19 and 44-63, minor in bits 0-7 and 20-43.
  const d = BigInt(s.rdev);
  const major = Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
  const minor = Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
  return { type, major, minor };
}

export interface ResolveOptions {
  /** How host paths are examined (tests pass fakes). Default statNode. */
  stat?: StatNode | undefined;
  /** Whether a mount source exists. Default: statSync succeeds. */
  exists?: ((path: string) => boolean) | undefined;
}

const bad = (message: string): FeatherError => new FeatherError('BAD_REQUEST', message);
const notFound = (message: string): FeatherError => new FeatherError('NOT_FOUND', message);

function defaultExists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The entries a name stands for: one device, or every device of the kind for "=all". */
function lookup(registry: CdiRegistry, requested: string): CdiDeviceEntry[] {
  const q = parseQualifiedName(requested);
  if (q === undefined) {
    throw bad(`device ${JSON.stringify(requested)} is not a CDI name: use vendor.com/class=name (e.g. google.com/edgetpu=apex_0)`);
  }
  const broken = (): string => {
    const errors = registry.errorsFor(q.kind);
    return errors.length === 0 ? '' : `; spec files that could not be read: ${errors.map((e) => e.error.message).join('; ')}`;
  };
  const entry = registry.get(requested);
  if (entry !== undefined) return [entry];
  const ofKind = registry.devicesOf(q.kind);
  if (ofKind.length === 0) {
    const known = registry.kinds();
    throw notFound(`CDI device "${requested}": no spec file defines the kind "${q.kind}" (searched ${registry.describeDirs()}); ` +
      `${known.length > 0 ? `known kinds: ${known.join(', ')}` : 'there are no CDI specs on this device'}${broken()}`);
  }
  if (q.name === 'all') {
    for (const e of ofKind) registry.get(e.qualified); // conflicts surface here
    return ofKind;
  }
  const files = [...new Set(ofKind.map((e) => e.specFile.file))].join(', ');
  throw notFound(`CDI device "${requested}" is not defined: ${q.kind} has ${ofKind.map((e) => e.device.name).join(', ')} (in ${files})${broken()}`);
}

class EditsBuilder {
  readonly out: ResolvedEdits = { devices: [], nodes: [], rules: [], mounts: [], env: {}, hooks: [] };
  readonly warnings: string[] = [];
  private readonly appliedSpecs = new Set<CdiSpecFile>();

  constructor(private readonly root: string, private readonly stat: StatNode, private readonly exists: (p: string) => boolean) {}

  addDevice(e: CdiDeviceEntry): void {
    if (this.out.devices.includes(e.qualified)) return;
    this.out.devices.push(e.qualified);
    const top = e.specFile.spec.containerEdits;
    if (top !== undefined && !this.appliedSpecs.has(e.specFile)) {
      this.appliedSpecs.add(e.specFile);
      this.apply(top, e.specFile.file, 'containerEdits', e.qualified);
    }
    this.apply(e.device.containerEdits, e.specFile.file, `devices[${e.index}].containerEdits`, e.qualified);
    this.addRules(e);
  }

  /** The device's feather/device-cgroup-rules annotation (rules.ts), each rule once. */
  private addRules(e: CdiDeviceEntry): void {
    const text = e.device.annotations?.[DEVICE_RULES_ANNOTATION];
    if (text === undefined) return;
    let rules;
    try {
      rules = parseDeviceRules(text);
    } catch (err: unknown) {
      throw bad(`CDI spec ${e.specFile.file}: field devices[${e.index}].annotations["${DEVICE_RULES_ANNOTATION}"]: ${err instanceof Error ? err.message : String(err)}; ${e.qualified} cannot be used`);
    }
    const seen = new Set(this.out.rules.map((r) => `${r.type} ${r.major}:${r.minor ?? '*'} ${r.access}`));
    for (const r of rules) {
      const key = `${r.type} ${r.major}:${r.minor ?? '*'} ${r.access}`;
      if (seen.has(key)) continue;
      seen.add(key);
      this.out.rules.push({ ...r, device: e.qualified });
    }
  }

  private hostPath(p: string): string {
    return this.root === '/' || this.root === '' ? p : join(this.root, p);
  }

  private apply(edits: CdiContainerEdits, file: string, path: string, device: string): void {
    const where = (field: string): string => `CDI spec ${file}: field ${path}.${field}`;
    if (edits.netDevices !== undefined && edits.netDevices.length > 0) {
      throw bad(`${where('netDevices')}: feather cannot move network devices into a container; ${device} cannot be used`);
    }
    if (edits.intelRdt !== undefined) {
      throw bad(`${where('intelRdt')}: feather does not apply Intel RDT settings; ${device} cannot be used`);
    }
    if (edits.additionalGids !== undefined && edits.additionalGids.length > 0) {
      this.warnings.push(`${where('additionalGids')} ignored: feather does not set supplementary groups (container root has them all)`);
    }
    for (const kv of edits.env ?? []) {
      const eq = kv.indexOf('=');
      this.out.env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    for (const [i, n] of (edits.deviceNodes ?? []).entries()) {
      const field = `deviceNodes[${i}]`;
      const host = this.hostPath(n.hostPath ?? n.path);
      const info = this.stat(host);
      if (info === undefined) {
        throw notFound(`${where(`${field}.${n.hostPath !== undefined ? 'hostPath' : 'path'}`)}: the device node ${host} does not exist on this host (is the driver loaded?); ${device} cannot be used`);
      }
      if (info.type === 'other') throw bad(`${where(field)}: ${host} is not a device node; ${device} cannot be used`);
      const want = n.type === 'u' ? 'c' : n.type;
      if (want !== undefined && want !== info.type) {
        throw bad(`${where(`${field}.type`)}: the spec says "${n.type}" but ${host} is a ${info.type === 'b' ? 'block device' : info.type === 'c' ? 'character device' : 'fifo'}`);
      }
      if (n.major !== undefined && (n.major !== info.major || n.minor !== info.minor)) {
        this.warnings.push(`${where(field)}: the spec says ${n.major}:${n.minor} but ${host} is ${info.major}:${info.minor}; the host node's numbers are used`);
      }
      const node: ResolvedDeviceNode = {
        hostPath: host, containerPath: n.path, type: info.type, major: info.major, minor: info.minor,
        access: n.permissions ?? 'rwm', device,
      };
      const at = this.out.nodes.findIndex((x) => x.containerPath === node.containerPath);
      if (at >= 0) this.out.nodes[at] = node; else this.out.nodes.push(node);
    }
    for (const [i, m] of (edits.mounts ?? []).entries()) {
      const field = `mounts[${i}]`;
      const options = m.options ?? [];
      const isBind = m.type === undefined || m.type === 'bind' || m.type === 'rbind' || m.type === 'none' || options.includes('bind') || options.includes('rbind');
      if (!isBind) throw bad(`${where(`${field}.type`)}: only bind mounts are supported, not "${m.type ?? ''}"; ${device} cannot be used`);
      if (!m.hostPath.startsWith('/')) throw bad(`${where(`${field}.hostPath`)}: ${JSON.stringify(m.hostPath)} must be an absolute path for a bind mount`);
      const source = this.hostPath(m.hostPath);
      if (!this.exists(source)) throw notFound(`${where(`${field}.hostPath`)}: ${source} does not exist on this host; ${device} cannot be used`);
      let readonly = false;
      for (const o of options) {
        if (o === 'ro') readonly = true;
        else if (o === 'rw') readonly = false;
      }
      const mount = { source, target: m.containerPath, readonly };
      const at = this.out.mounts.findIndex((x) => x.target === mount.target);
      if (at >= 0) this.out.mounts[at] = mount; else this.out.mounts.push(mount);
    }
    for (const h of edits.hooks ?? []) {
      this.out.hooks.push({ hookName: h.hookName, path: h.path, args: h.args ?? [h.path], env: h.env ?? [], timeoutS: h.timeout, device });
    }
  }
}

/**
 * The merged edits of `names`, in order ("=all" expanded, duplicates once), with the warnings
 * about what could not be applied exactly (ignored fields).
 */
export function resolveCdiDevices(registry: CdiRegistry, names: readonly string[], opts: ResolveOptions = {}): { edits: ResolvedEdits; warnings: string[] } {
  const b = new EditsBuilder(registry.root, opts.stat ?? statNode, opts.exists ?? defaultExists);
  for (const name of names) for (const entry of lookup(registry, name)) b.addDevice(entry);
  return { edits: b.out, warnings: b.warnings };
}
