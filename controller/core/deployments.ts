// The deployment reconciler, the seam between the controller and the scheduler. On apply or
// delete, when a device comes online, changes its inventory or reported state, stays offline
// past the grace period, or breaks a latency objective, it calls the injected pure
// plan(input) -- by default the scheduler's (controller/scheduler/index.ts) -- with the devices,
// deployments (every revision), placements, measurements, each replica's reported health and the
// rollout state kept from the previous pass; stores the placements, statuses and rollout state
// it returns; and writes the desired state of every device whose placements changed
// (DesiredPublisher: a new generation only where the content changed).
//
// Passes run one at a time; asked during a pass, exactly one more pass follows. Triggers
// arriving together (a fleet reconnecting) are coalesced into one pass.
//
// The rollout counts a replica of a new revision as ready only once it has been running without a
// break for `rollout.minReadyS`: the controller tracks, from the phases reported pass after pass,
// since when each replica (per revision and device) runs (RunningSince), and plans again when the
// first pending replica gets there (RolloutStatus.readyAt), so a rollout moves on without other
// events.
import { messageOf } from '../../shared/errors.js';
import { forEachLimit } from '../../shared/concurrency.js';
import type { Logger } from '../../shared/logging.js';
import type { DeploymentSpec, DesiredImage, DesiredWorkload, Measurement, Placement } from '../model/types.js';
import type { DesiredPublisher } from '../registry/desired.js';
import type { DeviceRegistry } from '../registry/registry.js';
import { desiredFor, plan as schedulerPlan, type DeploymentInput, type DesiredOptions, type DeviceNote, type PlanInput, type PlanResult, type ReplicaHealth, type RolloutStatus } from '../scheduler/index.js';
import type { Store } from '../store/store.js';
import type { DeploymentRecord, DeviceRecord } from '../store/types.js';
import type { EventBus } from './bus.js';
import type { ControllerEvents } from './events.js';
import type { ControllerMetrics } from './metrics.js';

/** The scheduler: pure, synchronous. */
export type PlanFn = (input: PlanInput) => PlanResult;

/**
 * A device's desired workloads from the placements on it (default: the scheduler's desiredFor).
 * `opts` carries the device's inventory accelerators and its last desired workloads, for the CDI
 * names of the accelerator devices each replica gets; `notes` say who does not get all it should.
 */
export type DesiredFn = (deviceId: string, placements: readonly Placement[], deployments: readonly DeploymentInput[], opts: DesiredOptions) => { workloads: DesiredWorkload[]; images: DesiredImage[]; notes?: DeviceNote[] };

export interface DeploymentControllerOptions {
  store: Store;
  registry: DeviceRegistry;
  desired: DesiredPublisher;
  bus: EventBus<ControllerEvents>;
  metrics: ControllerMetrics;
  logger: Logger;
  offlineGraceS: number;
  plan?: PlanFn;
  desiredFor?: DesiredFn;
  /** Coalesce triggers arriving within this many ms into one pass (default 100). */
  debounceMs?: number;
  now?: () => number;
}

export interface ApplyResult {
  deployment: DeploymentRecord;
  created: boolean;
  /** False when the spec equals the revision in force (nothing planned). */
  changed: boolean;
}

/**
 * Which revision a reported workload runs. A device that reached the latest generation runs what
 * it says; one still working on it runs the previous revision while `running` (the old container
 * runs until it is replaced) and reports on the new one otherwise (pulling, starting, failed).
 */
export function replicaHealth(placements: readonly Placement[], devices: ReadonlyMap<string, DeviceRecord>, desiredOf: (deviceId: string) => { generation: number; revisions: Record<string, number>; previousRevisions: Record<string, number> } | undefined): ReplicaHealth[] {
  const out: ReplicaHealth[] = [];
  for (const p of placements) {
    const reported = devices.get(p.deviceId)?.reported;
    const w = reported?.workloads.find((x) => x.name === p.container);
    if (reported === undefined || w === undefined) continue;
    const desired = desiredOf(p.deviceId);
    const current = desired?.revisions[p.container] ?? p.revision;
    let revision = current;
    if (desired !== undefined && reported.generation < desired.generation && w.phase === 'running') {
      const previous = desired.previousRevisions[p.container];
      if (previous === undefined) continue; // a new container cannot be running yet: not reported
      revision = previous;
    }
    const h: ReplicaHealth = { deployment: p.deployment, replica: p.replica, deviceId: p.deviceId, revision, phase: w.phase, restarts: w.restarts };
    if (w.reason !== undefined) h.reason = w.reason;
    out.push(h);
  }
  return out;
}

