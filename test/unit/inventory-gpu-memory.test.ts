// Accelerator memory in the inventory and in device stats: amdgpu VRAM from a fake sysfs tree,
// NVIDIA dGPUs through a fake libnvidia-ml.so.1 compiled here (test/helpers/fake-nvml.ts) and found
// under the fake host root, Jetson's unified memory, and every way NVML can fail (softly).
import t from 'tap';
import koffi from 'koffi';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HostFs } from '../../agent/devices/host-fs.js';
import { readInventory } from '../../agent/devices/inventory.js';
import { closeGpuMemory } from '../../agent/devices/gpu-memory.js';
import { findNvml } from '../../agent/devices/nvml.js';
import { DeviceStatsReader } from '../../agent/devices/stats.js';
import type { Logger } from '../../shared/logging.js';
import { buildFakeHost, type FakeHost } from '../helpers/fake-host.js';
import { buildFakeNvml, haveCc } from '../helpers/fake-nvml.js';

const GiB = 2 ** 30;
const statfs = (): { totalBytes: number; freeBytes: number } => ({ totalBytes: 64e9, freeBytes: 40e9 });
const NVML_PATH = '/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1';

function capture(): { log: Logger; warnings: Array<{ event: string; fields: Record<string, unknown> }> } {
  const warnings: Array<{ event: string; fields: Record<string, unknown> }> = [];
  const log: Logger = {
    ns: 'test', debug: () => {}, info: () => {}, error: () => {}, child: () => log,
    warn: (event, fields) => { warnings.push({ event, fields: fields ?? {} }); },
  };
  return { log, warnings };
}

/** An x86 box with two NVIDIA GPUs (minors 0 and 1 at 0000:01:00.0 and 0000:41:00.0). */
function twoGpus(t: { teardown(fn: () => void): void }): FakeHost {
  const h = buildFakeHost('x86', { accelerators: ['nvidia'] });
  t.teardown(h.cleanup);
  h.write('/dev/nvidia1', '');
  h.write('/proc/driver/nvidia/gpus/0000:41:00.0/information', 'Model: \t\t NVIDIA RTX A5000\nIRQ:   \t\t 140\nBus Location: \t 0000:41:00.0\nDevice Minor: \t 1\n');
  return h;
}

function env(t: { teardown(fn: () => void): void }, name: string, value: string): void {
  process.env[name] = value;
  t.teardown(() => { delete process.env[name]; });
}

t.test('amdgpu: VRAM total in the inventory, total and used in device stats', async (t) => {
  const h = buildFakeHost('x86', { accelerators: ['amdgpu'] });
  t.teardown(h.cleanup);
  const inv = readInventory({ deviceId: 'a', hostRoot: h.root, dataDir: '/', statfs });
  t.same(inv.accelerators, [{ kind: 'gpu', vendor: 'amd', model: 'amdgpu', device: '/dev/dri/renderD128', memoryBytes: 8_573_157_376 }]);
  const stats = new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs }).sample();
  t.same(stats.acceleratorMemory, [{ device: '/dev/dri/renderD128', memoryTotalBytes: 8_573_157_376, memoryUsedBytes: 1_234_567_168 }]);
  h.write('/sys/devices/pci0000:00/0000:03:00.0/mem_info_vram_used', '4294967296\n');
  t.equal(new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs }).sample().acceleratorMemory?.[0]?.memoryUsedBytes, 4 * GiB, 'used is read again on every sample');
});

t.test('GPUs without memory of their own: Jetson and SoC GPUs say unifiedMemory, Intel iGPU says nothing', async (t) => {
  const jetson = buildFakeHost('arm64', { accelerators: ['jetson'] });
  t.teardown(jetson.cleanup);
  const inv = readInventory({ deviceId: 'j', hostRoot: jetson.root, dataDir: '/', statfs });
  t.equal(inv.accelerators[0]?.unifiedMemory, true);
  t.equal(inv.accelerators[0]?.memoryBytes, undefined, 'not counted twice: system memory is inv.memoryBytes');
  t.same(new DeviceStatsReader({ hostRoot: jetson.root, dataDir: '/', statfs }).sample().acceleratorMemory, []);

  const pi = buildFakeHost('arm64');
  t.teardown(pi.cleanup);
  pi.write('/sys/bus/platform/drivers/v3d/.keep', '');
  pi.symlink('../../../bus/platform/drivers/v3d', '/sys/devices/platform/axi/1002000000.v3d/driver');
  pi.symlink('../../../devices/platform/axi/1002000000.v3d', '/sys/class/drm/renderD128/device');
  t.same(readInventory({ deviceId: 'p', hostRoot: pi.root, dataDir: '/', statfs }).accelerators,
    [{ kind: 'gpu', vendor: 'broadcom', model: 'v3d', device: '/dev/dri/renderD128', unifiedMemory: true }]);

  const intel = buildFakeHost('x86', { accelerators: ['intel-gpu'] });
  t.teardown(intel.cleanup);
  t.same(readInventory({ deviceId: 'i', hostRoot: intel.root, dataDir: '/', statfs }).accelerators,
    [{ kind: 'gpu', vendor: 'intel', model: 'i915', device: '/dev/dri/renderD128' }], 'no VRAM file, no claim either way');
});

