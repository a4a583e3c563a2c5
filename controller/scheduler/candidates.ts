// The devices a replica of one revision may go to, best first (docs/scheduling.md, "Scores"):
//   1. known to break the latency objective: last
//   2. accelerator rank in the preference list
//   3. spread: fewest replicas of this deployment, then latency, then most headroom
//      binpack: latency, then least headroom
//   4. device id
// Devices enter the heap by tier (1 and 2 together), lazily: a deployment whose best tier has
// room never looks at the rest of the fleet. A device's tier is the rank of its shape with every
// accelerator free; its key is the rank of what it offers now (an accelerator whose devices are
// held falls back to the next one on the list), never better than its tier, so the top of the
// heap is the best device as long as its key is below the next tier's rank. A device is popped,
// placed on, and pushed back with its new key; keys of devices inside the heap never change.
import type { Precision } from '../model/types.js';
import type { Choice, Rejection } from './choice.js';
import type { Fleet, Node } from './fleet.js';
import { Heap } from './heap.js';
import { UNKNOWN_BUCKET, type LatencyIndex, type LatencyTable } from './latency.js';

/** Per-device keys of the heap alive in a pass (one at a time), allocated once per pass. */
export class Scratch {
  readonly key: Float64Array;
  readonly bucket: Float64Array;
  readonly room: Float64Array;
  readonly est: Float64Array;
  readonly cnt: Int32Array;
  /** What a device offered when scored: still true when it is popped (only a placement on it takes its devices). */
  readonly choice: (Choice | undefined)[];

  constructor(n: number) {
    this.key = new Float64Array(n);
    this.bucket = new Float64Array(n);
    this.room = new Float64Array(n);
    this.est = new Float64Array(n);
    this.cnt = new Int32Array(n);
    this.choice = new Array<Choice | undefined>(n).fill(undefined);
  }
}

export interface CandidateSource {
  fleet: Fleet;
  latency: LatencyIndex;
  scratch: Scratch;
  /** What a replica runs on a device of this shape with every accelerator free: sets its tier. */
  shapeChoice: (node: Node) => Choice | Rejection;
  /** What a replica runs on this device now (`shape`: shapeChoice of it, when known). */
  choiceFor: (node: Node, shape?: Choice) => Choice | Rejection;
  /** The revision holds some accelerator exclusively: what a device offers may differ from its shape's choice. */
  exclusive: boolean;
  model: string;
  memBytes: number;
  cpuMilli: number;
  objective: number;
  strategy: 'spread' | 'binpack';
  /** Replicas of the deployment per device index (live). */
  counts: Int32Array;
}

const BREACH = 64;

interface Tier {
  rank: number;
  shapes: { choice: Choice; nodes: readonly Node[] }[];
}

export class Candidates {
  private readonly heap: Heap;
  /** Tiers not loaded yet, best rank first. */
  private readonly tiers: Tier[];
  private next = 0;
  /** Devices known to break the objective, held back until every tier is loaded. */
  private readonly breaching: number[] = [];
  private breachLoaded = false;
  /** Latency tables by precision, once looked up. */
  private readonly tables: Partial<Record<Precision, LatencyTable | null>> = {};

  constructor(private readonly src: CandidateSource) {
    const byRank = new Map<number, Tier>();
    for (const nodes of src.fleet.shapes.values()) {
      const first = nodes[0];
      if (!first) continue;
      const c = src.shapeChoice(first);
      if (!c.ok) continue;
      const tier = byRank.get(c.rank);
      if (tier) tier.shapes.push({ choice: c, nodes }); else byRank.set(c.rank, { rank: c.rank, shapes: [{ choice: c, nodes }] });
    }
    this.tiers = [...byRank.values()].sort((a, b) => a.rank - b.rank);
    const { key, bucket, room, cnt } = src.scratch;
    const less = src.strategy === 'binpack'
      ? (a: number, b: number): boolean => {
        const d = (key[a] as number) - (key[b] as number) || (bucket[a] as number) - (bucket[b] as number) || (room[a] as number) - (room[b] as number);
        return d !== 0 ? d < 0 : a < b;
      }
      : (a: number, b: number): boolean => {
        const d = (key[a] as number) - (key[b] as number) || (cnt[a] as number) - (cnt[b] as number)
          || (bucket[a] as number) - (bucket[b] as number) || (room[b] as number) - (room[a] as number);
        return d !== 0 ? d < 0 : a < b;
      };
    this.heap = new Heap([], less);
  }

