// The desired-state reconciler: takes the retained `desired` payload, keeps it on disk, and drives
// the device to it with one reconciliation pass at a time (plan -> executors), publishing
// `reported` whenever what it would say changes. See docs/desired-state.md.
import { existsSync } from 'node:fs';
import { FeatherError, messageOf } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import type { DataPaths } from '../paths.js';
import type { ContainerExit, ContainerRuntime } from '../runtime/api.js';
import type { ContainerInfo, DeviceNode } from '../runtime/types.js';
import {
  DesiredStateError, decodeDesired, isDesiredStateError, nothingDesired, validateDesired, type DesiredState,
} from '../../shared/protocol/desired.js';
import type { Reported } from '../../shared/protocol/reported.js';
import { executeSteps, noDevices, type ExecContext, type ImageSource } from './executors.js';
import { isOwned } from './labels.js';
import { loadDesired, saveDesired } from './persist.js';
import { DEFAULT_RESTART_BACKOFF, plan, stepWorkloads, type CurrentState, type RestartBackoff, type Step } from './plan.js';
import { buildReported, type PendingRestart, type PhaseNote } from './reported.js';
import { SingleFlightRunner } from './runner.js';

export type { Step, CurrentState, RestartBackoff } from './plan.js';
export type { ImageSource } from './executors.js';
export { plan } from './plan.js';
export { OWNER_LABEL, OWNER_DESIRED, SPEC_HASH_LABEL, GENERATION_LABEL } from './labels.js';

/** A runtime that can persist restart counts (ShimRuntime can). */
interface RestartRecorder {
  recordRestart(name: string): void;
}

function canRecordRestarts(r: ContainerRuntime): r is ContainerRuntime & RestartRecorder {
  return typeof (r as Partial<RestartRecorder>).recordRestart === 'function';
}

export interface ReconcilerOptions {
  /** Retry of failed passes: first delay and cap (default 1 s .. 60 s). */
  retry?: { baseMs: number; maxMs: number } | undefined;
  /** Restart policy delays (default 1 s doubling to 60 s, reset after a 60 s run). */
  restartBackoff?: RestartBackoff | undefined;
  /** Reconcile this often even without news, to undo drift (default 30 s; 0 = never). */
  resyncMs?: number | undefined;
  /** SIGTERM-to-SIGKILL grace when stopping a workload (default 10 s). */
  stopTimeoutS?: number | undefined;
}

export interface ReconcilerDeps {
  runtime: ContainerRuntime;
  images: ImageSource;
  dataPaths: DataPaths;
  /** Called with every new `reported` document (the MQTT layer publishes it retained, QoS 1). */
  publishReported: (reported: Reported) => void | Promise<void>;
  /** Lifecycle events for the `events` topic. */
  publishEvent?: ((type: string, body: Record<string, unknown>) => void | Promise<void>) | undefined;
  logger?: Logger | undefined;
  /** Device names ("vendor.com/class=name") to nodes (the control plane's DeviceResolver fits); default: none. */
  resolveDevices?: ((names: string[]) => DeviceNode[] | Promise<DeviceNode[]>) | undefined;
  /** Decoder for non-JSON (protobuf) desired payloads. */
  decodeBinary?: ((payload: Buffer) => unknown) | undefined;
  options?: ReconcilerOptions | undefined;
}

export type SetDesiredResult = { ok: true; generation: number } | { ok: false; error: DesiredStateError };

export class Reconciler {
  private readonly log: Logger;
  private readonly restartBackoff: RestartBackoff;
  private readonly runner: SingleFlightRunner;
  private desired: DesiredState | undefined;
  private payload: unknown = null;
  private desiredFromMessage = false;
  private reachedGeneration = 0;
  private rejected: string | undefined;
  private readonly notes = new Map<string, PhaseNote>();
  private pendingRestarts: ReadonlyMap<string, PendingRestart> = new Map();
  private readonly streaks = new Map<string, number>();
  private readonly extraRestarts = new Map<string, number>();
  private current: Reported = { generation: 0, workloads: [] };
  private lastPublished: string | undefined;
  private unsubscribeExit: (() => void) | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private state: 'new' | 'started' | 'stopped' = 'new';

