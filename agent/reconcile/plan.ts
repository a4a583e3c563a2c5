// Pure planning: from what runs (CurrentState) to what is desired (DesiredState), the steps to
// take. No I/O, no clock: `now` comes in with the current state, so the same input always gives
// the same steps. Executors (executors.ts) carry the steps out; the runner (runner.ts) repeats.
//
// Rules:
//  - Only containers labelled feather.owner=desired are ever stopped, removed, replaced or
//    restarted. A container started by hand that holds a desired workload's name blocks that
//    workload (a `fail` step), it is not taken over.
//  - Steps come in this order: stop/remove what is no longer desired (frees memory and names),
//    pull images, pull layers, fetch models, then each workload in desired order (start, replace,
//    restart). So a replacement's new image and layers are on disk before its old container is
//    stopped.
//  - A workload whose spec hash label or image sha256 differs from the desired one is replaced
//    (the spec hash covers its layers' digests).
//  - Layers are pulled once per digest, for every workload that starts or is replaced with them;
//    a layer already pulled and extracted (under any name) needs no step.
//  - An exited owned container is restarted per its policy (always; on-failure when it failed)
//    after a capped exponential delay; before that, a `wait` step says when to look again.
import type { ErrorCode } from '../../shared/errors.js';
import type { ContainerInfo } from '../runtime/types.js';
import type { RestartPolicy } from '../../shared/protocol/types.js';
import type { ArtifactRef, DesiredState, Workload } from '../../shared/protocol/desired.js';
import { isOwned, SPEC_HASH_LABEL, specHash } from './labels.js';

export interface CurrentState {
  /** Milliseconds since the epoch at which the state was observed. */
  now: number;
  /** Every container on the device, running or not (runtime.list({ all: true })). */
  containers: readonly ContainerInfo[];
  /** sha256 of the images present in the store, by name (at least those the desired state names). */
  images: Readonly<Record<string, string>>;
  /** sha256 of the models present on the device. */
  models: ReadonlySet<string>;
  /** sha256 of the tarballs in the image store that are extracted in cache/ (layers ready to stack); absent = none. */
  layers?: ReadonlySet<string> | undefined;
  /** Restarts in a row after short runs, per container (the reconciler's memory; absent = 0). */
  restartStreaks?: Readonly<Record<string, number>> | undefined;
}

export type Step =
  | { action: 'pull'; image: ArtifactRef; workloads: string[] }
  | { action: 'fetchModel'; model: ArtifactRef; workloads: string[] }
  | { action: 'pullLayer'; layer: ArtifactRef; workloads: string[] }
  | { action: 'start'; workload: Workload; generation: number }
  | { action: 'replace'; workload: Workload; generation: number; why: string }
  | { action: 'restart'; name: string; lastExit: string; streak: number }
  | { action: 'wait'; name: string; until: number; lastExit: string; failed: boolean }
  | { action: 'stop'; name: string }
  | { action: 'remove'; name: string }
  | { action: 'fail'; name: string; code: ErrorCode; reason: string };

export type StepAction = Step['action'];

export interface RestartBackoff {
  /** Delay before the first restart, and after a run that lasted healthyAfterMs or more. */
  baseMs: number;
  /** Cap of the doubling delay. */
  maxMs: number;
  /** A run at least this long resets the streak of quick restarts. */
  healthyAfterMs: number;
}

export const DEFAULT_RESTART_BACKOFF: RestartBackoff = { baseMs: 1000, maxMs: 60_000, healthyAfterMs: 60_000 };

export interface PlanOptions {
  restartBackoff?: RestartBackoff | undefined;
}