/**
 * Since when each replica has been running without a break, per deployment, replica, revision and
 * device, from the phases reported pass after pass. A replica that stops running (any other phase,
 * or not reported) or whose restart count changes starts again from the pass that sees it running.
 */
export class RunningSince {
  private since = new Map<string, { at: number; restarts: number }>();

  /** `health` with `runningSince` on every running replica; `now` is the time of this pass. */
  annotate(health: readonly ReplicaHealth[], now: number): ReplicaHealth[] {
    const next = new Map<string, { at: number; restarts: number }>();
    const out = health.map((h) => {
      if (h.phase !== 'running') return h;
      const k = `${h.deployment}\u0000${h.replica}\u0000${h.revision}\u0000${h.deviceId}`;
      const prev = this.since.get(k);
      const entry = prev !== undefined && prev.restarts === h.restarts ? prev : { at: now, restarts: h.restarts };
      next.set(k, entry);
      return { ...h, runningSince: entry.at };
    });
    this.since = next;
    return out;
  }

  clear(): void {
    this.since.clear();
  }
}

/** Desired-state publishes in flight at once during a pass. */
const PUBLISH_CONCURRENCY = 64;

function placementsByDevice(list: readonly Placement[]): Map<string, Placement[]> {
  const byDevice = new Map<string, Placement[]>();
  for (const p of list) {
    const mine = byDevice.get(p.deviceId);
    if (mine) mine.push(p); else byDevice.set(p.deviceId, [p]);
  }
  return byDevice;
}

export class DeploymentController {
  readonly name = 'deployments';
  private readonly plan: PlanFn;
  private readonly desiredFor: DesiredFn;
  private readonly now: () => number;
  private readonly unsubscribers: Array<() => void> = [];
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  private readonly runningSince = new RunningSince();
  private readyTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private pending: string | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private stopped = true;

