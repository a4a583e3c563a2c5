// The agent's Prometheus metrics (../shared/DESIGN.md, "Prometheus metrics (agent)").
//
// One Registry per process, created by the caller and passed in; nothing here touches
// prom-client's global registry. Container gauges and counters are filled at scrape time from
// the runtime (list() and usage()); the rest are handles other modules increment: image pulls,
// MQTT, commands, inference latency (fed by the statsd ingest).
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';
import type { ContainerRuntime } from '../runtime/api.js';
import type { CgroupUsage } from '../runtime/cgroups/types.js';
import type { ContainerInfo } from '../runtime/types.js';

/** What the container metrics read: the runtime, or anything shaped like it. */
export type ContainerSource = Pick<ContainerRuntime, 'list' | 'usage'>;

/** Per-container statsd counters (cumulative), read at scrape time. */
export interface StatsdCounts {
  datagrams: number;
  truncated: number;
  throttled: number;
  malformed: number;
  /** Valid lines that are not inference latency (other metrics, sets, events). */
  ignored: number;
  /** Latency lines refused because the container already has the maximum number of models. */
  overflow: number;
}
export interface StatsdCountsSource {
  counts(): Iterable<[container: string, counts: StatsdCounts]>;
}

export const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const MAX_OBSERVE_WEIGHT = 100;
export const PULL_BUCKETS_S = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export interface AgentMetricsOptions {
  containers?: ContainerSource;
  statsd?: StatsdCountsSource;
  /** prom-client's process and Node.js metrics (default true). */
  defaultMetrics?: boolean;
}

export interface ContainerRow {
  info: ContainerInfo;
  usage: CgroupUsage | undefined;
}

export interface AgentMetrics {
  readonly registry: Registry;
  // Filled at scrape time from the container source.
  readonly containerCpuSeconds: Counter<'container'>;
  readonly containerMemory: Gauge<'container'>;
  readonly containerMemoryLimit: Gauge<'container'>;
  readonly containerPids: Gauge<'container'>;
  readonly containerOomKills: Counter<'container'>;
  readonly containerRestarts: Counter<'container'>;
  readonly containerUp: Gauge<'container'>;
  // Fed by the statsd ingest.
  readonly inferenceLatency: Histogram<'container' | 'model'>;
  readonly inferenceRequests: Counter<'container' | 'model'>;
  // For the image puller.
  readonly imagePullSeconds: Histogram<string>;
  readonly imagePullBytes: Counter<string>;
  readonly imagePullFailures: Counter<'reason'>;
  // For the MQTT control plane.
  readonly mqttConnected: Gauge<string>;
  readonly commands: Counter<'verb' | 'outcome'>;

  setContainerSource(source: ContainerSource | undefined): void;
  setStatsdSource(source: StatsdCountsSource | undefined): void;
  /** Record one finished pull: duration, bytes, or a failure with a short reason (an error code). */
  pullFinished(r: { seconds: number; bytes?: number; failure?: string }): void;
  /** Count one handled command. outcome: 'ok' or the error code. Unknown verbs: pass 'unknown'. */
  commandHandled(verb: string, outcome: string): void;
  setMqttConnected(connected: boolean): void;
  /**
   * One inference latency sample. weight = 1/sample rate: the request counter adds it exactly,
   * the histogram observes it round(weight) times, at most MAX_OBSERVE_WEIGHT.
   */
  observeInference(container: string, model: string, seconds: number, weight: number): void;
  /** Drop a removed container's inference series. */
  forgetContainer(name: string): void;
}

