// The inventory's accelerators[].cdi (agent/devices/cdi/names.ts): which CDI names give each
// accelerator's node, from vendor specs and the ones the agent writes, per-device names first.
import t, { type Test } from 'tap';
import { detectAccelerators } from '../../agent/devices/accelerators.js';
import { writeAcceleratorSpecs } from '../../agent/devices/cdi/generate.js';
import { acceleratorCdiNames } from '../../agent/devices/cdi/names.js';
import { CdiRegistry } from '../../agent/devices/cdi/registry.js';
import { HostFs } from '../../agent/devices/host-fs.js';
import { readInventory } from '../../agent/devices/inventory.js';
import { configureLogging } from '../../shared/logging.js';
import { buildFakeHost, type FakeAccelerator, type FakeHost } from '../helpers/fake-host.js';

configureLogging({ level: 'silent' });
const statfs = (): { totalBytes: number; freeBytes: number } => ({ totalBytes: 1, freeBytes: 1 });

function host(t: Test, box: 'x86' | 'arm64', accelerators: FakeAccelerator[]): FakeHost {
  const h = buildFakeHost(box, { accelerators });
  t.teardown(h.cleanup);
  return h;
}

/** What `nvidia-ctk cdi generate` writes for two GPUs: index and UUID names, `all`, and common nodes. */
const NVIDIA_SPEC = JSON.stringify({
  cdiVersion: '0.6.0', kind: 'nvidia.com/gpu',
  containerEdits: { deviceNodes: [{ path: '/dev/nvidiactl' }, { path: '/dev/nvidia-uvm' }] },
  devices: [
    { name: 'all', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0' }, { path: '/dev/nvidia1' }] } },
    { name: 'GPU-8a1b2c3d', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0' }] } },
    { name: '1', containerEdits: { deviceNodes: [{ path: '/dev/nvidia1' }] } },
    { name: '0', containerEdits: { deviceNodes: [{ path: '/dev/nvidia0' }] } },
  ],
});

t.test('an x86 box: NVIDIA\'s spec for two GPUs (TensorRT on the first), a Coral the agent writes a spec for, an iGPU with none', async (t) => {
  const h = host(t, 'x86', ['nvidia', 'tensorrt', 'coral-pcie', 'intel-gpu']);
  h.write('/dev/nvidia1', '');
  h.write('/proc/driver/nvidia/gpus/0000:02:00.0/information', 'Model: \t\t NVIDIA GeForce RTX 3060\nDevice Minor: \t 1\n');
  h.write('/etc/cdi/nvidia.json', NVIDIA_SPEC);
  writeAcceleratorSpecs(detectAccelerators(new HostFs(h.root)), { root: h.root }); // what the daemon does at start
  const inv = readInventory({ deviceId: 'x', hostRoot: h.root, dataDir: '/', statfs, nvml: false, cdi: true });
  t.same(inv.accelerators.map((a) => [a.kind, a.device, a.cdi]), [
    ['cuda', '/dev/nvidia0', ['nvidia.com/gpu=0', 'nvidia.com/gpu=GPU-8a1b2c3d', 'nvidia.com/gpu=all']],
    ['cuda', '/dev/nvidia1', ['nvidia.com/gpu=1', 'nvidia.com/gpu=all']],
    ['tensorrt', '/dev/nvidia0', ['nvidia.com/gpu=0', 'nvidia.com/gpu=GPU-8a1b2c3d', 'nvidia.com/gpu=all']],
    ['edgetpu', '/dev/apex_0', ['google.com/edgetpu=apex_0']],
    ['gpu', '/dev/dri/renderD128', []],
  ], 'per-device names first, `all` (both GPUs) last; none for the iGPU');
  t.notOk('cdi' in (readInventory({ deviceId: 'x', hostRoot: h.root, dataDir: '/', statfs, nvml: false }).accelerators[0] ?? {}), 'without `cdi`: left out');
});

t.test('one GPU: `all` gives only it too, and still comes after its own name', async (t) => {
  const h = host(t, 'x86', ['nvidia']);
  h.write('/etc/cdi/nvidia.yaml', 'cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices:\n  - name: all\n    containerEdits: { deviceNodes: [{ path: /dev/nvidia0 }] }\n  - name: "0"\n    containerEdits: { deviceNodes: [{ path: /dev/nvidia0 }] }\n');
  t.same(acceleratorCdiNames(CdiRegistry.load({ root: h.root }), detectAccelerators(new HostFs(h.root))).get('/dev/nvidia0'), ['nvidia.com/gpu=0', 'nvidia.com/gpu=all']);
});

t.test('a USB Coral: the spec that bind-mounts its bus gives it; a host path, not the container path, is what counts', async (t) => {
  const h = host(t, 'arm64', ['coral-usb']);
  const accelerators = detectAccelerators(new HostFs(h.root));
  t.same(acceleratorCdiNames(CdiRegistry.load({ root: h.root }), accelerators).get('/dev/bus/usb/002/003'), [], 'before the daemon wrote its spec: none');
  writeAcceleratorSpecs(accelerators, { root: h.root });
  const inv = readInventory({ deviceId: 'x', hostRoot: h.root, dataDir: '/', statfs, nvml: false, cdi: true });
  t.same(inv.accelerators.map((a) => a.cdi), [['google.com/edgetpu=usb0']]);
  h.write('/etc/cdi/elsewhere.yaml', 'cdiVersion: 0.6.0\nkind: acme.com/usb\ndevices:\n  - name: bus2\n    containerEdits: { mounts: [{ hostPath: /srv/usb, containerPath: /dev/bus/usb/002 }] }\n');
  t.same(readInventory({ deviceId: 'x', hostRoot: h.root, dataDir: '/', statfs, nvml: false, cdi: true }).accelerators.map((a) => a.cdi), [['google.com/edgetpu=usb0']]);
});

t.test('a name two files of one directory define cannot be resolved: it is not offered; the others are', async (t) => {
  const h = host(t, 'x86', ['intel-gpu', 'hailo']);
  const spec = (kind: string, name: string, node: string): string => `cdiVersion: 0.6.0\nkind: ${kind}\ndevices:\n  - name: ${name}\n    containerEdits: { deviceNodes: [{ path: ${node} }] }\n`;
  h.write('/etc/cdi/a.yaml', spec('intel.com/gpu', 'card0', '/dev/dri/renderD128'));
  h.write('/etc/cdi/b.yaml', spec('intel.com/gpu', 'card0', '/dev/dri/renderD128'));
  h.write('/etc/cdi/hailo.yaml', spec('hailo.ai/hailo', 'h0', '/dev/hailo0'));
  const inv = readInventory({ deviceId: 'x', hostRoot: h.root, dataDir: '/', statfs, nvml: false, cdi: true });
  t.same(inv.accelerators.map((a) => [a.device, a.cdi]), [['/dev/hailo0', ['hailo.ai/hailo=h0']], ['/dev/dri/renderD128', []]]);
});
