// What `feather-agent info` adds to the inventory (inventory.ts): the CDI names each accelerator
// goes by in container.run's "devices" (the inventory's `cdi`, from cdi/names.ts; for a spec the
// daemon has not written yet, the name it will write at start), every CDI device on disk, and the
// spec files that could not be read.
import { CdiRegistry } from './cdi/registry.js';
import { generatedNames } from './cdi/generate.js';
import { acceleratorCdiNames } from './cdi/names.js';
import type { Accelerator } from '../../shared/protocol/inventory.js';

export interface CdiView {
  /** Accelerator device path -> CDI names that give it to a container (absent: none). */
  names: Map<string, string[]>;
  /** Every CDI device on disk. */
  devices: string[];
  /** Spec files that could not be read, with why. */
  errors: string[];
  dirs: string;
}

/** What the CDI specs under `root` (or in `registry`, already read from there) say about these accelerators. */
export function cdiView(accelerators: readonly Accelerator[], root: string, registry?: CdiRegistry): CdiView {
  const reg = registry ?? CdiRegistry.load({ root });
  const names = new Map([...acceleratorCdiNames(reg, accelerators)].filter(([, list]) => list.length > 0));
  const planned = generatedNames(accelerators);
  for (const a of accelerators) {
    const name = planned.get(a.device);
    if (!names.has(a.device) && name !== undefined) names.set(a.device, [`${name} (written at daemon start)`]);
  }
  return { names, devices: reg.deviceNames(), errors: reg.errors.map((e) => e.error.message), dirs: reg.describeDirs() };
}