  constructor(private readonly opts: DeploymentControllerOptions) {
    this.plan = opts.plan ?? schedulerPlan;
    this.desiredFor = opts.desiredFor ?? desiredFor;
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    const { bus } = this.opts;
    this.stopped = false;
    this.unsubscribers.push(
      bus.on('device.online', ({ deviceId }) => { this.clearGrace(deviceId); this.trigger(`device ${deviceId} online`); }),
      bus.on('device.offline', ({ deviceId }) => this.armGrace(deviceId)),
      bus.on('device.inventory', ({ deviceId }) => {
        // Its accelerators' CDI names may have changed: its replicas' devices are named again.
        if (this.opts.store.listPlacements({ deviceId }).length > 0) this.extraDevices.add(deviceId);
        this.trigger(`device ${deviceId} inventory changed`);
      }),
      bus.on('device.reported', ({ deviceId }) => { if (this.opts.store.listPlacements({ deviceId }).length > 0) this.trigger(`device ${deviceId} reported`); }),
      bus.on('device.measurement', ({ measurement }) => { if (this.breaksObjective(measurement)) this.trigger(`latency objective broken on ${measurement.deviceId}`); }),
    );
    // Devices already offline (the embedded broker restarted with us) get their grace period now.
    for (const d of this.opts.store.listDevices()) {
      if (!d.online && this.opts.store.listPlacements({ deviceId: d.id }).length > 0) this.armGrace(d.id);
    }
    if (this.opts.store.listDeployments().length > 0) this.trigger('controller started');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const u of this.unsubscribers.splice(0)) u();
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
    clearTimeout(this.debounce);
    clearTimeout(this.readyTimer);
    this.readyTimer = undefined;
    await this.running;
  }

  /** Record a deployment spec (a new revision when it differs) and plan at once. */
  async apply(spec: DeploymentSpec): Promise<ApplyResult> {
    const result = this.opts.store.applyDeployment(spec);
    this.opts.logger.info('deployment.applied', { name: spec.name, revision: result.deployment.revision, created: result.created, changed: result.changed });
    if (result.changed) await this.replan(`deployment ${spec.name} applied`);
    return { ...result, deployment: this.opts.store.getDeployment(spec.name) ?? result.deployment };
  }

  /** Delete a deployment with its revisions; its workloads leave the devices' desired states. */
  async delete(name: string): Promise<boolean> {
    const before = this.opts.store.listPlacements({ deployment: name });
    const deleted = this.opts.store.deleteDeployment(name);
    if (deleted) {
      this.opts.logger.info('deployment.deleted', { name });
      await this.replan(`deployment ${name} deleted`, before.map((p) => p.deviceId));
    }
    return deleted;
  }

  /** Plan now (or right after the pass in flight); resolves when that pass is done. */
  async replan(reason: string, alsoDevices: readonly string[] = []): Promise<void> {
    if (this.stopped) return;
    this.pending = reason;
    for (const d of alsoDevices) this.extraDevices.add(d);
    if (this.running !== undefined) return this.running;
    const run = async (): Promise<void> => {
      await Promise.resolve(); // `this.running` is set before the first pass starts
      while (this.pending !== undefined && !this.stopped) {
        const why = this.pending;
        this.pending = undefined;
        const extra = [...this.extraDevices];
        this.extraDevices.clear();
        try {
          await this.pass(why, extra);
        } catch (e: unknown) {
          this.opts.logger.error('deployments.plan_failed', { reason: why, error: messageOf(e), action: 'planned again at the next change' });
        }
      }
      this.running = undefined; // in the same turn as the last check of `pending`
    };
    this.running = run();
    return this.running;
  }

  private readonly extraDevices = new Set<string>();

  /** Ask for a pass soon (events arriving together make one pass). */
  trigger(reason: string): void {
    if (this.stopped) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => { void this.replan(reason); }, this.opts.debounceMs ?? 100);
  }

  // ---- internals -----------------------------------------------------------------------------

  private deploymentInputs(records: readonly DeploymentRecord[]): DeploymentInput[] {
    return records.map((d) => ({
      spec: d.spec,
      revision: d.revision,
      others: this.opts.store.listRevisions(d.name).filter((r) => r.revision !== d.revision).map((r) => ({ spec: r.spec, revision: r.revision })),
    }));
  }

  private async pass(reason: string, extraDevices: readonly string[]): Promise<void> {
    const { store, registry, metrics } = this.opts;
    const records = store.listDeployments();
    const deployments = this.deploymentInputs(records);
    const before = store.listPlacements();
    const devices = new Map(registry.devices().map((d) => [d.id, d]));
    const now = this.now();
    const input: PlanInput = {
      devices: registry.views(),
      deployments,
      placements: before,
      measurements: store.listMeasurements(),
      health: this.runningSince.annotate(replicaHealth(before, devices, (id) => store.getDesired(id)), now),
      rollouts: records.map((d) => d.rollout).filter((r): r is RolloutStatus => r !== undefined),
      now,
      graceMs: this.opts.offlineGraceS * 1000,
    };
    const t0 = process.hrtime.bigint();
    const result = this.plan(input);
    const durationS = Number(process.hrtime.bigint() - t0) / 1e9;
    metrics.schedulerDuration.observe(durationS);

    const key = (p: Placement): string => `${p.deployment}\u0000${p.replica}\u0000${p.deviceId}`;
    const old = new Set(before.map(key));
    const added = result.placements.filter((p) => !old.has(key(p))).length;
    const rollouts = new Map(result.rollouts.map((r) => [r.deployment, r]));
    const statuses = new Map(result.status.map((s) => [s.name, s]));
    store.transaction(() => {
      store.replacePlacements(records.map((d) => d.name), result.placements.filter((p) => statuses.has(p.deployment) || records.some((d) => d.name === p.deployment)));
      for (const d of records) {
        const s = statuses.get(d.name);
        store.setDeploymentStatus(d.name, { phase: s?.phase ?? d.phase, message: s?.message ?? d.message, status: s, rollout: rollouts.get(d.name) });
      }
    });
    metrics.placementsTotal.inc(added);
    this.armReady(result.rollouts);

    // Every device whose placements changed, and those the scheduler names.
    const beforeBy = placementsByDevice(before);
    const afterBy = placementsByDevice(result.placements);
    const sig = (byDevice: ReadonlyMap<string, Placement[]>, id: string): string => JSON.stringify((byDevice.get(id) ?? []).map((p) => [p.deployment, p.replica, p.revision, p.container, p.accelerator, p.precision]).sort());
    const affected = new Set([...result.affectedDevices, ...extraDevices]);
    for (const id of new Set([...beforeBy.keys(), ...afterBy.keys()])) if (sig(beforeBy, id) !== sig(afterBy, id)) affected.add(id);
    // Devices are independent: publish several at once (one at a time cost 2-3 ms a device).
    let revisionsMoved = false;
    await forEachLimit([...affected].sort(), PUBLISH_CONCURRENCY, async (id) => {
      const mine = afterBy.get(id) ?? [];
      try {
        const set = this.desiredFor(id, mine, deployments, { accelerators: devices.get(id)?.inventory?.accelerators, previous: store.getDesired(id)?.workloads });
        for (const n of set.notes ?? []) {
          this.opts.logger.warn('deployments.device_not_given', { deviceId: id, container: n.container, accelerator: n.accelerator, reason: n.message, action: 'the replica runs without it (docs/scheduling.md, "Which device a replica gets")' });
        }
        const published = await this.opts.desired.publishDesired(id, set.workloads, set.images, { revisions: Object.fromEntries(mine.map((p) => [p.container, p.revision])) });
        if (published.revisionsMoved === true) revisionsMoved = true;
      } catch (e: unknown) {
        this.opts.logger.error('deployments.desired_failed', { deviceId: id, error: messageOf(e) });
      }
    });
    this.opts.logger.info('deployments.planned', { reason, placements: result.placements.length, added, moves: result.moves.length, devices: affected.size, durationMs: Math.round(durationS * 1e6) / 1e3 });
    // Replicas that reached a new revision without anything to send will report nothing new: look
    // again now, or the rollout would wait for an event that never comes.
    if (revisionsMoved) this.trigger('a new revision with the same workloads reached its replicas');
    this.opts.bus.emit('deployments.planned', { reason, placements: result.placements.length, durationS });
  }

  private breaksObjective(m: Measurement): boolean {
    for (const p of this.opts.store.listPlacements({ deviceId: m.deviceId })) {
      const spec = this.opts.store.getDeployment(p.deployment)?.spec;
      if (spec?.p95LatencyMs !== undefined && spec.model.name === m.model && m.p95Ms > spec.p95LatencyMs) return true;
    }
    return false;
  }

  /** Plan again when the first replica still short of `rollout.minReadyS` gets there. */
  private armReady(rollouts: readonly RolloutStatus[]): void {
    clearTimeout(this.readyTimer);
    this.readyTimer = undefined;
    if (this.stopped) return;
    const at = Math.min(...rollouts.map((r) => r.readyAt ?? Infinity));
    if (!Number.isFinite(at)) return;
    const t = setTimeout(() => {
      this.readyTimer = undefined;
      void this.replan('a replica of a new revision ran for rollout.minReadyS');
    }, Math.max(0, at - this.now()) + 20);
    t.unref();
    this.readyTimer = t;
  }

  private armGrace(deviceId: string): void {
    this.clearGrace(deviceId);
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.graceTimers.delete(deviceId);
      this.trigger(`device ${deviceId} offline past the grace period`);
    }, this.opts.offlineGraceS * 1000 + 1000);
    t.unref();
    this.graceTimers.set(deviceId, t);
  }

  private clearGrace(deviceId: string): void {
    clearTimeout(this.graceTimers.get(deviceId));
    this.graceTimers.delete(deviceId);
  }
}
