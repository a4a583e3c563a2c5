// Commands to one agent over MQTT, answered on its reply topic (docs/mqtt.md): publish
// `<prefix>/dev/<id>/cmd/<verb>` with a fresh requestId, wait for `<prefix>/dev/<id>/reply/<requestId>`.
// One wildcard subscription (`<prefix>/dev/+/reply/+`) on the controller's connection serves
// every call; replies nobody waits for (a person's mosquitto_pub, a late one) are ignored.
import { randomUUID } from 'node:crypto';
import { ERROR_CODES, FeatherError, messageOf, type ErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { Topics } from '../../shared/protocol/topics.js';
import type { MqttLink, MqttMessage } from '../broker/client.js';
import { ApiError } from './respond.js';

export interface AgentRpcOptions {
  mqtt: MqttLink;
  topicPrefix: string;
  logger: Logger;
  /** Default wait for a reply (default 10 s). */
  timeoutMs?: number;
}

interface Pending {
  deviceId: string;
  resolve: (payload: Buffer) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

const isErrorCode = (v: unknown): v is ErrorCode => typeof v === 'string' && (ERROR_CODES as readonly string[]).includes(v);

export class AgentRpc {
  private readonly topics: Topics;
  private readonly pending = new Map<string, Pending>();
  private started = false;

  constructor(private readonly opts: AgentRpcOptions) {
    this.topics = new Topics(opts.topicPrefix, 'controller');
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.opts.mqtt.subscribe(`${this.topics.prefix}/dev/+/reply/+`, (m) => this.onReply(m));
  }

  /** Fail every call still waiting (the handler stays subscribed; it ignores what comes later). */
  stop(): void {
    this.started = false;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new FeatherError('INTERNAL', 'the controller is stopping; try again once it runs'));
      this.pending.delete(id);
    }
  }

  /**
   * Send `verb` with `body` to the device and resolve with the reply's `result`. An agent's
   * error comes back as a FeatherError with the agent's code; no reply in time is a 504.
   */
  async call(deviceId: string, verb: string, body: Record<string, unknown> = {}, opts: { timeoutMs?: number } = {}): Promise<unknown> {
    if (!this.opts.mqtt.connected) throw new ApiError(503, 'INTERNAL', 'the controller is not connected to the MQTT broker; check /healthz and the broker, then retry');
    const t = this.topics.forDevice(deviceId);
    const requestId = `ctl-${randomUUID()}`;
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs ?? 10_000;
    const reply = this.expect(deviceId, requestId, timeoutMs, `${verb} to ${deviceId}`);
    reply.catch(() => undefined); // a timeout while the publish is still in flight is handled below
    try {
      await this.opts.mqtt.publish(t.cmd(verb), JSON.stringify({ ...body, requestId }), { qos: 1, retain: false });
    } catch (e: unknown) {
      this.cancel(requestId);
      throw new FeatherError('INTERNAL', `cannot publish ${verb} to ${deviceId}: ${messageOf(e)}`);
    }
    return parseReply(await reply, deviceId, verb);
  }

  /**
   * Wait until our own connection has received a message we publish now on the device's reply
   * topic. Messages to one subscriber arrive in order, so everything published on this connection
   * before it (cleared retained topics) has been handled by the other subscribers too.
   */
  async barrier(deviceId: string, timeoutMs = 3000): Promise<void> {
    const requestId = `ctl-sync-${randomUUID()}`;
    const seen = this.expect(deviceId, requestId, timeoutMs, `a round trip through the broker for ${deviceId}`);
    seen.catch(() => undefined);
    try {
      await this.opts.mqtt.publish(this.topics.forDevice(deviceId).reply(requestId), JSON.stringify({ requestId, ok: true, result: { barrier: true } }), { qos: 1, retain: false });
    } catch (e: unknown) {
      this.cancel(requestId);
      throw e;
    }
    await seen;
  }

  /** Calls waiting for a reply (tests). */
  get waiting(): number {
    return this.pending.size;
  }

  private expect(deviceId: string, requestId: string, timeoutMs: number, what: string): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ApiError(504, 'INTERNAL', `no reply to ${what} within ${timeoutMs} ms; is the agent connected (featherctl get devices)? Retry, or raise the timeout`));
      }, timeoutMs);
      this.pending.set(requestId, { deviceId, resolve, reject, timer });
    });
  }

  private cancel(requestId: string): void {
    const p = this.pending.get(requestId);
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(requestId);
    p.resolve(Buffer.alloc(0)); // nobody awaits it any more: settle quietly
  }

  private onReply(m: MqttMessage): void {
    if (!this.started) return;
    const parsed = this.topics.parse(m.topic);
    if (parsed?.kind !== 'reply') return;
    const p = this.pending.get(parsed.requestId);
    if (p === undefined || p.deviceId !== parsed.deviceId) return;
    clearTimeout(p.timer);
    this.pending.delete(parsed.requestId);
    p.resolve(m.payload);
  }
}

/** The `result` of a reply, or the agent's error as a FeatherError. */
export function parseReply(payload: Buffer, deviceId: string, verb: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ApiError(502, 'INTERNAL', `the reply of ${deviceId} to ${verb} is not JSON`);
  }
  if (typeof value !== 'object' || value === null) throw new ApiError(502, 'INTERNAL', `the reply of ${deviceId} to ${verb} is not a JSON object`);
  const r = value as { ok?: unknown; result?: unknown; error?: { code?: unknown; message?: unknown } };
  if (r.ok === true) return r.result;
  const code = isErrorCode(r.error?.code) ? r.error.code : 'INTERNAL';
  const message = typeof r.error?.message === 'string' ? r.error.message : 'the agent refused the command without a message';
  throw new FeatherError(code, `${deviceId}: ${message}`);
}
