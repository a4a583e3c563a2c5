// Which accelerator devices each replica on one board gets, as CDI names for its desired workload
// (docs/scheduling.md, "Which device a replica gets"). The scheduler counts devices per pool
// (accelerators.ts); this names them. Pure: the board's inventory accelerators, the replicas on it
// with what each holds, and the names each was given last time.
//
// Per pool (the NVIDIA GPUs, Edge TPUs, NPUs, render GPUs; a device is a node, sameDevice()):
//   1. holders, by deployment then replica, keep the devices they were given last time, if those
//      are still there, can be held and no holder before them kept them;
//   2. holders then take the devices they still need from the free ones, by node path;
//   3. sharers get every device no holder has.
// A device is named by its first CDI name that no other device of the pool shares (the agent
// lists per-device names first), else its first. A device with no name (the inventory says none,
// or does not say) is given to no container: the replica runs without it and a note says why.
import { POOL_NAMES, POOL_OF, namelessAt, sameDevice, type AcceleratorEntry } from './accelerators.js';
import type { AcceleratorKind } from '../model/types.js';

/** One accelerator device of a pool, as the inventory lists it. */
export interface PoolDevice {
  /** Its node (`accelerators[].device`). */
  device: string;
  /** The CDI names of its entries, in the agent's order, once each; undefined when no entry says. */
  cdi: string[] | undefined;
  /** False when the inventory says no CDI name gives it: no replica can hold it. */
  holdable: boolean;
}

/** One replica on the board. */
export interface ReplicaOnBoard {
  container: string;
  deployment: string;
  replica: number;
  accelerator: AcceleratorKind;
  /** Devices it holds of its accelerator's pool; 0: shares them. */
  need: number;
}

/** Why a replica does not get all it should. */
export interface DeviceNote {
  container: string;
  accelerator: AcceleratorKind;
  message: string;
}

export interface Assignment {
  /** Container -> CDI names, for every replica on an accelerator that gets some. */
  names: Map<string, string[]>;
  /** Container -> device nodes it gets (named or not), for every replica on an accelerator. */
  nodes: Map<string, string[]>;
  notes: DeviceNote[];
}

const byNode = (a: PoolDevice, b: PoolDevice): number => a.device.localeCompare(b.device, 'en', { numeric: true });

/** The distinct devices of a pool in an inventory, by node path. */
export function poolDevices(accelerators: readonly AcceleratorEntry[], pool: number): PoolDevice[] {
  const out: PoolDevice[] = [];
  accelerators.forEach((a, n) => {
    if (POOL_OF[a.kind as AcceleratorKind] !== pool) return;
    const first = accelerators.findIndex((b) => sameDevice(a, b));
    if (first !== n) return;
    let cdi: string[] | undefined;
    for (const b of accelerators) {
      if (!sameDevice(a, b) || b.cdi === undefined) continue;
      cdi ??= [];
      for (const name of b.cdi) if (!cdi.includes(name)) cdi.push(name);
    }
    out.push({ device: a.device, cdi, holdable: !namelessAt(accelerators, n) });
  });
  return out.sort(byNode);
}

/** The name a device goes by in workloads: its first name no other device of the pool has, else its first. */
export function deviceName(d: PoolDevice, pool: readonly PoolDevice[]): string | undefined {
  const names = d.cdi ?? [];
  return names.find((n) => !pool.some((o) => o !== d && o.cdi?.includes(n) === true)) ?? names[0];
}

const order = (a: ReplicaOnBoard, b: ReplicaOnBoard): number => (a.deployment < b.deployment ? -1 : a.deployment > b.deployment ? 1 : a.replica - b.replica);

/**
 * The devices of every replica on one board. `previous`: container -> the CDI names its workload
 * was given last (the device's stored desired state), so replicas that stay keep their devices.
 */
export function assignDevices(accelerators: readonly AcceleratorEntry[], replicas: readonly ReplicaOnBoard[], previous: ReadonlyMap<string, readonly string[]> = new Map()): Assignment {
  const result: Assignment = { names: new Map(), nodes: new Map(), notes: [] };
  const pools = new Map<number, ReplicaOnBoard[]>();
  for (const r of replicas) {
    const p = POOL_OF[r.accelerator];
    if (p === undefined || p < 0) continue;
    const list = pools.get(p) ?? [];
    list.push(r);
    pools.set(p, list);
  }
  for (const [pool, mine] of [...pools].sort((a, b) => a[0] - b[0])) {
    const devices = poolDevices(accelerators, pool);
    const named = new Map(devices.map((d) => [d, deviceName(d, devices)]));
    const holders = mine.filter((r) => r.need > 0).sort(order);
    const sharers = mine.filter((r) => r.need === 0).sort(order);
    const taken = new Set<PoolDevice>();
    const given = new Map<ReplicaOnBoard, PoolDevice[]>(mine.map((r) => [r, []]));
    const take = (r: ReplicaOnBoard, d: PoolDevice): void => {
      taken.add(d);
      given.get(r)?.push(d);
    };
    for (const h of holders) {
      for (const name of previous.get(h.container) ?? []) {
        if ((given.get(h)?.length ?? 0) >= h.need) break;
        const d = devices.find((x) => x.holdable && !taken.has(x) && named.get(x) === name);
        if (d !== undefined) take(h, d);
      }
    }
    for (const h of holders) {
      const have = given.get(h) as PoolDevice[];
      for (const d of devices) {
        if (have.length >= h.need) break;
        if (d.holdable && !taken.has(d)) take(h, d);
      }
      if (have.length < h.need) {
        const nameless = devices.filter((d) => !d.holdable).length;
        result.notes.push({
          container: h.container, accelerator: h.accelerator,
          message: `holds ${h.need} ${POOL_NAMES[pool]} device${h.need === 1 ? '' : 's'}, but only ${have.length} ${have.length === 1 ? 'is' : 'are'} left for it on the board (${devices.length} in its inventory${nameless > 0 ? `, ${nameless} without a CDI name` : ''}); it runs with ${have.length}`,
        });
      }
    }
    const free = devices.filter((d) => !taken.has(d));
    for (const s of sharers) {
      for (const d of free) take(s, d);
      if (free.length === 0) {
        result.notes.push({ container: s.container, accelerator: s.accelerator, message: `shares the ${POOL_NAMES[pool]} devices, but the board has none free (${devices.length} in its inventory, all held); it runs without one` });
      }
    }
    for (const r of mine) {
      const list = [...(given.get(r) ?? [])].sort(byNode);
      result.nodes.set(r.container, list.map((d) => d.device));
      const names: string[] = [];
      for (const d of list) {
        const name = named.get(d);
        if (name !== undefined) {
          if (!names.includes(name)) names.push(name);
          continue;
        }
        result.notes.push({
          container: r.container, accelerator: r.accelerator,
          message: d.cdi === undefined
            ? `${r.accelerator} device ${d.device}: the board's inventory does not list CDI names (an agent older than accelerators[].cdi); the container does not get it`
            : `${r.accelerator} device ${d.device} has no CDI name (no CDI spec on the board gives its node); the container does not get it`,
        });
      }
      if (names.length > 0) result.names.set(r.container, names);
    }
  }
  return result;
}