t.test('NVIDIA without NVML under the host root: memory unknown, nothing logged', async (t) => {
  const h = twoGpus(t);
  const { log, warnings } = capture();
  const inv = readInventory({ deviceId: 'n', hostRoot: h.root, dataDir: '/', statfs, logger: log });
  t.same(inv.accelerators.map((a) => a.memoryBytes), [undefined, undefined]);
  t.same(new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs, logger: log }).sample().acceleratorMemory, []);
  t.same(warnings, []);
});

t.test('NVIDIA through NVML (a fake libnvidia-ml.so.1 compiled here)', { skip: haveCc() ? false : 'no C compiler' }, async (t) => {
  const h = twoGpus(t);
  buildFakeNvml(join(h.root, NVML_PATH));
  h.write('/usr/lib/x86_64-linux-gnu/libnvinfer.so.8.6.1', '');
  t.equal(findNvml(new HostFs(h.root)), join(h.root, NVML_PATH), 'found under the host root');
  const state = koffi.load(join(h.root, NVML_PATH)).func('const char *fake_nvml_state()') as () => string;
  const { log, warnings } = capture();

  const inv = readInventory({ deviceId: 'n', hostRoot: h.root, dataDir: '/', statfs, logger: log });
  t.same(inv.accelerators, [
    { kind: 'cuda', vendor: 'nvidia', model: 'NVIDIA GeForce RTX 3060', device: '/dev/nvidia0', memoryBytes: 12 * GiB },
    { kind: 'cuda', vendor: 'nvidia', model: 'NVIDIA RTX A5000', device: '/dev/nvidia1', memoryBytes: 24 * GiB },
    { kind: 'tensorrt', vendor: 'nvidia', model: 'TensorRT 8.6.1 on NVIDIA GeForce RTX 3060', device: '/dev/nvidia0' },
  ], 'each GPU by its PCI bus id; TensorRT names the same GPU and carries no memory of its own');
  t.equal(state(), '1 0 1', 'one session, held open');
  readInventory({ deviceId: 'n', hostRoot: h.root, dataDir: '/', statfs, logger: log });
  t.equal(state(), '1 0 1', 'totals are asked once per process');

  const reader = new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs, logger: log });
  t.same(reader.sample().acceleratorMemory, [
    { device: '/dev/nvidia0', memoryTotalBytes: 12 * GiB, memoryUsedBytes: GiB },
    { device: '/dev/nvidia1', memoryTotalBytes: 24 * GiB, memoryUsedBytes: 3 * GiB },
  ]);
  env(t, 'FAKE_NVML_USED_MIB', '2048');
  t.same(reader.sample().acceleratorMemory?.map((m) => m.memoryUsedBytes), [2 * GiB, 2 * GiB], 'used is asked on every sample');
  t.equal(state(), '1 0 1', 'samples reuse the session: no nvmlInit_v2 (up to a second without persistence mode) per sample');
  closeGpuMemory();
  t.equal(state(), '1 1 0', 'closed at shutdown');
  reader.sample();
  t.equal(state(), '2 1 1', 'a query after close opens a new session');
  closeGpuMemory();
  t.same(warnings, []);
  t.same(readInventory({ deviceId: 'n', hostRoot: h.root, dataDir: '/', statfs, nvml: false }).accelerators.map((a) => a.memoryBytes), [undefined, undefined, undefined], 'nvml: false skips it');
});

