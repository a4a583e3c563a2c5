// Per-container statsd sockets feeding the latency tracker and the Prometheus histogram.
//
// The agent calls attach(name) when it starts a container (before the workload runs, so the
// socket exists) and detach(name) when the container is removed. Only inference latency is
// used today: lines named `inference.latency` (configurable) of type ms, h or d, value in
// milliseconds, model from the `model` tag (DEFAULT_MODEL without one).
import { join } from 'node:path';
import { createLogger, type Logger } from '../../shared/logging.js';
import { DEFAULT_MODEL, MODEL_NAME_MAX, type LatencyTracker } from './latency.js';
import type { AgentMetrics, StatsdCounts, StatsdCountsSource } from './metrics.js';
import { parseStatsdDatagram, type StatsdSample } from './statsd-parse.js';
import { openStatsdSocket, type StatsdSocket, type StatsdSocketOptions } from './statsd-socket.js';

export const LATENCY_METRIC_NAMES = ['inference.latency'] as const;

export interface StatsdIngestDeps {
  runDir: string;
  latency: LatencyTracker;
  metrics?: Pick<AgentMetrics, 'observeInference' | 'forgetContainer'>;
  logger?: Logger;
  /** Statsd names taken as inference latency in ms (default LATENCY_METRIC_NAMES). */
  latencyNames?: readonly string[];
  /** Options for every socket (mode, rate, driver…). */
  socket?: StatsdSocketOptions;
}

/** Where a container's socket lives on the host: <runDir>/containers/<name>/statsd.sock. */
export function statsdSocketPath(runDir: string, container: string): string {
  return join(runDir, 'containers', container, 'statsd.sock');
}

interface Entry {
  socket: StatsdSocket | undefined;
  /** Socket counts of sockets already closed (a stopped and restarted container keeps counting). */
  closed: { received: number; truncated: number; throttled: number };
  lines: { malformed: number; ignored: number; overflow: number };
}

function newEntry(): Entry {
  return { socket: undefined, closed: { received: 0, truncated: 0, throttled: 0 }, lines: { malformed: 0, ignored: 0, overflow: 0 } };
}

export class StatsdIngest implements StatsdCountsSource {
  private readonly entries = new Map<string, Entry>();
  private readonly log: Logger;
  private readonly latencyNames: ReadonlySet<string>;

  constructor(private readonly deps: StatsdIngestDeps) {
    this.log = deps.logger ?? createLogger('agent:telemetry:statsd');
    this.latencyNames = new Set(deps.latencyNames ?? LATENCY_METRIC_NAMES);
  }

  socketPath(container: string): string {
    return statsdSocketPath(this.deps.runDir, container);
  }

  /**
   * Open the container's socket (idempotent) and return its host path. uid/gid: the container's
   * host ids under a user namespace, to own the socket.
   */
  attach(container: string, owner: { uid?: number; gid?: number } = {}): string {
    let entry = this.entries.get(container);
    if (entry?.socket !== undefined) return entry.socket.path;
    if (entry === undefined) this.entries.set(container, (entry = newEntry()));
    const path = this.socketPath(container);
    const socket = openStatsdSocket(path, (data) => this.handle(container, data), { logger: this.log, ...this.deps.socket, ...owner });
    entry.socket = socket;
    this.log.debug('statsd.attached', { container, path, driver: socket.driver });
    return path;
  }

  /** Close the container's socket. forget: also drop its latency series and counters (it was removed). */
  detach(container: string, opts: { forget?: boolean } = {}): void {
    const entry = this.entries.get(container);
    if (entry?.socket !== undefined) {
      const s = entry.socket.stats();
      entry.socket.close();
      entry.socket = undefined;
      entry.closed.received += s.received;
      entry.closed.truncated += s.truncated;
      entry.closed.throttled += s.throttled;
    }
    if (opts.forget === true) {
      this.entries.delete(container);
      this.deps.latency.forget(container);
      this.deps.metrics?.forgetContainer(container);
    }
  }

  /** Parse one datagram from `container` and record what it says. Public for tests. */
  handle(container: string, data: Buffer | string): void {
    let entry = this.entries.get(container);
    if (entry === undefined) this.entries.set(container, (entry = newEntry()));
    const parsed = parseStatsdDatagram(data);
    entry.lines.malformed += parsed.malformed;
    entry.lines.ignored += parsed.ignored;
    for (const s of parsed.samples) this.record(container, entry, s);
  }

  counts(): Array<[string, StatsdCounts]> {
    const out: Array<[string, StatsdCounts]> = [];
    for (const [container, e] of this.entries) {
      const s = e.socket?.stats();
      out.push([container, {
        datagrams: e.closed.received + (s?.received ?? 0),
        truncated: e.closed.truncated + (s?.truncated ?? 0),
        throttled: e.closed.throttled + (s?.throttled ?? 0),
        ...e.lines,
      }]);
    }
    return out;
  }

  /** Close every socket (agent shutdown). Series are kept. */
  close(): void {
    for (const name of [...this.entries.keys()]) this.detach(name);
  }

  private record(container: string, entry: Entry, s: StatsdSample): void {
    if (!this.latencyNames.has(s.name) || (s.type !== 'timer' && s.type !== 'histogram' && s.type !== 'distribution')) {
      entry.lines.ignored++;
      return;
    }
    const model = s.tags['model'] ?? DEFAULT_MODEL;
    if (model.length === 0 || model.length > MODEL_NAME_MAX || s.values.some((v) => v < 0)) {
      entry.lines.malformed++;
      return;
    }
    const weight = 1 / s.sampleRate;
    for (const ms of s.values) {
      const seconds = ms / 1000;
      if (!this.deps.latency.record(container, model, seconds, weight)) {
        entry.lines.overflow++;
        return;
      }
      this.deps.metrics?.observeInference(container, model, seconds, weight);
    }
  }
}
