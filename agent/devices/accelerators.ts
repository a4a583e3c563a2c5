// Accelerator detection: a table of detectors, each looking for one kind of device in /dev and
// /sys under the host root. Add a board by adding a detector; a detector that throws is logged
// and skipped, the others still run. Detection reads files only: no vendor tools, no drivers
// loaded, no device opened.
import type { Logger } from '../../shared/logging.js';
import type { Accelerator } from '../../shared/protocol/inventory.js';
import type { HostFs } from './host-fs.js';

export interface AcceleratorDetector {
  name: string;
  /** `found`: what the detectors before this one reported (TensorRT needs a CUDA device). */
  detect(host: HostFs, found: readonly Accelerator[]): Accelerator[];
}

/** PCI vendor ids we name. */
const PCI_VENDORS: Readonly<Record<string, string>> = {
  '0x10de': 'nvidia', '0x8086': 'intel', '0x1002': 'amd', '0x1022': 'amd', '0x1e60': 'hailo',
  '0x1ac1': 'google', '0x17cb': 'qualcomm', '0x1da3': 'habana',
};

export interface NvidiaGpuInfo { busId: string; model: string | undefined }

/**
 * The NVIDIA driver's /proc/driver/nvidia/gpus/<bus id>/information ("Model: …", "Device
 * Minor: N"), by minor number: /dev/nvidiaN is minor N, and the bus id is what NVML looks GPUs up by.
 */
export function nvidiaGpus(host: HostFs): Map<number, NvidiaGpuInfo> {
  const out = new Map<number, NvidiaGpuInfo>();
  for (const bus of host.list('/proc/driver/nvidia/gpus')) {
    const info = host.read(`/proc/driver/nvidia/gpus/${bus}/information`) ?? '';
    const model = /^Model:\s*(.+)$/m.exec(info)?.[1]?.trim();
    const minor = /^Device Minor:\s*(\d+)$/m.exec(info)?.[1];
    if (minor !== undefined) out.set(Number(minor), { busId: bus, model });
  }
  return out;
}

const nvidiaDiscrete: AcceleratorDetector = {
  name: 'nvidia',
  detect(host) {
    const gpus = nvidiaGpus(host);
    return host.list('/dev', /^nvidia\d+$/).map((node) => {
      const minor = Number(node.slice('nvidia'.length));
      return { kind: 'cuda' as const, vendor: 'nvidia', model: gpus.get(minor)?.model ?? 'NVIDIA GPU', device: `/dev/${node}` };
    });
  },
};

const jetson: AcceleratorDetector = {
  name: 'jetson',
  detect(host) {
    if (!host.exists('/etc/nv_tegra_release')) return [];
    const model = host.line('/proc/device-tree/model') ?? host.line('/sys/firmware/devicetree/base/model') ?? 'NVIDIA Jetson';
    const device = ['/dev/nvgpu/igpu0/ctrl', '/dev/nvhost-ctrl-gpu', '/dev/nvhost-gpu'].find((d) => host.exists(d)) ?? '/dev/nvhost-ctrl-gpu';
    // The integrated GPU shares system memory with the CPUs: no memoryBytes of its own.
    return [{ kind: 'cuda', vendor: 'nvidia', model, device, unifiedMemory: true }];
  },
};

const TENSORRT_DIRS = ['/usr/lib/aarch64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/usr/local/tensorrt/lib'];

const tensorrt: AcceleratorDetector = {
  name: 'tensorrt',
  detect(host, found) {
    const cuda = found.find((a) => a.kind === 'cuda');
    if (cuda === undefined) return [];
    for (const dir of TENSORRT_DIRS) {
      const lib = host.list(dir, /^libnvinfer\.so\.\d+(\.\d+)*$/).pop();
      if (lib !== undefined) {
        const version = lib.slice('libnvinfer.so.'.length);
        return [{ kind: 'tensorrt', vendor: 'nvidia', model: `TensorRT ${version} on ${cuda.model}`, device: cuda.device }];
      }
    }
    return [];
  },
};

const coralPcie: AcceleratorDetector = {
  name: 'coral-pcie',
  detect(host) {
    return host.list('/dev', /^apex_\d+$/).map((node) => ({ kind: 'edgetpu' as const, vendor: 'google', model: 'Coral Edge TPU (PCIe)', device: `/dev/${node}` }));
  },
};

/** 1a6e:089a before the Edge TPU runtime loads its firmware, 18d1:9302 after. */
const CORAL_USB_IDS = new Set(['1a6e:089a', '18d1:9302']);

