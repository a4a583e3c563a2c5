// NVIDIA GPU memory through NVML (libnvidia-ml.so.1, which the driver installs), called with
// koffi. The library is looked for under the host root and loaded only when it is there; a
// library that cannot be loaded, or an NVML call that fails, is an NvmlError for the caller
// (gpu-memory.ts) to log once and turn into "memory unknown". Never a crash.
//
// NVML is initialised once, on the first query, and stays so until close() (agent shutdown):
// without persistence mode (nvidia-persistenced) nvmlInit_v2 can take a second — the driver
// sets the GPUs up for the first client — and the calls are synchronous, so an init per
// telemetry sample would stall the agent's event loop every sample. Holding the session also
// keeps the driver state loaded, as persistence mode would. A call that says NVML is no longer
// usable (uninitialised, driver gone, GPU lost) ends the session; the next query starts anew.
import koffi, { type TypeObject } from 'koffi';
import { join } from 'node:path';
import type { HostFs } from './host-fs.js';

export const NVML_LIBRARY = 'libnvidia-ml.so.1';

/** Where distributions and NVIDIA's container toolkit put the library, as on the host. */
export const NVML_DIRS: readonly string[] = [
  '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib',
  '/usr/local/nvidia/lib64', '/usr/local/nvidia/lib', '/usr/lib/wsl/lib',
];

/** NVML's return codes that have a name here (nvml.h, nvmlReturn_t). */
const NVML_RETURN: Readonly<Record<number, string>> = {
  1: 'NVML_ERROR_UNINITIALIZED', 2: 'NVML_ERROR_INVALID_ARGUMENT', 3: 'NVML_ERROR_NOT_SUPPORTED',
  4: 'NVML_ERROR_NO_PERMISSION', 6: 'NVML_ERROR_NOT_FOUND', 9: 'NVML_ERROR_DRIVER_NOT_LOADED',
  12: 'NVML_ERROR_LIBRARY_NOT_FOUND', 13: 'NVML_ERROR_FUNCTION_NOT_FOUND', 15: 'NVML_ERROR_GPU_IS_LOST',
  18: 'NVML_ERROR_LIB_RM_VERSION_MISMATCH', 999: 'NVML_ERROR_UNKNOWN',
};
const NVML_SUCCESS = 0;
/** Uninitialised, driver not loaded, GPU lost, library/driver version mismatch: open a new session next time. */
const SESSION_ENDING = new Set([1, 9, 15, 18]);

export class NvmlError extends Error {
  override readonly name = 'NvmlError';
  constructor(message: string, readonly library: string, readonly code?: number) {
    super(message);
  }
}

export function isNvmlError(e: unknown): e is NvmlError {
  return e instanceof NvmlError;
}

export interface GpuMemoryInfo { totalBytes: number; usedBytes: number }

/** What one session can ask. Each method throws NvmlError when NVML says no. */
export interface NvmlSession {
  count(): number;
  /** By PCI bus id, as in /proc/driver/nvidia/gpus ("0000:01:00.0"). */
  memoryByBusId(busId: string): GpuMemoryInfo;
  memoryByIndex(index: number): GpuMemoryInfo;
}

// nvml.h: typedef struct nvmlDevice_st *nvmlDevice_t;
//         typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
const DEVICE = koffi.pointer(koffi.opaque());
const MEMORY = koffi.struct({ total: 'unsigned long long', free: 'unsigned long long', used: 'unsigned long long' });

interface NvmlApi {
  init: NvmlFn;
  shutdown: NvmlFn;
  count: NvmlFn;
  byBusId: NvmlFn;
  byIndex: NvmlFn;
  memory: NvmlFn;
  errorString: NvmlFn | undefined;
}

/** A bound C function; what it returns is checked where it is used. */
type NvmlFn = (...args: unknown[]) => unknown;
type ArgType = string | TypeObject | ReturnType<typeof koffi.out>;

const bytes = (v: unknown): number => (typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0);

