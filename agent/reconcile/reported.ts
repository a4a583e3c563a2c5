// Building the `reported` document (shared/protocol/reported.ts): the generation reached and each
// desired workload's phase, from what the runtime shows plus what the executors are doing right
// now. Pure; the reconciler calls it after every step and event and publishes when the result changed.
import type { DesiredState } from '../../shared/protocol/desired.js';
import type { Phase, Reported, ReportedWorkload } from '../../shared/protocol/reported.js';
import type { ContainerInfo } from '../runtime/types.js';
import { describeExit, exitedWithFailure } from './plan.js';

/** What an executor is doing for a workload, or why its last step failed. */
export interface PhaseNote {
  phase: Phase;
  reason?: string | undefined;
}

/** A pending restart (from a `wait` step). */
export interface PendingRestart {
  until: number;
  lastExit: string;
  failed: boolean;
}

export interface ReportInput {
  generation: number;
  /** undefined = not known yet (no payload received or persisted): no workloads reported. */
  desired: DesiredState | undefined;
  /** Owned containers by name. */
  containers: ReadonlyMap<string, ContainerInfo>;
  notes: ReadonlyMap<string, PhaseNote>;
  pending: ReadonlyMap<string, PendingRestart>;
  /** Restarts counted by the reconciler itself, for runtimes that cannot persist them. */
  extraRestarts?: ReadonlyMap<string, number> | undefined;
  rejected?: string | undefined;
}

export function buildReported(input: ReportInput): Reported {
  const workloads: ReportedWorkload[] = [];
  for (const w of input.desired?.workloads ?? []) {
    const c = input.containers.get(w.name);
    const restarts = (c?.restarts ?? 0) + (input.extraRestarts?.get(w.name) ?? 0);
    const entry: ReportedWorkload = { name: w.name, phase: 'starting', restarts };
    const note = input.notes.get(w.name);
    const pending = input.pending.get(w.name);
    if (c?.status === 'exited' && c.exitCode !== undefined) entry.exitCode = c.exitCode;
    if (note) {
      entry.phase = note.phase;
      if (note.reason !== undefined) entry.reason = note.reason;
    } else if (c?.status === 'running') {
      entry.phase = 'running';
    } else if (c?.status === 'exited' && pending) {
      const delay = Math.max(0, pending.until - (c.finishedAt ?? pending.until));
      entry.phase = pending.failed ? 'failed' : 'starting';
      entry.reason = `${pending.lastExit}; restarting after ${formatDelay(delay)} (restart policy ${w.restart})`;
    } else if (c?.status === 'exited') {
      entry.phase = exitedWithFailure(c) ? 'failed' : 'stopped';
      if (entry.phase === 'failed') entry.reason = describeExit(c);
    }
    if (entry.phase === 'running') delete entry.exitCode;
    workloads.push(entry);
  }
  const reported: Reported = { generation: input.generation, workloads };
  if (input.rejected !== undefined) reported.reason = input.rejected;
  return reported;
}

function formatDelay(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