  constructor(private readonly deps: ReconcilerDeps) {
    this.log = deps.logger ?? createLogger('agent:reconcile');
    this.restartBackoff = deps.options?.restartBackoff ?? DEFAULT_RESTART_BACKOFF;
    this.runner = new SingleFlightRunner((signal) => this.pass(signal), {
      baseMs: deps.options?.retry?.baseMs ?? 1000,
      maxMs: deps.options?.retry?.maxMs ?? 60_000,
      onError: (error, failures, retryInMs) => this.log.warn('reconcile.failed', { error, failures, retryInMs }),
    });
  }

  /**
   * Load the saved desired state (unless a message already came), report the containers that
   * ended while the agent was down, watch exits and reconcile. Running containers are adopted
   * as they are: nothing is restarted that still matches its workload.
   */
  start(): void {
    if (this.state !== 'new') return;
    this.state = 'started';
    const loaded = loadDesired(this.deps.dataPaths, this.log);
    this.reachedGeneration = loaded.reached;
    if (!this.desiredFromMessage) {
      this.desired = loaded.desired;
      this.payload = loaded.payload;
    }
    this.adopt();
    this.unsubscribeExit = this.deps.runtime.onExit((exit) => this.onExit(exit));
    const resyncMs = this.deps.options?.resyncMs ?? 30_000;
    if (resyncMs > 0) {
      this.resyncTimer = setInterval(() => this.runner.trigger(), resyncMs);
      this.resyncTimer.unref();
    }
    this.runner.start();
    this.runner.trigger();
    this.refreshReported();
  }

  /** Stop reconciling (the pass in flight is aborted between steps). Containers keep running. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    clearInterval(this.resyncTimer);
    clearTimeout(this.wakeTimer);
    this.unsubscribeExit?.();
    this.unsubscribeExit = undefined;
    await this.runner.stop();
  }

  /**
   * The retained `desired` message (null or empty = nothing desired). A valid one is saved and
   * reconciled to; an invalid one is reported (event `desired.rejected`, `reported.reason`) and
   * the previous desired state stays in force. Never throws.
   */
  setDesired(payload: Buffer | string | null): SetDesiredResult {
    let raw: unknown;
    let desired: DesiredState;
    try {
      raw = decodeDesired(payload, { decodeBinary: this.deps.decodeBinary });
      desired = raw === null ? nothingDesired() : validateDesired(raw);
    } catch (e: unknown) {
      const error = isDesiredStateError(e) ? e : new DesiredStateError([{ path: '', message: messageOf(e) }]);
      this.rejected = error.message;
      this.log.warn('desired.rejected', { error, issues: error.issues });
      this.event('desired.rejected', { code: error.code, message: error.message, issues: error.issues });
      this.refreshReported();
      return { ok: false, error };
    }
    if (this.desired && desired.generation < this.desired.generation) {
      this.log.warn('desired.generation.lower', { previous: this.desired.generation, generation: desired.generation });
    }
    this.desired = desired;
    this.payload = raw;
    this.desiredFromMessage = true;
    this.rejected = undefined;
    this.save();
    this.log.info('desired.accepted', { generation: desired.generation, workloads: desired.workloads.length });
    if (this.state !== 'stopped') this.runner.trigger({ resetBackoff: true });
    this.refreshReported();
    return { ok: true, generation: desired.generation };
  }

  /** The current `reported` document (what was last published, or would be). */
  reported(): Reported {
    return structuredClone(this.current);
  }

  /** The desired state in force (undefined until one is known). */
  desiredState(): DesiredState | undefined {
    return this.desired === undefined ? undefined : structuredClone(this.desired);
  }

  /** Resolves when no pass runs and none is requested (a retry or a restart may be scheduled). */
  idle(): Promise<void> {
    return this.runner.idle();
  }

