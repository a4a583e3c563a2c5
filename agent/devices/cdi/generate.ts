// CDI specs the agent writes for accelerators whose vendors ship none: at daemon start, and again
// before each resolution (index.ts), from the inventory's detectors, into /var/run/cdi (under the
// CDI root) as feather-<vendor>-<class>.json.
//
//   detector device          CDI name                        spec file
//   /dev/apex_N              google.com/edgetpu=apex_N       feather-google.com-edgetpu.json
//   /dev/bus/usb/BBB/DDD     google.com/edgetpu=usbN         feather-google.com-edgetpu.json
//   /dev/hailoN              hailo.ai/hailo=hailoN           feather-hailo.ai-hailo.json
//   /dev/accel/accelN        kernel.org/accel=accelN         feather-kernel.org-accel.json
//
// A node device gets its node. A USB Coral re-enumerates when its firmware loads (1a6e:089a
// becomes 18d1:9302 on the same port with a new device number, so a new node and minor), which a
// node cannot follow: it gets its bus directory, bind-mounted read-only, and the device-cgroup
// numbers of every device that bus can hold (annotation feather/device-cgroup-rules, rules.ts).
// usbN counts USB Corals in sysfs port order, which re-enumeration keeps.
//
// A device some other spec file already lists (a vendor's, by host path; for USB, a mount of its
// bus directory or of /dev/bus/usb) gets no second name. Files of ours whose devices are gone are
// removed; other files are never touched. A file whose content has not changed is not rewritten.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Logger } from '../../../shared/logging.js';
import type { Accelerator } from '../../../shared/protocol/inventory.js';
import { naturalCompare } from '../host-fs.js';
import { CDI_SPEC_DIRS, CdiRegistry } from './registry.js';
import { statNode, type StatNode } from './resolve.js';
import { DEVICE_RULES_ANNOTATION } from './rules.js';
import { CDI_WRITE_VERSION } from './spec.js';
import type { CdiDeviceNodeSpec, CdiDeviceSpec, CdiSpec } from './types.js';

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

/** The USB Coral: a node under /dev/bus/usb; its CDI kind is the PCIe Coral's. */
export const USB_CORAL_KIND = 'google.com/edgetpu';
const USB_NODE = /^\/dev\/bus\/usb\/(\d{3})\/(\d{3})$/;
/** The USB device major (drivers/usb/core: USB_DEVICE_MAJOR); minor = (bus - 1) * 128 + devnum - 1. */
export const USB_DEVICE_MAJOR = 189;
const isUsbCoral = (a: Accelerator): boolean => a.kind === 'edgetpu' && USB_NODE.test(a.device);

/** "c 189:128-255 rw": every device number USB bus `bus` can give (devnum 1 to 128). */
export function usbBusRule(bus: number): string {
  const first = (bus - 1) * 128;
  return `c ${USB_DEVICE_MAJOR}:${first}-${first + 127} rw`;
}

/**
 * The CDI name each accelerator gets in our specs (device path -> name), whatever is on disk:
 * node kinds by their node, USB Corals as usb0, usb1… in detection (sysfs port) order.
 */
export function generatedNames(accelerators: readonly Accelerator[], kinds: readonly GeneratedKind[] = GENERATED_KINDS): Map<string, string> {
  const out = new Map<string, string>();
  let usb = 0;
  for (const a of accelerators) {
    if (isUsbCoral(a)) {
      if (!out.has(a.device)) out.set(a.device, `${USB_CORAL_KIND}=usb${usb++}`);
      continue;
    }
    for (const k of kinds) {
      const name = k.device.exec(a.device)?.[1];
      if (name !== undefined) out.set(a.device, `${k.kind}=${name}`);
    }
  }
  return out;
}

export function generatedFileName(kind: string): string {
  return `${GENERATED_PREFIX}${kind.replace('/', '-')}.json`;
}

export interface GenerateOptions {
  /** The CDI root (config hostRoot). */
  root: string;
  /** Host paths some other spec already provides: not named again. */
  provided?: ReadonlySet<string> | undefined;
  /** Host directories some other spec bind-mounts: USB Corals under them are not named again. */
  providedDirs?: ReadonlySet<string> | undefined;
  stat?: StatNode | undefined;
  kinds?: readonly GeneratedKind[] | undefined;
}

