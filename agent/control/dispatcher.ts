// Commands in, replies out (../shared/DESIGN.md, "Commands"; docs/mqtt.md).
//
// Invariants:
// - nothing a publisher sends can throw out of handle() or leave a rejected promise unhandled;
// - every command with a readable requestId gets exactly one reply per delivery, on
//   reply/{requestId} or on its MQTT 5 response topic, with its correlation data;
// - a requestId seen again is answered from the reply cache, never executed twice;
// - without a readable requestId (and no response topic) a command is answered by a
//   `command.rejected` event and a log line;
// - commands run concurrently; those naming the same container (or image) one at a time.
import { FeatherError, messageOf, toFeatherError, type ErrorCode } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { decodeCommand, validateCommand, type DecodedCommand } from '../../shared/protocol/commands.js';
import type { JsonObject } from '../../shared/protocol/fields.js';
import { encodeReplyProto } from '../../shared/protocol/proto.js';
import { isPublishableTopic, isValidRequestId, type Topics } from '../../shared/protocol/topics.js';
import { CONTENT_TYPE_JSON, CONTENT_TYPE_PROTOBUF, VERBS, isVerb, type Encoding, type Reply, type Verb } from '../../shared/protocol/types.js';
import type { EventPublisher, Publish } from './events.js';
import { EXECUTORS, type Executor, type ExecutorContext } from './executors.js';
import { KeyedMutex } from './keyed-mutex.js';
import type { IncomingMessage } from './mqtt.js';
import type { ReplyCache, StoredReply } from './reply-cache.js';

export type CommandOutcome = 'ok' | ErrorCode | 'replayed' | 'rejected';

export interface CommandRecord {
  /** The verb, or 'unknown' for one this agent does not know (bounded label values). */
  verb: Verb | 'unknown';
  outcome: CommandOutcome;
  durationMs: number;
}

export interface DispatcherOptions {
  topics: Topics;
  maxPayloadBytes: number;
  cache: ReplyCache;
  context: ExecutorContext;
  publish: Publish;
  events: EventPublisher;
  logger: Logger;
  /** Called once per command handled (metrics: feather_commands_total{verb,outcome}). */
  onCommand?: (record: CommandRecord) => void;
}

interface Route {
  /** MQTT 5 response topic, when one was given and is publishable. */
  responseTopic: string | undefined;
  correlationData: Buffer | undefined;
}

/** A requestId carried by MQTT 5 correlation data: its text when that is a usable id, else hex. */
export function requestIdFromCorrelation(data: Buffer | undefined): string | undefined {
  if (data === undefined || data.length === 0) return undefined;
  let text: string | undefined;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    text = undefined;
  }
  if (text !== undefined && isValidRequestId(text)) return text;
  const hex = `0x${data.toString('hex')}`;
  return isValidRequestId(hex) ? hex : undefined;
}

