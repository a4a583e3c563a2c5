// Executors: one function per step action, carrying a planned step out with the runtime and the
// image store. executeSteps() runs a plan in order; a failed step marks its workloads failed and
// the later steps for those workloads are skipped, while other workloads go on.
import { FeatherError, hasCode, toFeatherError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { ensureLayers, layerImageName } from '../images/layers.js';
import type { ContainerRuntime } from '../runtime/api.js';
import type { BindMount, DeviceNode, RunRequest } from '../runtime/types.js';
import type { Workload } from '../../shared/protocol/desired.js';
import { ownerLabels } from './labels.js';
import { stepWorkloads, type Step, type StepAction } from './plan.js';
import type { PendingRestart } from './reported.js';
import type { Phase } from '../../shared/protocol/reported.js';

/** What the reconciler needs from the image store (agent/images/store.ts); it fits ensureLayers' LayerStore. */
export interface ImageSource {
  get(name: string): { sha256: string } | undefined;
  /** Every tarball in the store (images and layers); `cached` = extracted in cache/<sha256>/. */
  list(): Promise<ReadonlyArray<{ name: string; sha256: string; cached: boolean }>>;
  pull(url: string, opts: { name: string; sha256: string; signal?: AbortSignal }): Promise<unknown>;
  /** Extract a stored tarball once into cache/<sha256>/ and return that directory. */
  ensureExtracted(name: string, signal?: AbortSignal): Promise<string>;
  /** Fetch a model (if not already there) and return its read-only directory. */
  ensureModel(url: string, sha256: string, opts?: { signal?: AbortSignal }): Promise<string>;
}

/** Where a workload's models appear inside its container: /models/<model name>. */
export const MODELS_DIR = '/models';

export interface ExecContext {
  runtime: ContainerRuntime;
  images: ImageSource;
  signal: AbortSignal;
  log: Logger;
  /** Seconds between SIGTERM and SIGKILL when stopping. */
  stopTimeoutS: number;
  /** CDI-style device names ("vendor.com/class=name") to device nodes; throws when unknown. */
  resolveDevices(names: string[]): DeviceNode[] | Promise<DeviceNode[]>;
  /** Show a phase for a workload while a step works on it, or after it failed. */
  note(name: string, phase: Phase, reason?: string): void;
  /** The workload's step succeeded: its phase comes from the container again. */
  done(name: string): void;
  /** A restart was made; `streak` is the new count of quick restarts in a row. */
  restarted(name: string, streak: number, lastExit: string): void;
  /** The container is gone or new: forget its restart streak. */
  forget(name: string): void;
  /** A restart is due at `until`; reconcile again then. */
  pending(name: string, restart: PendingRestart): void;
  event(type: string, body: Record<string, unknown>): void;
}

type Executor<A extends StepAction> = (step: Extract<Step, { action: A }>, ctx: ExecContext) => Promise<void>;

export const EXECUTORS: { readonly [A in StepAction]: Executor<A> } = {
  async pull(step, ctx) {
    const { name, url, sha256 } = step.image;
    for (const w of step.workloads) ctx.note(w, 'pulling', `pulling image ${name}`);
    const started = Date.now();
    try {
      await ctx.images.pull(url, { name, sha256, signal: ctx.signal });
    } catch (e: unknown) {
      const err = toFeatherError(e, 'PULL_FAILED');
      ctx.event('pull.failed', { name, url, code: err.code, message: err.message, by: 'desired' });
      throw err;
    }
    ctx.event('image.pulled', { name, sha256, durationMs: Date.now() - started, by: 'desired' });
  },

  async pullLayer(step, ctx) {
    const { name, url, sha256 } = step.layer;
    // Held (under any name) but not extracted yet: only the extraction is left.
    const held = (await ctx.images.list()).some((i) => i.sha256 === sha256);
    for (const w of step.workloads) ctx.note(w, 'pulling', `${held ? 'extracting' : 'pulling'} layer ${name}`);
    const started = Date.now();
    try {
      await ensureLayers(ctx.images, [step.layer], { signal: ctx.signal });
    } catch (e: unknown) {
      const err = toFeatherError(e, 'PULL_FAILED');
      ctx.event('pull.failed', { layer: name, name: layerImageName(step.layer), url, sha256, code: err.code, message: err.message, by: 'desired' });
      throw err;
    }
    if (!held) ctx.event('image.pulled', { layer: name, name: layerImageName(step.layer), sha256, durationMs: Date.now() - started, by: 'desired' });
  },

  async fetchModel(step, ctx) {
    for (const w of step.workloads) ctx.note(w, 'pulling', `fetching model ${step.model.name}`);
    await ctx.images.ensureModel(step.model.url, step.model.sha256, { signal: ctx.signal });
  },

  async start(step, ctx) {
    const name = step.workload.name;
    ctx.note(name, 'starting');
    await ctx.runtime.run(await runRequest(step.workload, step.generation, ctx));
    ctx.forget(name);
    ctx.done(name);
  },

  async replace(step, ctx) {
    const name = step.workload.name;
    ctx.note(name, 'starting', `replacing: ${step.why}`);
    // Everything that can fail before the old container goes is done first.
    const req = await runRequest(step.workload, step.generation, ctx);
    await ctx.runtime.stop(name, ctx.stopTimeoutS);
    await ctx.runtime.remove(name, { force: true });
    ctx.forget(name);
    await ctx.runtime.run(req);
    ctx.done(name);
  },

  async restart(step, ctx) {
    ctx.note(step.name, 'starting', `restarting: ${step.lastExit}`);
    await ctx.runtime.start(step.name);
    ctx.restarted(step.name, step.streak, step.lastExit);
    ctx.done(step.name);
  },

  async wait(step, ctx) {
    ctx.pending(step.name, { until: step.until, lastExit: step.lastExit, failed: step.failed });
  },

  async stop(step, ctx) {
    await ignoreNotFound(ctx.runtime.stop(step.name, ctx.stopTimeoutS));
  },

  async remove(step, ctx) {
    await ignoreNotFound(ctx.runtime.remove(step.name, { force: true }));
    ctx.forget(step.name);
  },

  async fail(step) {
    throw new FeatherError(step.code, step.reason);
  },
};

export async function executeStep(step: Step, ctx: ExecContext): Promise<void> {
  // The mapped type guarantees each executor takes its own step; TypeScript cannot follow the
  // correlation through an index, hence the one cast.
  const exec = EXECUTORS[step.action] as Executor<StepAction>;
  await exec(step as never, ctx);
}

export interface StepFailure {
  step: Step;
  error: FeatherError;
}

/**
 * Run steps in order. A failure marks the step's workloads failed (with the error's message as
 * reason) and skips their later steps; the rest go on. Stops early when ctx.signal aborts.
 */
export async function executeSteps(steps: readonly Step[], ctx: ExecContext): Promise<StepFailure[]> {
  const failures: StepFailure[] = [];
  const blocked = new Set<string>();
  for (const step of steps) {
    if (ctx.signal.aborted) break;
    const names = stepWorkloads(step);
    // An image pull always runs (pre-staging); a layer shared by several workloads runs while one of them still can use it.
    if (step.action === 'pullLayer' ? names.every((n) => blocked.has(n)) : step.action !== 'pull' && names.some((n) => blocked.has(n))) continue;
    try {
      await executeStep(step, ctx);
    } catch (e: unknown) {
      const error = toFeatherError(e, 'RUNTIME_ERROR');
      failures.push({ step, error });
      ctx.log.warn('reconcile.step.failed', { action: step.action, workloads: names, error });
      for (const n of names) {
        if (blocked.has(n)) continue; // keeps the reason of its first failure (a shared layer pull)
        blocked.add(n);
        ctx.note(n, 'failed', reasonFor(step, error));
      }
    }
  }
  return failures;
}

function reasonFor(step: Step, error: FeatherError): string {
  switch (step.action) {
    case 'pull': return `${error.code}: pulling image ${step.image.name} failed: ${error.message}`;
    case 'pullLayer': {
      // ensureLayers' messages name the layer already ("layer ort: CHECKSUM_MISMATCH …").
      const prefix = `layer ${step.layer.name}: `;
      return `${error.code}: pulling ${error.message.startsWith(prefix) ? error.message : prefix + error.message}`;
    }
    case 'fetchModel': return `${error.code}: fetching model ${step.model.name} failed: ${error.message}`;
    case 'fail': return `${error.code}: ${error.message}`;
    default: return `${error.code}: ${step.action} failed: ${error.message}`;
  }
}

/** The runtime request for a workload: models bind-mounted read-only, layers stacked above the image, owner labels set. */
export async function runRequest(w: Workload, generation: number, ctx: Pick<ExecContext, 'images' | 'resolveDevices' | 'signal'>): Promise<RunRequest> {
  const binds: BindMount[] = [];
  for (const m of w.models) {
    const dir = await ctx.images.ensureModel(m.url, m.sha256, { signal: ctx.signal });
    binds.push({ source: dir, target: `${MODELS_DIR}/${m.name}`, readonly: true });
  }
  const req: RunRequest = {
    name: w.name,
    image: w.image,
    args: w.args,
    env: w.env,
    limits: { ...w.limits },
    network: w.network,
    restart: w.restart,
    binds,
    labels: ownerLabels(w, generation),
  };
  // Pulled and extracted by pullLayer steps: here they are found (by digest) and checked against the image.
  if (w.layers.length > 0) req.extraLayers = await ensureLayers(ctx.images, w.layers, { signal: ctx.signal, imageSha256: ctx.images.get(w.image)?.sha256 });
  if (w.devices.length > 0) req.devices = await ctx.resolveDevices(w.devices);
  return req;
}

/** Default device resolver for an agent without a device registry. */
export function noDevices(names: string[]): DeviceNode[] {
  throw new FeatherError('NOT_FOUND', `devices ${names.join(', ')} cannot be provided: this agent has no device registry; remove "devices" from the workload`);
}

async function ignoreNotFound(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (e: unknown) {
    if (!hasCode(e, 'NOT_FOUND')) throw e;
  }
}