t.test('a single GPU whose bus id is unknown is NVML index 0 when NVML sees one GPU; a bus id NVML does not know is logged', { skip: haveCc() ? false : 'no C compiler' }, async (t) => {
  const h = buildFakeHost('x86');
  t.teardown(h.cleanup);
  h.write('/dev/nvidia0', ''); // no /proc/driver/nvidia: no bus id
  buildFakeNvml(join(h.root, NVML_PATH));
  const { log, warnings } = capture();
  // NVML sees two GPUs: index 0 would be a guess, so nothing is said.
  t.equal(readInventory({ deviceId: 'n', hostRoot: h.root, dataDir: '/', statfs, logger: log }).accelerators[0]?.memoryBytes, undefined);
  env(t, 'FAKE_NVML_GPUS', '1');
  t.same(new DeviceStatsReader({ hostRoot: h.root, dataDir: '/', statfs, logger: log }).sample().acceleratorMemory,
    [{ device: '/dev/nvidia0', memoryTotalBytes: 12 * GiB, memoryUsedBytes: GiB }], 'one GPU on each side: it is index 0');
  t.equal(readInventory({ deviceId: 'n', hostRoot: h.root, dataDir: '/', statfs, logger: log }).accelerators[0]?.memoryBytes, 12 * GiB);
  delete process.env['FAKE_NVML_GPUS'];

  const other = buildFakeHost('x86');
  t.teardown(other.cleanup);
  other.write('/dev/nvidia0', '');
  other.write('/dev/nvidia1', '');
  other.write('/proc/driver/nvidia/gpus/0000:01:00.0/information', 'Model: \t\t A\nDevice Minor: \t 0\n');
  other.write('/proc/driver/nvidia/gpus/0000:02:00.0/information', 'Model: \t\t B\nDevice Minor: \t 1\n');
  buildFakeNvml(join(other.root, NVML_PATH));
  const inv = readInventory({ deviceId: 'n', hostRoot: other.root, dataDir: '/', statfs, logger: log });
  t.same(inv.accelerators.map((a) => a.memoryBytes), [12 * GiB, undefined], 'the GPU NVML knows still gets its memory');
  t.equal(warnings.length, 1);
  t.match(warnings[0], { event: 'gpu.nvml_unavailable', fields: { error: /nvmlDeviceGetHandleByPciBusId_v2 \(0000:02:00\.0\) failed .*NVML_ERROR_NOT_FOUND: Not Found/ } });
});

t.test('NVML failing: init error, not a library, a missing symbol — memory unknown, logged once, never thrown', { skip: haveCc() ? false : 'no C compiler' }, async (t) => {
  // Init fails (driver not loaded), then recovers: the library stays loaded, the next read works.
  const a = twoGpus(t);
  buildFakeNvml(join(a.root, NVML_PATH));
  const { log, warnings } = capture();
  env(t, 'FAKE_NVML_INIT_RC', '9');
  const read = (root: string): Array<number | undefined> => readInventory({ deviceId: 'n', hostRoot: root, dataDir: '/', statfs, logger: log }).accelerators.map((x) => x.memoryBytes);
  t.same(read(a.root), [undefined, undefined]);
  t.same(new DeviceStatsReader({ hostRoot: a.root, dataDir: '/', statfs, logger: log }).sample().acceleratorMemory, []);
  t.same(read(a.root), [undefined, undefined]);
  t.equal(warnings.length, 1, 'logged once');
  t.match(warnings[0], { event: 'gpu.nvml_unavailable', fields: { library: join(a.root, NVML_PATH), error: /nvmlInit_v2 failed .*NVML_ERROR_DRIVER_NOT_LOADED: Driver Not Loaded/ } });
  delete process.env['FAKE_NVML_INIT_RC'];
  t.same(read(a.root), [12 * GiB, 24 * GiB], 'works once the driver answers');

  // A file that is not a library.
  const b = twoGpus(t);
  mkdirSync(join(b.root, '/usr/lib64'), { recursive: true });
  writeFileSync(join(b.root, '/usr/lib64/libnvidia-ml.so.1'), 'not an ELF file\n');
  warnings.length = 0;
  t.same(read(b.root), [undefined, undefined]);
  t.same(read(b.root), [undefined, undefined]);
  t.equal(warnings.length, 1);
  t.match(warnings[0]?.fields, { error: /cannot load .*libnvidia-ml\.so\.1/ });

  // A library without nvmlDeviceGetMemoryInfo.
  const c = twoGpus(t);
  buildFakeNvml(join(c.root, NVML_PATH), { withoutMemoryInfo: true });
  warnings.length = 0;
  t.same(read(c.root), [undefined, undefined]);
  t.equal(warnings.length, 1);
  t.match(warnings[0]?.fields, { error: /nvmlDeviceGetMemoryInfo/ });

  // The same library file copied elsewhere is another library: loaded and logged on its own.
  const d = twoGpus(t);
  mkdirSync(join(d.root, '/usr/local/nvidia/lib64'), { recursive: true });
  copyFileSync(join(a.root, NVML_PATH), join(d.root, '/usr/local/nvidia/lib64/libnvidia-ml.so.1'));
  t.same(read(d.root), [12 * GiB, 24 * GiB], 'found in /usr/local/nvidia/lib64 too');
});
