// The scheduler's public surface (docs/scheduling.md). All pure: no clock, no I/O, no randomness.
//
//   const r = plan({ devices, deployments, placements, measurements, health, rollouts, now, graceMs });
//   store r.placements and r.rollouts; for each id in r.affectedDevices publish
//   { generation: next, ...desiredFor(id, r.placements, deployments) } retained.
import type { DeploymentPhase } from '../model/types.js';
import { rolloutStep, type RolloutStatus } from './rollout.js';
import { schedule } from './schedule.js';
import type { ScheduleInput, ScheduleResult } from './types.js';

export * from './types.js';
export { schedule, containerName, selectorMatches, SCHEDULER_DEFAULTS } from './schedule.js';
export { rolloutStep, type RolloutInput, type RolloutResult, type RolloutStatus, type RolloutPhase, type FailureCount } from './rollout.js';
export { desiredFor, workloadFor, deviceImageName, type DesiredSet, type DesiredWorkload, type DesiredArtifact, type DesiredOptions } from './desired.js';
export { PRECISION_ORDER, choose, pickVariant } from './choice.js';
export { assignDevices, poolDevices, deviceName, type Assignment, type DeviceNote, type PoolDevice, type ReplicaOnBoard } from './assign.js';

export interface PlanInput extends ScheduleInput {
  /** What the previous plan returned ([] the first time). */
  rollouts: RolloutStatus[];
}

export interface PlanResult extends ScheduleResult {
  rollouts: RolloutStatus[];
}

/**
 * One controller step: rolloutStep (revisions move in waves, or back) then schedule (devices).
 * `deployments`: spec/revision = the newest applied revision of each; `others` = older revisions
 * placements may still run. A deployment whose newest revision was rolled back (or halted) is
 * never Available: its status says so.
 */
export function plan(input: PlanInput): PlanResult {
  const r = rolloutStep({ deployments: input.deployments, placements: input.placements, health: input.health ?? [], rollouts: input.rollouts, now: input.now });
  const s = schedule({ ...input, deployments: r.deployments, placements: r.placements });
  const byName = new Map(r.rollouts.map((x) => [x.deployment, x]));
  const status = s.status.map((st) => {
    const ro = byName.get(st.name);
    if (!ro || (ro.phase !== 'RolledBack' && ro.phase !== 'Halted')) return st;
    const phase: DeploymentPhase = st.phase === 'Available' || st.phase === 'Progressing' ? 'Degraded' : st.phase;
    return { ...st, phase, message: `${ro.message}; ${st.message}` };
  });
  const affected = [...new Set([...r.affectedDevices, ...s.affectedDevices])].sort();
  return { ...s, status, affectedDevices: affected, rollouts: r.rollouts };
}
