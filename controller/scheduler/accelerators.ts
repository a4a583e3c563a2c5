// Accelerator devices as a consumable resource (docs/scheduling.md, "Accelerator devices").
//
// A device's accelerators fall into pools: the kinds that name the same silicon count against one
// pool (TensorRT runs on the CUDA GPU, and the agent reports it with the CUDA device's node).
// A pool's capacity is the number of distinct device nodes of its kinds in the inventory. A
// replica holds `need` whole devices of the pool it runs on (need >= 1: exclusive) or shares the
// devices no replica holds (need 0). Pure; the scheduler keeps per-device counts in typed arrays.
import { acceleratorNeed } from '../model/accelerators.js';
import type { AcceleratorDevices, AcceleratorKind } from '../model/types.js';

export const POOLS = 4;
/** Pool index per kind; -1 for cpu (not a device a replica holds). */
export const POOL_OF: Readonly<Record<AcceleratorKind, number>> = { tensorrt: 0, cuda: 0, edgetpu: 1, npu: 2, gpu: 3, cpu: -1 };
/** How a pool is named in reasons. */
export const POOL_NAMES: readonly string[] = ['cuda', 'edgetpu', 'npu', 'gpu'];
/** One bit per kind, for masks of kinds a device cannot give a replica right now: KIND_BIT[k] = 1 << KIND_POS[k]. */
export const KIND_POS: Readonly<Record<AcceleratorKind, number>> = { tensorrt: 0, cuda: 1, edgetpu: 2, npu: 3, gpu: 4, cpu: 5 };
export const KIND_BIT: Readonly<Record<AcceleratorKind, number>> = { tensorrt: 1, cuda: 2, edgetpu: 4, npu: 8, gpu: 16, cpu: 32 };
/** The pool of the kind at each bit position (POOL_OF by position; -1 for cpu). */
export const POOL_AT: readonly number[] = [0, 0, 1, 2, 3, -1];

/** What of an inventory's accelerator entry devices are counted by. */
export interface AcceleratorEntry {
  kind: string;
  device: string;
  /** CDI names that give it (the inventory's `cdi`); [] = none; absent = the agent does not say. */
  cdi?: readonly string[] | undefined;
}

/**
 * Whether two inventory entries are one accelerator device: the same node in the same pool (the
 * `cuda` and `tensorrt` entries of one GPU). Capacity counts these, and the controller hands them
 * out (assign.ts).
 */
export function sameDevice(a: AcceleratorEntry, b: AcceleratorEntry): boolean {
  return a.device === b.device && POOL_OF[a.kind as AcceleratorKind] === POOL_OF[b.kind as AcceleratorKind];
}

/**
 * Whether the inventory says that no CDI name gives the device of entry `n`: every entry of it
 * has `cdi: []`. Such a device cannot be handed to a container, so no replica can hold it; an
 * agent that does not say (no `cdi`) is taken at its word that the device is there.
 */
export function namelessAt(accelerators: readonly AcceleratorEntry[], n: number): boolean {
  const a = accelerators[n] as AcceleratorEntry;
  for (const b of accelerators) if (sameDevice(a, b) && (b.cdi === undefined || b.cdi.length > 0)) return false;
  return true;
}

/** Capacity per pool: distinct device nodes of the pool's kinds. */
export function poolCapacity(accelerators: readonly AcceleratorEntry[]): number[] {
  const cap = [0, 0, 0, 0];
  countPools(accelerators, cap, 0);
  return cap;
}

/**
 * poolCapacity added into out[at + pool] (the scheduler's typed arrays, without an array per
 * device); with `holdable`, the devices a replica can hold (not nameless) added into it the same way.
 */
export function countPools(accelerators: readonly AcceleratorEntry[], out: { [pool: number]: number }, at: number, holdable?: { [pool: number]: number }): void {
  // A handful of entries per device: a scan of the earlier ones beats a set.
  outer: for (let n = 0; n < accelerators.length; n++) {
    const a = accelerators[n] as AcceleratorEntry;
    const p = POOL_OF[a.kind as AcceleratorKind];
    if (p === undefined || p < 0) continue;
    for (let j = 0; j < n; j++) if (sameDevice(accelerators[j] as AcceleratorEntry, a)) continue outer;
    out[at + p] = (out[at + p] as number) + 1;
    if (holdable !== undefined && !namelessAt(accelerators, n)) holdable[at + p] = (holdable[at + p] as number) + 1;
  }
}

/**
 * Whether a pool with `free` devices nobody holds and `sharing` replicas sharing them takes one
 * more replica that holds `need`: a sharer needs one free device; a holder needs `need`, and must
 * leave one for the sharers already there. `holdFree`: how many of the free devices can be held
 * (the others are nameless); default all of them.
 */
export function poolFits(free: number, sharing: number, need: number, holdFree: number = free): boolean {
  return need > 0 ? free - need >= (sharing > 0 ? 1 : 0) && holdFree >= need : free >= 1;
}

/** Need per kind of one revision (cpu always 0). */
export function needsOf(devices: AcceleratorDevices | undefined): Record<AcceleratorKind, number> {
  return {
    tensorrt: acceleratorNeed(devices, 'tensorrt'), cuda: acceleratorNeed(devices, 'cuda'), edgetpu: acceleratorNeed(devices, 'edgetpu'),
    npu: acceleratorNeed(devices, 'npu'), gpu: acceleratorNeed(devices, 'gpu'), cpu: 0,
  };
}

/**
 * Why a device with these kinds fully held takes no replica (the same text for every such device:
 * rejections are counted by reason): "no free edgetpu device (a replica holds 1 edgetpu)". Kinds
 * in `nameless` (KIND_BITs) that a replica would hold have no device with a CDI name at all:
 * "no edgetpu device with a CDI name (a replica holds 1 edgetpu; the board's CDI specs give none)".
 */
export function busyReason(busy: readonly AcceleratorKind[], needs: Readonly<Record<AcceleratorKind, number>>, nameless = 0): string {
  const unnamed = busy.filter((k) => needs[k] > 0 && (nameless & KIND_BIT[k]) !== 0);
  const held = busy.filter((k) => !unnamed.includes(k));
  const parts: string[] = [];
  if (unnamed.length > 0) {
    parts.push(`no ${unnamed.join(' or ')} device with a CDI name (a replica holds ${unnamed.map((k) => `${needs[k]} ${k}`).join(', ')}; the board's CDI specs give none)`);
  }
  if (held.length > 0) {
    const holds = held.filter((k) => needs[k] > 0).map((k) => `${needs[k]} ${k}`);
    const shares = held.filter((k) => needs[k] === 0);
    const why = [
      holds.length > 0 ? `a replica holds ${holds.join(', ')}` : '',
      shares.length > 0 ? `${shares.join(', ')} shared, but every device is held by a replica that does not share` : '',
    ].filter((x) => x !== '').join('; ');
    parts.push(`no free ${held.join(' or ')} device (${why})`);
  }
  return parts.join('; ');
}

/** "1 edgetpu device" / "a cuda device to share": what a replica asks of a kind, in reasons. */
export function describeNeed(kind: AcceleratorKind, need: number): string {
  return need > 0 ? `${need} ${POOL_NAMES[POOL_OF[kind]] ?? kind} device${need === 1 ? '' : 's'}` : `a ${POOL_NAMES[POOL_OF[kind]] ?? kind} device to share`;
}
