// --wait: poll until a deployment is done (Available at its revision, rollout complete), has
// failed (Failed, rolled back, halted) or the time is up; print a progress line on stderr each
// time what is seen changes.
import type { DeploymentSummary } from '../api/views.js';
import { progressLine } from './render.js';

export type Outcome = 'done' | 'failed' | 'timeout';

export type Seen = Pick<DeploymentSummary, 'name' | 'revision' | 'phase' | 'running' | 'desired' | 'updated' | 'placed' | 'message' | 'rollout'>;

/** A deployment Failed this long is given up on (right after an apply, devices may still come). */
export const FAILED_GRACE_MS = 5000;

/**
 * Where a deployment stands for someone waiting on `revision` (undefined: keep waiting).
 * `failedForMs`: how long it has been Failed without a break.
 */
export function judge(d: Seen, revision: number, failedForMs = FAILED_GRACE_MS): Outcome | undefined {
  const rollout = d.rollout?.phase;
  if (rollout === 'RolledBack' || rollout === 'Halted') return 'failed';
  if (d.phase === 'Failed' && failedForMs >= FAILED_GRACE_MS) return 'failed';
  if (d.revision !== revision) return 'failed'; // someone applied another revision meanwhile
  if (d.phase === 'Available' && (rollout === undefined || rollout === 'Complete') && d.updated === d.placed && d.running >= d.desired) return 'done';
  return undefined;
}

export interface WaitOptions {
  poll: () => Promise<Seen>;
  revision: number;
  timeoutMs: number;
  intervalMs?: number;
  progress: (line: string) => void;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

export async function waitForDeployment(o: WaitOptions): Promise<{ outcome: Outcome; last: Seen }> {
  const start = o.now();
  let previous = '';
  let failedSince: number | undefined;
  for (;;) {
    const d = await o.poll();
    if (d.phase !== 'Failed') failedSince = undefined;
    else failedSince ??= o.now();
    const line = progressLine(d);
    if (line !== previous) {
      const s = Math.round((o.now() - start) / 1000);
      o.progress(`[${String(s).padStart(3)}s] ${line}`);
      previous = line;
    }
    const outcome = judge(d, o.revision, failedSince === undefined ? 0 : o.now() - failedSince);
    if (outcome !== undefined) return { outcome, last: d };
    if (o.now() - start >= o.timeoutMs) return { outcome: 'timeout', last: d };
    await o.sleep(Math.min(o.intervalMs ?? 1000, Math.max(1, o.timeoutMs - (o.now() - start))));
  }
}
