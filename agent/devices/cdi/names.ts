// Which CDI names give each accelerator to a container: the inventory's `accelerators[].cdi`
// (shared/protocol/inventory.ts), which the controller puts in desired workloads, and the CDI
// column of `feather-agent info`. A name gives an accelerator when its device (or its spec's
// common edits) lists the accelerator's node as a device node (by host path), or bind-mounts a
// /dev directory holding it (the USB Coral's generated spec mounts its bus directory).
//
// Per accelerator, the names come in the order a caller should pick from: the names that give
// fewer of the board's accelerators first (NVIDIA's `nvidia.com/gpu=0` before `=all`), then a
// name whose device is not `all`, then natural order.
import { hasCode } from '../../../shared/errors.js';
import { naturalCompare } from '../host-fs.js';
import type { CdiRegistry } from './registry.js';

/** What of an accelerator names are matched on: its node. */
export interface NodeOf {
  device: string;
}

/** Accelerator device path -> the CDI names that give it (possibly none), for every accelerator given. */
export function acceleratorCdiNames(registry: CdiRegistry, accelerators: readonly NodeOf[]): Map<string, string[]> {
  /** Host node path -> names that list it; /dev directory a spec bind-mounts -> names. */
  const nodes = new Map<string, Set<string>>();
  const dirs = new Map<string, Set<string>>();
  const add = (map: Map<string, Set<string>>, key: string, name: string): void => {
    const set = map.get(key) ?? new Set<string>();
    set.add(name);
    map.set(key, set);
  };
  for (const name of registry.deviceNames()) {
    let entry;
    try {
      entry = registry.get(name);
    } catch (e: unknown) {
      if (hasCode(e, 'CONFLICT')) continue; // two files define it: it cannot be resolved
      throw e;
    }
    if (entry === undefined) continue;
    for (const edits of [entry.specFile.spec.containerEdits, entry.device.containerEdits]) {
      for (const n of edits?.deviceNodes ?? []) add(nodes, n.hostPath ?? n.path, name);
      for (const m of edits?.mounts ?? []) {
        const dir = m.hostPath.replace(/\/+$/, '');
        if (dir === '/dev' || dir.startsWith('/dev/')) add(dirs, dir, name);
      }
    }
  }
  const paths = [...new Set(accelerators.map((a) => a.device))];
  const found = new Map<string, Set<string>>();
  for (const path of paths) {
    const names = new Set(nodes.get(path) ?? []);
    for (const [dir, list] of dirs) if (path === dir || path.startsWith(`${dir}/`)) for (const n of list) names.add(n);
    found.set(path, names);
  }
  // How many of the board's accelerators each name gives: per-device names give one.
  const reach = new Map<string, number>();
  for (const names of found.values()) for (const n of names) reach.set(n, (reach.get(n) ?? 0) + 1);
  const isAll = (n: string): number => (n.endsWith('=all') ? 1 : 0);
  const order = (a: string, b: string): number => (reach.get(a) ?? 0) - (reach.get(b) ?? 0) || isAll(a) - isAll(b) || naturalCompare(a, b);
  return new Map([...found].map(([path, names]) => [path, [...names].sort(order)]));
}
