// Accelerator memory, read without vendor tools: total for the inventory, total and used for
// device telemetry (stats.ts).
//   amdgpu       /sys/class/drm/renderDN/device/mem_info_vram_{total,used} (bytes)
//   NVIDIA dGPU  NVML (nvml.ts), by the PCI bus id in /proc/driver/nvidia/gpus, when
//                libnvidia-ml.so.1 is under the host root
//   Jetson, SoC  none of their own: they use system memory (Accelerator.unifiedMemory)
// Whatever cannot be read stays unknown. An NVML that is missing says nothing; one that cannot be
// loaded or fails is logged once per library and message (gpu.nvml_unavailable), never thrown.
import { createLogger, type Logger } from '../../shared/logging.js';
import type { Accelerator } from '../../shared/protocol/inventory.js';
import type { AcceleratorMemorySample } from '../../shared/protocol/telemetry.js';
import { nvidiaGpus } from './accelerators.js';
import type { HostFs } from './host-fs.js';
import { findNvml, isNvmlError, NvmlLibrary, type GpuMemoryInfo, type NvmlSession } from './nvml.js';

export interface GpuMemoryOptions {
  /** false: do not use NVML. A path: that library instead of the one found under the host root. */
  nvml?: false | string | undefined;
  logger?: Logger | undefined;
}

/**
 * Libraries already loaded (dlopen is process-wide, so this cache is too), what each has said
 * when it failed (logged once), and the totals read (a GPU's total memory does not change).
 */
interface NvmlState {
  library: NvmlLibrary | undefined;
  logged: Set<string>;
  totals: Map<string, number>;
}
const nvmlStates = new Map<string, NvmlState>();

function nvmlState(path: string, log: Logger): NvmlState {
  let state = nvmlStates.get(path);
  if (state === undefined) {
    state = { library: undefined, logged: new Set(), totals: new Map() };
    nvmlStates.set(path, state);
    try {
      state.library = NvmlLibrary.load(path);
    } catch (e: unknown) {
      logOnce(state, log, e, path);
    }
  }
  return state;
}

function logOnce(state: NvmlState, log: Logger, e: unknown, library: string): void {
  const message = e instanceof Error ? e.message : String(e);
  if (state.logged.has(message)) return;
  state.logged.add(message);
  log.warn('gpu.nvml_unavailable', { library, error: message, effect: 'NVIDIA GPU memory is left unknown' });
}

interface NvidiaTarget {
  device: string;
  busId: string | undefined;
  /** The only /dev/nvidiaN: NVML's index 0 is it when NVML sees one GPU. */
  sole: boolean;
}

/** The NVIDIA dGPUs (/dev/nvidiaN) with the bus id NVML knows them by. */
function nvidiaTargets(host: HostFs): NvidiaTarget[] {
  const gpus = nvidiaGpus(host);
  const nodes = host.list('/dev', /^nvidia\d+$/);
  return nodes.map((node) => ({ device: `/dev/${node}`, busId: gpus.get(Number(node.slice('nvidia'.length)))?.busId, sole: nodes.length === 1 }));
}

/** The loaded library for these options, or undefined (none under the root, disabled, or not loadable). */
function openNvml(host: HostFs, opts: GpuMemoryOptions): { state: NvmlState; library: NvmlLibrary; log: Logger } | undefined {
  if (opts.nvml === false) return undefined;
  const path = opts.nvml ?? findNvml(host);
  if (path === undefined) return undefined;
  const log = opts.logger ?? createLogger('agent:devices');
  const state = nvmlState(path, log);
  return state.library === undefined ? undefined : { state, library: state.library, log };
}

/** End the NVML sessions this process holds (agent shutdown). */
export function closeGpuMemory(): void {
  for (const state of nvmlStates.values()) state.library?.close();
}

/** Memory of these NVIDIA GPUs, by device. Never throws. */
function nvmlMemory(host: HostFs, targets: readonly NvidiaTarget[], opts: GpuMemoryOptions): Map<string, GpuMemoryInfo> {
  const out = new Map<string, GpuMemoryInfo>();
  if (targets.length === 0) return out;
  const nvml = openNvml(host, opts);
  if (nvml === undefined) return out;
  const { state, library, log } = nvml;
  const one = (s: NvmlSession, t: NvidiaTarget): GpuMemoryInfo | undefined => {
    try {
      if (t.busId !== undefined) return s.memoryByBusId(t.busId);
      return t.sole && s.count() === 1 ? s.memoryByIndex(0) : undefined;
    } catch (e: unknown) {
      if (!isNvmlError(e)) throw e;
      logOnce(state, log, e, library.path); // this GPU only; the others may still answer
      return undefined;
    }
  };
  try {
    library.session((s) => {
      for (const t of targets) {
        const m = one(s, t);
        if (m !== undefined) out.set(t.device, m);
      }
    });
  } catch (e: unknown) {
    logOnce(state, log, e, library.path);
  }
  return out;
}

/**
 * The inventory's accelerators with memoryBytes for NVIDIA dGPUs (`cuda` entries on /dev/nvidiaN)
 * from NVML; totals are asked once per process and GPU. The others are returned as they are.
 */
export function withGpuMemory(host: HostFs, accelerators: readonly Accelerator[], opts: GpuMemoryOptions = {}): Accelerator[] {
  const isDgpu = (a: Accelerator): boolean => a.kind === 'cuda' && a.memoryBytes === undefined && /^\/dev\/nvidia\d+$/.test(a.device);
  if (!accelerators.some(isDgpu)) return [...accelerators];
  const nvml = openNvml(host, opts);
  if (nvml === undefined) return [...accelerators];
  const key = (t: NvidiaTarget): string => t.busId ?? t.device;
  const targets = nvidiaTargets(host).filter((t) => accelerators.some((a) => isDgpu(a) && a.device === t.device));
  const missing = targets.filter((t) => !nvml.state.totals.has(key(t)));
  for (const [device, m] of nvmlMemory(host, missing, opts)) {
    const t = missing.find((x) => x.device === device);
    if (t !== undefined && m.totalBytes > 0) nvml.state.totals.set(key(t), m.totalBytes);
  }
  const totals = new Map(targets.flatMap((t): [string, number][] => {
    const total = nvml.state.totals.get(key(t));
    return total === undefined ? [] : [[t.device, total]];
  }));
  return accelerators.map((a) => {
    const total = isDgpu(a) ? totals.get(a.device) : undefined;
    return total === undefined ? a : { ...a, memoryBytes: total };
  });
}

/** Total and used memory of every accelerator that has its own, now (amdgpu sysfs, NVML). */
export function sampleGpuMemory(host: HostFs, opts: GpuMemoryOptions = {}): AcceleratorMemorySample[] {
  const out: AcceleratorMemorySample[] = [];
  for (const node of host.list('/sys/class/drm', /^renderD\d+$/)) {
    const total = host.int(`/sys/class/drm/${node}/device/mem_info_vram_total`);
    const used = host.int(`/sys/class/drm/${node}/device/mem_info_vram_used`);
    if (total !== undefined && total > 0 && used !== undefined) out.push({ device: `/dev/dri/${node}`, memoryTotalBytes: total, memoryUsedBytes: used });
  }
  for (const [device, m] of nvmlMemory(host, nvidiaTargets(host), opts)) {
    out.push({ device, memoryTotalBytes: m.totalBytes, memoryUsedBytes: m.usedBytes });
  }
  return out;
}