/** The specs for these accelerators (pure, apart from stat of the nodes for their numbers). */
export function acceleratorSpecs(accelerators: readonly Accelerator[], opts: GenerateOptions): CdiSpec[] {
  const stat = opts.stat ?? statNode;
  const hostPath = (p: string): string => (opts.root === '/' ? p : join(opts.root, p));
  const byKind = new Map<string, CdiSpec>();
  const add = (kind: string, device: CdiDeviceSpec): void => {
    const spec = byKind.get(kind) ?? { cdiVersion: CDI_WRITE_VERSION, kind, annotations: { [GENERATED_ANNOTATION]: 'feather-agent' }, devices: [] };
    if (!spec.devices.some((d) => d.name === device.name)) spec.devices.push(device);
    byKind.set(kind, spec);
  };
  const names = generatedNames(accelerators, opts.kinds ?? GENERATED_KINDS);
  for (const acc of accelerators) {
    const qualified = names.get(acc.device);
    if (qualified === undefined || opts.provided?.has(acc.device) === true) continue;
    const eq = qualified.indexOf('=');
    const [kind, name] = [qualified.slice(0, eq), qualified.slice(eq + 1)];
    const model = `${acc.vendor} ${acc.model}`;
    const usb = USB_NODE.exec(acc.device);
    if (usb?.[1] !== undefined && isUsbCoral(acc)) {
      if (Number(usb[1]) < 1) continue; // buses are numbered from 1
      const busDir = `/dev/bus/usb/${usb[1]}`;
      if ([busDir, '/dev/bus/usb', '/dev/bus', '/dev'].some((d) => opts.providedDirs?.has(d) === true)) continue;
      if (stat(hostPath(busDir)) === undefined) continue; // no usbfs nodes (no devtmpfs?): nothing to give
      add(kind, {
        name,
        annotations: { 'feather/model': model, 'feather/usb-bus': String(Number(usb[1])), [DEVICE_RULES_ANNOTATION]: usbBusRule(Number(usb[1])) },
        containerEdits: { mounts: [{ hostPath: busDir, containerPath: busDir, options: ['ro', 'nosuid', 'noexec', 'bind'] }] },
      });
      continue;
    }
    const info = stat(hostPath(acc.device));
    if (info === undefined) continue; // detected through sysfs, but no node: nothing to give
    const node: CdiDeviceNodeSpec = { path: acc.device, permissions: 'rw' };
    if (info.type === 'c' || info.type === 'b') Object.assign(node, { type: info.type, major: info.major, minor: info.minor });
    add(kind, { name, annotations: { 'feather/model': model }, containerEdits: { deviceNodes: [node] } });
  }
  for (const spec of byKind.values()) spec.devices.sort((a, b) => naturalCompare(a.name, b.name));
  return [...byKind.values()].sort((a, b) => a.kind.localeCompare(b.kind));
}

export interface GenerateResult {
  /** Files written (absolute): new, or with a content that changed. */
  written: string[];
  /** Files of ours left as they were (same content). */
  unchanged: string[];
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
  const providedDirs = new Set(opts.providedDirs ?? []);
  for (const s of others.specs) {
    if (basename(s.file).startsWith(GENERATED_PREFIX) && s.spec.annotations?.[GENERATED_ANNOTATION] !== undefined) continue;
    for (const edits of [s.spec.containerEdits, ...s.spec.devices.map((d) => d.containerEdits)]) {
      for (const n of edits?.deviceNodes ?? []) provided.add(n.hostPath ?? n.path);
      for (const m of edits?.mounts ?? []) providedDirs.add(m.hostPath.replace(/\/+$/, '') || '/');
    }
  }
  const specs = acceleratorSpecs(accelerators, { ...opts, provided, providedDirs });
  const result: GenerateResult = { written: [], unchanged: [], removed: [], devices: [] };
  const keep = new Set<string>();
  if (specs.length > 0) mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const spec of specs) {
    const file = join(dir, generatedFileName(spec.kind));
    const text = JSON.stringify(spec, null, 2) + '\n';
    keep.add(file);
    result.devices.push(...spec.devices.map((d) => `${spec.kind}=${d.name}`));
    if (readIfAny(file) === text) {
      result.unchanged.push(file);
      continue;
    }
    const tmp = join(dir, `.${basename(file)}.${process.pid}.tmp`);
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, file);
    result.written.push(file);
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

function readIfAny(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
