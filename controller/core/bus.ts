// A typed event bus: listeners subscribe by event name and get that event's payload type.
// Each listener runs isolated: one that throws (or returns a promise that rejects) is logged
// and the others still run; emit() never throws and never waits for listeners.
import { messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';

export type Listener<T> = (payload: T) => void | Promise<void>;

export class EventBus<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  constructor(private readonly logger: Logger) {}

  /** Subscribe; returns the unsubscribe function. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    const stored = listener as Listener<never>;
    set.add(stored);
    return () => { this.listeners.get(event)?.delete(stored); };
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const l of [...set]) {
      const listener = l as Listener<Events[K]>;
      try {
        const r = listener(payload);
        if (r instanceof Promise) r.catch((e: unknown) => this.failed(event, e));
      } catch (e: unknown) {
        this.failed(event, e);
      }
    }
  }

  listenerCount<K extends keyof Events>(event: K): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  private failed(event: keyof Events, e: unknown): void {
    this.logger.error('bus.listener_failed', { event: String(event), error: messageOf(e) });
  }
}
