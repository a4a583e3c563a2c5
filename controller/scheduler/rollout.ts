// rolloutStep(): a pure step that moves a deployment's placements from the revision they run to
// the newest applied one in waves (docs/scheduling.md, "Rollout"). Called on every change, before
// schedule(); it only changes placements' revisions, the scheduler decides devices.
//
//   Canary    `canary` replicas switch first; the rest wait until that many are ready at the new
//             revision: running without a break for `minReadyS` (ReplicaHealth.runningSince, `now`).
//   Waves     then old replicas switch as long as at most `maxUnavailable` replicas are not
//             available (old: running; new: ready); an old replica that is not running anyway
//             switches for free.
//   Complete  every placement runs the new revision; it becomes the stable one.
//   RolledBack `failureThreshold` failures of the new revision were seen (restarts, plus one for a
//             replica reported failed, counted per replica and device, kept across steps): every
//             placement goes back to the stable revision, and stays there until a newer one.
//   Halted    the same, with no stable revision's spec to go back to: no more replicas switch.
import type { DeploymentSpec, Placement } from '../model/types.js';
import { withDefaults } from '../deployments/spec.js';
import { healthOf, indexHealth, type HealthIndex } from './health.js';
import type { DeploymentInput, DeploymentRevision, ReplicaHealth } from './types.js';

export type RolloutPhase = 'Complete' | 'Canary' | 'Waves' | 'RolledBack' | 'Halted';

export interface FailureCount {
  replica: number;
  deviceId: string;
  count: number;
}

export interface RolloutStatus {
  deployment: string;
  /** The newest applied revision: being rolled out, rolled out, or rolled back from. */
  revision: number;
  /** The revision it replaces and rolls back to; undefined for a first deployment. */
  stable: number | undefined;
  phase: RolloutPhase;
  /** The revision new and re-placed replicas get: `revision`, or `stable` after a rollback. */
  placeRevision: number;
  /** Placements of the deployment. */
  total: number;
  /** Placements at `revision`. */
  updated: number;
  /** Placements at `revision` ready: reported running without a break for `rollout.minReadyS`. */
  ready: number;
  /**
   * Canary and Waves only: when (ms) the first replica of `revision` that runs but is not ready
   * yet becomes ready. Nothing else may happen by then, so the caller plans again at that time.
   */
  readyAt?: number;
  /** Failures of `revision`, per replica and device. */
  failures: FailureCount[];
  failureCount: number;
  message: string;
}

export interface RolloutInput {
  /** spec/revision: the newest applied revision; others: older revisions (at least the stable one, to roll back to). */
  deployments: DeploymentInput[];
  placements: Placement[];
  health: ReplicaHealth[];
  /** What the previous step returned ([] the first time; the controller keeps it with the deployment). */
  rollouts: RolloutStatus[];
  /** The time (ms, the clock of ReplicaHealth.runningSince): how long replicas have been running. */
  now: number;
}

export interface RolloutResult {
  placements: Placement[];
  rollouts: RolloutStatus[];
  /** What to pass to schedule(): per deployment, the revision new replicas get, with the others. */
  deployments: DeploymentInput[];
  /** Devices with a placement whose revision changed. */
  affectedDevices: string[];
}

const running = (h: HealthIndex, p: Placement): boolean => healthOf(h, p)?.phase === 'running';

