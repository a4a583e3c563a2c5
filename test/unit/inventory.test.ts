import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ACCELERATOR_DETECTORS, detectAccelerators, type AcceleratorDetector } from '../../agent/devices/accelerators.js';
import { parseCpuinfo } from '../../agent/devices/cpuinfo.js';
import { HostFs } from '../../agent/devices/host-fs.js';
import { diskSpace, onlineCpus, readInventory } from '../../agent/devices/inventory.js';
import { DeviceStatsReader, parseProcStat } from '../../agent/devices/stats.js';
import type { Logger } from '../../shared/logging.js';
import { buildFakeHost, type FakeBox, type FakeHostOptions } from '../helpers/fake-host.js';

const statfs = (): { totalBytes: number; freeBytes: number } => ({ totalBytes: 64e9, freeBytes: 40e9 });

function host(t: { teardown(fn: () => void): void }, box: FakeBox, opts?: FakeHostOptions): ReturnType<typeof buildFakeHost> {
  const h = buildFakeHost(box, opts);
  t.teardown(h.cleanup);
  return h;
}

t.test('x86_64 box with an NVIDIA card, TensorRT and an Intel iGPU', async (t) => {
  const h = host(t, 'x86', { accelerators: ['nvidia', 'tensorrt', 'intel-gpu', 'virtio-gpu'] });
  const inv = readInventory({ deviceId: 'edge-01', hostRoot: h.root, dataDir: '/var/lib/feather', labels: { site: 'lab' }, statfs });
  t.same(inv, {
    id: 'edge-01',
    arch: 'x86_64',
    cpu: {
      model: 'Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz',
      cores: 8,
      flags: ['sse4_1', 'sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512dq', 'avx512bw', 'avx512vl', 'avx512_vnni'],
    },
    memoryBytes: 32_594_112 * 1024,
    disk: { freeBytes: 40e9 },
    kernel: '6.1.0-18-amd64',
    cgroup: 'v2',
    accelerators: [
      { kind: 'cuda', vendor: 'nvidia', model: 'NVIDIA GeForce RTX 3060', device: '/dev/nvidia0' },
      { kind: 'tensorrt', vendor: 'nvidia', model: 'TensorRT 8.6.1 on NVIDIA GeForce RTX 3060', device: '/dev/nvidia0' },
      { kind: 'gpu', vendor: 'intel', model: 'i915', device: '/dev/dri/renderD128' },
    ],
    labels: { site: 'lab' },
    runtimes: ['shim'],
  });
});

t.test('aarch64 board (Raspberry Pi 5) with a Hailo-8 and a Coral USB', async (t) => {
  const h = host(t, 'arm64', { accelerators: ['hailo', 'coral-usb'], cgroup: 'v1' });
  const inv = readInventory({ deviceId: 'pi-7', hostRoot: h.root, dataDir: '/var/lib/feather', runtimes: ['shim', 'crun'], statfs });
  t.equal(inv.arch, 'aarch64', 'from /proc/cpuinfo, whatever this test runs on');
  t.same(inv.cpu, { model: 'Cortex-A76', cores: 4, flags: ['neon', 'fp16', 'dotprod'] });
  t.equal(inv.memoryBytes, 8_245_520 * 1024);
  t.equal(inv.kernel, '6.6.31+rpt-rpi-2712');
  t.equal(inv.cgroup, 'v1');
  t.same(inv.runtimes, ['shim', 'crun']);
  t.same(inv.accelerators, [
    { kind: 'edgetpu', vendor: 'google', model: 'Coral Edge TPU (USB)', device: '/dev/bus/usb/002/003' },
    { kind: 'npu', vendor: 'hailo', model: 'Hailo-8', device: '/dev/hailo0' },
  ]);
});

