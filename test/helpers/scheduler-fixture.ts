// Shared fixture of the scheduler's unit tests: devices, a deployment with every accelerator's
// model variant, and a schedule() call with fixed time.
import type { Inventory } from '../../shared/protocol/inventory.js';
import { validateDeployment } from '../../controller/deployments/spec.js';
import type { AcceleratorKind, Arch, DeploymentSpec, DeviceView, Measurement } from '../../controller/model/types.js';
import { schedule, type ScheduleInput, type ScheduleResult } from '../../controller/scheduler/index.js';

export const NOW = 1_700_000_000_000;
export const GiB = 2 ** 30;
export const SHA = (c: string): string => c.repeat(64);

export interface DevOpts {
  /** accels: one entry per accelerator device, e.g. ['edgetpu', 'edgetpu'] for a dual Edge TPU board. */
  arch?: Arch; accels?: Exclude<AcceleratorKind, 'cpu'>[]; memGi?: number; cores?: number;
  labels?: Record<string, string>; online?: boolean; lastSeen?: number; boardClass?: string; noInventory?: boolean;
}

/**
 * The inventory's accelerators: the nth device of a kind is /dev/<kind><n>; TensorRT names the
 * CUDA device it runs on when there is one, as the agent's detector does.
 */
function accelerators(accels: readonly Exclude<AcceleratorKind, 'cpu'>[]): Inventory['accelerators'] {
  const seen = new Map<string, number>();
  return accels.map((kind) => {
    const n = seen.get(kind) ?? 0;
    seen.set(kind, n + 1);
    const node = kind === 'tensorrt' && accels.includes('cuda') ? 'cuda' : kind;
    return { kind, vendor: 'v', model: kind, device: `/dev/${node}${n}` };
  });
}

export function dev(id: string, o: DevOpts = {}): DeviceView {
  const arch = o.arch ?? 'x86_64';
  const accels = o.accels ?? [];
  const inventory: Inventory = {
    id, arch, cpu: { model: 'test cpu', cores: o.cores ?? 4, flags: [] }, memoryBytes: (o.memGi ?? 4) * GiB,
    disk: { freeBytes: 1e10 }, kernel: '6.1', cgroup: 'v2',
    accelerators: accelerators(accels),
    labels: o.labels ?? {}, runtimes: ['shim'],
  };
  return {
    id, online: o.online ?? true, lastSeen: o.lastSeen ?? NOW, inventory: o.noInventory ? undefined : inventory,
    labels: o.labels ?? {}, boardClass: o.boardClass ?? `${arch}/${accels.join('+') || 'cpu'}`,
  };
}

export const MODEL_VARIANTS = [
  { accelerator: 'tensorrt', precision: 'fp16', url: 'https://m.example/trt16.engine', sha256: SHA('1') },
  { accelerator: 'tensorrt', precision: 'fp32', url: 'https://m.example/trt32.engine', sha256: SHA('2') },
  { accelerator: 'cuda', precision: 'fp16', url: 'https://m.example/cuda16.onnx', sha256: SHA('3') },
  { accelerator: 'edgetpu', precision: 'int8', url: 'https://m.example/tpu8.tflite', sha256: SHA('4') },
  { accelerator: 'edgetpu', precision: 'fp32', url: 'https://m.example/tpu32.tflite', sha256: SHA('7') },
  { accelerator: 'npu', precision: 'int8', url: 'https://m.example/npu8.hef', sha256: SHA('5') },
  { accelerator: 'cpu', precision: 'fp32', url: 'https://m.example/cpu32.onnx', sha256: SHA('6') },
  { accelerator: 'cpu', precision: 'int8', url: 'https://m.example/cpu8.onnx', sha256: SHA('8') },
];

export function spec(over: Record<string, unknown> = {}): DeploymentSpec {
  return validateDeployment({
    name: 'det',
    model: { name: 'yolo', variants: MODEL_VARIANTS },
    runtime: { variants: [
      { arch: 'x86_64', image: 'rt', url: 'https://i.example/rt-amd64.tar.gz', sha256: SHA('a') },
      { arch: 'aarch64', image: 'rt', url: 'https://i.example/rt-arm64.tar.gz', sha256: SHA('b') },
    ] },
    replicas: 1,
    resources: { memory: '1Gi', cpus: 1 },
    accelerators: ['tensorrt', 'cuda', 'edgetpu', 'npu', 'cpu'],
    ...over,
  });
}

export function run(devices: DeviceView[], specs: DeploymentSpec[], extra: Partial<ScheduleInput> = {}): ScheduleResult {
  return schedule({
    devices, deployments: specs.map((s) => ({ spec: s, revision: 1 })), placements: [], measurements: [],
    now: NOW, graceMs: 60_000, ...extra,
  });
}

export const where = (r: ScheduleResult, deployment = 'det'): string[] => r.placements.filter((p) => p.deployment === deployment).map((p) => p.deviceId);

export function measure(deviceId: string, boardClass: string, p95Ms: number, o: Partial<Measurement> = {}): Measurement {
  return { deviceId, boardClass, model: 'yolo', precision: 'fp32', p95Ms, count: 100, at: NOW - 1000, ...o };
}
