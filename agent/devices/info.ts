// What `feather-agent info` adds to the inventory (inventory.ts): the CDI name each accelerator
// goes by in container.run's "devices" (a spec on disk, or the one the daemon writes at start),
// every CDI device on disk, and the spec files that could not be read.
import { CdiRegistry } from './cdi/registry.js';
import { GENERATED_KINDS } from './cdi/generate.js';
import type { Accelerator } from './inventory.js';

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
  for (const name of reg.deviceNames()) {
    const entry = reg.get(name);
    if (entry === undefined) continue;
    for (const edits of [entry.specFile.spec.containerEdits, entry.device.containerEdits]) {
      for (const n of edits?.deviceNodes ?? []) {
        const list = names.get(n.hostPath ?? n.path) ?? [];
        if (!list.includes(name)) list.push(name);
        names.set(n.hostPath ?? n.path, list);
      }
    }
  }
  for (const a of accelerators) {
    if (names.has(a.device)) continue;
    for (const k of GENERATED_KINDS) {
      const m = k.device.exec(a.device);
      if (m?.[1] !== undefined) names.set(a.device, [`${k.kind}=${m[1]} (written at daemon start)`]);
    }
  }
  return { names, devices: reg.deviceNames(), errors: reg.errors.map((e) => e.error.message), dirs: reg.describeDirs() };
}
