// Which accelerator device each replica gets (controller/scheduler/assign.ts, docs/scheduling.md
// "Which device a replica gets"): desiredFor puts the CDI names the inventory gives each device in
// the workloads, holders get distinct devices that stay theirs across re-plans, sharers every
// device no holder has; a pool the inventory names nowhere cannot be held.
import t from 'tap';
import type { DeviceView, Placement } from '../../controller/model/types.js';
import { assignDevices, desiredFor, plan, poolDevices, schedule, type DeploymentInput, type DesiredSet } from '../../controller/scheduler/index.js';
import { poolCapacity } from '../../controller/scheduler/accelerators.js';
import { validateDesired } from '../../shared/protocol/desired.js';
import type { Accelerator, Inventory } from '../../shared/protocol/inventory.js';
import { GiB, NOW, spec } from '../helpers/scheduler-fixture.js';

/** A PCIe Coral; `cdi`: its names (default its generated one), or 'unsaid' (an agent older than the field). */
const tpu = (n: number, cdi: string[] | 'unsaid' = [`google.com/edgetpu=apex_${n}`]): Accelerator => ({
  kind: 'edgetpu', vendor: 'google', model: 'Coral Edge TPU (PCIe)', device: `/dev/apex_${n}`, ...(cdi !== 'unsaid' ? { cdi } : {}),
});
/** A dGPU with CUDA and TensorRT, as the agent reports it with NVIDIA's generated spec (index names, then all). */
const nvidia = (n: number, of: number): Accelerator[] => {
  const cdi = [`nvidia.com/gpu=${n}`, `nvidia.com/gpu=GPU-${n}aa`, ...(of === 1 ? ['nvidia.com/gpu=all'] : [])];
  return [
    { kind: 'cuda', vendor: 'nvidia', model: 'RTX A2000', device: `/dev/nvidia${n}`, cdi },
    { kind: 'tensorrt', vendor: 'nvidia', model: 'TensorRT 10', device: `/dev/nvidia${n}`, cdi },
  ];
};

function board(id: string, accelerators: Accelerator[], o: { arch?: 'x86_64' | 'aarch64'; cores?: number } = {}): DeviceView {
  const arch = o.arch ?? 'x86_64';
  const inventory: Inventory = {
    id, arch, cpu: { model: 'test cpu', cores: o.cores ?? 16, flags: [] }, memoryBytes: 16 * GiB, disk: { freeBytes: 1e10 },
    kernel: '6.1', cgroup: 'v2', accelerators, labels: {}, runtimes: ['shim'],
  };
  return { id, online: true, lastSeen: NOW, inventory, labels: {}, boardClass: `${arch}/${accelerators.map((a) => a.kind).join('+')}` };
}

const deployments = (...specs: ReturnType<typeof spec>[]): DeploymentInput[] => specs.map((s) => ({ spec: s, revision: 1 }));

/** The whole controller step for one board: desiredFor with its inventory and what it had before. */
function desired(b: DeviceView, placements: readonly Placement[], deps: DeploymentInput[], previous?: DesiredSet): DesiredSet {
  const set = desiredFor(b.id, placements, deps, { accelerators: b.inventory?.accelerators, previous: previous?.workloads });
  validateDesired(JSON.parse(JSON.stringify({ generation: 1, workloads: set.workloads, images: set.images })) as unknown); // the agent takes what is published
  return set;
}
const devicesOf = (set: DesiredSet): Record<string, string[] | undefined> => Object.fromEntries(set.workloads.map((w) => [w.name, w.devices]));