export function rolloutStep(input: RolloutInput): RolloutResult {
  const health = indexHealth(input.health);
  const prevBy = new Map(input.rollouts.map((r) => [r.deployment, r]));
  const byDep = new Map<string, Placement[]>();
  for (const p of input.placements) {
    const list = byDep.get(p.deployment);
    if (list) list.push(p); else byDep.set(p.deployment, [p]);
  }
  const out: Placement[] = [];
  const rollouts: RolloutStatus[] = [];
  const deployments: DeploymentInput[] = [];
  const affected = new Set<string>();
  const known = new Set(input.deployments.map((d) => d.spec.name));
  for (const [name, list] of byDep) if (!known.has(name)) out.push(...list); // the scheduler drops them

  for (const d of [...input.deployments].sort((a, b) => (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0))) {
    const placements = [...(byDep.get(d.spec.name) ?? [])].sort((a, b) => a.replica - b.replica);
    const r = step(d, placements, health, prevBy.get(d.spec.name), input.now);
    for (const [i, p] of r.placements.entries()) {
      if (p !== placements[i]) affected.add(p.deviceId);
      out.push(p);
    }
    rollouts.push(r.status);
    deployments.push(forScheduler(d, r.status.placeRevision));
  }
  return { placements: out, rollouts, deployments, affectedDevices: [...affected].sort() };
}

/** The deployment as schedule() takes it: new replicas at `rev`, every other revision in `others`. */
function forScheduler(d: DeploymentInput, rev: number): DeploymentInput {
  if (rev === d.revision) return d;
  const all: DeploymentRevision[] = [{ spec: d.spec, revision: d.revision }, ...(d.others ?? [])];
  const chosen = all.find((r) => r.revision === rev);
  if (!chosen) return d;
  return { spec: chosen.spec, revision: rev, others: all.filter((r) => r.revision !== rev) };
}

function specOf(d: DeploymentInput, rev: number | undefined): DeploymentSpec | undefined {
  if (rev === undefined) return undefined;
  if (rev === d.revision) return d.spec;
  return d.others?.find((r) => r.revision === rev)?.spec;
}

/** The revision most placements run other than `target` (ties: the highest), if any. */
function mostCommon(placements: readonly Placement[], target: number): number | undefined {
  const n = new Map<number, number>();
  for (const p of placements) if (p.revision !== target) n.set(p.revision, (n.get(p.revision) ?? 0) + 1);
  let best: number | undefined;
  for (const [rev, c] of n) if (best === undefined || c > (n.get(best) ?? 0) || (c === n.get(best) && rev > best)) best = rev;
  return best;
}

function switchTo(p: Placement, revision: number): Placement {
  const { avoid: _avoid, ...rest } = p;
  return { ...rest, revision };
}

