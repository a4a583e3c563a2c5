// The controller's own MQTT connection (MQTT.js), the same in both modes: a TCP client to the
// embedded broker (127.0.0.1, admin credentials) or to the external one (broker.url).
// - MQTT 3.1.1: every broker speaks it (aedes speaks nothing else) and the controller needs no
//   MQTT 5 feature.
// - A persistent session (clean: false, fixed client id): events published while the
//   controller reconnects are kept for it by the broker.
// - Subscriptions are sent again on every connect, which also makes the broker resend the
//   retained status, inventory and reported messages: the controller's view is rebuilt from them.
// - TCP_NODELAY on its socket (MQTT.js never sets it).
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { topicMatches } from './acl.js';

export interface MqttMessage {
  topic: string;
  payload: Buffer;
  /** True for a retained message replayed on subscribe (not a live one). */
  retain: boolean;
}

export type MessageHandler = (msg: MqttMessage) => void;

export interface ControllerMqttOptions {
  url: string;
  username: string;
  password: string;
  /** CA file for mqtts:// (empty: the system's). */
  ca?: string;
  clientId: string;
  logger: Logger;
  reconnectMs?: number;
}

export interface PublishOpts {
  qos: 0 | 1;
  retain: boolean;
}

/** What the registry and the desired publisher need of the connection (tests give a fake). */
export interface MqttLink {
  readonly connected: boolean;
  subscribe(filter: string, handler: MessageHandler): void;
  onConnect(listener: () => void | Promise<void>): () => void;
  publish(topic: string, payload: string | Buffer, opts: PublishOpts): Promise<void>;
}

export class ControllerMqtt implements MqttLink {
  readonly name = 'mqtt';
  private client: MqttClient | undefined;
  private readonly handlers: Array<{ filter: string; handler: MessageHandler }> = [];
  private readonly connectListeners = new Set<() => void | Promise<void>>();
  private noDelayStream: unknown;
  private lastError = '';
  private connectedOnce: Promise<void>;
  private resolveConnected: () => void = () => undefined;
  private brokerUrl: string;

  constructor(private readonly opts: ControllerMqttOptions) {
    this.brokerUrl = opts.url;
    this.connectedOnce = new Promise((resolve) => { this.resolveConnected = resolve; });
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  get url(): string {
    return this.brokerUrl;
  }

  /** Set the broker URL before start() (the embedded broker knows its port only once listening). */
  setUrl(url: string): void {
    this.brokerUrl = url;
  }

  /** Handle messages matching `filter`; the filter is subscribed (QoS 1) on every connect. Call before start(). */
  subscribe(filter: string, handler: MessageHandler): void {
    this.handlers.push({ filter, handler });
    if (this.client?.connected) {
      this.client.subscribe(filter, { qos: 1 }, (err) => { if (err) this.opts.logger.warn('mqtt.subscribe_failed', { filter, error: err.message }); });
    }
  }

  /** Called after every (re)connect, once the subscriptions are in place. Returns an unsubscribe. */
  onConnect(listener: () => void | Promise<void>): () => void {
    this.connectListeners.add(listener);
    return () => { this.connectListeners.delete(listener); };
  }

  /** Resolves at the first connection, or rejects after `timeoutMs`. */
  async waitConnected(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.connectedOnce,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new FeatherError('INTERNAL', `no connection to the broker ${this.brokerUrl} after ${timeoutMs} ms${this.lastError ? `: ${this.lastError}` : ''}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  start(): void {
    if (this.client !== undefined) return;
    const o: IClientOptions = {
      clientId: this.opts.clientId,
      clean: false,
      protocolVersion: 4,
      keepalive: 30,
      connectTimeout: 10_000,
      reconnectPeriod: this.opts.reconnectMs ?? 1000,
      resubscribe: false,
      username: this.opts.username,
      password: this.opts.password,
      manualConnect: true,
    };
    if (this.opts.ca) {
      try {
        o.ca = readFileSync(this.opts.ca);
      } catch (e: unknown) {
        throw new FeatherError('BAD_REQUEST', `config broker.ca: cannot read ${this.opts.ca} (${messageOf(e)})`);
      }
    }
    const client = mqtt.connect(this.brokerUrl, o);
    this.client = client;
    client.on('packetsend', (packet) => {
      if (packet.cmd !== 'connect') return;
      const stream = client.stream;
      if (stream !== this.noDelayStream && stream instanceof Socket) stream.setNoDelay(true);
      this.noDelayStream = stream;
    });
    client.on('connect', () => { void this.afterConnect(client); });
    client.on('message', (topic, payload, packet) => this.dispatch({ topic, payload, retain: packet.retain }));
    client.on('error', (e: Error & { code?: unknown }) => {
      const msg = e.code === 4 || e.code === 5
        ? `the broker refused the controller's credentials (${e.message}); check broker.username/broker.password (default: admin and the admin token) and the broker's password file`
        : e.message;
      if (msg !== this.lastError) this.opts.logger.error('mqtt.error', { url: this.brokerUrl, error: msg, action: 'retrying' });
      this.lastError = msg;
    });
    client.on('offline', () => this.opts.logger.warn('mqtt.offline', { url: this.brokerUrl }));
    client.connect();
  }

  publish(topic: string, payload: string | Buffer, opts: PublishOpts): Promise<void> {
    const client = this.client;
    if (client === undefined) return Promise.reject(new FeatherError('INTERNAL', 'the controller MQTT client is not started'));
    return new Promise((resolve, reject) => {
      client.publish(topic, payload, { qos: opts.qos, retain: opts.retain }, (err) => (err ? reject(err) : resolve()));
    });
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => client.end(true, () => resolve()), 2000);
      client.end(false, () => { clearTimeout(t); resolve(); });
    });
  }

  private async afterConnect(client: MqttClient): Promise<void> {
    this.lastError = '';
    this.opts.logger.info('mqtt.connected', { url: this.brokerUrl, clientId: this.opts.clientId });
    try {
      const filters = [...new Set(this.handlers.map((h) => h.filter))];
      if (filters.length > 0) {
        const grants = await client.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])));
        const refused = grants.filter((g) => g.qos > 2).map((g) => g.topic);
        if (refused.length > 0) this.opts.logger.error('mqtt.subscribe_refused', { filters: refused, action: 'the controller must connect as admin: check the broker ACL' });
      }
    } catch (e: unknown) {
      this.opts.logger.warn('mqtt.subscribe_failed', { error: messageOf(e) });
    }
    this.resolveConnected();
    for (const l of this.connectListeners) {
      try {
        await l();
      } catch (e: unknown) {
        this.opts.logger.error('mqtt.on_connect_failed', { error: messageOf(e) });
      }
    }
  }

  private dispatch(msg: MqttMessage): void {
    for (const h of this.handlers) {
      if (!topicMatches(h.filter, msg.topic)) continue;
      try {
        h.handler(msg);
      } catch (e: unknown) {
        this.opts.logger.error('mqtt.handler_failed', { topic: msg.topic, error: messageOf(e) });
      }
    }
  }
}