export class Dispatcher {
  private readonly mutex = new KeyedMutex();
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly opts: DispatcherOptions) {}

  /** Handle one message from a command topic. Never throws. */
  handle(msg: IncomingMessage): void {
    const p = this.process(msg)
      .catch((e: unknown) => this.opts.logger.error('command.crashed', { topic: msg.topic, error: messageOf(e) }));
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Resolves when the commands being handled now have been answered. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async process(msg: IncomingMessage): Promise<void> {
    const started = performance.now();
    const { topics, logger } = this.opts;
    const parsed = topics.parse(msg.topic);
    if (parsed === undefined || parsed.kind !== 'cmd') return;
    if (parsed.scope === 'device' && parsed.deviceId !== topics.deviceId) {
      logger.warn('command.ignored', { topic: msg.topic, reason: `addressed to device ${parsed.deviceId}, this is ${topics.deviceId}` });
      return;
    }
    const verb = parsed.verb;
    const label: Verb | 'unknown' = isVerb(verb) ? verb : 'unknown';
    // An empty payload on a command topic clears a retained command (mosquitto_pub -r -n): nothing to answer.
    if (msg.payload.length === 0 && msg.retain) {
      logger.debug('command.cleared', { topic: msg.topic });
      return;
    }
    if (msg.retain) {
      this.reject(msg, verb, 'retained commands are ignored (they would run again at every reconnect): publish without -r, and clear this one with mosquitto_pub -r -n -t TOPIC');
      this.record(label, 'rejected', started);
      return;
    }

    const route: Route = { responseTopic: undefined, correlationData: msg.correlationData };
    if (msg.responseTopic !== undefined) {
      if (isPublishableTopic(msg.responseTopic)) route.responseTopic = msg.responseTopic;
      else logger.warn('command.bad_response_topic', { topic: msg.topic, responseTopic: msg.responseTopic, action: 'replying on the reply topic instead' });
    }

    const decoded = decodeCommand(msg.payload, { verb, maxPayloadBytes: this.opts.maxPayloadBytes, contentType: msg.contentType });
    const requestId = decoded.requestId ?? requestIdFromCorrelation(msg.correlationData);
    if (requestId === undefined) {
      const reason = decoded.error?.message ?? decoded.requestIdProblem
        ?? 'requestId is missing; add "requestId":"<unique id>" to the command (or MQTT 5 correlation data)';
      if (route.responseTopic !== undefined) {
        this.send({ verb, reply: { requestId: null, ok: false, error: { code: 'BAD_REQUEST', message: reason } } }, route, decoded.encoding);
        logger.warn('command.rejected', { topic: msg.topic, reason, repliedTo: route.responseTopic });
      } else {
        this.reject(msg, verb, reason);
      }
      this.record(label, 'rejected', started);
      return;
    }

    const mutating = isVerb(verb) && decoded.error === undefined && EXECUTORS[verb].mutating;
    const { stored, replayed } = await this.opts.cache.once(requestId, verb, mutating, () => this.execute(verb, requestId, decoded));
    this.send(stored, route, decoded.encoding, requestId);
    if (replayed) logger.info('command.replayed', { verb, requestId });
    this.record(label, replayed ? 'replayed' : stored.reply.ok ? 'ok' : stored.reply.error.code, started);
  }

  /** Decode problems, verb lookup, validation, execution under the keyed mutex; never throws. */
  private async execute(verb: string, requestId: string, decoded: DecodedCommand): Promise<Reply> {
    const started = performance.now();
    let reply: Reply;
    try {
      if (decoded.error !== undefined) throw decoded.error;
      if (!isVerb(verb)) throw new FeatherError('UNKNOWN_VERB', `unknown verb "${verb}"; this agent knows ${VERBS.join(', ')}`);
      const result = await this.run(verb, decoded.body ?? {});
      reply = { requestId, ok: true, result: result ?? {} };
    } catch (e: unknown) {
      const err = toFeatherError(e);
      if (err.code === 'INTERNAL') this.opts.logger.error('command.internal_error', { verb, requestId, error: err.message });
      reply = { requestId, ok: false, error: { code: err.code, message: err.message } };
    }
    this.opts.logger.info('command.done', {
      verb, requestId, ok: reply.ok, ...(reply.ok ? {} : { code: reply.error.code, message: reply.error.message }),
      ms: Math.round((performance.now() - started) * 1000) / 1000,
    });
    return reply;
  }

  private async run<V extends Verb>(verb: V, raw: JsonObject): Promise<unknown> {
    const body = validateCommand(verb, raw);
    const executor = EXECUTORS[verb] as Executor<V>;
    return this.mutex.run(executor.keys(body), () => executor.run(body, this.opts.context));
  }

  private send(stored: StoredReply, route: Route, encoding: Encoding, requestId?: string): void {
    const { topics, logger } = this.opts;
    const encode = (r: Reply): string | Buffer => (encoding === 'protobuf' ? encodeReplyProto(stored.verb, r) : JSON.stringify(r));
    let payload: string | Buffer;
    try {
      payload = encode(stored.reply);
    } catch (e: unknown) {
      const hint = encoding === 'protobuf' ? '; send the command as JSON' : '';
      logger.error('reply.unencodable', { verb: stored.verb, encoding, error: messageOf(e) });
      payload = encode({ requestId: stored.reply.requestId, ok: false, error: { code: 'INTERNAL', message: `the reply could not be encoded as ${encoding} (${messageOf(e)})${hint}` } });
    }
    const topic = route.responseTopic ?? (requestId !== undefined ? topics.reply(requestId) : undefined);
    if (topic === undefined) return;
    const contentType = encoding === 'protobuf' ? CONTENT_TYPE_PROTOBUF : CONTENT_TYPE_JSON;
    this.opts.publish(topic, payload, {
      qos: 1,
      whenOffline: 'queue',
      properties: {
        contentType,
        ...(encoding === 'json' ? { payloadFormatIndicator: true } : {}),
        ...(route.correlationData !== undefined ? { correlationData: route.correlationData } : {}),
      },
    }).catch((e: unknown) => logger.warn('reply.publish_failed', { topic, error: messageOf(e) }));
  }

  private reject(msg: IncomingMessage, verb: string, reason: string): void {
    this.opts.logger.warn('command.rejected', { topic: msg.topic, verb, reason, bytes: msg.payload.length });
    this.opts.events.publish('command.rejected', { topic: msg.topic, verb, reason, bytes: msg.payload.length });
  }

  private record(verb: Verb | 'unknown', outcome: CommandOutcome, started: number): void {
    try {
      this.opts.onCommand?.({ verb, outcome, durationMs: performance.now() - started });
    } catch (e: unknown) {
      this.opts.logger.warn('command.observer_failed', { error: messageOf(e) });
    }
  }
}
