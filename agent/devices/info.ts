// What `feather-agent info` adds to the inventory (inventory.ts): the CDI name each accelerator
// goes by in container.run's "devices" (a spec on disk, or the one the daemon writes at start),
// every CDI device on disk, and the spec files that could not be read.
import { CdiRegistry } from './cdi/registry.js';
import { generatedNames } from './cdi/generate.js';
import type { Accelerator } from '../../shared/protocol/inventory.js';

export interface CdiView {
  /** Accelerator device path -> CDI names that give it to a container. */
  names: Map<string, string[]>;
  /** Every CDI device on disk. */
  devices: string[];
  /** Spec files that could not be read, with why. */
  errors: string[];
  dirs: string;
}

/** What the CDI specs under `root` say about these accelerators. */
export function cdiView(accelerators: readonly Accelerator[], root: string): CdiView {
  const reg = CdiRegistry.load({ root });
  const names = new Map<string, string[]>();
  /** Directories specs bind-mount (a USB Coral's bus), with the names that mount them. */
  const dirs = new Map<string, string[]>();
  const add = (map: Map<string, string[]>, key: string, name: string): void => {
    const list = map.get(key) ?? [];
    if (!list.includes(name)) list.push(name);
    map.set(key, list);
  };
  for (const name of reg.deviceNames()) {
    const entry = reg.get(name);
    if (entry === undefined) continue;
    for (const edits of [entry.specFile.spec.containerEdits, entry.device.containerEdits]) {
      for (const n of edits?.deviceNodes ?? []) add(names, n.hostPath ?? n.path, name);
      for (const m of edits?.mounts ?? []) if (m.hostPath.startsWith('/dev/')) add(dirs, m.hostPath.replace(/\/+$/, ''), name);
    }
  }
  for (const a of accelerators) {
    for (const [dir, list] of dirs) {
      if (a.device.startsWith(`${dir}/`)) for (const n of list) add(names, a.device, n);
    }
  }
  const planned = generatedNames(accelerators);
  for (const a of accelerators) {
    const name = planned.get(a.device);
    if (!names.has(a.device) && name !== undefined) names.set(a.device, [`${name} (written at daemon start)`]);
  }
  return { names, devices: reg.deviceNames(), errors: reg.errors.map((e) => e.error.message), dirs: reg.describeDirs() };
}