export function plan(current: CurrentState, desired: DesiredState, opts: PlanOptions = {}): Step[] {
  const backoff = opts.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
  const byName = new Map(current.containers.map((c) => [c.name, c]));
  const wanted = new Set(desired.workloads.map((w) => w.name));

  const removals: Step[] = [];
  for (const c of current.containers) {
    if (!isOwned(c) || wanted.has(c.name)) continue;
    if (c.status === 'running') removals.push({ action: 'stop', name: c.name });
    removals.push({ action: 'remove', name: c.name });
  }

  const listed = new Map(desired.images.map((im) => [im.name, im]));
  const pulls = new Map<string, Step & { action: 'pull' }>();
  for (const im of desired.images) {
    if (current.images[im.name] !== im.sha256) pulls.set(im.name, { action: 'pull', image: im, workloads: [] });
  }
  const fetches = new Map<string, Step & { action: 'fetchModel' }>();
  const layerPulls = new Map<string, Step & { action: 'pullLayer' }>();
  const actions: Step[] = [];

  for (const w of desired.workloads) {
    const c = byName.get(w.name);
    if (c && !isOwned(c)) {
      actions.push({
        action: 'fail', name: w.name, code: 'CONFLICT',
        reason: `a container named "${w.name}" was started by hand; remove it (feather-agent rm -f ${w.name}) or rename the workload`,
      });
      continue;
    }
    const imageSha = listed.get(w.image)?.sha256 ?? current.images[w.image];
    const why = c === undefined ? undefined : replaceReason(c, w, imageSha);
    if (c === undefined || why !== undefined) {
      if (imageSha === undefined) {
        actions.push({
          action: 'fail', name: w.name, code: 'NOT_FOUND',
          reason: `image "${w.image}" is not on this device and the desired state's images list does not say where to pull it from`,
        });
        continue;
      }
      pulls.get(w.image)?.workloads.push(w.name);
      for (const l of w.layers) {
        if (current.layers?.has(l.sha256)) continue;
        const pull = layerPulls.get(l.sha256) ?? { action: 'pullLayer', layer: l, workloads: [] };
        pull.workloads.push(w.name);
        layerPulls.set(l.sha256, pull);
      }
      for (const m of w.models) {
        if (current.models.has(m.sha256)) continue;
        const fetch = fetches.get(m.sha256) ?? { action: 'fetchModel', model: m, workloads: [] };
        fetch.workloads.push(w.name);
        fetches.set(m.sha256, fetch);
      }
      actions.push(c === undefined
        ? { action: 'start', workload: w, generation: desired.generation }
        : { action: 'replace', workload: w, generation: desired.generation, why: why ?? 'changed' });
      continue;
    }
    const restart = restartStep(c, w.restart, current, backoff);
    if (restart) actions.push(restart);
  }

  return [...removals, ...pulls.values(), ...layerPulls.values(), ...fetches.values(), ...actions];
}

/** Why an owned container no longer matches its workload, or undefined when it does. */
function replaceReason(c: ContainerInfo, w: Workload, imageSha: string | undefined): string | undefined {
  if (c.labels[SPEC_HASH_LABEL] !== specHash(w)) return 'spec changed';
  if (imageSha !== undefined && c.imageSha256 !== imageSha) return 'image changed';
  if (c.status === 'created') return 'never started';
  return undefined;
}

function restartStep(c: ContainerInfo, policy: RestartPolicy, current: CurrentState, backoff: RestartBackoff): Step | undefined {
  if (c.status !== 'exited') return undefined;
  const failed = exitedWithFailure(c);
  if (!shouldRestart(policy, failed)) return undefined;
  const streak = current.restartStreaks?.[c.name] ?? 0;
  const ran = ranMs(c);
  const until = (c.finishedAt ?? 0) + restartDelayMs(streak, ran, backoff);
  const lastExit = describeExit(c);
  if (current.now < until) return { action: 'wait', name: c.name, until, lastExit, failed };
  return { action: 'restart', name: c.name, lastExit, streak: ran >= backoff.healthyAfterMs ? 1 : streak + 1 };
}

export function shouldRestart(policy: RestartPolicy, failed: boolean): boolean {
  return policy === 'always' || (policy === 'on-failure' && failed);
}

/** Delay before restarting: base * 2^streak capped at max, back to base after a healthy run. */
export function restartDelayMs(streak: number, ranMs: number, b: RestartBackoff): number {
  if (ranMs >= b.healthyAfterMs) return b.baseMs;
  return Math.min(b.baseMs * 2 ** Math.min(streak, 30), b.maxMs);
}

function ranMs(c: ContainerInfo): number {
  return c.startedAt !== undefined && c.finishedAt !== undefined ? Math.max(0, c.finishedAt - c.startedAt) : 0;
}

/** An exit is a failure unless the process ended by itself with code 0. */
export function exitedWithFailure(c: Pick<ContainerInfo, 'exitCode' | 'oomKilled'>): boolean {
  return c.oomKilled || c.exitCode !== 0;
}

export function describeExit(c: Pick<ContainerInfo, 'exitCode' | 'oomKilled'>): string {
  if (c.oomKilled) return `killed: out of memory (exit code ${c.exitCode ?? 'none'}); raise limits.memory`;
  if (c.exitCode === undefined) return 'killed by a signal';
  return `exited with code ${c.exitCode}`;
}

/** The workload names a step acts for: when a step fails, later steps for them are skipped. */
export function stepWorkloads(step: Step): string[] {
  switch (step.action) {
    case 'pull':
    case 'pullLayer':
    case 'fetchModel':
      return step.workloads;
    case 'start':
    case 'replace':
      return [step.workload.name];
    default:
      return [step.name];
  }
}