  /** The best device left (which may no longer fit: the caller checks), or undefined. */
  pop(): number | undefined {
    const key = this.src.scratch.key;
    for (;;) {
      const top = this.heap.peek();
      // A device not loaded yet keys at least its tier's rank (BREACH for the held-back ones); on a tie it may still win.
      if (top !== undefined && (key[top] as number) < this.nextKey()) break;
      if (!this.loadNext()) break;
    }
    return this.heap.pop();
  }

  /** What device i offered when it was last scored (it came out of this heap). */
  choiceOf(i: number): Choice {
    return this.src.scratch.choice[i] as Choice;
  }

  /** Back into the heap with its key recomputed (after a placement on it, or refused), if it can take a replica. */
  push(i: number): void {
    const node = this.src.fleet.nodes[i] as Node;
    if (this.score(node, undefined, undefined)) this.heap.push(i);
  }

  private nextKey(): number {
    const tier = this.tiers[this.next];
    if (tier) return tier.rank;
    return this.breachLoaded || this.breaching.length === 0 ? Infinity : BREACH;
  }

  /**
   * Sets the device's keys for what it offers now; false when it cannot take a replica. `tierChoice`
   * and `table`: its shape's choice with every accelerator free and that choice's latency table.
   */
  private score(node: Node, tierChoice: Choice | undefined, table: LatencyTable | undefined): boolean {
    const { scratch, fleet, counts, objective, memBytes, cpuMilli } = this.src;
    const i = node.i;
    if (!fleet.fits(i, memBytes, cpuMilli)) return false;
    // Without accelerators held anywhere on it (or none asked for exclusively), it offers its shape's choice.
    const c = tierChoice !== undefined && (tierChoice.accelerator === 'cpu' || (!this.src.exclusive && (fleet.held[i] as number) === 0))
      ? tierChoice : this.src.choiceFor(node, tierChoice);
    if (!c.ok) return false;
    scratch.choice[i] = c;
    const t = c === tierChoice ? table : this.tableFor(c.precision);
    const e = t ? (t.est[i] as number) : NaN;
    scratch.est[i] = e;
    scratch.bucket[i] = t ? (t.bucket[i] as number) : UNKNOWN_BUCKET;
    scratch.room[i] = fleet.headroom(i, memBytes, cpuMilli);
    scratch.cnt[i] = counts[i] as number;
    scratch.key[i] = e > objective ? BREACH + c.rank : c.rank;
    return true;
  }

  private tableFor(precision: Precision): LatencyTable | undefined {
    let t = this.tables[precision];
    if (t === undefined) { t = this.src.latency.table(this.src.model, precision) ?? null; this.tables[precision] = t; }
    return t ?? undefined;
  }

  private loadNext(): boolean {
    const tier = this.tiers[this.next];
    if (!tier) {
      if (this.breachLoaded || this.breaching.length === 0) return false;
      this.breachLoaded = true;
      this.heap.pushAll(this.breaching);
      return true;
    }
    this.next++;
    const key = this.src.scratch.key;
    const items: number[] = [];
    for (const { choice, nodes } of tier.shapes) {
      const table = this.tableFor(choice.precision);
      for (const node of nodes) {
        if (!this.score(node, choice, table)) continue;
        if ((key[node.i] as number) >= BREACH) this.breaching.push(node.i); else items.push(node.i);
      }
    }
    this.heap.pushAll(items);
    return true;
  }
}
