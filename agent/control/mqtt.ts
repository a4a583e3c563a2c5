// The agent's MQTT connection (MQTT.js): persistent session, retained will, TCP_NODELAY,
// capped exponential reconnect backoff, MQTT 5 with a fall back to 3.1.1.
//
// - Session: clean: false with a fixed client id, so QoS 1 commands published while the agent
//   was away are delivered when it returns (MQTT 5: session expiry `sessionExpiryS`).
// - Every (re)connect: subscribe again (cheap, and it makes the broker resend retained
//   messages such as `desired`), then `onConnect` (status, inventory, reported), then what
//   was queued while offline.
// - Nagle: MQTT.js never sets TCP_NODELAY; with Nagle and delayed ACKs a QoS 1 request/reply
//   costs 40-90 ms. We set it on each socket as soon as MQTT.js writes CONNECT on it.
// - Broker gone (at start or later): MQTT.js reconnects; we stretch its period from
//   reconnect.minMs doubling to reconnect.maxMs (±20% jitter), back to minMs once connected.
// - A broker that refuses MQTT 5 (aedes answers CONNACK "unacceptable protocol version")
//   makes us fall back to 3.1.1 for the life of this connection object.
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import mqtt, { type IClientOptions, type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';

export interface IncomingMessage {
  topic: string;
  payload: Buffer;
  retain: boolean;
  /** MQTT 5 properties (all undefined under 3.1.1). */
  responseTopic: string | undefined;
  correlationData: Buffer | undefined;
  contentType: string | undefined;
}

export interface PublishOptions {
  qos: 0 | 1;
  retain?: boolean;
  /** MQTT 5 only; dropped under 3.1.1. */
  properties?: IPublishPacket['properties'];
  /**
   * While disconnected: 'queue' keeps the message (bounded outbox, oldest dropped first) and
   * sends it after the next connect; 'drop' forgets it (state that onConnect publishes anew, telemetry).
   */
  whenOffline: 'queue' | 'drop';
}

export interface MqttSettings {
  url: string;
  username?: string | undefined;
  password?: string | undefined;
  /** File paths for mqtts:// (empty = unused). */
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  protocolVersion: 4 | 5;
  clientId: string;
}

export interface MqttConnectionOptions {
  settings: MqttSettings;
  logger: Logger;
  /** Topic filters subscribed (QoS 1) on every connect. */
  subscriptions: string[];
  /** The retained will, published by the broker when we vanish without DISCONNECT. Called before each connect. */
  will: () => { topic: string; payload: string };
  onMessage: (msg: IncomingMessage) => void;
  /** Called on every connect after subscribing; failures are logged. */
  onConnect: (info: { sessionPresent: boolean; protocolVersion: 4 | 5 }) => Promise<void>;
  onStateChange?: (connected: boolean) => void;
  reconnect?: { minMs: number; maxMs: number };
  keepaliveS?: number;
  connectTimeoutMs?: number;
  /** MQTT 5 session expiry; 0 would end the session at each disconnect. */
  sessionExpiryS?: number;
  /** MQTT 5: ask the broker not to send packets larger than this (they are dropped there). */
  maximumPacketSize?: number;
  /** Off only to measure what Nagle costs. */
  tcpNoDelay?: boolean;
  outboxLimit?: number;
}

// CONNACK codes for "I do not speak this protocol version": 3.1.1 return code 1, MQTT 5 reason 0x84.
const UNSUPPORTED_PROTOCOL = new Set([1, 0x84]);

function readTlsFile(key: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `config ${key}: cannot read ${path} (${messageOf(e)}); point it at a PEM file or leave it empty`);
  }
}

export const DEFAULT_RECONNECT = { minMs: 500, maxMs: 30_000 };

