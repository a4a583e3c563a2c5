// Telemetry as one agent extension with start()/stop(): the Prometheus metrics on the Registry
// passed in, the HTTP endpoint, the per-container statsd sockets, and the periodic publisher.
// The agent's main creates the Registry, the runtime and the MQTT client and hands them in.
import type { Registry } from 'prom-client';
import type { AgentConfig } from '../../shared/config/agent.js';
import { createLogger, type Logger } from '../../shared/logging.js';
import { DeviceStatsReader } from '../devices/stats.js';
import { MetricsServer } from './http.js';
import { LatencyTracker } from './latency.js';
import { createAgentMetrics, type AgentMetrics, type ContainerSource } from './metrics.js';
import { TelemetryPublisher, type PublishFn } from './publisher.js';
import { StatsdIngest } from './statsd-ingest.js';

export interface TelemetryServiceDeps {
  config: Pick<AgentConfig, 'deviceId' | 'dataDir' | 'runDir' | 'hostRoot' | 'metrics' | 'telemetry'>;
  registry: Registry;
  runtime: ContainerSource;
  /** The MQTT layer's publish. */
  publish: PublishFn;
  /** feather/v1/dev/{id}/telemetry (from the topic helper of the control plane). */
  topic: string;
  /** For /healthz. */
  mqttConnected: () => boolean;
  logger?: Logger;
}

export class TelemetryService {
  readonly metrics: AgentMetrics;
  readonly latency = new LatencyTracker();
  readonly statsd: StatsdIngest;
  readonly publisher: TelemetryPublisher;
  /** Undefined when config metrics.port is 0. */
  readonly http: MetricsServer | undefined;
  private readonly log: Logger;

  constructor(deps: TelemetryServiceDeps) {
    const { config } = deps;
    this.log = deps.logger ?? createLogger('agent:telemetry');
    this.metrics = createAgentMetrics(deps.registry, { containers: deps.runtime });
    this.statsd = new StatsdIngest({ runDir: config.runDir, latency: this.latency, metrics: this.metrics, logger: this.log.child('statsd') });
    this.metrics.setStatsdSource(this.statsd);
    this.http = config.metrics.port === 0
      ? undefined
      : new MetricsServer({ registry: deps.registry, health: () => ({ mqttConnected: deps.mqttConnected() }), logger: this.log.child('http') },
        { host: config.metrics.host, port: config.metrics.port });
    this.publisher = new TelemetryPublisher({
      deviceId: config.deviceId, topic: deps.topic, intervalS: config.telemetry.intervalS, encoding: config.telemetry.encoding,
      containers: deps.runtime, latency: this.latency, device: new DeviceStatsReader({ hostRoot: config.hostRoot, dataDir: config.dataDir }),
      publish: deps.publish, logger: this.log,
    });
  }

  async start(): Promise<void> {
    await this.http?.start();
    this.publisher.start();
  }

  async stop(): Promise<void> {
    await this.publisher.stop();
    this.statsd.close();
    await this.http?.stop();
  }

  /**
   * Before a container's workload starts: open its statsd socket and return the host path the
   * runtime exposes at /run/feather/statsd.sock (owner: the container's host uid/gid under userns).
   */
  containerStarting(name: string, owner?: { uid?: number; gid?: number }): string {
    return this.statsd.attach(name, owner);
  }

  /** The container was removed: close its socket, drop its latency series. */
  containerRemoved(name: string): void {
    this.statsd.detach(name, { forget: true });
  }
}
