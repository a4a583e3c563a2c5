// The devices a replica of one revision may go to, best first (docs/scheduling.md, "Scores"):
//   1. known to break the latency objective: last
//   2. accelerator rank in the preference list
//   3. spread: fewest replicas of this deployment, then latency, then most headroom
//      binpack: latency, then least headroom
//   4. device id
// Devices enter the heap by tier (1 and 2 together), lazily: a deployment whose best tier has
// room never looks at the rest of the fleet. A device is popped, placed on, and pushed back with
// its new key; keys of devices inside the heap never change.
import type { Choice, Rejection } from './choice.js';
import type { Fleet, Node } from './fleet.js';
import { Heap } from './heap.js';
import { UNKNOWN_BUCKET, type LatencyIndex } from './latency.js';

/** Per-device keys of the heap alive in a pass (one at a time), allocated once per pass. */
export class Scratch {
  readonly key: Float64Array;
  readonly bucket: Float64Array;
  readonly room: Float64Array;
  readonly est: Float64Array;
  readonly cnt: Int32Array;

  constructor(n: number) {
    this.key = new Float64Array(n);
    this.bucket = new Float64Array(n);
    this.room = new Float64Array(n);
    this.est = new Float64Array(n);
    this.cnt = new Int32Array(n);
  }
}

export interface CandidateSource {
  fleet: Fleet;
  latency: LatencyIndex;
  scratch: Scratch;
  choiceFor: (node: Node) => Choice | Rejection;
  model: string;
  memBytes: number;
  cpuMilli: number;
  objective: number;
  strategy: 'spread' | 'binpack';
  /** Replicas of the deployment per device index (live). */
  counts: Int32Array;
}

const BREACH = 64;

export class Candidates {
  private readonly heap: Heap;
  /** Shapes not loaded yet, grouped by rank, best rank first. */
  private readonly ranks: { choice: Choice; nodes: readonly Node[] }[][];
  private next = 0;
  /** Devices known to break the objective, held back until every rank is loaded. */
  private readonly breaching: number[] = [];
  private breachLoaded = false;

  constructor(private readonly src: CandidateSource) {
    const byRank = new Map<number, { choice: Choice; nodes: readonly Node[] }[]>();
    for (const nodes of src.fleet.shapes.values()) {
      const first = nodes[0];
      if (!first) continue;
      const c = src.choiceFor(first);
      if (!c.ok) continue;
      const list = byRank.get(c.rank);
      if (list) list.push({ choice: c, nodes }); else byRank.set(c.rank, [{ choice: c, nodes }]);
    }
    this.ranks = [...byRank.keys()].sort((a, b) => a - b).map((r) => byRank.get(r) ?? []);
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
    while (this.heap.size === 0 && this.loadNext());
    return this.heap.pop();
  }

  /** Back into the heap, with its key recomputed (after a placement on it, or refused). */
  push(i: number): void {
    const { scratch, fleet, counts } = this.src;
    scratch.room[i] = fleet.headroom(i, this.src.memBytes, this.src.cpuMilli);
    scratch.cnt[i] = counts[i] as number;
    this.heap.push(i);
  }

  private loadNext(): boolean {
    const { scratch, fleet, latency, counts, objective } = this.src;
    const { key, bucket, room, est, cnt } = scratch;
    const group = this.ranks[this.next];
    if (!group) {
      if (this.breachLoaded || this.breaching.length === 0) return false;
      this.breachLoaded = true;
      this.heap.pushAll(this.breaching);
      return true;
    }
    this.next++;
    const items: number[] = [];
    for (const { choice, nodes } of group) {
      const table = latency.table(this.src.model, choice.precision);
      for (const node of nodes) {
        const i = node.i;
        if (!fleet.fits(i, this.src.memBytes, this.src.cpuMilli)) continue;
        const e = table ? (table.est[i] as number) : NaN;
        est[i] = e;
        bucket[i] = table ? (table.bucket[i] as number) : UNKNOWN_BUCKET;
        room[i] = fleet.headroom(i, this.src.memBytes, this.src.cpuMilli);
        cnt[i] = counts[i] as number;
        if (e > objective) {
          key[i] = BREACH + choice.rank;
          this.breaching.push(i);
        } else {
          key[i] = choice.rank;
          items.push(i);
        }
      }
    }
    this.heap.pushAll(items);
    return true;
  }
}
