// A deployment's status after a pass: per replica where it is and what its device reported,
// and the phase (docs/scheduling.md, "Status"):
//   Available    every desired replica runs at the current revision, none breaks its objective
//   Failed       nothing runs and every replica failed or has no device
//   Degraded     some replica has no device, failed, sits on an offline device or is too slow
//   Progressing  otherwise: replicas being pulled, started or updated
import type { Placement } from '../model/types.js';
import type { Fleet } from './fleet.js';
import type { LatencyIndex } from './latency.js';
import { anyHealthOn, healthOf, type HealthIndex } from './health.js';
import type { Dep } from './schedule.js';
import type { DeploymentStatus, RejectCount, ReplicaStatus } from './types.js';

export interface StatusContext {
  fleet: Fleet;
  health: HealthIndex;
  latency: LatencyIndex;
}

export function formatRejects(rejects: readonly RejectCount[], devices: number): string {
  const rejected = rejects.reduce((n, r) => n + r.devices, 0);
  const list = rejects.map((r) => `${r.devices} ${r.reason}`).join(', ');
  return `${Math.max(0, devices - rejected)} of ${devices} devices fit${list ? ` (${list})` : ''}`;
}

function replicaStatus(dep: Dep, p: Placement, ctx: StatusContext): ReplicaStatus {
  const node = ctx.fleet.byId.get(p.deviceId);
  const rev = dep.revs.get(p.revision) ?? dep.current;
  const out: ReplicaStatus = {
    replica: p.replica, deviceId: p.deviceId, revision: p.revision, accelerator: p.accelerator, precision: p.precision,
    state: 'pending', reason: '', restarts: 0,
  };
  const h = healthOf(ctx.health, p);
  if (!node || node.state !== 'online') {
    out.state = 'offline';
    out.reason = !node ? `device ${p.deviceId} is not known`
      : `device offline since ${new Date(node.view.lastSeen).toISOString()}${node.state === 'grace' ? ' (within the grace period)' : ''}`;
  } else if (!h) {
    const older = anyHealthOn(ctx.health, p);
    out.reason = older ? `updating from revision ${older.revision}` : 'not reported yet';
  } else {
    out.state = h.phase;
    out.restarts = h.restarts;
    out.reason = h.reason ?? h.phase;
  }
  const p95 = ctx.latency.measured(rev.spec.model.name, p.precision, p.deviceId);
  if (p95 !== undefined) out.p95Ms = p95;
  const slow = dep.slow.get(p.replica);
  if (slow) {
    out.slow = true;
    out.reason += `; p95 above the ${rev.spec.p95LatencyMs ?? '?'} ms objective in ${slow.samples} measurements`;
  }
  const note = dep.notes.get(p.replica);
  if (note && !out.reason.includes(note)) out.reason += `; ${note}`;
  return out;
}

export function deploymentStatus(dep: Dep, placements: readonly Placement[], ctx: StatusContext): DeploymentStatus {
  const cur = dep.current;
  const selector = cur.spec.selector !== undefined;
  if (dep.error) {
    return {
      name: dep.name, revision: cur.revision, phase: 'Failed', desired: cur.spec.replicas ?? placements.length, placed: placements.length,
      running: 0, updated: 0, replicas: [], unschedulable: { replicas: 0, reasons: [] }, message: dep.error,
    };
  }
  const replicas = placements.map((p) => replicaStatus(dep, p, ctx));
  const unschedulable = selector ? dep.unfitSelected : dep.unscheduled.size;
  const fit = formatRejects(dep.rejects, ctx.fleet.nodes.length);
  for (const r of dep.unscheduled) {
    replicas.push({ replica: r, state: 'unschedulable', reason: dep.notes.get(r) ?? fit, restarts: 0 });
  }
  replicas.sort((a, b) => a.replica - b.replica);

  const desired = selector ? placements.length + dep.unfitSelected : cur.spec.replicas ?? 0;
  let running = 0, current = 0, failed = 0, offline = 0, slow = 0, updated = 0, pending = 0;
  for (const r of replicas) {
    if (r.revision === cur.revision) updated++;
    if (r.state === 'running') { running++; if (r.revision === cur.revision) current++; }
    else if (r.state === 'failed') failed++;
    else if (r.state === 'offline') offline++;
    else if (r.state !== 'unschedulable') pending++;
    if (r.slow) slow++;
  }
  let phase: DeploymentStatus['phase'];
  if (desired === 0 || (current === desired && slow === 0 && unschedulable === 0)) phase = 'Available';
  else if (running === 0 && failed + unschedulable >= desired) phase = 'Failed';
  else if (unschedulable > 0 || failed > 0 || offline > 0 || slow > 0) phase = 'Degraded';
  else phase = 'Progressing';

  const parts = [`${running}/${desired} running`];
  if (updated < placements.length) parts.push(`${placements.length - updated} at another revision than ${cur.revision}`);
  if (pending > 0) parts.push(`${pending} starting`);
  if (failed > 0) parts.push(`${failed} failed`);
  if (offline > 0) parts.push(`${offline} on offline devices`);
  if (slow > 0) parts.push(`${slow} breaking the ${cur.spec.p95LatencyMs ?? '?'} ms objective`);
  if (unschedulable > 0) parts.push(`${unschedulable} unschedulable: ${fit}`);
  if (desired === 0) parts.push(selector ? 'no device matches the selector' : 'scaled to 0');
  return {
    name: dep.name, revision: cur.revision, phase, desired, placed: placements.length, running, updated, replicas,
    unschedulable: { replicas: unschedulable, reasons: dep.rejects }, message: parts.join('; '),
  };
}
