// Fake host trees for the inventory and device-stats tests: a temp directory laid out like the
// parts of /proc, /sys, /dev and /etc the agent reads, with the real files' formats, for an x86_64
// box (Intel desktop with an NVIDIA card) and an aarch64 box (Raspberry Pi 5 class board), and
// the accelerator nodes of the boards we detect, on request.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CgroupUsage } from '../../agent/runtime/cgroups/types.js';
import type { ContainerInfo } from '../../agent/runtime/types.js';

export type FakeBox = 'x86' | 'arm64' | 'riscv64';
export type FakeAccelerator =
  | 'nvidia' | 'tensorrt' | 'jetson' | 'coral-pcie' | 'coral-usb' | 'coral-usb-bootloader' | 'hailo' | 'intel-npu'
  | 'intel-gpu' | 'amdgpu' | 'virtio-gpu';

/**
 * A USB device as sysfs shows it: /sys/bus/usb/devices/<port> is a link to the device's directory
 * under its host controller, holding idVendor, idProduct, busnum, devnum, dev (189:minor), speed,
 * devpath; its node is /dev/bus/usb/BBB/DDD (a regular file here).
 */
export interface FakeUsbDevice {
  /** The sysfs name: "<bus>-<port>[.<port>…]", e.g. "2-1". */
  port: string;
  vendor: string;
  product: string;
  devnum: number;
  /** Mb/s as sysfs writes it: 480, 5000 … (default 5000). */
  speed?: number;
}

/** The Coral USB Accelerator before the Edge TPU runtime has loaded its firmware, and after. */
export const CORAL_BOOTLOADER = { vendor: '1a6e', product: '089a' } as const;
export const CORAL_RUNNING = { vendor: '18d1', product: '9302' } as const;

export interface FakeHostOptions {
  accelerators?: FakeAccelerator[];
  cgroup?: 'v1' | 'v2';
  /** Leave out hwmon (boards without it). */
  noHwmon?: boolean;
}

export interface FakeHost {
  root: string;
  write(path: string, content: string): void;
  symlink(target: string, path: string): void;
  /** Set the aggregate /proc/stat "cpu" line: busy and idle jiffies. */
  setCpuTimes(busy: number, idle: number): void;
  /**
   * Plug a USB device in at its port, replacing what was there (sysfs entry and /dev node): call it
   * again with a new devnum and ids to re-enumerate, as the Coral does when its firmware loads.
   */
  usb(dev: FakeUsbDevice): void;
  cleanup(): void;
}

const X86_FLAGS = 'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm avx2 bmi1 bmi2 avx512f avx512dq avx512bw avx512vl avx512_vnni';

function x86Cpuinfo(cores: number): string {
  let out = '';
  for (let i = 0; i < cores; i++) {
    out += `processor\t: ${i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\nmodel name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz\nstepping\t: 7\ncpu MHz\t\t: 2095.078\ncache size\t: 28160 KB\nflags\t\t: ${X86_FLAGS}\nbogomips\t: 4190.15\n\n`;
  }
  return out;
}

function arm64Cpuinfo(cores: number): string {
  let out = '';
  for (let i = 0; i < cores; i++) {
    out += `processor\t: ${i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n`;
  }
  return out + 'Revision\t: d04170\nSerial\t\t: 1f2e3d4c5b6a7988\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n';
}

function riscvCpuinfo(cores: number): string {
  let out = '';
  for (let i = 0; i < cores; i++) {
    out += `processor\t: ${i}\nhart\t\t: ${i}\nisa\t\t: rv64imafdcv_zicbom_zicboz_zicntr_zicsr_zifencei_zihpm_zfh_zvfh\nmmu\t\t: sv39\nuarch\t\t: spacemit,x60\nmvendorid\t: 0x710\nmarchid\t\t: 0x8000000058000001\n\n`;
  }
  return out;
}

function procStat(cores: number, busy: number, idle: number): string {
  // user nice system idle iowait irq softirq steal guest guest_nice
  const line = (name: string, b: number, i: number): string => `${name} ${Math.round(b * 0.7)} 0 ${b - Math.round(b * 0.7)} ${i} 0 0 0 0 0 0\n`;
  let out = line('cpu ', busy, idle);
  for (let c = 0; c < cores; c++) out += line(`cpu${c}`, Math.round(busy / cores), Math.round(idle / cores));
  return out + 'intr 1234 0 0\nctxt 5678\nbtime 1700000000\nprocesses 4242\nprocs_running 1\nprocs_blocked 0\n';
}

