// Reading the device inventory (shared/protocol/inventory.ts, ../shared/DESIGN.md "Inventory"),
// published retained on feather/v1/dev/{id}/inventory and returned by the `inventory` command.
// Accelerators' memory (gpu-memory.ts) is the one part read through a library (NVML) rather than files.
// With `cdi`, each accelerator also says which CDI names give it to a container (cdi/names.ts), read
// from the spec files under the host root: the daemon reads the inventory after it wrote its specs.
// Read from the host root (config hostRoot) so tests run it against fake /proc and /sys trees;
// free disk is statfs of the data dir, which is a real path.
import { existsSync, statfsSync } from 'node:fs';
import { machine } from 'node:os';
import { dirname } from 'node:path';
import { FeatherError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { Accelerator, Arch, Inventory } from '../../shared/protocol/inventory.js';
import { ACCELERATOR_DETECTORS, detectAccelerators, type AcceleratorDetector } from './accelerators.js';
import { acceleratorCdiNames } from './cdi/names.js';
import { CdiRegistry } from './cdi/registry.js';
import { parseCpuinfo } from './cpuinfo.js';
import { withGpuMemory } from './gpu-memory.js';
import { HostFs } from './host-fs.js';

export interface DiskSpace { totalBytes: number; freeBytes: number }
export type StatfsFn = (path: string) => DiskSpace;

export interface InventoryOptions {
  deviceId: string;
  /** Default "/". */
  hostRoot?: string;
  /** The agent's data dir; its filesystem's free space is disk.freeBytes. */
  dataDir: string;
  labels?: Record<string, string>;
  /** Container runtimes the agent can drive (default ["shim"]). */
  runtimes?: string[];
  /** The runtime's cgroup detection, when it has one (hybrid counts as v1); else read from the host root. */
  cgroup?: 'v1' | 'v2';
  /** Override the architecture (default: process.arch on the real root, /proc/cpuinfo on another). */
  arch?: Arch;
  detectors?: readonly AcceleratorDetector[];
  /** NVIDIA GPU memory through NVML: false to skip, or a library path (default: found under the host root). */
  nvml?: false | string;
  statfs?: StatfsFn;
  /**
   * Each accelerator's CDI names (`cdi`, [] when no spec gives its node): true reads the spec
   * files under the host root now; a registry is used as it is. Default: left out.
   */
  cdi?: boolean | CdiRegistry;
  logger?: Logger;
}

const NODE_ARCH: Readonly<Record<string, Arch>> = { x64: 'x86_64', arm64: 'aarch64', riscv64: 'riscv64' };
const MACHINE_ARCH: Readonly<Record<string, Arch>> = { x86_64: 'x86_64', aarch64: 'aarch64', arm64: 'aarch64', riscv64: 'riscv64' };

/** Free and total bytes of the filesystem holding `path` (or its nearest existing parent). */
export function diskSpace(path: string): DiskSpace {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  const s = statfsSync(p);
  return { totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize };
}

/** /proc/meminfo as bytes per key ("MemTotal" -> bytes). */
export function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) out.set(m[1], Number(m[2]) * (line.trimEnd().endsWith('kB') ? 1024 : 1));
  }
  return out;
}

export function detectCgroup(host: HostFs): 'v1' | 'v2' {
  return host.exists('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : 'v1';
}

function boardModel(host: HostFs): string | undefined {
  return host.line('/proc/device-tree/model') ?? host.line('/sys/firmware/devicetree/base/model');
}

function resolveArch(opts: InventoryOptions, host: HostFs, fromCpuinfo: Arch | undefined): Arch {
  if (opts.arch !== undefined) return opts.arch;
  const onRealRoot = host.root === '/' || host.root === '';
  const candidates = onRealRoot
    ? [NODE_ARCH[process.arch], MACHINE_ARCH[machine()], fromCpuinfo]
    : [fromCpuinfo, NODE_ARCH[process.arch]];
  const arch = candidates.find((a): a is Arch => a !== undefined);
  if (arch === undefined) {
    throw new FeatherError('INTERNAL', `unsupported architecture ${process.arch} (${machine()}); feather supports x86_64, aarch64 and riscv64`);
  }
  return arch;
}

export function readInventory(opts: InventoryOptions): Inventory {
  const host = new HostFs(opts.hostRoot ?? '/');
  const cpu = parseCpuinfo(host.read('/proc/cpuinfo') ?? '', boardModel(host));
  const meminfo = parseMeminfo(host.read('/proc/meminfo') ?? '');
  const disk = (opts.statfs ?? diskSpace)(opts.dataDir);
  return {
    id: opts.deviceId,
    arch: resolveArch(opts, host, cpu.arch),
    cpu: { model: cpu.model, cores: cpu.cores > 0 ? cpu.cores : onlineCpus(host), flags: cpu.flags },
    memoryBytes: meminfo.get('MemTotal') ?? 0,
    disk: { freeBytes: disk.freeBytes },
    kernel: host.line('/proc/sys/kernel/osrelease') ?? 'unknown',
    cgroup: opts.cgroup ?? detectCgroup(host),
    accelerators: withCdi(withGpuMemory(host, detectAccelerators(host, opts.detectors ?? ACCELERATOR_DETECTORS, opts.logger), { nvml: opts.nvml, logger: opts.logger }), host, opts),
    labels: { ...(opts.labels ?? {}) },
    runtimes: [...(opts.runtimes ?? ['shim'])],
  };
}

function withCdi(accelerators: Accelerator[], host: HostFs, opts: InventoryOptions): Accelerator[] {
  if (opts.cdi === undefined || opts.cdi === false) return accelerators;
  const registry = opts.cdi === true ? CdiRegistry.load({ root: host.root, logger: opts.logger }) : opts.cdi;
  const names = acceleratorCdiNames(registry, accelerators);
  return accelerators.map((a) => ({ ...a, cdi: names.get(a.device) ?? [] }));
}

/** Count of CPUs in /sys/devices/system/cpu/online ("0-3,6"), 0 when unreadable. */
export function onlineCpus(host: HostFs): number {
  const text = host.line('/sys/devices/system/cpu/online');
  if (text === undefined || text === '') return 0;
  let n = 0;
  for (const range of text.split(',')) {
    const [a, b] = range.split('-').map(Number);
    if (a === undefined || !Number.isInteger(a)) continue;
    n += b === undefined ? 1 : Number.isInteger(b) && b >= a ? b - a + 1 : 0;
  }
  return n;
}
