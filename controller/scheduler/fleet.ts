// The devices of one scheduling pass: sorted by id (the last tie-break), grouped by shape
// (architecture + accelerator kinds, so filters run once per shape, not once per device), with
// free memory, CPU and accelerator devices kept in typed arrays and updated as replicas are placed.
import type { AcceleratorKind, Arch, DeviceView } from '../model/types.js';
import { KIND_BIT, POOL_AT, POOL_OF, POOLS, countPools, poolFits } from './accelerators.js';
import { deviceKinds, shapeKey } from './choice.js';

/** online; offline within the grace period (placements stay, nothing new); offline past it. */
export type NodeState = 'online' | 'grace' | 'expired';

export interface Node {
  /** Position in id order. */
  i: number;
  id: string;
  view: DeviceView;
  state: NodeState;
  /** undefined until the device has reported an inventory: nothing is placed there. */
  arch: Arch | undefined;
  kinds: ReadonlySet<AcceleratorKind>;
  /** KIND_BIT of each accelerator kind it has, cpu excluded (0: no accelerator). */
  kindBits: number;
  /**
   * KIND_BIT of each kind whose pool has devices but none a replica can hold: the inventory says
   * no CDI name gives any of them (accelerators.ts, namelessAt). Part of the shape.
   */
  nameless: number;
  shape: string;
  /** A small number per shape (masks of held kinds are memoized by it). */
  shapeId: number;
  memTotal: number;
  /** Millicores. */
  cpuTotal: number;
  /** Index of its board class in Fleet.classes. */
  cls: number;
}

/** CPU is counted in millicores so sums of 0.1 + 0.2 stay exact. */
export const milli = (cpus: number): number => Math.round(cpus * 1000);

export class Fleet {
  readonly nodes: Node[] = [];
  readonly byId = new Map<string, Node>();
  readonly memFree: Float64Array;
  readonly cpuFree: Float64Array;
  /** Per device and pool (index i * POOLS + pool): devices in the inventory; devices no replica holds; replicas sharing. */
  readonly accCap: Int32Array;
  /** The same: devices in the inventory a replica can hold (not nameless). Holders take only these. */
  readonly accHoldable: Int32Array;
  readonly accFree: Int32Array;
  readonly accSharing: Int32Array;
  /** Accelerator devices held by replicas, per device: 0 means every pool is as the inventory says. */
  readonly held: Int32Array;
  /** Online devices with an inventory, by shape, in id order: where new replicas may go. */
  readonly shapes = new Map<string, Node[]>();
  /** Board classes, in order of first appearance. */
  readonly classes: string[] = [];
  /** Distinct shapes (Node.shapeId is below it). */
  readonly shapeCount: number;

  constructor(devices: readonly DeviceView[], now: number, graceMs: number, reserved: { memoryBytes: number; cpus: number }) {
    const sorted = [...devices].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    // Devices of one kind share their accelerator set and shape key.
    const kindsBy = new Map<string, { kinds: ReadonlySet<AcceleratorKind>; kindBits: number; nameless: number; shape: string; shapeId: number }>();
    const shapeIds = new Map<string, number>();
    const classIndex = new Map<string, number>();
    for (const view of sorted) {
      if (this.byId.has(view.id)) continue;
      const inv = view.inventory;
      let sig = inv ? inv.arch : '';
      // An entry that says no CDI name gives it is marked: whether a pool is nameless follows from the marks.
      for (const a of inv?.accelerators ?? []) sig += a.cdi !== undefined && a.cdi.length === 0 ? `,${a.kind}!` : `,${a.kind}`;
      let k = kindsBy.get(sig);
      if (!k) {
        const kinds = deviceKinds(inv?.accelerators ?? []);
        let kindBits = 0;
        for (const kind of kinds) if (kind !== 'cpu') kindBits |= KIND_BIT[kind] ?? 0;
        const nameless = namelessKinds(inv?.accelerators ?? [], kindBits);
        const shape = inv ? shapeKey(inv.arch, kinds) + (nameless !== 0 ? `|!${nameless}` : '') : '';
        let shapeId = shapeIds.get(shape);
        if (shapeId === undefined) { shapeId = shapeIds.size; shapeIds.set(shape, shapeId); }
        k = { kinds, kindBits, nameless, shape, shapeId };
        kindsBy.set(sig, k);
      }
      let cls = classIndex.get(view.boardClass);
      if (cls === undefined) { cls = this.classes.length; this.classes.push(view.boardClass); classIndex.set(view.boardClass, cls); }
      const state: NodeState = view.online ? 'online' : now - view.lastSeen <= graceMs ? 'grace' : 'expired';
      const node: Node = {
        i: this.nodes.length, id: view.id, view, state, cls,
        arch: inv?.arch, kinds: k.kinds, kindBits: k.kindBits, nameless: k.nameless, shape: k.shape, shapeId: k.shapeId,
        memTotal: Math.max(0, (inv?.memoryBytes ?? 0) - reserved.memoryBytes),
        cpuTotal: Math.max(0, milli(inv?.cpu.cores ?? 0) - milli(reserved.cpus)),
      };
      this.nodes.push(node);
      this.byId.set(view.id, node);
      if (state === 'online' && inv) {
        let list = this.shapes.get(node.shape);
        if (!list) { list = []; this.shapes.set(node.shape, list); }
        list.push(node);
      }
    }
    this.shapeCount = shapeIds.size;
    this.memFree = new Float64Array(this.nodes.length);
    this.cpuFree = new Float64Array(this.nodes.length);
    this.accCap = new Int32Array(this.nodes.length * POOLS);
    this.accHoldable = new Int32Array(this.nodes.length * POOLS);
    this.accFree = new Int32Array(this.nodes.length * POOLS);
    this.accSharing = new Int32Array(this.nodes.length * POOLS);
    this.held = new Int32Array(this.nodes.length);
    for (const n of this.nodes) {
      this.memFree[n.i] = n.memTotal;
      this.cpuFree[n.i] = n.cpuTotal;
      if (n.kindBits !== 0) countPools(n.view.inventory?.accelerators ?? [], this.accCap, n.i * POOLS, this.accHoldable);
    }
    this.accFree.set(this.accCap);
  }

