// Extensions and the one context object they share. Every controller feature is an extension
// with start()/stop(); the Controller starts them in order and stops them in reverse.
// A feature added later (the HTTP API, featherctl's server side) is an ExtensionFactory:
//   export const createApiExtension: ExtensionFactory = (ctx) => ({
//     name: 'api',
//     start() { ctx.http.mount('/api/v1', handler); },
//     stop() {},
//   });
import type { Registry } from 'prom-client';
import type { Logger } from '../../shared/logging.js';
import type { ControllerMqtt } from '../broker/client.js';
import type { Credentials } from '../broker/credentials.js';
import type { EmbeddedBroker } from '../broker/embedded.js';
import type { ControllerConfig } from '../config.js';
import type { DesiredPublisher } from '../registry/desired.js';
import type { DeviceRegistry } from '../registry/registry.js';
import type { Store } from '../store/store.js';
import type { EventBus } from './bus.js';
import type { DeploymentController } from './deployments.js';
import type { ControllerEvents } from './events.js';
import type { HttpServer } from './http.js';

export interface Extension {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

export type ExtensionFactory = (ctx: ControllerContext) => Extension;

export interface ControllerContext {
  readonly config: ControllerConfig;
  readonly logger: Logger;
  readonly store: Store;
  readonly bus: EventBus<ControllerEvents>;
  /** The process's one prom-client Registry (served on /metrics). */
  readonly metrics: Registry;
  /** Device and admin tokens: issue(id) / revoke(id) / verify / verifyAdmin (HTTP API bearer tokens). */
  readonly credentials: Credentials;
  /** The embedded broker; undefined in external-broker mode. */
  readonly broker: EmbeddedBroker | undefined;
  /** The controller's own MQTT connection (admin). */
  readonly mqtt: ControllerMqtt;
  readonly registry: DeviceRegistry;
  /** publishDesired(deviceId, workloads, images) / clearDesired / republishAll. */
  readonly desired: DesiredPublisher;
  /** apply(spec) / delete(name) / replan(reason); the scheduler is its injected plan(). */
  readonly deployments: DeploymentController;
  /** The HTTP listener: mount(prefix, handler); /metrics and /healthz are built in. */
  readonly http: HttpServer;
  /** Absolute path of the admin token file. */
  readonly adminTokenFile: string;
}
