// The `reported` document (../shared/DESIGN.md, "Desired and reported state"): the generation
// reached and each desired workload's phase. The agent builds it (agent/reconcile/reported.ts) and
// publishes it retained on feather/v1/dev/{id}/reported; the controller reads it into its registry.

export type Phase = 'pulling' | 'starting' | 'running' | 'failed' | 'stopped';

export interface ReportedWorkload {
  name: string;
  phase: Phase;
  /** Why it failed, or what it is waiting for. */
  reason?: string;
  /** Restarts of the current container (a replacement starts again from 0). */
  restarts: number;
  /** Exit code of the container when it is not running (absent if killed by a signal). */
  exitCode?: number;
}

export interface Reported {
  /** The last desired generation fully applied (0 before any). */
  generation: number;
  workloads: ReportedWorkload[];
  /** Set when the latest desired payload was rejected (the previous one is still applied). */
  reason?: string;
}
