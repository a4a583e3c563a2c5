// feather-controller: wires config, store, broker, registry, desired states, deployments and
// HTTP as extensions sharing one context object.
//
//   const controller = new Controller({ config, plan: schedule, extensions: [createApiExtension] });
//   await controller.start();      // ctx: controller.context
//   …
//   await controller.stop();       // reverse order; the store is closed last
//
// Start order: [embedded broker] -> registry (loads the store, subscribes) -> desired
// publisher (re-publishes on every connect) -> MQTT connection -> deployments -> HTTP -> the
// extensions given. A failure while starting stops what was started and rethrows.
import { Registry } from 'prom-client';
import { messageOf } from '../../shared/errors.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import { ControllerMqtt } from '../broker/client.js';
import { Credentials, adminTokenPath } from '../broker/credentials.js';
import { EmbeddedBroker } from '../broker/embedded.js';
import { isExternalBroker, type ControllerConfig } from '../config.js';
import { DesiredPublisher } from '../registry/desired.js';
import { DeviceRegistry } from '../registry/registry.js';
import { Store } from '../store/store.js';
import { EventBus } from './bus.js';
import type { ControllerContext, Extension, ExtensionFactory } from './context.js';
import { DeploymentController, type DesiredFn, type PlanFn } from './deployments.js';
import type { ControllerEvents } from './events.js';
import { HttpServer } from './http.js';
import { controllerMetrics } from './metrics.js';

export interface ControllerOptions {
  config: ControllerConfig;
  logger?: Logger;
  /** The scheduler (default: controller/scheduler's plan). */
  plan?: PlanFn;
  /** Placements -> a device's desired workloads (default: controller/scheduler's desiredFor). */
  desiredFor?: DesiredFn;
  /** More features, started after the built-in ones (the HTTP API). */
  extensions?: ExtensionFactory[];
  /** Wait this long for the first MQTT connection in start() (default 10 s embedded, 0 external). */
  connectTimeoutMs?: number;
}

/** Host to reach a listener bound to `host` from this machine. */
function localHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

export class Controller {
  readonly config: ControllerConfig;
  readonly log: Logger;
  private ctx: ControllerContext | undefined;
  private readonly started: Extension[] = [];
  private store: Store | undefined;

  constructor(private readonly opts: ControllerOptions) {
    this.config = opts.config;
    this.log = opts.logger ?? createLogger('controller');
  }

  /** The shared context (after start()). */
  get context(): ControllerContext {
    if (this.ctx === undefined) throw new Error('the controller is not started');
    return this.ctx;
  }

  get running(): boolean {
    return this.ctx !== undefined;
  }

  async start(): Promise<ControllerContext> {
    if (this.ctx !== undefined) return this.ctx;
    const { config } = this;
    const log = this.log;
    const external = isExternalBroker(config);
    try {
      const store = Store.open(config.dataDir, { logger: log.child('store'), eventsKept: config.eventsKept });
      this.store = store;
      const credentials = new Credentials(store, log.child('credentials'));
      const adminToken = await credentials.initAdmin(config.dataDir);
      const bus = new EventBus<ControllerEvents>(log.child('bus'));
      const metrics = new Registry();
      const broker = external ? undefined : new EmbeddedBroker({ config, credentials, logger: log.child('broker') });
      if (broker !== undefined) credentials.onRevoke((id) => broker.disconnectDevice(id));
      const prefix = config.topicPrefix.replace(/\/+$/, '');
      const mqtt = new ControllerMqtt({
        url: external ? config.broker.url : '', // embedded: set once the broker has its port
        username: config.broker.username,
        password: external && config.broker.password !== '' ? config.broker.password : adminToken,
        ca: config.broker.ca,
        clientId: config.broker.clientId,
        logger: log.child('mqtt'),
      });
      const registry = new DeviceRegistry({ store, bus, mqtt, logger: log.child('registry'), topicPrefix: prefix, brokerRestarted: !external });
      const desired = new DesiredPublisher({ store, mqtt, bus, logger: log.child('desired'), topicPrefix: prefix });
      const m = controllerMetrics(metrics, { deviceCounts: () => registry.counts(), mqttConnected: () => mqtt.connected });
      const deployments = new DeploymentController({
        store, registry, desired, bus, metrics: m, logger: log.child('deployments'), offlineGraceS: config.offlineGraceS,
        ...(this.opts.plan ? { plan: this.opts.plan } : {}),
        ...(this.opts.desiredFor ? { desiredFor: this.opts.desiredFor } : {}),
      });
      const http = new HttpServer({
        host: config.http.host, port: config.http.port, metrics, logger: log.child('http'),
        health: () => ({ mqtt: { connected: mqtt.connected, url: mqtt.url }, devices: registry.counts() }),
      });
      const ctx: ControllerContext = {
        config, logger: log, store, bus, metrics, credentials, broker, mqtt, registry, desired, deployments, http,
        adminTokenFile: adminTokenPath(config.dataDir),
      };

      if (broker !== undefined) {
        await this.startOne(broker);
        mqtt.setUrl(`mqtt://${localHost(config.mqtt.host)}:${broker.ports.mqtt}`);
      }
      await this.startOne(registry);
      await this.startOne(desired);
      await this.startOne(mqtt);
      const timeout = this.opts.connectTimeoutMs ?? (external ? 0 : 10_000);
      if (timeout > 0) await mqtt.waitConnected(timeout);
      await this.startOne(deployments);
      await this.startOne(http);
      for (const factory of this.opts.extensions ?? []) await this.startOne(factory(ctx));
      this.ctx = ctx;
      log.info('controller.started', {
        dataDir: config.dataDir, broker: external ? config.broker.url : 'embedded', mqtt: broker?.ports, http: http.port,
        adminTokenFile: ctx.adminTokenFile, schemaVersion: store.schemaVersion,
      });
      return ctx;
    } catch (e: unknown) {
      log.error('controller.start_failed', { error: messageOf(e) });
      await this.stop();
      throw e;
    }
  }

  /** Stop every extension in reverse order, then close the store. Safe to call twice. */
  async stop(): Promise<void> {
    for (const ext of this.started.splice(0).reverse()) {
      try {
        await ext.stop();
      } catch (e: unknown) {
        this.log.error('extension.stop_failed', { extension: ext.name, error: messageOf(e) });
      }
    }
    this.store?.close();
    this.store = undefined;
    if (this.ctx !== undefined) this.log.info('controller.stopped', {});
    this.ctx = undefined;
  }

  private async startOne(ext: Extension): Promise<void> {
    await ext.start();
    this.started.push(ext);
  }
}
