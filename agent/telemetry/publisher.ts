// Every telemetry.intervalS, build one feather.v1.Telemetry sample and hand the encoded bytes to
// `publish` (the MQTT layer's; this module does not know MQTT). QoS 0: a lost sample is
// replaced by the next one.
//
// Per container the figures come from its cgroup (runtime.usage). A running container without
// a readable cgroup (no delegation, a v1 controller missing) falls back to its main process
// through pidusage (source PROCESS). CPU % is the delta of CPU seconds over the delta of
// monotonic time since the previous sample, so the first sample after start is primed, not
// published. The agent's own CPU and RSS come from pidusage too.
import pidusage from 'pidusage';
import { createLogger, type Logger } from '../../shared/logging.js';
import type { DeviceStats } from '../../shared/protocol/telemetry.js';
import type { LatencyTracker } from './latency.js';
import type { ContainerSource } from './metrics.js';
import { encodeTelemetry, type ContainerStatsSample, type TelemetryEncoding, type TelemetrySample } from '../../shared/protocol/telemetry.js';

export type PublishFn = (topic: string, payload: Buffer, opts: { qos: 0; contentType: string }) => Promise<void> | void;

export interface ProcessUsage {
  /** Percent of one core. */
  cpuPercent: number;
  rssBytes: number;
  /** Cumulative CPU seconds. */
  cpuSeconds: number;
}
export type ProcessUsageFn = (pid: number) => Promise<ProcessUsage>;

/** pidusage, shaped. Histories expire after 2 intervals so exited pids do not linger. */
export function pidusageSource(maxageMs = 60_000): ProcessUsageFn {
  return async (pid) => {
    const s = await pidusage(pid, { maxage: maxageMs });
    return { cpuPercent: s.cpu, rssBytes: s.memory, cpuSeconds: s.ctime / 1000 };
  };
}

export interface TelemetryPublisherDeps {
  deviceId: string;
  /** feather/v1/dev/{id}/telemetry */
  topic: string;
  intervalS: number;
  encoding: TelemetryEncoding;
  containers: ContainerSource;
  latency?: Pick<LatencyTracker, 'snapshot'>;
  device: { sample(): DeviceStats };
  publish: PublishFn;
  processUsage?: ProcessUsageFn;
  /** Wall clock, ms (default Date.now). */
  now?: () => number;
  /** Monotonic clock, ms (default performance.now). */
  monotonic?: () => number;
  logger?: Logger;
}

export interface PublisherStats {
  published: number;
  failed: number;
  /** Ticks skipped because the previous one was still running. */
  skipped: number;
  lastBytes: number;
}

interface CpuMark { cpuSeconds: number; at: number }

export class TelemetryPublisher {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<unknown> | undefined;
  private readonly marks = new Map<string, CpuMark>();
  private lastSampleAt: number | undefined;
  private readonly log: Logger;
  private readonly usage: ProcessUsageFn;
  private readonly now: () => number;
  private readonly mono: () => number;
  private readonly counters: PublisherStats = { published: 0, failed: 0, skipped: 0, lastBytes: 0 };

  constructor(private readonly deps: TelemetryPublisherDeps) {
    this.log = deps.logger ?? createLogger('agent:telemetry');
    this.usage = deps.processUsage ?? pidusageSource(Math.max(60_000, deps.intervalS * 2_000));
    this.now = deps.now ?? Date.now;
    this.mono = deps.monotonic ?? (() => performance.now());
  }

  /** Prime the CPU baselines now; publish every intervalS from then on. */
  start(): void {
    if (this.timer !== undefined) return;
    const prime = this.build()
      .catch((e: unknown) => this.log.warn('telemetry.prime_failed', { error: e }))
      .finally(() => { if (this.inFlight === prime) this.inFlight = undefined; });
    this.inFlight = prime;
    this.timer = setInterval(() => { void this.tick(); }, Math.max(0.1, this.deps.intervalS) * 1000);
    this.timer.unref();
  }

