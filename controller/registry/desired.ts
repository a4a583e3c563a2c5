// Publishing each device's desired state (docs/desired-state.md): retained, QoS 1,
// {"generation","workloads","images"}, with a generation that rises with every change and is
// kept in the store. The payload is validated by the agent's own validator before it leaves,
// so a desired state the agent would refuse is refused here, with the field named.
//
// Restarts and reconnects: on every connect the controller publishes again every desired state
// it owns, with the generation and content it stored. The agent's reconciler compares specs,
// not generations, so the same payload again starts nothing new: no duplicate containers.
import { createHash } from 'node:crypto';
import { validateDesired } from '../../shared/protocol/desired.js';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { Topics } from '../../shared/protocol/topics.js';
import { isValidDeviceId } from '../broker/acl.js';
import type { MqttLink } from '../broker/client.js';
import type { EventBus } from '../core/bus.js';
import type { ControllerEvents } from '../core/events.js';
import type { DesiredDoc, DesiredImage, DesiredWorkload } from '../model/types.js';
import { canonicalJson, type Store } from '../store/store.js';
import type { DesiredRecord } from '../store/types.js';

export interface DesiredPublisherOptions {
  store: Store;
  mqtt: MqttLink;
  bus: EventBus<ControllerEvents>;
  logger: Logger;
  topicPrefix: string;
}

export interface PublishResult {
  deviceId: string;
  generation: number;
  /** False when the same workloads and images were already desired (nothing published). */
  changed: boolean;
  /** Not changed, but the stored revisions moved on (a new revision with the same workloads). */
  revisionsMoved?: boolean;
}

export function desiredHash(workloads: readonly DesiredWorkload[], images: readonly DesiredImage[]): string {
  return createHash('sha256').update(canonicalJson({ workloads, images })).digest('hex');
}

export function desiredPayload(r: Pick<DesiredRecord, 'generation' | 'workloads' | 'images'>): string {
  return JSON.stringify({ generation: r.generation, workloads: r.workloads, images: r.images } satisfies DesiredDoc);
}

export class DesiredPublisher {
  readonly name = 'desired';
  private readonly topics: Topics;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly opts: DesiredPublisherOptions) {
    this.topics = new Topics(opts.topicPrefix, 'controller');
  }

  start(): void {
    this.unsubscribe = this.opts.mqtt.onConnect(async () => { await this.republishAll(); });
  }

  stop(): void {
    this.unsubscribe?.();
  }

  /**
   * Make `workloads` (and `images`) the device's desired state. A change gets the next
   * generation (above both the stored one and what the device reports), is stored, then
   * published retained with QoS 1. The same content again publishes nothing.
   * BAD_REQUEST (DesiredStateError, with every bad field) when the agent would refuse it.
   * `opts.revisions` (container -> deployment revision) is stored with it for the rollout.
   */
  async publishDesired(deviceId: string, workloads: DesiredWorkload[], images: DesiredImage[] = [], opts: { revisions?: Record<string, number> } = {}): Promise<PublishResult> {
    if (!isValidDeviceId(deviceId)) throw new FeatherError('BAD_REQUEST', `device id "${deviceId}" cannot be an MQTT topic level`);
    validateDesired({ generation: 1, workloads, images });
    const hash = desiredHash(workloads, images);
    const { store } = this.opts;
    let revisionsMoved = false;
    const record = store.transaction(() => {
      const current = store.getDesired(deviceId);
      if (current !== undefined && !current.cleared && current.hash === hash) {
        // A new revision whose workloads are the same as the old one's (only its rollout settings or
        // objective changed): nothing to send, but the rollout must see the replicas at the new revision.
        if (opts.revisions !== undefined && !sameRevisions(current.revisions, opts.revisions)) {
          store.putDesired({ deviceId, generation: current.generation, workloads: current.workloads, images: current.images, hash, revisions: opts.revisions });
          revisionsMoved = true;
        }
        return undefined;
      }
      const reported = store.getDevice(deviceId)?.reported?.generation ?? 0;
      const generation = Math.max(current?.generation ?? 0, reported) + 1;
      store.ensureDevice(deviceId);
      return store.putDesired({ deviceId, generation, workloads, images, hash, ...(opts.revisions ? { revisions: opts.revisions } : {}) });
    });
    if (record === undefined) {
      const current = store.getDesired(deviceId) as DesiredRecord;
      return { deviceId, generation: current.generation, changed: false, ...(revisionsMoved ? { revisionsMoved } : {}) };
    }
    this.opts.logger.info('desired.changed', { deviceId, generation: record.generation, workloads: workloads.map((w) => w.name) });
    await this.send(record);
    return { deviceId, generation: record.generation, changed: true };
  }

  /** Clear the retained desired state (the agent then stops and removes what it owns). The generation is kept. */
  async clearDesired(deviceId: string): Promise<void> {
    const { store } = this.opts;
    const current = store.getDesired(deviceId);
    store.putDesired({ deviceId, generation: current?.generation ?? 0, workloads: [], images: [], hash: '', cleared: true });
    if (this.opts.mqtt.connected) await this.opts.mqtt.publish(this.topics.forDevice(deviceId).desired, '', { qos: 1, retain: true });
    this.opts.logger.info('desired.cleared', { deviceId });
  }

  desired(deviceId: string): DesiredRecord | undefined {
    return this.opts.store.getDesired(deviceId);
  }

  /** Publish every desired state we own again (at each connect). Returns how many. */
  async republishAll(): Promise<number> {
    const all = this.opts.store.listDesired();
    const results = await Promise.allSettled(all.map((r) => this.send(r, false)));
    const failed = results.filter((r) => r.status === 'rejected').length;
    this.opts.logger.info('desired.republished', { devices: all.length, failed });
    return all.length - failed;
  }

  private async send(r: DesiredRecord, changed = true): Promise<void> {
    // Not connected: the next connect publishes every stored desired state anyway.
    if (!this.opts.mqtt.connected) return;
    try {
      await this.opts.mqtt.publish(this.topics.forDevice(r.deviceId).desired, desiredPayload(r), { qos: 1, retain: true });
      this.opts.bus.emit('desired.published', { deviceId: r.deviceId, generation: r.generation, changed });
    } catch (e: unknown) {
      this.opts.logger.warn('desired.publish_failed', { deviceId: r.deviceId, generation: r.generation, error: messageOf(e), action: 'published again at the next connect' });
      throw e;
    }
  }
}

function sameRevisions(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}