t.test('USB Coral before its firmware is loaded (1a6e:089a), and after (18d1:9302, a new device number)', async (t) => {
  const h = host(t, 'arm64', { accelerators: ['coral-usb-bootloader'] });
  const coral = (): unknown => readInventory({ deviceId: 'pi', hostRoot: h.root, dataDir: '/', statfs }).accelerators;
  t.same(coral(), [{ kind: 'edgetpu', vendor: 'google', model: 'Coral Edge TPU (USB)', device: '/dev/bus/usb/002/002' }]);
  h.usb({ port: '2-1', vendor: '18d1', product: '9302', devnum: 3 });
  t.same(coral(), [{ kind: 'edgetpu', vendor: 'google', model: 'Coral Edge TPU (USB)', device: '/dev/bus/usb/002/003' }]);
  t.notOk(new HostFs(h.root).exists('/dev/bus/usb/002/002'), 'the old node is gone');
});

t.test('Jetson: CUDA from nv_tegra_release, the board from the device tree, TensorRT beside it, unified memory', async (t) => {
  const h = host(t, 'arm64', { accelerators: ['jetson', 'tensorrt'] });
  const inv = readInventory({ deviceId: 'j', hostRoot: h.root, dataDir: '/', statfs });
  t.same(inv.accelerators, [
    { kind: 'cuda', vendor: 'nvidia', model: 'NVIDIA Jetson Orin Nano Developer Kit', device: '/dev/nvgpu/igpu0/ctrl', unifiedMemory: true },
    { kind: 'tensorrt', vendor: 'nvidia', model: 'TensorRT 8.6.2 on NVIDIA Jetson Orin Nano Developer Kit', device: '/dev/nvgpu/igpu0/ctrl' },
  ]);
});

t.test('Coral PCIe and an Intel NPU through /sys/class/accel', async (t) => {
  const h = host(t, 'x86', { accelerators: ['coral-pcie', 'intel-npu'] });
  const inv = readInventory({ deviceId: 'x', hostRoot: h.root, dataDir: '/', statfs });
  t.same(inv.accelerators, [
    { kind: 'edgetpu', vendor: 'google', model: 'Coral Edge TPU (PCIe)', device: '/dev/apex_0' },
    { kind: 'npu', vendor: 'intel', model: 'intel_vpu', device: '/dev/accel/accel0' },
  ]);
});

t.test('TensorRT libraries without a CUDA device are not an accelerator', async (t) => {
  const h = host(t, 'x86', { accelerators: ['tensorrt'] });
  t.same(readInventory({ deviceId: 'x', hostRoot: h.root, dataDir: '/', statfs }).accelerators, []);
});

t.test('riscv64 board: RVV from the ISA string, model from uarch', async (t) => {
  const h = host(t, 'riscv64');
  const inv = readInventory({ deviceId: 'r', hostRoot: h.root, dataDir: '/', statfs });
  t.equal(inv.arch, 'riscv64');
  t.same(inv.cpu, { model: 'spacemit,x60', cores: 4, flags: ['rvv', 'zfh', 'zvfh'] });
});

t.test('a failing detector is skipped, the others still report', async (t) => {
  const h = host(t, 'x86', { accelerators: ['coral-pcie'] });
  const broken: AcceleratorDetector = { name: 'broken', detect: () => { throw new Error('boom'); } };
  const warnings: string[] = [];
  const log: Logger = {
    ns: 'test', debug: () => {}, info: () => {}, error: () => {}, child: () => log,
    warn: (e: string) => { warnings.push(e); },
  };
  const found = detectAccelerators(new HostFs(h.root), [broken, ...ACCELERATOR_DETECTORS], log);
  t.same(found.map((a) => a.kind), ['edgetpu']);
  t.same(warnings, ['inventory.detector_failed']);
});

t.test('an empty root still gives an inventory (nothing is guessed)', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-empty-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const inv = readInventory({ deviceId: 'e', hostRoot: root, dataDir: '/', statfs, arch: 'aarch64' });
  t.same([inv.arch, inv.cpu.cores, inv.memoryBytes, inv.kernel, inv.cgroup, inv.accelerators], ['aarch64', 0, 0, 'unknown', 'v1', []]);
});