  // --- one reconciliation pass -----------------------------------------------------------------

  private async pass(signal: AbortSignal): Promise<void> {
    const desired = this.desired;
    if (desired === undefined) return; // unknown: wait for the retained message, change nothing
    const steps = plan(await this.observe(desired), desired, { restartBackoff: this.restartBackoff });
    const touched = new Set(steps.flatMap(stepWorkloads));
    for (const name of [...this.notes.keys()]) if (!touched.has(name)) this.notes.delete(name);
    const pending = new Map<string, PendingRestart>();
    const acting = steps.filter((s) => s.action !== 'wait');
    if (acting.length > 0) this.log.info('reconcile.plan', { generation: desired.generation, steps: acting.map(summary) });

    const failures = await executeSteps(steps, this.context(signal, pending));
    this.pendingRestarts = pending; // swapped whole, so reports during the pass do not flap
    this.armWake();
    if (signal.aborted) return;
    if (failures.length === 0 && this.reachedGeneration !== desired.generation) {
      this.reachedGeneration = desired.generation;
      this.save();
      this.log.info('desired.reached', { generation: desired.generation });
    }
    this.refreshReported();
    if (failures.length > 0) {
      const first = failures[0]!.error;
      throw new FeatherError(first.code, `${failures.length} step(s) failed; first: ${first.message}`, {
        failures: failures.map((f) => ({ action: f.step.action, workloads: stepWorkloads(f.step), code: f.error.code })),
      });
    }
  }

  private async observe(desired: DesiredState): Promise<CurrentState> {
    const images: Record<string, string> = {};
    const names = new Set([...desired.workloads.map((w) => w.image), ...desired.images.map((im) => im.name)]);
    for (const name of names) {
      const sha = this.deps.images.get(name)?.sha256;
      if (sha !== undefined) images[name] = sha;
    }
    const models = new Set<string>();
    for (const w of desired.workloads) {
      for (const m of w.models) if (existsSync(this.deps.dataPaths.modelDir(m.sha256))) models.add(m.sha256);
    }
    // Layers are found by digest under any name (a layer may be an image too); ready = extracted.
    const layers = new Set<string>();
    if (desired.workloads.some((w) => w.layers.length > 0)) {
      for (const im of await this.deps.images.list()) if (im.cached) layers.add(im.sha256);
    }
    return {
      now: Date.now(),
      containers: this.deps.runtime.list({ all: true }),
      images,
      models,
      layers,
      restartStreaks: Object.fromEntries(this.streaks),
    };
  }

  private context(signal: AbortSignal, pending: Map<string, PendingRestart>): ExecContext {
    return {
      runtime: this.deps.runtime,
      images: this.deps.images,
      signal,
      log: this.log,
      stopTimeoutS: this.deps.options?.stopTimeoutS ?? 10,
      resolveDevices: this.deps.resolveDevices ?? noDevices,
      note: (name, phase, reason) => {
        this.notes.set(name, { phase, reason });
        this.refreshReported();
      },
      done: (name) => {
        this.notes.delete(name);
        this.refreshReported();
      },
      restarted: (name, streak, lastExit) => this.restarted(name, streak, lastExit),
      forget: (name) => {
        this.streaks.delete(name);
        this.extraRestarts.delete(name);
      },
      pending: (name, restart) => pending.set(name, restart),
      event: (type, body) => this.event(type, body),
    };
  }

  private restarted(name: string, streak: number, lastExit: string): void {
    this.streaks.set(name, streak);
    const runtime = this.deps.runtime;
    if (canRecordRestarts(runtime)) {
      try {
        runtime.recordRestart(name);
      } catch (e: unknown) {
        this.log.warn('restart.record.failed', { name, error: e });
      }
    } else {
      this.extraRestarts.set(name, (this.extraRestarts.get(name) ?? 0) + 1);
    }
    let restarts: number | undefined;
    try {
      restarts = runtime.inspect(name).restarts + (this.extraRestarts.get(name) ?? 0);
    } catch {
      restarts = undefined;
    }
    this.log.info('workload.restarted', { name, restarts, lastExit });
    this.event('container.restarted', { name, restarts, lastExit, by: 'desired' });
  }