/** The library file under the host root, or undefined when there is none. */
export function findNvml(host: HostFs): string | undefined {
  for (const dir of NVML_DIRS) {
    const p = join(dir, NVML_LIBRARY);
    if (host.exists(p)) return host.path(p);
  }
  return undefined;
}

/** A loaded libnvidia-ml. */
export class NvmlLibrary {
  private constructor(readonly path: string, private readonly api: NvmlApi) {}

  /** dlopen the library and bind the calls used here. Throws NvmlError (not a library, a symbol missing). */
  static load(path: string): NvmlLibrary {
    try {
      const lib = koffi.load(path);
      const fn = (name: string, result: string, args: ArgType[]): NvmlFn => lib.func(name, result, args) as NvmlFn;
      let errorString: NvmlFn | undefined;
      try {
        errorString = fn('nvmlErrorString', 'const char *', ['int']);
      } catch { /* optional: codes are named from the table then */ }
      return new NvmlLibrary(path, {
        init: fn('nvmlInit_v2', 'int', []),
        shutdown: fn('nvmlShutdown', 'int', []),
        count: fn('nvmlDeviceGetCount_v2', 'int', [koffi.out(koffi.pointer('unsigned int'))]),
        byBusId: fn('nvmlDeviceGetHandleByPciBusId_v2', 'int', ['const char *', koffi.out(koffi.pointer(DEVICE))]),
        byIndex: fn('nvmlDeviceGetHandleByIndex_v2', 'int', ['unsigned int', koffi.out(koffi.pointer(DEVICE))]),
        memory: fn('nvmlDeviceGetMemoryInfo', 'int', [DEVICE, koffi.out(koffi.pointer(MEMORY))]),
        errorString,
      });
    } catch (e: unknown) {
      throw new NvmlError(`cannot load ${path}: ${e instanceof Error ? e.message : String(e)}`, path);
    }
  }

  private initialised = false;

  /** `fn` with the session (opened on first use). Throws NvmlError. */
  session<T>(fn: (s: NvmlSession) => T): T {
    if (!this.initialised) {
      this.check('nvmlInit_v2', this.api.init());
      this.initialised = true;
    }
    try {
      const memoryOf = (handle: unknown, what: string): GpuMemoryInfo => {
        const mem: { total?: unknown; used?: unknown } = {};
        this.check(`nvmlDeviceGetMemoryInfo (${what})`, this.api.memory(handle, mem));
        return { totalBytes: bytes(mem.total), usedBytes: bytes(mem.used) };
      };
      return fn({
        count: () => {
          const n = [0];
          this.check('nvmlDeviceGetCount_v2', this.api.count(n));
          return n[0] ?? 0;
        },
        memoryByBusId: (busId) => {
          const h: unknown[] = [null];
          this.check(`nvmlDeviceGetHandleByPciBusId_v2 (${busId})`, this.api.byBusId(busId, h));
          return memoryOf(h[0], busId);
        },
        memoryByIndex: (index) => {
          const h: unknown[] = [null];
          this.check(`nvmlDeviceGetHandleByIndex_v2 (${index})`, this.api.byIndex(index, h));
          return memoryOf(h[0], `index ${index}`);
        },
      });
    } catch (e: unknown) {
      if (isNvmlError(e) && e.code !== undefined && SESSION_ENDING.has(e.code)) this.close();
      throw e;
    }
  }

  /** nvmlShutdown, if a session is open. */
  close(): void {
    if (!this.initialised) return;
    this.initialised = false;
    this.api.shutdown();
  }

  private check(call: string, rc: unknown): void {
    if (rc === NVML_SUCCESS) return;
    const code = typeof rc === 'number' ? rc : -1;
    let text = NVML_RETURN[code] ?? `error ${code}`;
    try {
      const s: unknown = this.api.errorString?.(code);
      if (typeof s === 'string' && s !== '') text = `${text}: ${s}`;
    } catch { /* the name alone will do */ }
    throw new NvmlError(`${call} failed in ${this.path}: ${text}`, this.path, code);
  }
}