  /** Whether device i can give a replica running on `kind` the `need` devices it holds (0: one to share). */
  accFits(i: number, kind: AcceleratorKind, need: number): boolean {
    const p = POOL_OF[kind];
    if (p < 0) return true;
    return this.poolFits(i, p, need);
  }

  /** accFits by pool index (>= 0). A holder needs devices it can hold: holders so far took only those. */
  poolFits(i: number, pool: number, need: number): boolean {
    const at = i * POOLS + pool;
    const free = this.accFree[at] as number;
    return poolFits(free, this.accSharing[at] as number, need, (this.accHoldable[at] as number) - ((this.accCap[at] as number) - free));
  }

  accTake(i: number, kind: AcceleratorKind, need: number): void {
    this.accAdd(i, kind, need, 1);
  }

  accRelease(i: number, kind: AcceleratorKind, need: number): void {
    this.accAdd(i, kind, need, -1);
  }

  private accAdd(i: number, kind: AcceleratorKind, need: number, sign: 1 | -1): void {
    const p = POOL_OF[kind];
    if (p < 0) return;
    const at = i * POOLS + p;
    if (need > 0) {
      this.accFree[at] = (this.accFree[at] as number) - sign * need;
      this.held[i] = (this.held[i] as number) + sign * need;
    } else {
      this.accSharing[at] = (this.accSharing[at] as number) + sign;
    }
  }

  fits(i: number, memBytes: number, cpuMilli: number): boolean {
    return (this.memFree[i] as number) >= memBytes && (this.cpuFree[i] as number) >= cpuMilli;
  }

  take(i: number, memBytes: number, cpuMilli: number): void {
    this.memFree[i] = (this.memFree[i] as number) - memBytes;
    this.cpuFree[i] = (this.cpuFree[i] as number) - cpuMilli;
  }

  release(i: number, memBytes: number, cpuMilli: number): void {
    this.take(i, -memBytes, -cpuMilli);
  }

  /** The smaller of the free memory and free CPU fractions left after placing `mem`/`cpu` (0..1). */
  headroom(i: number, memBytes: number, cpuMilli: number): number {
    const n = this.nodes[i] as Node;
    const mem = n.memTotal > 0 ? ((this.memFree[i] as number) - memBytes) / n.memTotal : 0;
    const cpu = n.cpuTotal > 0 ? ((this.cpuFree[i] as number) - cpuMilli) / n.cpuTotal : 0;
    return mem < cpu ? mem : cpu;
  }
}

/** KIND_BITs (of `kindBits`) whose pool has devices and none a replica can hold. */
function namelessKinds(accelerators: readonly { kind: string; device: string; cdi?: readonly string[] | undefined }[], kindBits: number): number {
  if (kindBits === 0) return 0;
  const cap = [0, 0, 0, 0];
  const holdable = [0, 0, 0, 0];
  countPools(accelerators, cap, 0, holdable);
  let out = 0;
  for (let b = 0; b < 5; b++) {
    const p = POOL_AT[b] as number;
    if (((kindBits >> b) & 1) !== 0 && (cap[p] as number) > 0 && holdable[p] === 0) out |= 1 << b;
  }
  return out;
}