  /** Stop the timer and wait for a sample being published. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  stats(): PublisherStats {
    return { ...this.counters };
  }

  /** Build, encode and publish one sample (what the timer calls). Undefined when skipped or failed. */
  async tick(): Promise<TelemetrySample | undefined> {
    if (this.inFlight !== undefined) {
      this.counters.skipped++;
      return undefined;
    }
    const run = (async (): Promise<TelemetrySample | undefined> => {
      try {
        const sample = await this.build();
        const { payload, contentType } = encodeTelemetry(sample, this.deps.encoding);
        await this.deps.publish(this.deps.topic, payload, { qos: 0, contentType });
        this.counters.published++;
        this.counters.lastBytes = payload.length;
        return sample;
      } catch (e: unknown) {
        this.counters.failed++;
        this.log.warn('telemetry.publish_failed', { error: e });
        return undefined;
      }
    })();
    this.inFlight = run;
    try {
      return await run;
    } finally {
      this.inFlight = undefined;
    }
  }

  /** One sample; moves the CPU baselines forward. */
  async build(): Promise<TelemetrySample> {
    const at = this.mono();
    const intervalMs = this.lastSampleAt === undefined ? 0 : at - this.lastSampleAt;
    this.lastSampleAt = at;

    const containers: ContainerStatsSample[] = [];
    const present = new Set<string>();
    for (const info of this.deps.containers.list({ all: true })) {
      present.add(info.name);
      const running = info.status === 'running';
      const base: ContainerStatsSample = {
        name: info.name, running, cpuSeconds: 0, cpuPercent: 0, memoryBytes: 0, memoryPeakBytes: 0,
        pids: 0, oomKills: 0, restarts: info.restarts, latency: this.latencyOf(info.name), source: 'CGROUP',
      };
      const cg = running ? this.deps.containers.usage(info.name) : undefined;
      if (cg !== undefined) {
        Object.assign(base, {
          cpuSeconds: cg.cpuSeconds, memoryBytes: cg.memoryBytes, memoryPeakBytes: cg.memoryPeakBytes,
          pids: cg.pids, oomKills: cg.oomKills,
        });
        if (cg.memoryLimitBytes !== undefined) base.memoryLimitBytes = cg.memoryLimitBytes;
      } else if (running && info.pid !== undefined) {
        try {
          const p = await this.usage(info.pid);
          Object.assign(base, { cpuSeconds: p.cpuSeconds, memoryBytes: p.rssBytes, source: 'PROCESS' });
        } catch (e: unknown) {
          this.log.debug('telemetry.process_usage_failed', { container: info.name, pid: info.pid, error: e });
        }
      }
      base.cpuPercent = running ? this.cpuPercent(info.name, base.cpuSeconds, at) : 0;
      if (!running) this.marks.delete(info.name);
      containers.push(base);
    }
    for (const name of this.marks.keys()) if (!present.has(name)) this.marks.delete(name);

    let agent = { cpuPercent: 0, memoryRssBytes: 0 };
    try {
      const self = await this.usage(process.pid);
      agent = { cpuPercent: self.cpuPercent, memoryRssBytes: self.rssBytes };
    } catch (e: unknown) {
      this.log.debug('telemetry.self_usage_failed', { error: e });
    }

    return {
      deviceId: this.deps.deviceId,
      tsMs: this.now(),
      intervalMs,
      device: this.deps.device.sample(),
      containers,
      agent,
    };
  }

  private cpuPercent(name: string, cpuSeconds: number, at: number): number {
    const prev = this.marks.get(name);
    this.marks.set(name, { cpuSeconds, at });
    if (prev === undefined || at <= prev.at || cpuSeconds < prev.cpuSeconds) return 0; // first sight, or restarted
    return (100 * (cpuSeconds - prev.cpuSeconds)) / ((at - prev.at) / 1000);
  }

  private latencyOf(name: string): ContainerStatsSample['latency'] {
    return (this.deps.latency?.snapshot(name) ?? []).map((l) => ({
      model: l.model, p50Ms: l.p50 * 1000, p95Ms: l.p95 * 1000, p99Ms: l.p99 * 1000, count: l.count, windowCount: l.windowCount,
    }));
  }
}