export function createAgentMetrics(registry: Registry, opts: AgentMetricsOptions = {}): AgentMetrics {
  let containers = opts.containers;
  let statsd = opts.statsd;
  const registers = [registry];

  // All container collectors of one scrape share one read of the runtime: prom-client calls every
  // collect() in the same synchronous pass, so the rows are dropped at the next microtask.
  let rows: ContainerRow[] | undefined;
  const readRows = (): ContainerRow[] => {
    if (rows !== undefined) return rows;
    const fresh: ContainerRow[] = [];
    if (containers !== undefined) {
      for (const info of containers.list({ all: true })) {
        fresh.push({ info, usage: info.status === 'running' ? containers.usage(info.name) : undefined });
      }
    }
    rows = fresh;
    queueMicrotask(() => { rows = undefined; });
    return fresh;
  };

  /** A counter whose values are whole readings: reset, then set each series by one inc. */
  function readCounter(name: string, help: string, read: (r: ContainerRow) => number | undefined): Counter<'container'> {
    return new Counter({
      name, help, labelNames: ['container'], registers,
      collect(this: Counter<'container'>) {
        this.reset();
        for (const r of readRows()) {
          const v = read(r);
          if (v !== undefined && Number.isFinite(v) && v >= 0) this.inc({ container: r.info.name }, v);
        }
      },
    });
  }
  function readGauge(name: string, help: string, read: (r: ContainerRow) => number | undefined): Gauge<'container'> {
    return new Gauge({
      name, help, labelNames: ['container'], registers,
      collect(this: Gauge<'container'>) {
        this.reset();
        for (const r of readRows()) {
          const v = read(r);
          if (v !== undefined && Number.isFinite(v)) this.set({ container: r.info.name }, v);
        }
      },
    });
  }

  const containerCpuSeconds = readCounter('feather_container_cpu_seconds_total', 'CPU time used by the container (cgroup), seconds', (r) => r.usage?.cpuSeconds);
  const containerMemory = readGauge('feather_container_memory_bytes', 'Memory used by the container (cgroup memory.current), bytes', (r) => r.usage?.memoryBytes);
  const containerMemoryLimit = readGauge('feather_container_memory_limit_bytes', 'Memory limit of the container, bytes (absent when unlimited)', (r) => r.usage?.memoryLimitBytes);
  const containerPids = readGauge('feather_container_pids', 'Processes and threads in the container', (r) => r.usage?.pids);
  const containerOomKills = readCounter('feather_container_oom_kills_total', 'Processes the kernel OOM killer killed in the container', (r) => r.usage?.oomKills);
  const containerRestarts = readCounter('feather_container_restarts_total', 'Restarts of the container by its restart policy', (r) => r.info.restarts);
  const containerUp = readGauge('feather_container_up', '1 when the container is running, 0 when created or exited', (r) => (r.info.status === 'running' ? 1 : 0));

  const inferenceLatency = new Histogram({
    name: 'feather_inference_latency_seconds',
    help: 'Inference latency reported by workloads over statsd (inference.latency), seconds',
    labelNames: ['container', 'model'], buckets: LATENCY_BUCKETS_S, registers,
  });
  const inferenceRequests = new Counter({
    name: 'feather_inference_requests_total',
    help: 'Inference requests reported by workloads (one per latency sample, sample rate applied)',
    labelNames: ['container', 'model'], registers,
  });
  const imagePullSeconds = new Histogram({
    name: 'feather_image_pull_seconds', help: 'Duration of image pulls, successful or not, seconds',
    buckets: PULL_BUCKETS_S, registers,
  });
  const imagePullBytes = new Counter({ name: 'feather_image_pull_bytes_total', help: 'Bytes downloaded by image pulls', registers });
  const imagePullFailures = new Counter({
    name: 'feather_image_pull_failures_total', help: 'Failed image pulls by reason (error code)',
    labelNames: ['reason'], registers,
  });
  const mqttConnected = new Gauge({ name: 'feather_mqtt_connected', help: '1 while the agent is connected to the MQTT broker', registers });
  const commands = new Counter({
    name: 'feather_commands_total', help: 'Commands handled, by verb and outcome (ok or the error code)',
    labelNames: ['verb', 'outcome'], registers,
  });

  const statsdDatagrams = new Counter({
    name: 'feather_statsd_datagrams_total',
    help: 'Statsd datagrams from containers by outcome (accepted, truncated: longer than the buffer, dropped)',
    labelNames: ['container', 'outcome'], registers,
    collect(this: Counter<'container' | 'outcome'>) {
      this.reset();
      for (const [container, c] of statsd?.counts() ?? []) {
        this.inc({ container, outcome: 'accepted' }, c.datagrams);
        this.inc({ container, outcome: 'truncated' }, c.truncated);
      }
    },
  });
  const statsdLines = new Counter({
    name: 'feather_statsd_lines_rejected_total',
    help: 'Statsd lines not used, by reason (malformed, ignored: not inference latency, overflow: too many models)',
    labelNames: ['container', 'reason'], registers,
    collect(this: Counter<'container' | 'reason'>) {
      this.reset();
      for (const [container, c] of statsd?.counts() ?? []) {
        this.inc({ container, reason: 'malformed' }, c.malformed);
        this.inc({ container, reason: 'ignored' }, c.ignored);
        this.inc({ container, reason: 'overflow' }, c.overflow);
      }
    },
  });
  const statsdThrottled = new Counter({
    name: 'feather_statsd_throttled_total',
    help: 'Times a container\'s statsd socket hit its rate limit and reading paused',
    labelNames: ['container'], registers,
    collect(this: Counter<'container'>) {
      this.reset();
      for (const [container, c] of statsd?.counts() ?? []) this.inc({ container }, c.throttled);
    },
  });
  void statsdDatagrams; void statsdLines; void statsdThrottled;

  const inferenceSeries = new Map<string, Set<string>>();
  mqttConnected.set(0);
  if (opts.defaultMetrics !== false) addDefaultMetrics(registry);

  return {
    registry,
    containerCpuSeconds, containerMemory, containerMemoryLimit, containerPids, containerOomKills, containerRestarts, containerUp,
    inferenceLatency, inferenceRequests,
    imagePullSeconds, imagePullBytes, imagePullFailures,
    mqttConnected, commands,
    setContainerSource(source) { containers = source; },
    setStatsdSource(source) { statsd = source; },
    pullFinished(r) {
      imagePullSeconds.observe(r.seconds);
      if (r.bytes !== undefined && r.bytes > 0) imagePullBytes.inc(r.bytes);
      if (r.failure !== undefined) imagePullFailures.inc({ reason: r.failure });
    },
    commandHandled(verb, outcome) { commands.inc({ verb, outcome }); },
    setMqttConnected(connected) { mqttConnected.set(connected ? 1 : 0); },
    observeInference(container, model, seconds, weight) {
      let models = inferenceSeries.get(container);
      if (models === undefined) inferenceSeries.set(container, (models = new Set()));
      models.add(model);
      // A histogram has no weighted observe: repeat, at most MAX_OBSERVE_WEIGHT times.
      const times = Math.min(MAX_OBSERVE_WEIGHT, Math.max(1, Math.round(weight)));
      for (let i = 0; i < times; i++) inferenceLatency.observe({ container, model }, seconds);
      inferenceRequests.inc({ container, model }, weight);
    },
    forgetContainer(name) {
      for (const model of inferenceSeries.get(name) ?? []) {
        inferenceLatency.remove({ container: name, model });
        inferenceRequests.remove({ container: name, model });
      }
      inferenceSeries.delete(name);
    },
  };
}

/**
 * prom-client's process and Node.js metrics, minus the gauges it names *_total
 * (nodejs_active_handles_total and friends): `promtool check metrics` rejects a non-counter with
 * that suffix, and each is the sum of a labelled gauge that stays (nodejs_active_handles{type}).
 */
function addDefaultMetrics(registry: Registry): void {
  const before = new Set(registry.getMetricsAsArray().map((m) => m.name));
  collectDefaultMetrics({ register: registry });
  for (const m of registry.getMetricsAsArray()) {
    if (!before.has(m.name) && m.name.endsWith('_total') && String(m.type) !== 'counter') registry.removeSingleMetric(m.name);
  }
}
