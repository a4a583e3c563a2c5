// Lifecycle events on .../dev/{id}/events (QoS 1, JSON): container.exited, container.oom,
// image.pulled, pull.failed, command.rejected. Publishing never throws; while the broker is
// away events wait in the connection's bounded outbox.
import { messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { Topics } from '../../shared/protocol/topics.js';
import { EVENT_TYPE_RE, type EventType, type FeatherEvent } from '../../shared/protocol/types.js';
import type { ContainerExit } from '../runtime/api.js';
import type { PublishOptions } from './mqtt.js';

export type Publish = (topic: string, payload: string | Buffer, opts: PublishOptions) => Promise<void>;

export class EventPublisher {
  constructor(private readonly topics: Topics, private readonly publishFn: Publish, private readonly logger: Logger) {}

  /**
   * Publish one event: `type` is one of EVENT_TYPES or another dotted name ("container.restarted");
   * `fields` cannot override type, ts, deviceId. Never throws.
   */
  publish(type: EventType | (string & {}), fields: Record<string, unknown> = {}): void {
    if (!EVENT_TYPE_RE.test(type)) {
      this.logger.warn('event.bad_type', { type, action: 'not published; use a dotted lower-case name like container.exited' });
      return;
    }
    const event: FeatherEvent = { ...fields, type, ts: Date.now(), deviceId: this.topics.deviceId };
    let payload: string;
    try {
      payload = JSON.stringify(event);
    } catch (e: unknown) {
      this.logger.warn('event.unserializable', { type, error: messageOf(e) });
      return;
    }
    this.publishFn(this.topics.events, payload, {
      qos: 1, whenOffline: 'queue', properties: { contentType: 'application/json', payloadFormatIndicator: true },
    }).catch((e: unknown) => this.logger.warn('event.publish_failed', { type, error: messageOf(e) }));
  }

  /** container.oom when the kernel killed it for memory, else container.exited. */
  containerExit(exit: ContainerExit): void {
    this.publish(exit.oomKilled ? 'container.oom' : 'container.exited', {
      name: exit.name,
      exitCode: exit.exitCode ?? null,
      signal: exit.signal ?? null,
      oomKilled: exit.oomKilled,
      finishedAt: exit.finishedAt,
    });
  }
}
