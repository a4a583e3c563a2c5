// Device figures for telemetry (DeviceStats, shared/protocol/telemetry.ts): CPU % (from /proc/stat
// deltas), memory, disk, temperatures (thermal zones and hwmon), uptime, load, accelerator memory
// (gpu-memory.ts). Read under the host root like the inventory.
import type { Logger } from '../../shared/logging.js';
import type { DeviceStats, Temperature } from '../../shared/protocol/telemetry.js';
import { sampleGpuMemory } from './gpu-memory.js';
import { naturalCompare, HostFs } from './host-fs.js';
import { diskSpace, parseMeminfo, type StatfsFn } from './inventory.js';

export interface DeviceStatsOptions {
  hostRoot?: string;
  /** Disk figures are for the filesystem of this directory. */
  dataDir: string;
  statfs?: StatfsFn;
  /** At most this many temperature sensors (default 32). */
  maxSensors?: number;
  /** NVIDIA GPU memory through NVML: false to skip, or a library path (default: found under the host root). */
  nvml?: false | string;
  logger?: Logger;
}

interface CpuTimes { busy: number; total: number }

/** The aggregate "cpu" line of /proc/stat. Guest time is already inside user and nice. */
export function parseProcStat(text: string): { times: CpuTimes | undefined; cores: number } {
  let times: CpuTimes | undefined;
  let cores = 0;
  for (const line of text.split('\n')) {
    if (/^cpu\d+\s/.test(line)) cores++;
    if (!line.startsWith('cpu ')) continue;
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
    if (f.length < 4 || f.some((x) => !Number.isFinite(x))) continue;
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
    times = { busy: total - idle, total };
  }
  return { times, cores };
}

const SANE_CELSIUS = { min: -60, max: 200 };

export class DeviceStatsReader {
  private readonly host: HostFs;
  private previous: CpuTimes | undefined;

  constructor(private readonly opts: DeviceStatsOptions) {
    this.host = new HostFs(opts.hostRoot ?? '/');
  }

  sample(): DeviceStats {
    const stat = parseProcStat(this.host.read('/proc/stat') ?? '');
    let cpuPercent = 0;
    if (stat.times !== undefined) {
      const prev = this.previous;
      if (prev !== undefined && stat.times.total > prev.total) {
        cpuPercent = (100 * (stat.times.busy - prev.busy)) / (stat.times.total - prev.total);
      }
      this.previous = stat.times;
    }
    const mem = parseMeminfo(this.host.read('/proc/meminfo') ?? '');
    const available = mem.get('MemAvailable') ?? (mem.get('MemFree') ?? 0) + (mem.get('Buffers') ?? 0) + (mem.get('Cached') ?? 0);
    let disk = { totalBytes: 0, freeBytes: 0 };
    try {
      disk = (this.opts.statfs ?? diskSpace)(this.opts.dataDir);
    } catch {
      // A data dir on a vanished mount: report 0 rather than lose the whole sample.
    }
    return {
      cpuPercent: Math.min(100, Math.max(0, cpuPercent)),
      cpuCores: stat.cores,
      load1: Number(this.host.line('/proc/loadavg')?.split(/\s+/)[0] ?? 0) || 0,
      memoryTotalBytes: mem.get('MemTotal') ?? 0,
      memoryAvailableBytes: available,
      diskTotalBytes: disk.totalBytes,
      diskFreeBytes: disk.freeBytes,
      temperatures: this.temperatures(),
      uptimeS: Number(this.host.line('/proc/uptime')?.split(/\s+/)[0] ?? 0) || 0,
      acceleratorMemory: sampleGpuMemory(this.host, { nvml: this.opts.nvml, logger: this.opts.logger }),
    };
  }

  /** Thermal zones first, then hwmon chips; millidegrees in sysfs, Celsius out. */
  temperatures(): Temperature[] {
    const max = this.opts.maxSensors ?? 32;
    const out: Temperature[] = [];
    const seen = new Set<string>();
    const add = (sensor: string, milli: number | undefined): void => {
      if (milli === undefined || out.length >= max) return;
      const celsius = milli / 1000;
      if (celsius < SANE_CELSIUS.min || celsius > SANE_CELSIUS.max) return;
      let name = sensor;
      for (let i = 2; seen.has(name); i++) name = `${sensor}#${i}`;
      seen.add(name);
      out.push({ sensor: name, celsius });
    };
    for (const zone of this.host.list('/sys/class/thermal', /^thermal_zone\d+$/)) {
      const type = this.host.line(`/sys/class/thermal/${zone}/type`) ?? zone;
      add(`thermal:${type}`, this.host.int(`/sys/class/thermal/${zone}/temp`));
    }
    for (const chip of this.host.list('/sys/class/hwmon', /^hwmon\d+$/)) {
      const base = `/sys/class/hwmon/${chip}`;
      const name = this.host.line(`${base}/name`) ?? chip;
      const inputs = this.host.list(base, /^temp\d+_input$/).sort(naturalCompare);
      for (const input of inputs) {
        const idx = input.slice(0, -'_input'.length);
        const label = this.host.line(`${base}/${idx}_label`) ?? idx;
        add(`hwmon:${name}/${label}`, this.host.int(`${base}/${input}`));
      }
    }
    return out;
  }
}