function step(d: DeploymentInput, placements: Placement[], health: HealthIndex, prev: RolloutStatus | undefined, now: number): { placements: Placement[]; status: RolloutStatus } {
  const target = d.revision;
  const policy = withDefaults(d.spec).rollout;
  const minReadyMs = Math.max(0, policy.minReadyS * 1000);
  /** When a running replica of the target becomes ready (undefined: not running, or not known since when). */
  const readyTime = (p: Placement): number | undefined => {
    const h = healthOf(health, p);
    if (h?.phase !== 'running') return undefined;
    if (minReadyMs === 0) return -Infinity;
    return h.runningSince === undefined ? undefined : h.runningSince + minReadyMs;
  };
  const ready = (p: Placement): boolean => { const at = readyTime(p); return at !== undefined && at <= now; };
  /** Counts as up: an old replica when running, one of the target when ready. */
  const available = (p: Placement): boolean => (p.revision === target ? ready(p) : running(health, p));
  const same = prev !== undefined && prev.revision === target;
  const stable = same ? prev.stable : prev ? (prev.phase === 'Complete' ? prev.revision : prev.stable) : mostCommon(placements, target);

  // Failures of the target revision, per replica and device, never forgotten during this rollout.
  const failures = new Map<string, FailureCount>();
  for (const f of same ? prev.failures : []) failures.set(`${f.replica}@${f.deviceId}`, { ...f });
  for (const p of placements) {
    if (p.revision !== target) continue;
    const h = healthOf(health, p);
    if (!h) continue;
    const count = h.restarts + (h.phase === 'failed' ? 1 : 0);
    const k = `${p.replica}@${p.deviceId}`;
    const f = failures.get(k);
    if (!f) { if (count > 0) failures.set(k, { replica: p.replica, deviceId: p.deviceId, count }); } else f.count = Math.max(f.count, count);
  }
  const failureList = [...failures.values()].sort((a, b) => a.replica - b.replica || (a.deviceId < b.deviceId ? -1 : 1));
  const failureCount = failureList.reduce((n, f) => n + f.count, 0);

  let next = placements;
  const status = (phase: RolloutPhase, placeRevision: number, message: string, stableRev = stable): { placements: Placement[]; status: RolloutStatus } => {
    const updated = next.filter((p) => p.revision === target);
    const st: RolloutStatus = {
      deployment: d.spec.name, revision: target, stable: stableRev, phase, placeRevision,
      total: next.length, updated: updated.length, ready: updated.filter(ready).length,
      failures: failureList, failureCount, message,
    };
    if (phase === 'Canary' || phase === 'Waves') {
      const pending = updated.map(readyTime).filter((at): at is number => at !== undefined && at > now);
      if (pending.length > 0) st.readyAt = Math.min(...pending);
    }
    return { placements: next, status: st };
  };
  const rollBack = (): { placements: Placement[]; status: RolloutStatus } => {
    const s = stable as number;
    next = placements.map((p) => (p.revision === target ? switchTo(p, s) : p));
    return status('RolledBack', s, `revision ${target} rolled back to ${s} after ${failureCount} failures (threshold ${policy.failureThreshold})`);
  };

  if (same && prev.phase === 'RolledBack' && specOf(d, stable) !== undefined) return rollBack();
  if (same && prev.phase === 'Halted') return status('Halted', target, prev.message);
  if (stable === undefined || stable === target) {
    return status('Complete', target, placements.length === 0 ? `revision ${target}: nothing placed yet` : `revision ${target} everywhere`, target);
  }

  const old = placements.filter((p) => p.revision !== target);
  const updatedNow = placements.length - old.length;
  const readyNow = placements.filter((p) => p.revision === target && ready(p)).length;
  if (old.length === 0 && readyNow === placements.length) {
    return status('Complete', target, `revision ${target} rolled out to ${placements.length} replicas`, target);
  }
  if (failureCount >= policy.failureThreshold) {
    if (specOf(d, stable) !== undefined) return rollBack();
    return status('Halted', target, `revision ${target} halted after ${failureCount} failures (threshold ${policy.failureThreshold}); the spec of revision ${stable} was not given, so nothing was rolled back`);
  }
  if (old.length === 0) return status('Waves', target, `revision ${target} on every replica; ${readyNow} of ${placements.length} ready`);

  // Old replicas that are not running switch first: it costs no availability.
  const order = [...old].sort((a, b) => Number(running(health, a)) - Number(running(health, b)) || a.replica - b.replica);
  const switching = new Set<Placement>();
  const canary = Math.min(policy.canary, placements.length);
  let phase: RolloutPhase;
  if (readyNow < canary) {
    phase = 'Canary';
    for (const p of order.slice(0, Math.max(0, canary - updatedNow))) switching.add(p);
  } else {
    phase = 'Waves';
    const unavailable = placements.filter((p) => !available(p)).length;
    let budget = policy.maxUnavailable - unavailable;
    for (const p of order) {
      if (!running(health, p)) switching.add(p);
      else if (budget > 0) { switching.add(p); budget--; }
    }
  }
  next = placements.map((p) => (switching.has(p) ? switchTo(p, target) : p));
  const nowUpdated = updatedNow + switching.size;
  const msg = phase === 'Canary'
    ? `canary: ${nowUpdated} of ${placements.length} at revision ${target}, waiting for ${canary} ready (running for ${policy.minReadyS}s; ${readyNow} now)`
    : `waves: ${nowUpdated} of ${placements.length} at revision ${target}, ${readyNow} ready; at most ${policy.maxUnavailable} unavailable at once`;
  return status(phase, target, msg);
}