t.test('the real host: arch from process.arch, sane numbers, statfs of a real dir', async (t) => {
  const inv = readInventory({ deviceId: 'real', dataDir: tmpdir() });
  const expected = { x64: 'x86_64', arm64: 'aarch64', riscv64: 'riscv64' }[process.arch as 'x64'];
  t.equal(inv.arch, expected);
  t.ok(inv.cpu.cores >= 1);
  t.ok(inv.memoryBytes > 0);
  t.ok(inv.disk.freeBytes > 0);
  const d = diskSpace(join(tmpdir(), 'does', 'not', 'exist', 'yet'));
  t.ok(d.totalBytes >= d.freeBytes && d.freeBytes > 0, 'nearest existing parent');
});

t.test('cpuinfo edge cases', async (t) => {
  // big.LITTLE: both core types, in order
  const bl = ['0xd05', '0xd05', '0xd0b'].map((part, i) => `processor\t: ${i}\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: ${part}\n`).join('\n');
  t.equal(parseCpuinfo(bl).model, 'Cortex-A55 + Cortex-A76');
  t.equal(parseCpuinfo(bl).arch, 'aarch64');
  // 32-bit kernel: neon, no asimd, not aarch64
  const v7 = 'processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU part\t: 0xd08\n';
  t.same([parseCpuinfo(v7).arch, parseCpuinfo(v7).flags, parseCpuinfo(v7).model], [undefined, ['neon'], 'ARMv7 Processor rev 3 (v7l)']);
  t.same(parseCpuinfo(''), { model: 'unknown', cores: 0, flags: [], arch: undefined });
  const h = host(t, 'x86');
  h.write('/sys/devices/system/cpu/online', '0-3,6,8-9\n');
  t.equal(onlineCpus(new HostFs(h.root)), 7);
});

t.test('device stats: CPU % from /proc/stat deltas, memory, disk, temperatures, uptime', async (t) => {
  const h = host(t, 'x86');
  const reader = new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs });
  const first = reader.sample();
  t.equal(first.cpuPercent, 0, 'no base yet');
  h.setCpuTimes(1000 + 250, 9000 + 750); // 250 busy of 1000 jiffies
  const s = reader.sample();
  t.equal(s.cpuPercent, 25);
  t.equal(s.cpuCores, 8);
  t.equal(s.load1, 0.52);
  t.equal(s.memoryTotalBytes, 32_594_112 * 1024);
  t.equal(s.memoryAvailableBytes, Math.round(32_594_112 / 2) * 1024);
  t.same([s.diskTotalBytes, s.diskFreeBytes], [64e9, 40e9]);
  t.equal(s.uptimeS, 350735.47);
  t.same(s.temperatures, [
    { sensor: 'thermal:acpitz', celsius: 27.8 },
    { sensor: 'thermal:x86_pkg_temp', celsius: 52 },
    { sensor: 'hwmon:acpitz/temp1', celsius: 27.8 },
    { sensor: 'hwmon:coretemp/Package id 0', celsius: 52 },
    { sensor: 'hwmon:coretemp/Core 0', celsius: 49 },
    { sensor: 'hwmon:coretemp/Core 8', celsius: 48 },
  ]);
});

t.test('device stats on the arm board: absurd sensors dropped, duplicate names numbered, a cap', async (t) => {
  const h = host(t, 'arm64', { noHwmon: true });
  h.write('/sys/class/thermal/thermal_zone2/type', 'cpu-thermal\n');
  h.write('/sys/class/thermal/thermal_zone2/temp', '60000\n');
  const s = new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs }).sample();
  t.same(s.temperatures, [
    { sensor: 'thermal:cpu-thermal', celsius: 61.45 },
    { sensor: 'thermal:cpu-thermal#2', celsius: 60 },
  ]);
  const capped = new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs, maxSensors: 1 }).sample();
  t.equal(capped.temperatures.length, 1);
});

t.test('/proc/stat parsing; a counter going backwards reads as 0 %, never negative', async (t) => {
  const p = parseProcStat('cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\n');
  t.same(p, { times: { busy: 200, total: 1000 }, cores: 1 });
  const h = host(t, 'x86');
  const reader = new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs });
  reader.sample();
  h.setCpuTimes(10, 10);
  t.equal(reader.sample().cpuPercent, 0);
});
