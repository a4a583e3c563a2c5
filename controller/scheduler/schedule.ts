// schedule(): a pure function from (devices, deployments, placements, measurements, health, now)
// to placements, moves and per-deployment status (docs/scheduling.md).
//
// 1. Existing placements, in (deployment, replica) order: dropped (deployment deleted, scaled
//    down, device no longer selected), kept as they are (no churn), or marked to move (device gone,
//    offline past grace, no longer fits, failing repeatedly, breaking its latency objective).
//    Kept ones take their memory, CPU and accelerator devices first.
// 2. Per deployment, in name order: moves, then missing replicas, each to the best device that
//    passes the filters (an accelerator whose devices are all held counts as absent). Candidates
//    of one revision sit in a heap ordered by the deployment's strategy; a device is popped,
//    placed on, and pushed back with its new key.
// 3. Status per deployment from the placements and the reported health.
import { formatBytes, parseMemory } from '../../shared/limits.js';
import { messageOf } from '../../shared/errors.js';
import { withDefaults, type NormalizedDeploymentSpec } from '../deployments/spec.js';
import type { AcceleratorKind, Placement } from '../model/types.js';
import { KIND_BIT, KIND_POS, POOL_AT, POOL_OF, POOLS, busyReason, describeNeed, needsOf } from './accelerators.js';
import { choose, stillValid, type Choice, type Rejection } from './choice.js';
import { Fleet, milli, type Node } from './fleet.js';
import { healthOf, indexHealth, type HealthIndex } from './health.js';
import { Candidates, Scratch } from './candidates.js';
import { LatencyIndex, type Breach } from './latency.js';
import { deploymentStatus } from './status.js';
import type {
  DeploymentInput, DeploymentRevision, Move, MoveReason, RejectCount, Removal, ScheduleInput, ScheduleResult,
} from './types.js';

export const SCHEDULER_DEFAULTS = { failureRestarts: 3, latencyWindowMs: 300_000, latencyMinSamples: 3, maxAvoid: 3 } as const;

/** Container name of a replica: stable across moves and revisions, unique on a device. */
export function containerName(deployment: string, replica: number): string {
  return `${deployment}-${replica}`;
}