t.test('the pool\'s devices: one per node, cuda and tensorrt on one GPU are one device, by node path', async (t) => {
  const accs = [...nvidia(1, 2), ...nvidia(0, 2), tpu(10), tpu(2)];
  t.same(poolDevices(accs, 0).map((d) => d.device), ['/dev/nvidia0', '/dev/nvidia1'], 'cuda and tensorrt entries of a GPU: one device');
  t.same(poolDevices(accs, 0).map((d) => d.device).length, poolCapacity(accs)[0], 'the scheduler counts the same devices');
  t.same(poolDevices(accs, 1).map((d) => d.device), ['/dev/apex_2', '/dev/apex_10'], 'natural order of nodes');
  t.same(poolDevices(accs, 0)[0]?.cdi, ['nvidia.com/gpu=0', 'nvidia.com/gpu=GPU-0aa']);
  t.same(poolDevices([tpu(0, 'unsaid')], 1)[0], { device: '/dev/apex_0', cdi: undefined, holdable: true }, 'an agent that does not say: taken at its word');
  t.same(poolDevices([tpu(0, [])], 1)[0], { device: '/dev/apex_0', cdi: [], holdable: false }, 'no CDI name: cannot be held');
});

t.test('a single Edge TPU board: the replica gets the TPU\'s CDI name', async (t) => {
  const b = board('coral-1', [tpu(0)]);
  const r = schedule({ devices: [b], deployments: deployments(spec({ accelerators: ['edgetpu'] })), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  const set = desired(b, r.placements, deployments(spec({ accelerators: ['edgetpu'] })));
  t.same(devicesOf(set), { 'det-0': ['google.com/edgetpu=apex_0'] });
  t.equal(set.notes, undefined, 'nothing to say');
  t.same(desiredFor(b.id, r.placements, deployments(spec({ accelerators: ['edgetpu'] }))).workloads[0]?.devices, undefined, 'without the inventory: no devices, as before');
  t.same(desiredFor(b.id, r.placements, deployments(spec({ accelerators: ['edgetpu'] })), { accelerators: b.inventory?.accelerators, devices: () => ['vendor.com/x=1'] }).workloads[0]?.devices,
    ['vendor.com/x=1'], 'opts.devices overrides the assignment');
});

t.test('a dual Edge TPU board: two holders, two TPUs, stable across re-publishes and re-plans', async (t) => {
  const b = board('coral-2', [tpu(0), tpu(1)]);
  const deps = deployments(spec({ accelerators: ['edgetpu'], replicas: 2 }));
  const r1 = plan({ devices: [b], deployments: deps, placements: [], measurements: [], rollouts: [], now: NOW, graceMs: 60_000 });
  t.same(r1.placements.map((p) => `${p.container}@${p.deviceId}`), ['det-0@coral-2', 'det-1@coral-2']);
  const first = desired(b, r1.placements, deps);
  t.same(devicesOf(first), { 'det-0': ['google.com/edgetpu=apex_0'], 'det-1': ['google.com/edgetpu=apex_1'] }, 'replica order, node order');

  const again = desired(b, r1.placements, deps, first);
  t.same(again, first, 're-publish: the same set');
  const r2 = plan({ devices: [b], deployments: deps, placements: r1.placements, measurements: [], rollouts: r1.rollouts, now: NOW + 1000, graceMs: 60_000 });
  t.same(r2.placements, r1.placements, 're-plan: nothing moves');
  t.same(desired(b, r2.placements, deps, first), first, 're-plan: the same devices');

  // The order placements come in changes nothing.
  t.same(devicesOf(desired(b, [...r1.placements].reverse(), deps, first)), devicesOf(first));

  // What the board had decides, not the order: a board given det-1 apex_0 keeps it so.
  const swapped: DesiredSet = { ...first, workloads: first.workloads.map((w) => ({ ...w, devices: [w.name === 'det-0' ? 'google.com/edgetpu=apex_1' : 'google.com/edgetpu=apex_0'] })) };
  t.same(devicesOf(desired(b, r1.placements, deps, swapped)), { 'det-0': ['google.com/edgetpu=apex_1'], 'det-1': ['google.com/edgetpu=apex_0'] }, 'replicas that stay keep their TPU');

  // An older plan gave both the same TPU: the first (deployment, replica) keeps it, the other gets the free one.
  const clash: DesiredSet = { ...first, workloads: first.workloads.map((w) => ({ ...w, devices: ['google.com/edgetpu=apex_1'] })) };
  t.same(devicesOf(desired(b, r1.placements, deps, clash)), { 'det-0': ['google.com/edgetpu=apex_1'], 'det-1': ['google.com/edgetpu=apex_0'] });
});

t.test('a holder that moves frees its TPU: the one that stays keeps its own, a newcomer takes the freed one', async (t) => {
  const b = board('coral-2', [tpu(0), tpu(1)]);
  const other = board('coral-1', [tpu(0)]);
  const deps = deployments(spec({ accelerators: ['edgetpu'], replicas: 2 }));
  const at = (replica: number, deviceId: string, o: Partial<Placement> = {}): Placement => ({
    deployment: 'det', revision: 1, replica, deviceId, accelerator: 'edgetpu', precision: 'int8', container: `det-${replica}`, arch: 'x86_64', ...o,
  });
  const before = desired(b, [at(0, b.id), at(1, b.id)], deps);
  t.same(devicesOf(before), { 'det-0': ['google.com/edgetpu=apex_0'], 'det-1': ['google.com/edgetpu=apex_1'] });

  // det-0 fails on coral-2 and moves to coral-1 (a `failing` move); det-1 stays.
  const after = desired(b, [at(1, b.id)], deps, before);
  t.same(devicesOf(after), { 'det-1': ['google.com/edgetpu=apex_1'] }, 'det-1 keeps apex_1: its container is not replaced');
  t.same(devicesOf(desired(other, [at(0, other.id)], deps)), { 'det-0': ['google.com/edgetpu=apex_0'] }, 'det-0 gets coral-1\'s TPU');
  t.same(devicesOf(desired(b, [at(1, b.id)], deps)), { 'det-1': ['google.com/edgetpu=apex_0'] }, '(without what the board had, it would have moved to apex_0)');

  // A replica of another deployment lands on coral-2: it gets the freed TPU, det-1 still keeps its own.
  const deps2 = deployments(spec({ accelerators: ['edgetpu'], replicas: 2 }), spec({ name: 'a-new', accelerators: ['edgetpu'] }));
  const placed = schedule({ devices: [b, other], deployments: deps2, placements: [at(0, other.id), at(1, b.id)], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(placed.placements.map((p) => `${p.container}@${p.deviceId}`).sort(), ['a-new-0@coral-2', 'det-0@coral-1', 'det-1@coral-2']);
  t.same(devicesOf(desired(b, placed.placements, deps2, after)), { 'a-new-0': ['google.com/edgetpu=apex_0'], 'det-1': ['google.com/edgetpu=apex_1'] },
    'a-new sorts before det, but det-1 had apex_1 and keeps it');
});

t.test('GPUs: sharers get every GPU no holder has, by its per-device name; cuda and tensorrt on one GPU are one device', async (t) => {
  const box = board('gpu-2', [...nvidia(0, 2), ...nvidia(1, 2)]);
  const shared = spec({ name: 'shared', replicas: 3, accelerators: ['cuda'] });
  const r = schedule({ devices: [box], deployments: deployments(shared), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.equal(r.placements.length, 3, 'three sharers');
  const set = desired(box, r.placements, deployments(shared));
  for (const w of set.workloads) t.same(w.devices, ['nvidia.com/gpu=0', 'nvidia.com/gpu=1'], `${w.name} shares both GPUs, by index names`);

  // One replica holds a GPU (cuda: 1), another holds one through TensorRT (tensorrt: 1): the same pool.
  const own = spec({ name: 'own', accelerators: ['cuda'], resources: { memory: '1Gi', cpus: 1, accelerators: { cuda: 1 } } });
  const trt = spec({ name: 'trt', accelerators: ['tensorrt'], resources: { memory: '1Gi', cpus: 1, accelerators: { tensorrt: 1 } } });
  const deps = deployments(own, shared, trt);
  const r2 = schedule({ devices: [box], deployments: deps, placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(r2.placements.map((p) => p.container).sort(), ['own-0', 'shared-0', 'shared-1', 'shared-2'],
    'own holds one GPU, the sharers keep the other; trt would take the sharers\' last GPU: unschedulable');
  const set2 = desired(box, r2.placements, deps);
  t.same(devicesOf(set2), {
    'own-0': ['nvidia.com/gpu=0'], 'shared-0': ['nvidia.com/gpu=1'], 'shared-1': ['nvidia.com/gpu=1'], 'shared-2': ['nvidia.com/gpu=1'],
  }, 'the held GPU is given to no sharer');

  // Without sharers, a CUDA holder and a TensorRT holder take the two GPUs: never the same node twice.
  const r3 = schedule({ devices: [box], deployments: deployments(own, trt), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(devicesOf(desired(box, r3.placements, deployments(own, trt))), { 'own-0': ['nvidia.com/gpu=0'], 'trt-0': ['nvidia.com/gpu=1'] });

  // A Jetson: cuda and tensorrt name one GPU, whose only name is nvidia.com/gpu=all.
  const node = '/dev/nvgpu/igpu0/ctrl';
  const jetson = board('jetson', [
    { kind: 'cuda', vendor: 'nvidia', model: 'Orin', device: node, unifiedMemory: true, cdi: ['nvidia.com/gpu=all'] },
    { kind: 'tensorrt', vendor: 'nvidia', model: 'TensorRT 10', device: node, cdi: ['nvidia.com/gpu=all'] },
  ], { arch: 'aarch64' });
  const both = deployments(spec({ name: 'a', accelerators: ['tensorrt'], resources: { memory: '1Gi', cpus: 1, accelerators: { tensorrt: 1 } } }),
    spec({ name: 'b', accelerators: ['cuda'], resources: { memory: '1Gi', cpus: 1, accelerators: { cuda: 1 } } }));
  const rj = schedule({ devices: [jetson], deployments: both, placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(rj.placements.map((p) => `${p.container}:${p.accelerator}`), ['a-0:tensorrt'], 'one GPU: the CUDA holder finds it held by the TensorRT one');
  t.same(devicesOf(desired(jetson, rj.placements, both)), { 'a-0': ['nvidia.com/gpu=all'] });
});

t.test('a per-device name is preferred over one every device has, whatever the order', async (t) => {
  const accs: Accelerator[] = [0, 1].map((n) => ({ kind: 'cuda', vendor: 'nvidia', model: 'x', device: `/dev/nvidia${n}`, cdi: ['nvidia.com/gpu=all', `nvidia.com/gpu=${n}`] }));
  const a = assignDevices(accs, [{ container: 'x-0', deployment: 'x', replica: 0, accelerator: 'cuda', need: 0 }]);
  t.same(a.names.get('x-0'), ['nvidia.com/gpu=0', 'nvidia.com/gpu=1']);
  t.same(a.nodes.get('x-0'), ['/dev/nvidia0', '/dev/nvidia1']);
});

t.test('no CDI name for a TPU: holders do not go there, sharers do and are told; an agent that does not say is believed', async (t) => {
  const nameless = board('coral-x', [tpu(0, [])]);
  const named = board('coral-y', [tpu(0)]);
  const only = spec({ accelerators: ['edgetpu'], replicas: 2 });
  const r = schedule({ devices: [named, nameless], deployments: deployments(only), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(r.placements.map((p) => p.deviceId), ['coral-y'], 'the TPU without a name cannot be held');
  t.same(r.status[0]?.unschedulable.reasons, [
    { reason: 'no edgetpu device with a CDI name (a replica holds 1 edgetpu; the board\'s CDI specs give none)', devices: 1 },
    { reason: 'no free edgetpu device (a replica holds 1 edgetpu)', devices: 1 },
  ]);

  const fallback = spec({ accelerators: ['edgetpu', 'cpu'] });
  const rf = schedule({ devices: [nameless], deployments: deployments(fallback), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(rf.placements.map((p) => `${p.deviceId}:${p.accelerator}`), ['coral-x:cpu'], 'with the CPU on the list it runs on the CPU');
  t.same(devicesOf(desired(nameless, rf.placements, deployments(fallback))), { 'det-0': undefined }, 'no devices on the CPU');

  // A kept holder whose board stops naming its TPU is re-chosen there, as if the TPU were gone.
  const kept: Placement = { deployment: 'det', revision: 1, replica: 0, deviceId: 'coral-x', accelerator: 'edgetpu', precision: 'int8', container: 'det-0', arch: 'x86_64' };
  const rk = schedule({ devices: [nameless], deployments: deployments(fallback), placements: [kept], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(rk.placements.map((p) => `${p.deviceId}:${p.accelerator}/${p.precision}`), ['coral-x:cpu/fp32']);
  t.same(rk.affectedDevices, ['coral-x']);
  const rm = schedule({ devices: [nameless, named], deployments: deployments(spec({ accelerators: ['edgetpu'] })), placements: [kept], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(rm.placements.map((p) => p.deviceId), ['coral-y'], 'without the CPU on the list it moves to a TPU that has a name');

  // A sharer (edgetpu: 0) goes there: it runs without the TPU, and the note says why.
  const sharer = spec({ accelerators: ['edgetpu'], resources: { memory: '1Gi', cpus: 1, accelerators: 0 } });
  const rs = schedule({ devices: [nameless], deployments: deployments(sharer), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.equal(rs.placements.length, 1);
  const set = desired(nameless, rs.placements, deployments(sharer));
  t.same(devicesOf(set), { 'det-0': undefined });
  t.same(set.notes, [{ container: 'det-0', accelerator: 'edgetpu', message: 'edgetpu device /dev/apex_0 has no CDI name (no CDI spec on the board gives its node); the container does not get it' }]);

  // An agent older than accelerators[].cdi: placed as before, without devices, with a note.
  const old = board('coral-old', [tpu(0, 'unsaid')]);
  const ro = schedule({ devices: [old], deployments: deployments(spec({ accelerators: ['edgetpu'] })), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.equal(ro.placements.length, 1, 'held');
  const oset = desired(old, ro.placements, deployments(spec({ accelerators: ['edgetpu'] })));
  t.same(devicesOf(oset), { 'det-0': undefined });
  t.match(oset.notes, [{ container: 'det-0', message: /does not list CDI names \(an agent older than accelerators\[\]\.cdi\)/ }]);
});

t.test('a dual board with one TPU named: one holder, the count says why', async (t) => {
  const half = board('coral-h', [tpu(0), tpu(1, [])]);
  const r = schedule({ devices: [half], deployments: deployments(spec({ accelerators: ['edgetpu'], replicas: 2 })), placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.equal(r.placements.length, 1);
  t.same(devicesOf(desired(half, r.placements, deployments(spec({ accelerators: ['edgetpu'], replicas: 2 })))), { 'det-0': ['google.com/edgetpu=apex_0'] });
  // Two kept holders from before: the second no longer fits, and says so.
  const at = (replica: number): Placement => ({ deployment: 'det', revision: 1, replica, deviceId: 'coral-h', accelerator: 'edgetpu', precision: 'int8', container: `det-${replica}`, arch: 'x86_64' });
  const rk = schedule({ devices: [half], deployments: deployments(spec({ accelerators: ['edgetpu'], replicas: 2 })), placements: [at(0), at(1)], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(rk.moves.map((m) => [m.replica, m.reason, m.detail]), [[1, 'device-unfit', 'no longer fits: needs 1 edgetpu device, 1 of 2 held, 0 replicas sharing, 1 without a CDI name; no other device fits']]);
  // Given both anyway (a plan made elsewhere), the second holder runs without a TPU and is told.
  const forced = assignDevices(half.inventory?.accelerators ?? [], [0, 1].map((replica) => ({ container: `det-${replica}`, deployment: 'det', replica, accelerator: 'edgetpu' as const, need: 1 })));
  t.same(forced.names.get('det-0'), ['google.com/edgetpu=apex_0']);
  t.equal(forced.names.get('det-1'), undefined);
  t.same(forced.notes, [{ container: 'det-1', accelerator: 'edgetpu', message: 'holds 1 edgetpu device, but only 0 are left for it on the board (2 in its inventory, 1 without a CDI name); it runs with 0' }]);
});
