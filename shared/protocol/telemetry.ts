// The feather.v1.Telemetry message: TypeScript shape, and encoding as protobuf or JSON. The agent
// encodes it (agent/telemetry/publisher.ts), the controller decodes it.
// shared/protocol/telemetry.proto is loaded with protobufjs at run time, found like every
// .proto of the package (shared/protocol/proto.ts locateProto).
import { locateProto } from './proto.js';
import protobuf from 'protobufjs';
import { FeatherError, messageOf } from '../errors.js';

export type TelemetryEncoding = 'protobuf' | 'json';
export const CONTENT_TYPES: Readonly<Record<TelemetryEncoding, string>> = {
  protobuf: 'application/x-protobuf',
  json: 'application/json',
};

export interface Temperature { sensor: string; celsius: number }

export interface AcceleratorMemorySample {
  /** The accelerator's `device` in the inventory. */
  device: string;
  memoryTotalBytes: number;
  memoryUsedBytes: number;
}

/** Device figures, read from the host by agent/devices/stats.ts. */
export interface DeviceStats {
  /** Busy share of all CPUs since the previous sample, 0..100; 0 on the first sample. */
  cpuPercent: number;
  cpuCores: number;
  load1: number;
  memoryTotalBytes: number;
  memoryAvailableBytes: number;
  diskTotalBytes: number;
  diskFreeBytes: number;
  temperatures: Temperature[];
  uptimeS: number;
  /** Accelerators with memory of their own (amdgpu VRAM, NVIDIA through NVML); absent or [] when none. */
  acceleratorMemory?: AcceleratorMemorySample[];
}

/** The device part is what DeviceStatsReader.sample() returns. */
export type DeviceStatsSample = DeviceStats;

export interface ModelLatencySample {
  model: string;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  count: number;
  windowCount: number;
}

export type StatsSource = 'CGROUP' | 'PROCESS';

export interface ContainerStatsSample {
  name: string;
  running: boolean;
  cpuSeconds: number;
  cpuPercent: number;
  memoryBytes: number;
  memoryPeakBytes: number;
  /** Absent when unlimited. */
  memoryLimitBytes?: number;
  pids: number;
  oomKills: number;
  restarts: number;
  latency: ModelLatencySample[];
  source: StatsSource;
}

export interface AgentStatsSample { cpuPercent: number; memoryRssBytes: number }

export interface TelemetrySample {
  deviceId: string;
  tsMs: number;
  intervalMs: number;
  device: DeviceStatsSample;
  containers: ContainerStatsSample[];
  agent: AgentStatsSample;
}


/** Absolute path of telemetry.proto, from the sources or from dist/. */
export function telemetryProtoPath(): string {
  return locateProto('telemetry.proto');
}

let telemetryType: protobuf.Type | undefined;

/** feather.v1.Telemetry, loaded once. */
export function telemetryMessageType(): protobuf.Type {
  if (telemetryType === undefined) {
    telemetryType = protobuf.loadSync(telemetryProtoPath()).lookupType('feather.v1.Telemetry');
  }
  return telemetryType;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, arrays: true };

/** Round what protobuf stores as integers, so a fractional count does not fail verification. */
function normalise(s: TelemetrySample): TelemetrySample {
  return {
    ...s,
    tsMs: Math.round(s.tsMs),
    intervalMs: Math.max(0, Math.round(s.intervalMs)),
    device: { ...s.device, memoryTotalBytes: Math.round(s.device.memoryTotalBytes), memoryAvailableBytes: Math.round(s.device.memoryAvailableBytes), diskTotalBytes: Math.round(s.device.diskTotalBytes), diskFreeBytes: Math.round(s.device.diskFreeBytes) },
    containers: s.containers.map((c) => ({
      ...c,
      memoryBytes: Math.round(c.memoryBytes),
      memoryPeakBytes: Math.round(c.memoryPeakBytes),
      ...(c.memoryLimitBytes === undefined ? {} : { memoryLimitBytes: Math.round(c.memoryLimitBytes) }),
      latency: c.latency.map((l) => ({ ...l, count: Math.round(l.count), windowCount: Math.round(l.windowCount) })),
    })),
    agent: { ...s.agent, memoryRssBytes: Math.round(s.agent.memoryRssBytes) },
  };
}

export function encodeTelemetry(sample: TelemetrySample, encoding: TelemetryEncoding): { payload: Buffer; contentType: string } {
  const T = telemetryMessageType();
  const msg = T.fromObject(normalise(sample));
  if (encoding === 'protobuf') {
    return { payload: Buffer.from(T.encode(msg).finish()), contentType: CONTENT_TYPES.protobuf };
  }
  return { payload: Buffer.from(JSON.stringify(T.toObject(msg, TO_OBJECT))), contentType: CONTENT_TYPES.json };
}

/** Decode either encoding (a payload whose first non-blank byte is `{` is JSON). BAD_REQUEST when it is neither. */
export function decodeTelemetry(payload: Uint8Array): TelemetrySample {
  const T = telemetryMessageType();
  try {
    const text = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const first = text.toString('latin1', 0, Math.min(64, text.length)).trimStart()[0];
    const msg = first === '{' ? T.fromObject(JSON.parse(text.toString('utf8')) as Record<string, unknown>) : T.decode(payload);
    return T.toObject(msg, TO_OBJECT) as TelemetrySample;
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `not a feather.v1.Telemetry message: ${messageOf(e)}`);
  }
}