export function selectorMatches(labels: Readonly<Record<string, string>>, selector: Readonly<Record<string, string>>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/** One revision of a deployment, with what the scheduler derives from it once per pass. */
export interface Rev {
  spec: NormalizedDeploymentSpec;
  revision: number;
  memBytes: number;
  cpuMilli: number;
  /** Accelerator devices a replica holds, per kind it runs on (0: shares them). */
  needs: Readonly<Record<AcceleratorKind, number>>;
  /** Accelerator kinds of the preference list (cpu excluded), and whether one of them is held exclusively. */
  devKinds: readonly AcceleratorKind[];
  exclusive: boolean;
  /** The same by bit position (KIND_POS): KIND_BITs of devKinds, and the need of each position. */
  devBits: number;
  needAt: readonly number[];
  /** Choice per device shape, every accelerator free. */
  choices: Map<string, Choice | Rejection>;
  /** Choice per device shape and mask of kinds whose devices are held (index shapeId * 64 + mask of KIND_BIT); [] until needed. */
  masked: (Choice | Rejection | undefined)[];
}

interface PendingMove {
  placement: Placement;
  rev: Rev;
  reason: MoveReason;
  detail: string;
  /** Stays where it is when nowhere better is found (offline, failing, slow); else unscheduled. */
  stays: boolean;
}

/** Per deployment state of one pass. */
export interface Dep {
  name: string;
  current: Rev;
  revs: Map<number, Rev>;
  error: string | undefined;
  kept: Map<number, Placement>;
  /** Replicas of this deployment per device index. */
  counts: Int32Array;
  moves: PendingMove[];
  /** Replicas without a device after this pass. */
  unscheduled: Set<number>;
  /** Selector deployments: matching devices that cannot host a replica. */
  unfitSelected: number;
  slow: Map<number, Breach>;
  /** Why a replica is where it is, when planning has something to say. */
  notes: Map<number, string>;
  rejects: RejectCount[];
}

function compileRev(r: DeploymentRevision): Rev {
  const spec = withDefaults(r.spec);
  return newRev(spec, r.revision, parseMemory(spec.resources.memory), milli(spec.resources.cpus), needsOf(spec.resources.accelerators));
}

/** Every Rev built here, fields in one order: the hot loops read them. */
function newRev(spec: NormalizedDeploymentSpec, revision: number, memBytes: number, cpuMilli: number, needs: Rev['needs']): Rev {
  const devKinds = spec.accelerators.filter((k) => k !== 'cpu');
  const needAt: number[] = [0, 0, 0, 0, 0, 0];
  for (const k of devKinds) needAt[KIND_POS[k]] = needs[k];
  return {
    spec, revision, memBytes, cpuMilli, needs, devKinds, exclusive: devKinds.some((k) => needs[k] > 0),
    devBits: devKinds.reduce((b, k) => b | KIND_BIT[k], 0), needAt, choices: new Map(), masked: [],
  };
}

export function schedule(input: ScheduleInput): ScheduleResult {
  return new Pass(input).run();
}

class Pass {
  private readonly opts: Required<Omit<NonNullable<ScheduleInput['options']>, 'reserved'>>;
  private readonly fleet: Fleet;
  private readonly latency: LatencyIndex;
  private readonly health: HealthIndex;
  private readonly deps = new Map<string, Dep>();
  private readonly moves: Move[] = [];
  private readonly removals: Removal[] = [];
  private readonly affected = new Set<string>();
  private readonly scratch: Scratch;

  constructor(private readonly input: ScheduleInput) {
    const o = input.options ?? {};
    this.opts = {
      failureRestarts: o.failureRestarts ?? SCHEDULER_DEFAULTS.failureRestarts,
      latencyWindowMs: o.latencyWindowMs ?? SCHEDULER_DEFAULTS.latencyWindowMs,
      latencyMinSamples: o.latencyMinSamples ?? SCHEDULER_DEFAULTS.latencyMinSamples,
      maxAvoid: o.maxAvoid ?? SCHEDULER_DEFAULTS.maxAvoid,
    };
    this.fleet = new Fleet(input.devices, input.now, input.graceMs, { memoryBytes: o.reserved?.memoryBytes ?? 0, cpus: o.reserved?.cpus ?? 0 });
    this.latency = new LatencyIndex(input.measurements, this.fleet);
    this.health = indexHealth(input.health ?? []);
    this.scratch = new Scratch(this.fleet.nodes.length);
  }

  run(): ScheduleResult {
    for (const d of [...this.input.deployments].sort((a, b) => cmp(a.spec.name, b.spec.name))) this.addDeployment(d);
    const existing = [...this.input.placements].sort((a, b) => cmp(a.deployment, b.deployment) || a.replica - b.replica || cmp(a.deviceId, b.deviceId));
    for (const p of existing) this.judge(p);
    for (const dep of this.deps.values()) if (!dep.error) this.place(dep);

    const placements: Placement[] = [];
    const status = [];
    for (const dep of this.deps.values()) {
      const mine = [...dep.kept.values()].sort((a, b) => a.replica - b.replica);
      placements.push(...mine);
      status.push(deploymentStatus(dep, mine, { fleet: this.fleet, health: this.health, latency: this.latency }));
    }
    return { placements, status, moves: this.moves, removals: this.removals, affectedDevices: [...this.affected].sort(cmp) };
  }

  private addDeployment(d: DeploymentInput): void {
    if (this.deps.has(d.spec.name)) return;
    const n = this.fleet.nodes.length;
    let current: Rev;
    const revs = new Map<number, Rev>();
    let error: string | undefined;
    try {
      current = compileRev(d);
      for (const o of d.others ?? []) if (o.revision !== d.revision) revs.set(o.revision, compileRev(o));
    } catch (e: unknown) {
      error = `invalid spec: ${messageOf(e)}`;
      // Its placements are kept as they are; they still hold accelerator devices (by the defaults).
      current = newRev(withDefaults(d.spec), d.revision, 0, 0, needsOf(undefined));
    }
    revs.set(d.revision, current);
    this.deps.set(d.spec.name, {
      name: d.spec.name, current, revs, error, kept: new Map(), counts: new Int32Array(n), moves: [],
      unscheduled: new Set(), unfitSelected: 0, slow: new Map(), notes: new Map(), rejects: [],
    });
  }

  /** What a replica of `rev` would run on a device of this shape with every accelerator free. */
  private shapeChoice(rev: Rev, node: Node): Choice | Rejection {
    let c = rev.choices.get(node.shape);
    if (!c) {
      c = node.arch === undefined
        ? { ok: false, kind: 'arch', reason: 'no inventory reported yet', detail: 'no inventory reported yet' }
        : choose(rev.spec, node.arch, node.kinds);
      rev.choices.set(node.shape, c);
    }
    return c;
  }

  /**
   * What a replica of `rev` would run on this device now: an accelerator whose devices are held
   * (or, for a sharer, all held) is as good as absent, so the next one on the list is chosen.
   */
  private choiceFor(rev: Rev, node: Node, shape?: Choice): Choice | Rejection {
    const base = shape ?? this.shapeChoice(rev, node);
    if (!base.ok || base.accelerator === 'cpu') return base;
    const i = node.i;
    if (!rev.exclusive && (this.fleet.held[i] as number) === 0) return base;
    const at = KIND_POS[base.accelerator];
    if (this.fleet.poolFits(i, POOL_AT[at] as number, rev.needAt[at] as number)) return base;
    let mask = 0;
    const bits = node.kindBits & rev.devBits;
    for (let b = 0; b < 5; b++) {
      if (((bits >> b) & 1) !== 0 && !this.fleet.poolFits(i, POOL_AT[b] as number, rev.needAt[b] as number)) mask |= 1 << b;
    }
    if (rev.masked.length === 0) rev.masked = new Array<Choice | Rejection | undefined>(this.fleet.shapeCount * 64).fill(undefined);
    const key = node.shapeId * 64 + mask;
    let c = rev.masked[key];
    if (!c) {
      c = choose(rev.spec, node.arch as NonNullable<Node['arch']>, new Set([...node.kinds].filter((k) => (mask & KIND_BIT[k]) === 0)));
      if (!c.ok && c.kind === 'accelerator') {
        const reason = busyReason(rev.devKinds.filter((k) => (mask & KIND_BIT[k]) !== 0), rev.needs, node.nameless);
        c = { ok: false, kind: 'accelerator', reason, detail: reason };
      }
      rev.masked[key] = c;
    }
    return c;
  }

  /** "1 of 1 held, 0 replicas sharing[, 1 without a CDI name]": the state of the pool a kind counts against, in reasons. */
  private poolState(node: Node, kind: AcceleratorKind): string {
    const at = node.i * POOLS + POOL_OF[kind];
    const cap = this.fleet.accCap[at] as number;
    const free = this.fleet.accFree[at] as number;
    const nameless = cap - (this.fleet.accHoldable[at] as number);
    return `${cap - free} of ${cap} held, ${this.fleet.accSharing[at] as number} replicas sharing${nameless > 0 ? `, ${nameless} without a CDI name` : ''}`;
  }

  private remove(p: Placement, reason: Removal['reason']): void {
    this.removals.push({ deployment: p.deployment, replica: p.replica, deviceId: p.deviceId, reason });
    this.affected.add(p.deviceId);
  }

  private keep(dep: Dep, p: Placement, node: Node, rev: Rev): void {
    dep.kept.set(p.replica, p);
    dep.counts[node.i] = (dep.counts[node.i] as number) + 1;
    this.fleet.take(node.i, rev.memBytes, rev.cpuMilli);
    this.fleet.accTake(node.i, p.accelerator, rev.needs[p.accelerator] ?? 0);
  }

  /** Pass 1: keep, drop or mark one existing placement. */
  private judge(p: Placement): void {
    const dep = this.deps.get(p.deployment);
    if (!dep) return this.remove(p, 'deleted');
    if (dep.error) {
      dep.kept.set(p.replica, p);
      const at = this.fleet.byId.get(p.deviceId);
      if (at) this.fleet.accTake(at.i, p.accelerator, dep.current.needs[p.accelerator] ?? 0);
      return;
    }
    if (dep.kept.has(p.replica) || dep.moves.some((m) => m.placement.replica === p.replica)) return this.remove(p, 'duplicate');
    const rev = dep.revs.get(p.revision) ?? dep.current;
    const selector = dep.current.spec.selector;
    const replicas = dep.current.spec.replicas ?? 0;
    if (!selector && p.replica >= replicas) return this.remove(p, 'scaled-down');
    const node = this.fleet.byId.get(p.deviceId);
    const mark = (reason: MoveReason, detail: string, stays: boolean): void => { dep.moves.push({ placement: p, rev, reason, detail, stays }); };

    if (!node) {
      if (selector) return this.remove(p, 'unselected');
      return mark('device-gone', `device ${p.deviceId} is no longer known`, false);
    }
    if (selector) {
      if (!selectorMatches(node.view.labels, selector)) return this.remove(p, 'unselected');
      if ((dep.counts[node.i] as number) > 0) return this.remove(p, 'duplicate');
    }
    if (node.state === 'expired' && !selector) {
      const mins = Math.round((this.input.now - node.view.lastSeen) / 60_000);
      mark('device-offline', `device ${node.id} offline for ${mins} min, past the ${Math.round(this.input.graceMs / 1000)} s grace period`, true);
      return this.keep(dep, p, node, rev);
    }
    if (node.state !== 'online' || node.arch === undefined) return this.keep(dep, p, node, rev);

    let placement = p;
    if (!rev.spec.runtime.variants.some((v) => v.arch === node.arch)) {
      return mark('device-unfit', `no runtime image for ${node.arch} in revision ${rev.revision}`, false);
    }
    // A holder of a kind the board now gives no CDI name for is re-chosen there, as if the kind were gone.
    const holdsNameless = (rev.needs[p.accelerator] ?? 0) > 0 && (node.nameless & KIND_BIT[p.accelerator]) !== 0;
    if (holdsNameless || !stillValid(rev.spec, node.kinds, p.accelerator, p.precision)) {
      const c = this.choiceFor(rev, node);
      if (!c.ok) return mark('device-unfit', `${c.detail} in revision ${rev.revision}`, false);
      placement = { ...placement, accelerator: c.accelerator, precision: c.precision };
    }
    if (placement.arch !== node.arch || placement.container !== containerName(p.deployment, p.replica)) {
      placement = { ...placement, arch: node.arch, container: containerName(p.deployment, p.replica) };
    }
    if (!this.fleet.fits(node.i, rev.memBytes, rev.cpuMilli)) {
      const free = `${formatBytes(Math.max(0, this.fleet.memFree[node.i] as number))} and ${((this.fleet.cpuFree[node.i] as number) / 1000).toFixed(2)} cores free`;
      return mark('device-unfit', `no longer fits: needs ${rev.spec.resources.memory} and ${rev.spec.resources.cpus} cores, ${free}`, false);
    }
    const need = rev.needs[placement.accelerator] ?? 0;
    if (!this.fleet.accFits(node.i, placement.accelerator, need)) {
      // Replicas judged before it hold the devices: an older plan over-committed, the inventory
      // shrank, or its revision holds what the one before shared.
      return mark('device-unfit', `no longer fits: needs ${describeNeed(placement.accelerator, need)}, ${this.poolState(node, placement.accelerator)}`, false);
    }
    if (placement !== p) this.affected.add(p.deviceId);
    this.keep(dep, placement, node, rev);
    if (selector) return; // one per matching device: nowhere to move to

    const h = healthOf(this.health, p);
    if (h && h.phase !== 'running' && h.restarts >= this.opts.failureRestarts) {
      const moved = placement.avoid?.length ?? 0;
      if (moved < this.opts.maxAvoid) {
        dep.moves.push({ placement, rev, reason: 'failing', detail: `${h.phase} after ${h.restarts} restarts${h.reason ? ` (${h.reason})` : ''}`, stays: true });
      } else {
        dep.notes.set(p.replica, `${h.phase} after ${h.restarts} restarts; moved ${moved} times already, not moved again`);
      }
      return;
    }
    const objective = rev.spec.p95LatencyMs;
    if (objective !== undefined) {
      const breach = this.latency.breach(rev.spec.model.name, placement.precision, node.id, objective, this.input.now, this.opts.latencyWindowMs, this.opts.latencyMinSamples);
      if (breach) {
        dep.slow.set(p.replica, breach);
        if ((placement.avoid?.length ?? 0) < this.opts.maxAvoid) {
          dep.moves.push({ placement, rev, reason: 'latency', detail: `p95 above ${objective} ms in all ${breach.samples} measurements of the last ${Math.round(this.opts.latencyWindowMs / 1000)} s (lowest ${breach.minP95Ms} ms)`, stays: true });
        }
      }
    }
  }

  /** Pass 2 for one deployment. */
  private place(dep: Dep): void {
    const selector = dep.current.spec.selector;
    if (selector) return this.placeSelected(dep, selector);

    const byRev = new Map<Rev, { moves: PendingMove[]; fresh: number[] }>();
    const group = (rev: Rev): { moves: PendingMove[]; fresh: number[] } => {
      let g = byRev.get(rev);
      if (!g) { g = { moves: [], fresh: [] }; byRev.set(rev, g); }
      return g;
    };
    group(dep.current);
    for (const m of dep.moves) group(m.rev).moves.push(m);
    const leaving = new Set(dep.moves.filter((m) => !m.stays).map((m) => m.placement.replica));
    const replicas = dep.current.spec.replicas ?? 0;
    for (let r = 0; r < replicas; r++) if (!dep.kept.has(r) && !leaving.has(r)) group(dep.current).fresh.push(r);

    for (const [rev, g] of byRev) {
      if (g.moves.length === 0 && g.fresh.length === 0) continue;
      const cands = this.candidates(dep, rev);
      // Once no board meeting the objective has room, the next slow replica need not look again.
      let fastBoardLeft = true;
      for (const m of g.moves) {
        if (m.reason === 'latency' && !fastBoardLeft) { this.stay(dep, m); continue; }
        // (Its own device is slow; only an avoid list could hide a fast board from it alone.)
        if (!this.move(dep, rev, cands, m) && m.reason === 'latency' && !m.placement.avoid?.length) fastBoardLeft = false;
      }
      for (const r of g.fresh) {
        const i = this.pick(cands, rev, () => true);
        if (i === undefined) { dep.unscheduled.add(r); continue; }
        this.put(dep, rev, cands, this.placementOn(dep.name, rev, r, i, undefined, cands.choiceOf(i)));
      }
    }
    if (dep.unscheduled.size > 0) dep.rejects = this.explain(dep.current, undefined);
  }

  private stay(dep: Dep, m: PendingMove): void {
    dep.notes.set(m.placement.replica, `${m.detail}; ${m.reason === 'latency' ? 'no board known to meet the objective has room' : 'no other device fits'}`);
  }

  /** Moves a replica to the best device `m` accepts; false when there is none. */
  private move(dep: Dep, rev: Rev, cands: Candidates, m: PendingMove): boolean {
    const p = m.placement;
    const from = this.fleet.byId.get(p.deviceId);
    const avoid = new Set(p.avoid ?? []);
    const objective = rev.spec.p95LatencyMs ?? Infinity;
    const accept = (i: number): boolean => {
      const node = this.fleet.nodes[i] as Node;
      if (node === from || avoid.has(node.id)) return false;
      if (m.reason !== 'latency') return true;
      const e = this.scratch.est[i] as number;
      return !Number.isNaN(e) && e <= objective;
    };
    const i = this.pick(cands, rev, accept);
    if (i === undefined) {
      if (!m.stays) {
        dep.unscheduled.add(p.replica);
        this.moves.push({ deployment: dep.name, replica: p.replica, from: p.deviceId, to: undefined, reason: m.reason, detail: `${m.detail}; no other device fits` });
        this.affected.add(p.deviceId);
      } else {
        this.stay(dep, m);
      }
      return false;
    }
    if (m.stays && from) {
      // It held capacity on its old device in pass 1.
      this.fleet.release(from.i, rev.memBytes, rev.cpuMilli);
      this.fleet.accRelease(from.i, p.accelerator, rev.needs[p.accelerator] ?? 0);
      dep.counts[from.i] = (dep.counts[from.i] as number) - 1;
      dep.kept.delete(p.replica);
    }
    const remember = m.reason === 'failing' || m.reason === 'latency' ? [...(p.avoid ?? []), p.deviceId] : p.avoid;
    const next = this.placementOn(dep.name, rev, p.replica, i, remember, cands.choiceOf(i));
    dep.slow.delete(p.replica);
    this.put(dep, rev, cands, next);
    this.moves.push({ deployment: dep.name, replica: p.replica, from: p.deviceId, to: next.deviceId, reason: m.reason, detail: m.detail });
    this.affected.add(p.deviceId);
    return true;
  }

  /** `c`: what the replica runs there (default: what the device offers now). */
  private placementOn(deployment: string, rev: Rev, replica: number, i: number, avoid: string[] | undefined, c = this.choiceFor(rev, this.fleet.nodes[i] as Node) as Choice): Placement {
    const node = this.fleet.nodes[i] as Node;
    const p: Placement = {
      deployment, revision: rev.revision, replica, deviceId: node.id, accelerator: c.accelerator, precision: c.precision,
      container: containerName(deployment, replica), arch: c.runtime.arch,
    };
    if (avoid && avoid.length > 0) p.avoid = avoid;
    return p;
  }

  /** Record a new placement; the device goes back among the candidates if another replica still fits. */
  private put(dep: Dep, rev: Rev, cands: Candidates, p: Placement): void {
    const node = this.fleet.byId.get(p.deviceId) as Node;
    this.keep(dep, p, node, rev);
    this.affected.add(node.id);
    cands.push(node.i);
  }

  /** Pops the best device that fits and that `accept` takes; the ones it refused go back. */
  private pick(cands: Candidates, rev: Rev, accept: (i: number) => boolean): number | undefined {
    const refused: number[] = [];
    let found: number | undefined;
    for (let i = cands.pop(); i !== undefined; i = cands.pop()) {
      if (!this.fleet.fits(i, rev.memBytes, rev.cpuMilli)) continue;
      if (accept(i)) { found = i; break; }
      refused.push(i);
    }
    for (const i of refused) cands.push(i);
    return found;
  }

  private candidates(dep: Dep, rev: Rev): Candidates {
    return new Candidates({
      fleet: this.fleet, latency: this.latency, scratch: this.scratch,
      shapeChoice: (node) => this.shapeChoice(rev, node), choiceFor: (node, shape) => this.choiceFor(rev, node, shape), exclusive: rev.exclusive,
      model: rev.spec.model.name, memBytes: rev.memBytes, cpuMilli: rev.cpuMilli, objective: rev.spec.p95LatencyMs ?? Infinity,
      strategy: rev.spec.strategy, counts: dep.counts,
    });
  }

  /** Selector deployments: one replica on every matching online device that can host it. */
  private placeSelected(dep: Dep, selector: Record<string, string>): void {
    const rev = dep.current;
    const used = new Set(dep.kept.keys());
    for (const m of dep.moves) used.add(m.placement.replica);
    let nextFree = 0;
    const take = (): number => {
      while (used.has(nextFree)) nextFree++;
      used.add(nextFree);
      return nextFree;
    };
    for (const m of dep.moves) {
      // Selected devices that no longer fit: the replica is dropped there, not moved.
      dep.unfitSelected++;
      dep.notes.set(m.placement.replica, m.detail);
      this.moves.push({ deployment: dep.name, replica: m.placement.replica, from: m.placement.deviceId, to: undefined, reason: m.reason, detail: m.detail });
      this.affected.add(m.placement.deviceId);
    }
    for (const nodes of this.fleet.shapes.values()) {
      for (const node of nodes) {
        if ((dep.counts[node.i] as number) > 0 || !selectorMatches(node.view.labels, selector)) continue;
        if (dep.moves.some((m) => m.placement.deviceId === node.id)) continue;
        const c = this.choiceFor(rev, node);
        if (!c.ok || !this.fleet.fits(node.i, rev.memBytes, rev.cpuMilli)) { dep.unfitSelected++; continue; }
        const p = this.placementOn(dep.name, rev, take(), node.i, undefined);
        this.keep(dep, p, node, rev);
        this.affected.add(node.id);
      }
    }
    if (dep.unfitSelected > 0) dep.rejects = this.explain(rev, selector);
  }

  /** Why devices do not take a replica of `rev`: counts per first failing filter. */
  private explain(rev: Rev, selector: Record<string, string> | undefined): RejectCount[] {
    const counts = new Map<string, number>();
    const bump = (reason: string): void => { counts.set(reason, (counts.get(reason) ?? 0) + 1); };
    for (const node of this.fleet.nodes) {
      if (node.arch === undefined) bump('no inventory reported yet');
      else if (node.state !== 'online') bump('offline');
      else if (selector && !selectorMatches(node.view.labels, selector)) bump('labels do not match the selector');
      else {
        const c = this.choiceFor(rev, node);
        if (!c.ok) bump(c.reason);
        else if ((this.fleet.memFree[node.i] as number) < rev.memBytes) bump(`not enough free memory (needs ${rev.spec.resources.memory})`);
        else if ((this.fleet.cpuFree[node.i] as number) < rev.cpuMilli) bump(`not enough free CPU (needs ${rev.spec.resources.cpus} cores)`);
      }
    }
    return [...counts].map(([reason, devices]) => ({ reason, devices })).sort((a, b) => b.devices - a.devices || cmp(a.reason, b.reason));
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
