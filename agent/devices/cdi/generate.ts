// CDI specs the agent writes for accelerators whose vendors ship none: at daemon start, from the
// inventory's detectors, into /var/run/cdi (under the CDI root) as feather-<vendor>-<class>.json.
//
//   detector device          CDI name                        spec file
//   /dev/apex_N              google.com/edgetpu=apex_N       feather-google.com-edgetpu.json
//   /dev/hailoN              hailo.ai/hailo=hailoN           feather-hailo.ai-hailo.json
//   /dev/accel/accelN        kernel.org/accel=accelN         feather-kernel.org-accel.json
//
// A device some other spec file already lists (a vendor's, by host path) gets no second name.
// Files of ours whose devices are gone are removed; other files are never touched.
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Logger } from '../../../shared/logging.js';
import type { Accelerator } from '../accelerators.js';
import { naturalCompare } from '../host-fs.js';
import { CDI_SPEC_DIRS, CdiRegistry } from './registry.js';
import { statNode, type StatNode } from './resolve.js';
import { CDI_WRITE_VERSION } from './spec.js';
import type { CdiDeviceNodeSpec, CdiSpec } from './types.js';

/** Where the agent writes its specs (as on the host). */
export const GENERATED_SPEC_DIR = '/var/run/cdi';
export const GENERATED_PREFIX = 'feather-';
export const GENERATED_ANNOTATION = 'feather/generated-by';

/** How a detected accelerator's device node maps to a CDI kind and device name. */
export interface GeneratedKind {
  kind: string;
  /** Matches the accelerator's `device`; group 1 is the CDI device name. */
  device: RegExp;
}

export const GENERATED_KINDS: readonly GeneratedKind[] = [
  { kind: 'google.com/edgetpu', device: /^\/dev\/(apex_\d+)$/ },
  { kind: 'hailo.ai/hailo', device: /^\/dev\/(hailo\d+)$/ },
  { kind: 'kernel.org/accel', device: /^\/dev\/accel\/(accel\d+)$/ },
];

export function generatedFileName(kind: string): string {
  return `${GENERATED_PREFIX}${kind.replace('/', '-')}.json`;
}

export interface GenerateOptions {
  /** The CDI root (config hostRoot). */
  root: string;
  /** Host paths some other spec already provides: not named again. */
  provided?: ReadonlySet<string> | undefined;
  stat?: StatNode | undefined;
  kinds?: readonly GeneratedKind[] | undefined;
}

/** The specs for these accelerators (pure, apart from stat of the nodes for their numbers). */
export function acceleratorSpecs(accelerators: readonly Accelerator[], opts: GenerateOptions): CdiSpec[] {
  const stat = opts.stat ?? statNode;
  const byKind = new Map<string, CdiSpec>();
  for (const acc of accelerators) {
    for (const k of opts.kinds ?? GENERATED_KINDS) {
      const name = k.device.exec(acc.device)?.[1];
      if (name === undefined || opts.provided?.has(acc.device) === true) continue;
      const host = opts.root === '/' ? acc.device : join(opts.root, acc.device);
      const info = stat(host);
      if (info === undefined) continue; // detected through sysfs, but no node: nothing to give
      const node: CdiDeviceNodeSpec = { path: acc.device, permissions: 'rw' };
      if (info.type === 'c' || info.type === 'b') Object.assign(node, { type: info.type, major: info.major, minor: info.minor });
      const spec = byKind.get(k.kind) ?? { cdiVersion: CDI_WRITE_VERSION, kind: k.kind, annotations: { [GENERATED_ANNOTATION]: 'feather-agent' }, devices: [] };
      if (!spec.devices.some((d) => d.name === name)) {
        spec.devices.push({ name, annotations: { 'feather/model': `${acc.vendor} ${acc.model}` }, containerEdits: { deviceNodes: [node] } });
      }
      byKind.set(k.kind, spec);
    }
  }
  for (const spec of byKind.values()) spec.devices.sort((a, b) => naturalCompare(a.name, b.name));
  return [...byKind.values()].sort((a, b) => a.kind.localeCompare(b.kind));
}

export interface GenerateResult {
  /** Files written (absolute). */
  written: string[];
  /** Files of ours removed because their devices are gone. */
  removed: string[];
  /** CDI names now provided by the files written. */
  devices: string[];
}

/** Write the specs under <root>/var/run/cdi, replacing ours; each file atomically. */
export function writeAcceleratorSpecs(accelerators: readonly Accelerator[], opts: GenerateOptions & { logger?: Logger | undefined }): GenerateResult {
  const dir = join(opts.root, GENERATED_SPEC_DIR);
  // Host paths other spec files (not ours) already give a name to.
  const others = CdiRegistry.load({ root: opts.root, dirs: CDI_SPEC_DIRS });
  const provided = new Set(opts.provided ?? []);
  for (const s of others.specs) {
    if (basename(s.file).startsWith(GENERATED_PREFIX) && s.spec.annotations?.[GENERATED_ANNOTATION] !== undefined) continue;
    for (const edits of [s.spec.containerEdits, ...s.spec.devices.map((d) => d.containerEdits)]) {
      for (const n of edits?.deviceNodes ?? []) provided.add(n.hostPath ?? n.path);
    }
  }
  const specs = acceleratorSpecs(accelerators, { ...opts, provided });
  const result: GenerateResult = { written: [], removed: [], devices: [] };
  const keep = new Set<string>();
  if (specs.length > 0) mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const spec of specs) {
    const file = join(dir, generatedFileName(spec.kind));
    const tmp = join(dir, `.${basename(file)}.${process.pid}.tmp`);
    writeFileSync(tmp, JSON.stringify(spec, null, 2) + '\n', { mode: 0o644 });
    renameSync(tmp, file);
    keep.add(file);
    result.written.push(file);
    result.devices.push(...spec.devices.map((d) => `${spec.kind}=${d.name}`));
  }
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch { /* no directory: nothing of ours to remove */ }
  for (const n of names) {
    const file = join(dir, n);
    if (!n.startsWith(GENERATED_PREFIX) || !n.endsWith('.json') || keep.has(file)) continue;
    rmSync(file, { force: true });
    result.removed.push(file);
  }
  opts.logger?.info('cdi.specs_generated', { ...result });
  return result;
}