export function buildFakeHost(box: FakeBox, opts: FakeHostOptions = {}): FakeHost {
  const root = mkdtempSync(join(tmpdir(), `feather-host-${box}-`));
  const write = (p: string, content: string): void => {
    const full = join(root, p);
    mkdirSync(dirname(full), { recursive: true });
    writeFileSync(full, content);
  };
  const symlink = (target: string, p: string): void => {
    const full = join(root, p);
    mkdirSync(dirname(full), { recursive: true });
    symlinkSync(target, full);
  };
  const cores = box === 'x86' ? 8 : 4;
  // The xHCI controller USB buses hang off: a PCI function on x86, RP1's on a Pi 5.
  const usbController = box === 'x86' ? '/sys/devices/pci0000:00/0000:00:14.0' : '/sys/devices/platform/axi/1000120000.pcie/1f00200000.usb/xhci-hcd.0';
  const usbNode = (bus: number, devnum: number): string => `/dev/bus/usb/${String(bus).padStart(3, '0')}/${String(devnum).padStart(3, '0')}`;
  const plugged = new Map<string, { bus: number; devnum: number }>();
  const usbWrite = (dir: string, d: FakeUsbDevice, bus: number, devpath: string): void => {
    write(`${dir}/idVendor`, `${d.vendor}\n`);
    write(`${dir}/idProduct`, `${d.product}\n`);
    write(`${dir}/busnum`, `${bus}\n`);
    write(`${dir}/devnum`, `${d.devnum}\n`);
    write(`${dir}/dev`, `189:${(bus - 1) * 128 + d.devnum - 1}\n`);
    write(`${dir}/speed`, `${d.speed ?? 5000}\n`);
    write(`${dir}/devpath`, `${devpath}\n`);
    write(usbNode(bus, d.devnum), '');
  };
  const usb = (d: FakeUsbDevice): void => {
    const m = /^(\d+)-(\d+(?:\.\d+)*)$/.exec(d.port);
    if (m?.[1] === undefined || m[2] === undefined) throw new Error(`bad USB port ${d.port}`);
    const bus = Number(m[1]);
    const hub = `${usbController}/usb${bus}`;
    if (!plugged.has(`usb${bus}`)) {
      // The bus's root hub: devnum 1, Linux Foundation 2.0 (0002) or 3.0 (0003).
      usbWrite(hub, { port: `usb${bus}`, vendor: '1d6b', product: (d.speed ?? 5000) >= 5000 ? '0003' : '0002', devnum: 1, speed: d.speed ?? 5000 }, bus, '0');
      symlink(`../../..${hub.slice('/sys'.length)}`, `/sys/bus/usb/devices/usb${bus}`);
      plugged.set(`usb${bus}`, { bus, devnum: 1 });
    }
    const old = plugged.get(d.port);
    if (old !== undefined) {
      // Unplugged: its directory, link and node go; it comes back with the new devnum.
      rmSync(join(root, `${hub}/${d.port}`), { recursive: true, force: true });
      unlinkSync(join(root, `/sys/bus/usb/devices/${d.port}`));
      rmSync(join(root, usbNode(old.bus, old.devnum)), { force: true });
    }
    const dir = `${hub}/${d.port}`;
    usbWrite(dir, d, bus, m[2]);
    write(`${dir}/${d.port}:1.0/bInterfaceClass`, 'ff\n'); // an interface: no idVendor of its own
    symlink(`../../..${dir.slice('/sys'.length)}`, `/sys/bus/usb/devices/${d.port}`);
    if (old === undefined) symlink(`../../..${dir.slice('/sys'.length)}/${d.port}:1.0`, `/sys/bus/usb/devices/${d.port}:1.0`);
    plugged.set(d.port, { bus, devnum: d.devnum });
  };

  write('/proc/cpuinfo', box === 'x86' ? x86Cpuinfo(cores) : box === 'arm64' ? arm64Cpuinfo(cores) : riscvCpuinfo(cores));
  const memKb = box === 'x86' ? 32_594_112 : 8_245_520;
  write('/proc/meminfo', `MemTotal:       ${memKb} kB\nMemFree:         ${Math.round(memKb / 4)} kB\nMemAvailable:   ${Math.round(memKb / 2)} kB\nBuffers:          102400 kB\nCached:          2048000 kB\nSwapCached:            0 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n`);
  write('/proc/sys/kernel/osrelease', box === 'x86' ? '6.1.0-18-amd64\n' : box === 'arm64' ? '6.6.31+rpt-rpi-2712\n' : '6.6.36-k1\n');
  write('/proc/stat', procStat(cores, 1000, 9000));
  write('/proc/uptime', '350735.47 234388.90\n');
  write('/proc/loadavg', '0.52 0.58 0.59 1/467 12345\n');
  write('/sys/devices/system/cpu/online', `0-${cores - 1}\n`);
  if ((opts.cgroup ?? 'v2') === 'v2') write('/sys/fs/cgroup/cgroup.controllers', 'cpuset cpu io memory hugetlb pids rdma misc\n');
  else write('/sys/fs/cgroup/memory/memory.limit_in_bytes', '9223372036854771712\n');

  if (box === 'x86') {
    write('/sys/class/thermal/thermal_zone0/type', 'acpitz\n');
    write('/sys/class/thermal/thermal_zone0/temp', '27800\n');
    write('/sys/class/thermal/thermal_zone1/type', 'x86_pkg_temp\n');
    write('/sys/class/thermal/thermal_zone1/temp', '52000\n');
    if (opts.noHwmon !== true) {
      write('/sys/class/hwmon/hwmon0/name', 'acpitz\n');
      write('/sys/class/hwmon/hwmon0/temp1_input', '27800\n');
      write('/sys/class/hwmon/hwmon2/name', 'coretemp\n');
      write('/sys/class/hwmon/hwmon2/temp1_label', 'Package id 0\n');
      write('/sys/class/hwmon/hwmon2/temp1_input', '52000\n');
      write('/sys/class/hwmon/hwmon2/temp2_label', 'Core 0\n');
      write('/sys/class/hwmon/hwmon2/temp2_input', '49000\n');
      write('/sys/class/hwmon/hwmon2/temp10_label', 'Core 8\n');
      write('/sys/class/hwmon/hwmon2/temp10_input', '48000\n');
    }
  } else {
    write('/proc/device-tree/model', box === 'arm64' ? 'Raspberry Pi 5 Model B Rev 1.0\0' : 'SpacemiT K1 Banana Pi BPI-F3\0');
    write('/sys/class/thermal/thermal_zone0/type', 'cpu-thermal\n');
    write('/sys/class/thermal/thermal_zone0/temp', '61450\n');
    // A broken sensor reads absurd values; it must not be reported.
    write('/sys/class/thermal/thermal_zone1/type', 'broken\n');
    write('/sys/class/thermal/thermal_zone1/temp', '-273000\n');
    if (opts.noHwmon !== true) {
      write('/sys/class/hwmon/hwmon0/name', 'cpu_thermal\n');
      write('/sys/class/hwmon/hwmon0/temp1_input', '61450\n');
      write('/sys/class/hwmon/hwmon1/name', 'rp1_adc\n');
      write('/sys/class/hwmon/hwmon1/temp1_input', '55000\n');
    }
  }

  for (const acc of opts.accelerators ?? []) {
    switch (acc) {
      case 'nvidia':
        write('/dev/nvidia0', '');
        write('/dev/nvidiactl', '');
        write('/dev/nvidia-uvm', '');
        write('/proc/driver/nvidia/gpus/0000:01:00.0/information', 'Model: \t\t NVIDIA GeForce RTX 3060\nIRQ:   \t\t 139\nGPU UUID: \t GPU-8a1b2c3d\nVideo BIOS: \t 94.06.2f.00.9a\nBus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t 0000:01:00.0\nDevice Minor: \t 0\nGPU Excluded:\t No\n');
        break;
      case 'tensorrt':
        write(box === 'x86' ? '/usr/lib/x86_64-linux-gnu/libnvinfer.so.8.6.1' : '/usr/lib/aarch64-linux-gnu/libnvinfer.so.8.6.2', '');
        break;
      case 'jetson':
        write('/etc/nv_tegra_release', '# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n');
        write('/proc/device-tree/model', 'NVIDIA Jetson Orin Nano Developer Kit\0');
        write('/dev/nvgpu/igpu0/ctrl', '');
        break;
      case 'coral-pcie':
        write('/dev/apex_0', '');
        break;
      case 'coral-usb':
      case 'coral-usb-bootloader':
        // Firmware loaded (18d1:9302, devnum 3), or as plugged in (1a6e:089a, devnum 2); a keyboard on bus 1.
        usb({ port: '2-1', ...(acc === 'coral-usb' ? CORAL_RUNNING : CORAL_BOOTLOADER), devnum: acc === 'coral-usb' ? 3 : 2 });
        usb({ port: '1-1', vendor: '046d', product: 'c31c', devnum: 2, speed: 12 });
        break;
      case 'hailo':
        write('/dev/hailo0', '');
        write('/sys/class/hailo_chardev/hailo0/device/device', '0x2864\n');
        write('/sys/class/hailo_chardev/hailo0/device/vendor', '0x1e60\n');
        break;
      case 'intel-npu':
        write('/sys/bus/pci/drivers/intel_vpu/.keep', '');
        write('/sys/devices/pci0000:00/0000:00:0b.0/vendor', '0x8086\n');
        symlink('../../../bus/pci/drivers/intel_vpu', '/sys/devices/pci0000:00/0000:00:0b.0/driver');
        symlink('../../../devices/pci0000:00/0000:00:0b.0', '/sys/class/accel/accel0/device');
        write('/dev/accel/accel0', '');
        break;
      case 'intel-gpu':
        write('/sys/bus/pci/drivers/i915/.keep', '');
        write('/sys/devices/pci0000:00/0000:00:02.0/vendor', '0x8086\n');
        symlink('../../../bus/pci/drivers/i915', '/sys/devices/pci0000:00/0000:00:02.0/driver');
        symlink('../../../devices/pci0000:00/0000:00:02.0', '/sys/class/drm/renderD128/device');
        write('/dev/dri/renderD128', '');
        break;
      case 'amdgpu':
        // A Radeon RX 6600 (8 GiB): VRAM total and used in bytes, card0 and renderD128 on one PCI device.
        write('/sys/bus/pci/drivers/amdgpu/.keep', '');
        write('/sys/devices/pci0000:00/0000:03:00.0/vendor', '0x1002\n');
        write('/sys/devices/pci0000:00/0000:03:00.0/mem_info_vram_total', '8573157376\n');
        write('/sys/devices/pci0000:00/0000:03:00.0/mem_info_vram_used', '1234567168\n');
        symlink('../../../bus/pci/drivers/amdgpu', '/sys/devices/pci0000:00/0000:03:00.0/driver');
        symlink('../../../devices/pci0000:00/0000:03:00.0', '/sys/class/drm/card0/device');
        symlink('../../../devices/pci0000:00/0000:03:00.0', '/sys/class/drm/renderD128/device');
        write('/dev/dri/renderD128', '');
        break;
      case 'virtio-gpu':
        write('/sys/bus/virtio/drivers/virtio_gpu/.keep', '');
        symlink('../../bus/virtio/drivers/virtio_gpu', '/sys/devices/virtio0/driver');
        symlink('../../../devices/virtio0', '/sys/class/drm/renderD129/device');
        break;
    }
  }

  return {
    root,
    write,
    symlink,
    setCpuTimes: (busy, idle) => write('/proc/stat', procStat(cores, busy, idle)),
    usb,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

// ---- Containers on the fake host: a stand-in for the runtime's list()/usage() ----


export interface FakeContainer {
  info: ContainerInfo;
  usage: CgroupUsage | undefined;
}

/** The part of ContainerRuntime telemetry reads, over containers a test sets up and changes. */
export class FakeContainers {
  readonly containers = new Map<string, FakeContainer>();
  /** usage() calls, per container name. */
  readonly usageCalls = new Map<string, number>();

  add(name: string, opts: { status?: ContainerInfo['status']; pid?: number; restarts?: number; usage?: Partial<CgroupUsage> | null } = {}): FakeContainer {
    const status = opts.status ?? 'running';
    const info: ContainerInfo = {
      name, image: 'busybox', imageSha256: 'a'.repeat(64), status,
      pid: status === 'running' ? opts.pid ?? 4242 : undefined,
      exitCode: status === 'exited' ? 0 : undefined, oomKilled: false,
      createdAt: 1_700_000_000_000, startedAt: 1_700_000_000_000, finishedAt: undefined,
      limits: { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 },
      args: ['sleep', '60'], restart: 'no', restarts: opts.restarts ?? 0, labels: {},
    };
    const usage = opts.usage === null ? undefined : {
      cpuSeconds: 1.5, memoryBytes: 10 * 2 ** 20, memoryPeakBytes: 12 * 2 ** 20,
      memoryLimitBytes: 128 * 2 ** 20, pids: 3, oomKills: 0, ...opts.usage,
    };
    const c = { info, usage };
    this.containers.set(name, c);
    return c;
  }

  list(opts?: { all?: boolean }): ContainerInfo[] {
    return [...this.containers.values()].map((c) => c.info).filter((i) => opts?.all === true || i.status === 'running');
  }

  usage(name: string): CgroupUsage | undefined {
    this.usageCalls.set(name, (this.usageCalls.get(name) ?? 0) + 1);
    const c = this.containers.get(name);
    return c?.info.status === 'running' ? c.usage : undefined;
  }
}