  /** Reconcile again when the earliest pending restart is due. */
  private armWake(): void {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    if (this.state === 'stopped' || this.pendingRestarts.size === 0) return;
    const until = Math.min(...[...this.pendingRestarts.values()].map((p) => p.until));
    this.wakeTimer = setTimeout(() => this.runner.trigger(), Math.max(0, until - Date.now()) + 5);
    this.wakeTimer.unref();
  }

  // --- start-up, exits, reporting --------------------------------------------------------------

  /** Containers that outlived the agent: running ones are left alone; ended ones are reported. */
  private adopt(): void {
    let owned: ContainerInfo[];
    try {
      owned = this.deps.runtime.list({ all: true }).filter(isOwned);
    } catch (e: unknown) {
      this.log.error('adopt.failed', { error: e });
      return;
    }
    const running = owned.filter((c) => c.status === 'running').map((c) => c.name);
    if (owned.length > 0) this.log.info('adopt', { running, stopped: owned.length - running.length });
    for (const c of owned) {
      if (c.status !== 'exited') continue;
      this.event('container.exited', {
        name: c.name, exitCode: c.exitCode, oomKilled: c.oomKilled, finishedAt: c.finishedAt, atStartup: true, by: 'desired',
      });
    }
  }

  private onExit(exit: ContainerExit): void {
    let info: ContainerInfo;
    try {
      info = this.deps.runtime.inspect(exit.name);
    } catch {
      return; // removed meanwhile
    }
    if (!isOwned(info)) return;
    this.log.info('workload.exited', { name: exit.name, exitCode: exit.exitCode, signal: exit.signal, oomKilled: exit.oomKilled });
    this.refreshReported();
    this.runner.trigger();
  }

  private refreshReported(): void {
    let containers: ContainerInfo[];
    try {
      containers = this.deps.runtime.list({ all: true }).filter(isOwned);
    } catch (e: unknown) {
      this.log.warn('reported.list.failed', { error: e });
      return;
    }
    const reported = buildReported({
      generation: this.reachedGeneration,
      desired: this.desired,
      containers: new Map(containers.map((c) => [c.name, c])),
      notes: this.notes,
      pending: this.pendingRestarts,
      extraRestarts: this.extraRestarts,
      rejected: this.rejected,
    });
    this.current = reported;
    const json = JSON.stringify(reported);
    if (json === this.lastPublished) return;
    this.lastPublished = json;
    this.safely('publishReported', () => this.deps.publishReported(structuredClone(reported)));
  }

  private event(type: string, body: Record<string, unknown>): void {
    const publish = this.deps.publishEvent;
    if (publish) this.safely('publishEvent', () => publish(type, body));
  }

  private save(): void {
    try {
      saveDesired(this.deps.dataPaths, this.payload, this.reachedGeneration);
    } catch (e: unknown) {
      // Still reconcile to it; only an offline restart would miss it.
      this.log.error('desired.save.failed', { error: e });
    }
  }

  private safely(what: string, fn: () => void | Promise<void>): void {
    try {
      const result = fn();
      if (result instanceof Promise) result.catch((e: unknown) => this.log.warn(`${what}.failed`, { error: e }));
    } catch (e: unknown) {
      this.log.warn(`${what}.failed`, { error: e });
    }
  }
}

function summary(step: Step): string {
  switch (step.action) {
    case 'pull': return `pull ${step.image.name}`;
    case 'pullLayer': return `pullLayer ${step.layer.name}`;
    case 'fetchModel': return `fetchModel ${step.model.name}`;
    case 'start': return `start ${step.workload.name}`;
    case 'replace': return `replace ${step.workload.name} (${step.why})`;
    case 'fail': return `fail ${step.name} (${step.code})`;
    default: return `${step.action} ${step.name}`;
  }
}