const coralUsb: AcceleratorDetector = {
  name: 'coral-usb',
  detect(host) {
    const out: Accelerator[] = [];
    for (const dev of host.list('/sys/bus/usb/devices')) {
      const base = `/sys/bus/usb/devices/${dev}`;
      const id = `${host.line(`${base}/idVendor`) ?? ''}:${host.line(`${base}/idProduct`) ?? ''}`;
      if (!CORAL_USB_IDS.has(id)) continue;
      const bus = host.int(`${base}/busnum`);
      const num = host.int(`${base}/devnum`);
      const device = bus !== undefined && num !== undefined
        ? `/dev/bus/usb/${String(bus).padStart(3, '0')}/${String(num).padStart(3, '0')}`
        : '/dev/bus/usb';
      out.push({ kind: 'edgetpu', vendor: 'google', model: 'Coral Edge TPU (USB)', device });
    }
    return out;
  },
};

const hailo: AcceleratorDetector = {
  name: 'hailo',
  detect(host) {
    return host.list('/dev', /^hailo\d+$/).map((node) => {
      const pciDevice = host.line(`/sys/class/hailo_chardev/${node}/device/device`);
      const model = pciDevice === '0x2864' ? 'Hailo-8' : 'Hailo';
      return { kind: 'npu' as const, vendor: 'hailo', model, device: `/dev/${node}` };
    });
  },
};

/** The kernel's accel subsystem (Intel NPU, AMD XDNA, Qualcomm AIC, Habana…): /dev/accel/accelN. */
const accelClass: AcceleratorDetector = {
  name: 'accel',
  detect(host) {
    return host.list('/sys/class/accel', /^accel\d+$/).map((node) => {
      const vendorId = host.line(`/sys/class/accel/${node}/device/vendor`) ?? '';
      const driver = host.linkName(`/sys/class/accel/${node}/device/driver`);
      return { kind: 'npu' as const, vendor: PCI_VENDORS[vendorId] ?? (vendorId || 'unknown'), model: driver ?? 'accel', device: `/dev/accel/${node}` };
    });
  },
};

/** Render-capable GPUs without CUDA (Intel, AMD, Mali, Broadcom V3D…), by DRM driver. */
const DRM_VENDORS: Readonly<Record<string, string>> = {
  i915: 'intel', xe: 'intel', amdgpu: 'amd', radeon: 'amd', panfrost: 'arm', panthor: 'arm', lima: 'arm',
  v3d: 'broadcom', etnaviv: 'vivante', msm: 'qualcomm', asahi: 'apple', nouveau: 'nvidia', 'powervr': 'imagination',
};
/** Drivers of GPUs that are always part of an SoC and use system memory. */
const DRM_INTEGRATED = new Set(['panfrost', 'panthor', 'lima', 'v3d', 'etnaviv', 'msm', 'asahi', 'powervr']);
const DRM_SKIP = /^(nvidia.*|tegra.*|nvgpu|vgem|vkms|virtio[-_]gpu|simpledrm|vc4|bochs.*|qxl|vmwgfx|cirrus.*)$/;

const drmGpu: AcceleratorDetector = {
  name: 'drm',
  detect(host) {
    const out: Accelerator[] = [];
    for (const node of host.list('/sys/class/drm', /^renderD\d+$/)) {
      const driver = host.linkName(`/sys/class/drm/${node}/device/driver`);
      if (driver === undefined || DRM_SKIP.test(driver)) continue;
      const vendorId = host.line(`/sys/class/drm/${node}/device/vendor`) ?? '';
      const vram = host.int(`/sys/class/drm/${node}/device/mem_info_vram_total`);
      out.push({
        kind: 'gpu',
        vendor: DRM_VENDORS[driver] ?? PCI_VENDORS[vendorId] ?? 'unknown',
        model: driver,
        device: `/dev/dri/${node}`,
        ...(vram !== undefined && vram > 0 ? { memoryBytes: vram } : {}),
        ...(DRM_INTEGRATED.has(driver) ? { unifiedMemory: true } : {}),
      });
    }
    return out;
  },
};

/** In order: a detector sees what the ones before it found. */
export const ACCELERATOR_DETECTORS: readonly AcceleratorDetector[] = [
  nvidiaDiscrete, jetson, tensorrt, coralPcie, coralUsb, hailo, accelClass, drmGpu,
];

export function detectAccelerators(host: HostFs, detectors: readonly AcceleratorDetector[] = ACCELERATOR_DETECTORS, log?: Logger): Accelerator[] {
  const found: Accelerator[] = [];
  for (const d of detectors) {
    try {
      found.push(...d.detect(host, found));
    } catch (e: unknown) {
      log?.warn('inventory.detector_failed', { detector: d.name, error: e });
    }
  }
  return found;
}
