import t from 'tap';
import { existsSync } from 'node:fs';
import {
  CONTENT_TYPES, decodeTelemetry, encodeTelemetry, telemetryMessageType, telemetryProtoPath,
  type ContainerStatsSample, type TelemetrySample,
} from '../../shared/protocol/telemetry.js';

/** A realistic sample: a Raspberry Pi class board running `n` containers, most with one model. */
export function sampleWith(n: number): TelemetrySample {
  const containers: ContainerStatsSample[] = [];
  for (let i = 0; i < n; i++) {
    containers.push({
      name: `detector-${i}`,
      running: i !== n - 1,
      cpuSeconds: 1234.567 + i,
      cpuPercent: 37.5 + i,
      memoryBytes: 87_654_321 + i * 1000,
      memoryPeakBytes: 99_000_000 + i * 1000,
      ...(i % 3 === 0 ? {} : { memoryLimitBytes: 134_217_728 }),
      pids: 7,
      oomKills: i === 2 ? 1 : 0,
      restarts: i === 2 ? 3 : 0,
      latency: i === n - 1 ? [] : [
        { model: i % 2 === 0 ? 'yolov8n' : 'resnet18', p50Ms: 12.5, p95Ms: 19.25, p99Ms: 31.75, count: 123_456 + i, windowCount: 600 },
        ...(i === 0 ? [{ model: 'default', p50Ms: 1.5, p95Ms: 2.5, p99Ms: 4.5, count: 10, windowCount: 10 }] : []),
      ],
      source: 'CGROUP',
    });
  }
  return {
    deviceId: 'edge-pi5-0042',
    tsMs: 1_760_000_000_123,
    intervalMs: 10_000,
    device: {
      cpuPercent: 42.25, cpuCores: 4, load1: 1.5,
      memoryTotalBytes: 8_443_412_480, memoryAvailableBytes: 5_000_000_000,
      diskTotalBytes: 62_000_000_000, diskFreeBytes: 40_000_000_000,
      temperatures: [{ sensor: 'thermal:cpu-thermal', celsius: 61.45 }, { sensor: 'hwmon:rp1_adc/temp1', celsius: 55 }],
      uptimeS: 350_735.47,
      acceleratorMemory: [], // a Pi's GPU uses system memory
    },
    containers,
    agent: { cpuPercent: 0.75, memoryRssBytes: 61_000_000 },
  };
}

/** Equal, floats compared at float32 precision. */
function approxEqual(a: unknown, b: unknown, path = ''): string[] {
  if (typeof a === 'number' && typeof b === 'number') {
    return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)) ? [] : [`${path}: ${a} != ${b}`];
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return [`${path}: length ${a.length} != ${b.length}`];
    return a.flatMap((x, i) => approxEqual(x, b[i], `${path}[${i}]`));
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => approxEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`));
  }
  return a === b ? [] : [`${path}: ${String(a)} != ${String(b)}`];
}

t.test('the .proto is found and declares feather.v1.Telemetry', async (t) => {
  t.ok(existsSync(telemetryProtoPath()));
  t.equal(telemetryMessageType().fullName, '.feather.v1.Telemetry');
});

t.test('protobuf round trip keeps every field', async (t) => {
  const s = sampleWith(10);
  const { payload, contentType } = encodeTelemetry(s, 'protobuf');
  t.equal(contentType, CONTENT_TYPES.protobuf);
  t.same(approxEqual(decodeTelemetry(payload), s), []);
});

t.test('JSON round trip, camelCase names, no limit when unlimited, first byte {', async (t) => {
  const s = sampleWith(10);
  const { payload, contentType } = encodeTelemetry(s, 'json');
  t.equal(contentType, CONTENT_TYPES.json);
  t.equal(payload.toString('utf8', 0, 1), '{');
  const obj = JSON.parse(payload.toString('utf8')) as { deviceId: string; containers: Array<Record<string, unknown>> };
  t.equal(obj.deviceId, 'edge-pi5-0042');
  t.notOk('memoryLimitBytes' in (obj.containers[0] ?? {}), 'unlimited container has no memoryLimitBytes');
  t.equal(obj.containers[1]?.['memoryLimitBytes'], 134_217_728);
  t.equal(obj.containers[0]?.['source'], 'CGROUP');
  t.same(approxEqual(decodeTelemetry(payload), s), []);
});

t.test('accelerator memory (amdgpu, NVIDIA) survives both encodings', async (t) => {
  const s = sampleWith(1);
  s.device.acceleratorMemory = [
    { device: '/dev/dri/renderD128', memoryTotalBytes: 8_573_157_376, memoryUsedBytes: 1_234_567_168 },
    { device: '/dev/nvidia0', memoryTotalBytes: 25_769_803_776, memoryUsedBytes: 0 },
  ];
  for (const encoding of ['protobuf', 'json'] as const) {
    t.same(approxEqual(decodeTelemetry(encodeTelemetry(s, encoding).payload), s), [], encoding);
  }
});

t.test('fractional counts are rounded rather than rejected', async (t) => {
  const s = sampleWith(2);
  const first = s.containers[0];
  if (first?.latency[0]) first.latency[0].count = 10.4;
  const back = decodeTelemetry(encodeTelemetry(s, 'protobuf').payload);
  t.equal(back.containers[0]?.latency[0]?.count, 10);
});

t.test('sizes: 10 containers, protobuf vs JSON', async (t) => {
  const s = sampleWith(10);
  const pb = encodeTelemetry(s, 'protobuf').payload.length;
  const json = encodeTelemetry(s, 'json').payload.length;
  const pb0 = encodeTelemetry(sampleWith(0), 'protobuf').payload.length;
  t.comment(`telemetry bytes: protobuf ${pb} (device only ${pb0}), JSON ${json}, ratio ${(json / pb).toFixed(2)}`);
  t.ok(pb < json / 2, 'protobuf is less than half the JSON');
  t.ok(pb <= 1400, 'ten containers fit in one 1500-byte MTU with MQTT and TCP/IP headers');
});

t.test('junk is BAD_REQUEST', async (t) => {
  t.throws(() => decodeTelemetry(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])), { code: 'BAD_REQUEST' });
  t.throws(() => decodeTelemetry(Buffer.from('{"deviceId": 5, "containers": 7}')), { code: 'BAD_REQUEST' });
});
