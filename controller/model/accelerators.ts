// What a replica holds of an accelerator (docs/scheduling.md, "Accelerator devices"): the
// defaults per kind and the count a deployment asks for. Plain data, shared by the deployment
// parser, the scheduler and featherctl.
import type { AcceleratorDevices, AcceleratorKind, DeviceAcceleratorKind } from './types.js';

export const DEVICE_ACCELERATOR_KINDS: readonly DeviceAcceleratorKind[] = ['tensorrt', 'cuda', 'edgetpu', 'npu', 'gpu'];
/**
 * Accelerator devices a replica holds on the kind it runs on, unless `resources.accelerators`
 * says otherwise (docs/scheduling.md, "Accelerator devices"). 1 = exclusive: an Edge TPU is
 * opened by one process at a time, and a Hailo (or another NPU) is too unless its vendor's
 * multi-process service runs; a second replica would fail to start. 0 = shared: CUDA contexts of
 * several processes time-slice one GPU (on a Jetson's iGPU that is how containers share it), and
 * DRM render nodes serve many clients; GPU memory, not the device, is what runs out.
 */
export const ACCELERATOR_DEVICE_DEFAULTS: Readonly<Record<DeviceAcceleratorKind, number>> = { tensorrt: 0, cuda: 0, edgetpu: 1, npu: 1, gpu: 0 };
/** The most accelerator devices of one kind a replica may ask for. */
export const MAX_ACCELERATOR_DEVICES = 16;

/** Accelerator devices one replica holds when it runs on `kind` (0: shares them; always 0 on cpu). */
export function acceleratorNeed(devices: AcceleratorDevices | undefined, kind: AcceleratorKind): number {
  if (kind === 'cpu') return 0;
  if (typeof devices === 'number') return devices;
  return devices?.[kind] ?? ACCELERATOR_DEVICE_DEFAULTS[kind];
}
