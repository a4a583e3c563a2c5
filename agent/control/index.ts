// The agent's MQTT control plane, started and stopped as one unit by the daemon:
//   const plane = await startControlPlane({ config, runtime, images, inventory, reported, logger });
//   plane.onDesired((payload) => reconciler.setDesired(payload));
//   …
//   await plane.stop();
// It never waits for the broker: start returns at once and the connection comes and goes.
import { join } from 'node:path';
import type { AgentConfig } from '../../shared/config/agent.js';
import { messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { Topics } from '../../shared/protocol/topics.js';
import { packageVersion } from '../../shared/version.js';
import type { Status } from '../../shared/protocol/types.js';
import type { ContainerRuntime } from '../runtime/api.js';
import { Dispatcher, type CommandRecord } from './dispatcher.js';
import { EventPublisher } from './events.js';
import type { DeviceResolver, ImagesApi } from './executors.js';
import { MqttConnection, type IncomingMessage, type PublishOptions } from './mqtt.js';
import { ReplyCache } from './reply-cache.js';

export interface ControlPlaneDeps {
  config: AgentConfig;
  runtime: ContainerRuntime;
  images: ImagesApi;
  /** The device inventory (contract "Inventory"); published retained on every connect and answered to `inventory`. */
  inventory: () => unknown;
  /**
   * The reported state, or undefined when there is none yet; published retained on every connect
   * unless publishReported(doc) has given a newer one.
   */
  reported?: (() => unknown) | undefined;
  logger: Logger;
  /** Resolves CDI device names for container.run; without it, `devices` is refused. */
  devices?: DeviceResolver | undefined;
  /** Once per command (metrics). */
  onCommand?: ((record: CommandRecord) => void) | undefined;
  /** Default: the package version. */
  agentVersion?: string | undefined;
  options?: ControlPlaneOptions | undefined;
}

export interface ControlPlaneOptions {
  reconnect?: { minMs: number; maxMs: number };
  keepaliveS?: number;
  /** MQTT 5 session expiry (default 7 days). */
  sessionExpiryS?: number;
  /** Default true; false only to measure what Nagle costs. */
  tcpNoDelay?: boolean;
  /** Default <dataDir>/control/replies.jsonl; null keeps replies in memory only. */
  replyCacheFile?: string | null;
  replyCacheCapacity?: number;
  /** Time stop() gives running commands to finish (default 15 s). */
  drainTimeoutMs?: number;
}

export interface ControlPlane {
  readonly topics: Topics;
  readonly events: EventPublisher;
  readonly connected: boolean;
  /** 5, or 4 after falling back for a 3.1.1-only broker. */
  readonly protocolVersion: 4 | 5;
  /** Connection up/down (feather_mqtt_connected). Returns an unsubscribe. */
  onConnectionChange(listener: (connected: boolean) => void): () => void;
  /**
   * The retained desired state as it arrives (again after every reconnect); an empty payload means
   * it was cleared. A listener added late is called at once with the latest one. Returns an unsubscribe.
   */
  onDesired(listener: (payload: Buffer) => void): () => void;
  /**
   * Publish `reported` (retained, QoS 1): the given document, which is also kept and sent again on
   * every reconnect, or without one what the provider says. Dropped while offline: the latest is
   * sent on connect. Fits the reconciler's publishReported.
   */
  publishReported(reported?: unknown): Promise<void>;
  /** Publish the inventory now (retained). */
  publishInventory(): Promise<void>;
  /** Publish on the agent's connection (telemetry): topics from `topics`. */
  publish(topic: string, payload: string | Buffer, opts: PublishOptions): Promise<void>;
  /** Finish running commands, publish status offline, disconnect. */
  stop(): Promise<void>;
}

export { packageVersion };

function isolate<A extends unknown[]>(logger: Logger, what: string, fn: (...args: A) => void, ...args: A): void {
  try {
    fn(...args);
  } catch (e: unknown) {
    logger.warn('listener.failed', { what, error: messageOf(e) });
  }
}

export async function startControlPlane(deps: ControlPlaneDeps): Promise<ControlPlane> {
  const { config, logger: log } = deps;
  const opts = deps.options ?? {};
  const topics = new Topics(config.topicPrefix, config.deviceId);
  const agentVersion = deps.agentVersion ?? packageVersion();
  const abort = new AbortController();
  const cacheFile = opts.replyCacheFile === null ? undefined : (opts.replyCacheFile ?? join(config.dataDir, 'control', 'replies.jsonl'));
  const cache = await ReplyCache.open({ file: cacheFile, logger: log.child('replies'), capacity: opts.replyCacheCapacity ?? 1000 });

  const connectionListeners = new Set<(connected: boolean) => void>();
  const desiredListeners = new Set<(payload: Buffer) => void>();
  let latestDesired: Buffer | undefined;
  let stopped = false;

  const status = (online: boolean, reason?: string): string =>
    JSON.stringify({ online, ts: Date.now(), agentVersion, ...(reason !== undefined ? { reason } : {}) } satisfies Status);
  const retained = (topic: string, payload: string): Promise<void> =>
    conn.publish(topic, payload, { qos: 1, retain: true, whenOffline: 'drop', properties: { contentType: 'application/json', payloadFormatIndicator: true } });

  const publishInventory = async (): Promise<void> => {
    const inv = await deps.inventory();
    await retained(topics.inventory, JSON.stringify(inv));
  };
  let latestReported: string | undefined;
  const publishReported = async (doc?: unknown): Promise<void> => {
    if (doc !== undefined) latestReported = JSON.stringify(doc);
    let json = latestReported;
    if (json === undefined && deps.reported !== undefined) {
      const rep = await deps.reported();
      if (rep !== undefined) json = JSON.stringify(rep);
    }
    if (json !== undefined) await retained(topics.reported, json);
  };

  const onMessage = (msg: IncomingMessage): void => {
    const parsed = topics.parse(msg.topic);
    if (parsed?.kind === 'cmd') {
      dispatcher.handle(msg);
    } else if (parsed?.kind === 'desired' && parsed.deviceId === topics.deviceId) {
      latestDesired = msg.payload;
      for (const l of desiredListeners) isolate(log, 'desired', l, msg.payload);
    }
  };

  const clientId = `feather-agent-${config.deviceId}`;
  const conn = new MqttConnection({
    settings: {
      url: config.broker.url,
      username: config.broker.username,
      password: config.broker.password,
      ca: config.broker.ca,
      cert: config.broker.cert,
      key: config.broker.key,
      protocolVersion: config.broker.protocolVersion === 4 ? 4 : 5,
      clientId,
    },
    logger: log.child('mqtt'),
    subscriptions: [topics.cmdFilter, topics.fleetCmdFilter, topics.desired],
    will: () => ({ topic: topics.status, payload: JSON.stringify({ online: false, ts: Date.now(), agentVersion, reason: 'connection lost' } satisfies Status) }),
    onMessage,
    onConnect: async () => {
      const results = await Promise.allSettled([
        retained(topics.status, status(true)),
        publishInventory(),
        publishReported(),
      ]);
      for (const r of results) if (r.status === 'rejected') log.warn('connect.publish_failed', { error: messageOf(r.reason) });
    },
    onStateChange: (up) => { for (const l of connectionListeners) isolate(log, 'connection', l, up); },
    ...(opts.reconnect !== undefined ? { reconnect: opts.reconnect } : {}),
    ...(opts.keepaliveS !== undefined ? { keepaliveS: opts.keepaliveS } : {}),
    ...(opts.sessionExpiryS !== undefined ? { sessionExpiryS: opts.sessionExpiryS } : {}),
    ...(opts.tcpNoDelay !== undefined ? { tcpNoDelay: opts.tcpNoDelay } : {}),
  });
  const publish = (topic: string, payload: string | Buffer, o: PublishOptions): Promise<void> => conn.publish(topic, payload, o);
  const events = new EventPublisher(topics, publish, log.child('events'));
  const dispatcher = new Dispatcher({
    topics,
    maxPayloadBytes: config.maxPayloadBytes,
    cache,
    publish,
    events,
    logger: log.child('commands'),
    onCommand: deps.onCommand,
    context: {
      runtime: deps.runtime,
      images: deps.images,
      inventory: deps.inventory,
      events,
      devices: deps.devices,
      logger: log.child('executors'),
      signal: abort.signal,
    },
  });
  const unsubscribeExit = deps.runtime.onExit((exit) => events.containerExit(exit));

  try {
    conn.start();
  } catch (e: unknown) {
    unsubscribeExit();
    await cache.close();
    throw e;
  }
  log.info('control.started', { broker: config.broker.url, clientId, prefix: topics.prefix, deviceId: topics.deviceId });

  return {
    topics,
    events,
    get connected() { return conn.connected; },
    get protocolVersion() { return conn.version; },
    onConnectionChange(listener) {
      connectionListeners.add(listener);
      return () => { connectionListeners.delete(listener); };
    },
    onDesired(listener) {
      desiredListeners.add(listener);
      if (latestDesired !== undefined) isolate(log, 'desired', listener, latestDesired);
      return () => { desiredListeners.delete(listener); };
    },
    publishReported,
    publishInventory,
    publish,
    async stop() {
      if (stopped) return;
      stopped = true;
      unsubscribeExit();
      abort.abort(new Error('the agent is stopping'));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([dispatcher.drain(), new Promise<void>((r) => { timer = setTimeout(r, opts.drainTimeoutMs ?? 15_000); })]);
      clearTimeout(timer);
      await conn.stop({ topic: topics.status, payload: status(false, 'shutdown') });
      await cache.close();
      log.info('control.stopped', {});
    },
  };
}