/** Delay before reconnect attempt `attempt` (1, 2, …): minMs doubling up to maxMs, ±20% jitter, never below minMs. */
export function reconnectDelay(attempt: number, bounds: { minMs: number; maxMs: number }, random: () => number = Math.random): number {
  const base = Math.min(bounds.maxMs, bounds.minMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.max(bounds.minMs, Math.round(base * (0.8 + random() * 0.4)));
}

export class MqttConnection {
  private client: MqttClient | undefined;
  private attempts = 0;
  private protocolVersion: 4 | 5;
  private readonly outbox: Array<{ topic: string; payload: string | Buffer; opts: PublishOptions }> = [];
  private dropped = 0;
  private noDelayStream: unknown;
  private lastError = '';
  private up = false;
  private stopping = false;

  private readonly backoff: { minMs: number; maxMs: number };

  constructor(private readonly opts: MqttConnectionOptions) {
    this.protocolVersion = opts.settings.protocolVersion;
    this.backoff = opts.reconnect ?? DEFAULT_RECONNECT;
  }

  get connected(): boolean { return this.client?.connected === true; }
  get version(): 4 | 5 { return this.protocolVersion; }

  start(): void {
    if (this.client !== undefined) return;
    const { settings } = this.opts;
    const clientOpts: IClientOptions = {
      clientId: settings.clientId,
      clean: false,
      protocolVersion: this.protocolVersion,
      keepalive: this.opts.keepaliveS ?? 30,
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      reconnectPeriod: this.backoff.minMs,
      reconnectOnConnackError: true,
      resubscribe: false,
      manualConnect: true,
      // mqtt-packet's cache of 65,536 pre-encoded numbers costs ~6 MB of heap (measured: idle RSS
      // 98.5 -> 83 MB without it); an agent sends a few messages a second.
      writeCache: false,
      will: this.willPacket(),
      properties: {
        sessionExpiryInterval: this.opts.sessionExpiryS ?? 7 * 24 * 3600,
        ...(this.opts.maximumPacketSize !== undefined ? { maximumPacketSize: this.opts.maximumPacketSize } : {}),
      },
    };
    if (settings.username) clientOpts.username = settings.username;
    if (settings.password) clientOpts.password = settings.password;
    if (settings.ca) clientOpts.ca = readTlsFile('broker.ca', settings.ca);
    if (settings.cert) clientOpts.cert = readTlsFile('broker.cert', settings.cert);
    if (settings.key) clientOpts.key = readTlsFile('broker.key', settings.key);

    const client = mqtt.connect(settings.url, clientOpts);
    this.client = client;
    client.on('packetsend', (packet) => { if (packet.cmd === 'connect') this.applyNoDelay(client); });
    client.on('connect', (connack) => { void this.onConnected(client, connack.sessionPresent); });
    client.on('message', (topic, payload, packet) => this.message(topic, payload, packet));
    client.on('error', (e) => this.error(client, e));
    client.on('close', () => this.closed(client));
    client.on('disconnect', (p) => this.opts.logger.warn('mqtt.disconnect_by_broker', { reasonCode: p.reasonCode }));
    client.connect();
  }

  /**
   * Publish. Resolves when the broker has it (PUBACK for QoS 1), or at once when dropped or
   * queued while offline. Rejects only when the client refuses the packet (e.g. stopped).
   */
  publish(topic: string, payload: string | Buffer, opts: PublishOptions): Promise<void> {
    const client = this.client;
    if (client === undefined || this.stopping || !client.connected) {
      if (opts.whenOffline === 'queue' && !this.stopping) this.enqueue(topic, payload, opts);
      return Promise.resolve();
    }
    return this.send(client, topic, payload, opts);
  }

  /** Publish `last` (e.g. a retained offline status), then DISCONNECT (no will) and stop reconnecting. */
  async stop(last?: { topic: string; payload: string }): Promise<void> {
    const client = this.client;
    if (client === undefined || this.stopping) return;
    if (last !== undefined && client.connected) {
      await this.withTimeout(this.send(client, last.topic, last.payload, { qos: 1, retain: true, whenOffline: 'drop' }), 2000);
    }
    this.stopping = true;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { client.end(true, () => resolve()); }, 2000);
      client.end(false, () => { clearTimeout(t); resolve(); });
    });
    this.client = undefined;
  }

  // ---- internals --------------------------------------------------------------------------

  private send(client: MqttClient, topic: string, payload: string | Buffer, opts: PublishOptions): Promise<void> {
    const pubOpts: IClientPublishOptions = { qos: opts.qos, retain: opts.retain ?? false };
    if (this.protocolVersion === 5 && opts.properties !== undefined) pubOpts.properties = opts.properties;
    return new Promise<void>((resolve, reject) => {
      client.publish(topic, payload, pubOpts, (err) => (err ? reject(err) : resolve()));
    });
  }

  private enqueue(topic: string, payload: string | Buffer, opts: PublishOptions): void {
    this.outbox.push({ topic, payload, opts });
    const limit = this.opts.outboxLimit ?? 1000;
    while (this.outbox.length > limit) {
      this.outbox.shift();
      if (this.dropped++ % 100 === 0) this.opts.logger.warn('mqtt.outbox_full', { limit, dropped: this.dropped, action: 'oldest queued message dropped' });
    }
  }

  private willPacket(): NonNullable<IClientOptions['will']> {
    const w = this.opts.will();
    return { topic: w.topic, payload: w.payload, qos: 1, retain: true };
  }

  private applyNoDelay(client: MqttClient): void {
    const stream = client.stream;
    if (stream === this.noDelayStream) return;
    this.noDelayStream = stream;
    if (this.opts.tcpNoDelay === false) return;
    // mqtt:// and mqtts:// give a net.Socket (tls.TLSSocket extends it); ws:// does not.
    if (stream instanceof Socket) stream.setNoDelay(true);
  }

  private async onConnected(client: MqttClient, sessionPresent: boolean): Promise<void> {
    this.attempts = 0;
    this.up = true;
    client.options.reconnectPeriod = this.backoff.minMs;
    this.lastError = '';
    this.opts.logger.info('mqtt.connected', { url: this.opts.settings.url, protocolVersion: this.protocolVersion, sessionPresent });
    this.opts.onStateChange?.(true);
    try {
      if (this.opts.subscriptions.length > 0) {
        // MQTT 5 retain-as-published: a command published with -r keeps its retain flag even when
        // delivered live, so the dispatcher can refuse it (3.1.1 brokers clear the flag then).
        const subOpts = this.protocolVersion === 5 ? { qos: 1 as const, rap: true } : { qos: 1 as const };
        const grants = await client.subscribeAsync(Object.fromEntries(this.opts.subscriptions.map((topic) => [topic, subOpts])));
        const refused = grants.filter((g) => g.qos > 2);
        if (refused.length > 0) this.opts.logger.error('mqtt.subscribe_refused', { topics: refused.map((g) => g.topic), action: 'check the broker ACL for this client' });
      }
      await this.opts.onConnect({ sessionPresent, protocolVersion: this.protocolVersion });
    } catch (e: unknown) {
      this.opts.logger.warn('mqtt.on_connect_failed', { error: messageOf(e) });
    }
    const queued = this.outbox.splice(0);
    for (const q of queued) {
      if (!client.connected) { this.outbox.unshift(...queued.slice(queued.indexOf(q))); break; }
      this.send(client, q.topic, q.payload, q.opts).catch((e: unknown) => this.opts.logger.warn('mqtt.publish_failed', { topic: q.topic, error: messageOf(e) }));
    }
  }

  private message(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const p = packet.properties;
    try {
      this.opts.onMessage({
        topic, payload, retain: packet.retain,
        responseTopic: p?.responseTopic, correlationData: p?.correlationData, contentType: p?.contentType,
      });
    } catch (e: unknown) {
      this.opts.logger.error('mqtt.message_handler_failed', { topic, error: messageOf(e) });
    }
  }

  private error(client: MqttClient, e: Error & { code?: unknown }): void {
    const code = typeof e.code === 'number' ? e.code : undefined;
    if (code !== undefined && UNSUPPORTED_PROTOCOL.has(code) && this.protocolVersion === 5) {
      this.protocolVersion = 4;
      client.options.protocolVersion = 4;
      client.options.reconnectPeriod = this.backoff.minMs;
      this.opts.logger.warn('mqtt.protocol_fallback', { url: this.opts.settings.url, from: 5, to: 4, reason: e.message });
      return;
    }
    // One line per distinct failure, not one per retry.
    const msg = messageOf(e);
    if (msg !== this.lastError) this.opts.logger.warn('mqtt.error', { url: this.opts.settings.url, error: msg, action: 'retrying with backoff' });
    this.lastError = msg;
  }

  private closed(client: MqttClient): void {
    if (this.stopping) return;
    if (this.up) {
      this.up = false;
      this.opts.logger.warn('mqtt.connection_lost', { url: this.opts.settings.url });
      this.opts.onStateChange?.(false);
    }
    this.attempts++;
    // MQTT.js already armed its timer with the current period; this one is for the next retry.
    client.options.reconnectPeriod = reconnectDelay(this.attempts, this.backoff);
    client.options.will = this.willPacket();
  }

  private async withTimeout(p: Promise<void>, ms: number): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    await Promise.race([p.catch(() => undefined), new Promise<void>((r) => { t = setTimeout(r, ms); })]);
    clearTimeout(t);
  }
}
