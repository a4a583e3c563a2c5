// schedule(): accelerator devices as a consumable resource (docs/scheduling.md, "Accelerator devices").
import t from 'tap';
import type { DeploymentDetail } from '../../controller/api/views.js';
import { describeDeployment } from '../../controller/cli/render.js';
import { validateDeployment, DeploymentSpecError } from '../../controller/deployments/spec.js';
import type { DeviceView, Placement } from '../../controller/model/types.js';
import { poolCapacity } from '../../controller/scheduler/accelerators.js';
import { plan, schedule, type DeploymentInput, type ReplicaHealth } from '../../controller/scheduler/index.js';
import { makeDeployments, makeMeasurements, scoreAll } from '../../bench/scheduler.js';

import { NOW, dev, run, spec, where } from '../helpers/scheduler-fixture.js';

/** A single Edge TPU board and a dual one (say a USB stick and a dual M.2 card), both x86 with room for many replicas. */
const corals = (): DeviceView[] => [
  dev('coral-1', { accels: ['edgetpu'], memGi: 16, cores: 16 }),
  dev('coral-2', { accels: ['edgetpu', 'edgetpu'], memGi: 16, cores: 16 }),
];
const tpuOnly = (o: Record<string, unknown> = {}): ReturnType<typeof spec> => spec({ accelerators: ['edgetpu'], ...o });
const at = (deviceId: string, replica: number, o: Partial<Placement> = {}): Placement => ({
  deployment: 'det', revision: 1, replica, deviceId, accelerator: 'edgetpu', precision: 'int8', container: `det-${replica}`, arch: 'x86_64', ...o,
});

t.test('capacity: distinct device nodes per pool; TensorRT counts against the CUDA GPU it runs on', async (t) => {
  t.same(poolCapacity([]), [0, 0, 0, 0]);
  t.same(poolCapacity([{ kind: 'edgetpu', device: '/dev/apex_0' }, { kind: 'edgetpu', device: '/dev/apex_1' }]), [0, 2, 0, 0]);
  t.same(poolCapacity([{ kind: 'cuda', device: '/dev/nvhost-ctrl-gpu' }, { kind: 'tensorrt', device: '/dev/nvhost-ctrl-gpu' }]), [1, 0, 0, 0], 'a Jetson: one GPU');
  t.same(poolCapacity([{ kind: 'cuda', device: '/dev/nvidia0' }, { kind: 'cuda', device: '/dev/nvidia1' }, { kind: 'tensorrt', device: '/dev/nvidia0' }, { kind: 'npu', device: '/dev/hailo0' }, { kind: 'gpu', device: '/dev/dri/renderD128' }]), [2, 0, 1, 1]);
});

t.test('two Coral replicas on a single-TPU and a dual-TPU board land one per TPU', async (t) => {
  const two = run(corals(), [tpuOnly({ replicas: 2 })]);
  t.same(where(two), ['coral-1', 'coral-2'], 'spread: one on each board');
  t.same(two.placements.map((p) => `${p.accelerator}/${p.precision}`), ['edgetpu/int8', 'edgetpu/int8']);
  t.equal(two.status[0]?.unschedulable.replicas, 0);

  const packed = run(corals(), [tpuOnly({ replicas: 2, strategy: 'binpack' })]);
  t.same(where(packed), ['coral-1', 'coral-2'], 'binpack cannot stack them: coral-1 has one TPU, the second replica takes one of coral-2');

  const three = run(corals(), [tpuOnly({ replicas: 3 })]);
  t.same(where(three), ['coral-1', 'coral-2', 'coral-2'], 'the dual board takes two, one per TPU');
});

t.test('an exclusive replica beyond capacity stays unschedulable, with the reason', async (t) => {
  const r = run(corals(), [tpuOnly({ replicas: 4 })]);
  t.same(where(r), ['coral-1', 'coral-2', 'coral-2'], 'three TPUs, three replicas');
  const st = r.status[0];
  t.equal(st?.phase, 'Degraded');
  t.same(st?.unschedulable, { replicas: 1, reasons: [{ reason: 'no free edgetpu device (a replica holds 1 edgetpu)', devices: 2 }] });
  t.same(st?.replicas[3], { replica: 3, state: 'unschedulable', reason: '0 of 2 devices fit (2 no free edgetpu device (a replica holds 1 edgetpu))', restarts: 0 });
  t.match(st?.message, /1 unschedulable: 0 of 2 devices fit \(2 no free edgetpu device/);

  // Another deployment's replicas hold TPUs too: the later name goes without.
  const other = tpuOnly({ name: 'a-first', replicas: 2 });
  const both = run(corals(), [other, tpuOnly({ replicas: 2 })]);
  t.same(where(both, 'a-first'), ['coral-1', 'coral-2']);
  t.same(where(both), ['coral-2'], 'one TPU left for det');
  t.equal(both.status.find((s) => s.name === 'det')?.unschedulable.replicas, 1);

  // With the CPU on the list, the fourth replica runs on a board's CPU instead.
  const fallback = run(corals(), [tpuOnly({ replicas: 4, accelerators: ['edgetpu', 'cpu'] })]);
  t.same(fallback.placements.map((p) => `${p.deviceId}:${p.accelerator}`), ['coral-1:edgetpu', 'coral-2:edgetpu', 'coral-2:edgetpu', 'coral-1:cpu'],
    'a board whose TPUs are held is a board without a TPU');
  t.equal(fallback.status[0]?.unschedulable.replicas, 0);
});

t.test('NPUs are exclusive too; resources.accelerators 0 shares a TPU or NPU', async (t) => {
  const npu = [dev('hailo', { accels: ['npu'], memGi: 16, cores: 16 })];
  t.equal(run(npu, [spec({ accelerators: ['npu'], replicas: 2 })]).placements.length, 1);
  t.equal(run(npu, [spec({ accelerators: ['npu'], replicas: 3, resources: { memory: '1Gi', cpus: 1, accelerators: 0 } })]).placements.length, 3);
  const shared = run(corals(), [tpuOnly({ replicas: 5, resources: { memory: '1Gi', cpus: 1, accelerators: { edgetpu: 0 } } })]);
  t.equal(shared.placements.length, 5, 'the deployment says its runtime shares the TPU');
  const two = run(corals(), [tpuOnly({ replicas: 2, resources: { memory: '1Gi', cpus: 1, accelerators: { edgetpu: 2 } } })]);
  t.same(where(two), ['coral-2'], 'a replica that needs two TPUs fits only the dual board, once');
  t.same(two.status[0]?.unschedulable.reasons, [{ reason: 'no free edgetpu device (a replica holds 2 edgetpu)', devices: 2 }]);
});

t.test('GPUs are shared by default: not limited by their count', async (t) => {
  const jetson = dev('jetson', { arch: 'aarch64', accels: ['cuda', 'tensorrt'], memGi: 32, cores: 12 });
  const r = run([jetson], [spec({ replicas: 8, accelerators: ['tensorrt', 'cuda'] })]);
  t.equal(r.placements.length, 8, 'eight replicas time-slice the one GPU');
  t.ok(r.placements.every((p) => p.accelerator === 'tensorrt'));
  const igpu = dev('nuc', { accels: ['gpu'], memGi: 32, cores: 12 });
  t.equal(run([igpu], [spec({ replicas: 6, accelerators: ['gpu'], model: { name: 'yolo', variants: [{ accelerator: 'gpu', precision: 'fp16', url: 'https://m.example/g.onnx', sha256: 'c'.repeat(64) }] } })]).placements.length, 6);
});

t.test('a GPU asked for exclusively: one replica per GPU, and sharers keep one free', async (t) => {
  const boxes = [
    dev('a-jetson', { arch: 'aarch64', accels: ['cuda', 'tensorrt'], memGi: 32, cores: 12 }),
    dev('b-rtx2', { accels: ['cuda', 'cuda'], memGi: 64, cores: 32 }),
  ];
  const own = (o: Record<string, unknown>): ReturnType<typeof spec> => spec({ accelerators: ['tensorrt', 'cuda'], resources: { memory: '1Gi', cpus: 1, accelerators: { tensorrt: 1, cuda: 1 } }, ...o });
  const r = run(boxes, [own({ replicas: 4 })]);
  t.same(r.placements.map((p) => `${p.deviceId}:${p.accelerator}`), ['a-jetson:tensorrt', 'b-rtx2:cuda', 'b-rtx2:cuda'],
    'TensorRT and CUDA on the Jetson are one GPU; the RTX box has two');
  t.equal(r.status[0]?.unschedulable.replicas, 1);
  t.same(r.status[0]?.unschedulable.reasons, [
    { reason: 'no free cuda device (a replica holds 1 cuda)', devices: 1 },
    { reason: 'no free tensorrt or cuda device (a replica holds 1 tensorrt, 1 cuda)', devices: 1 },
  ], 'each device names the kinds it has');

  // A sharer on the Jetson first: an exclusive replica may not take the GPU it uses.
  const sharer = spec({ name: 'a-sharer', replicas: 1, accelerators: ['cuda'] });
  const mixed = run([boxes[0] as DeviceView], [sharer, own({ replicas: 1 })]);
  t.same(where(mixed, 'a-sharer'), ['a-jetson']);
  t.same(where(mixed), [], 'the one GPU is in use by a sharer');
  t.same(mixed.status.find((s) => s.name === 'det')?.unschedulable.reasons, [{ reason: 'no free tensorrt or cuda device (a replica holds 1 tensorrt, 1 cuda)', devices: 1 }]);
  // The other way round: an exclusive holder first, then no sharer there.
  const holder = own({ name: 'a-holder', replicas: 1 });
  const held = run([boxes[0] as DeviceView], [holder, spec({ replicas: 1, accelerators: ['cuda'] })]);
  t.same(where(held, 'a-holder'), ['a-jetson']);
  t.same(where(held), []);
  t.same(held.status.find((s) => s.name === 'det')?.unschedulable.reasons, [{ reason: 'no free cuda device (cuda shared, but every device is held by a replica that does not share)', devices: 1 }]);
  // On the two-GPU box a holder and sharers live side by side: one GPU each way.
  const side = run([boxes[1] as DeviceView], [holder, spec({ replicas: 3, accelerators: ['cuda'] })]);
  t.same([where(side, 'a-holder'), where(side)], [['b-rtx2'], ['b-rtx2', 'b-rtx2', 'b-rtx2']]);
  const greedy = run([boxes[1] as DeviceView], [spec({ name: 'a-sharer', replicas: 1, accelerators: ['cuda'] }), own({ replicas: 2 })]);
  t.same(where(greedy), ['b-rtx2'], 'the second holder would leave the sharer no GPU');
});

t.test('re-plans: kept placements hold their devices first, and nothing churns', async (t) => {
  const devices = corals();
  const first = run(devices, [tpuOnly({ replicas: 3 })]);
  const again = run(devices, [tpuOnly({ replicas: 3 })], { placements: first.placements });
  t.same(again.placements, first.placements);
  t.same([again.moves, again.removals, again.affectedDevices], [[], [], []]);

  // Scale up: the kept three hold every TPU, the fourth has nowhere to go.
  const up = run(devices, [tpuOnly({ replicas: 4 })], { placements: first.placements });
  t.same(up.placements, first.placements);
  t.equal(up.status[0]?.replicas[3]?.state, 'unschedulable');

  // Another deployment's running replica holds coral-1's TPU: a new one goes to coral-2.
  const other: Placement = { ...at('coral-1', 0), deployment: 'other', container: 'other-0' };
  const r = run(devices, [tpuOnly({ replicas: 2 }), tpuOnly({ name: 'other', replicas: 1 })], { placements: [other] });
  t.same(where(r), ['coral-2', 'coral-2']);
  t.same(where(r, 'other'), ['coral-1']);

  // On an offline board within the grace period the replica keeps its TPU.
  const away = [dev('coral-1', { accels: ['edgetpu'], online: false, lastSeen: NOW - 10_000 }), dev('coral-3', { accels: ['edgetpu'] })];
  const kept = run(away, [tpuOnly({ replicas: 2 })], { placements: [at('coral-1', 0)] });
  t.same(where(kept), ['coral-1', 'coral-3']);
});

t.test('re-plans: an older plan that put two replicas on one TPU is undone', async (t) => {
  const devices = [...corals(), dev('coral-3', { accels: ['edgetpu'], memGi: 16, cores: 16 })];
  const old = [at('coral-1', 0), at('coral-1', 1)];
  const r = run(devices, [tpuOnly({ replicas: 2 })], { placements: old });
  t.same(r.placements, [at('coral-1', 0), at('coral-2', 1)], 'replica 0 keeps the TPU (judged first); replica 1 moves to a free one');
  t.same(r.moves, [{ deployment: 'det', replica: 1, from: 'coral-1', to: 'coral-2', reason: 'device-unfit', detail: 'no longer fits: needs 1 edgetpu device, 1 of 1 held, 0 replicas sharing' }]);
  t.same(r.affectedDevices, ['coral-1', 'coral-2']);
  // Nowhere free: unscheduled, not left over-committed.
  const full = run([devices[0] as DeviceView], [tpuOnly({ replicas: 2 })], { placements: old });
  t.same(full.placements, [at('coral-1', 0)]);
  t.same(full.moves.map((m) => `${m.replica}:${m.from}->${m.to ?? 'nowhere'}:${m.reason}`), ['1:coral-1->nowhere:device-unfit']);
  t.equal(full.status[0]?.replicas[1]?.state, 'unschedulable');
});

t.test('re-plans: a replica that moves away gives its TPU back', async (t) => {
  const devices = corals();
  const failing = at('coral-1', 0);
  const health: ReplicaHealth[] = [{ deployment: 'det', replica: 0, deviceId: 'coral-1', revision: 1, phase: 'failed', restarts: 3 }];
  // det-0 fails on coral-1 and moves to coral-2; b's replica then finds coral-1's TPU free.
  const r = run(devices, [tpuOnly({ replicas: 1 }), tpuOnly({ name: 'e-later', replicas: 2 })], { placements: [failing], health });
  t.same(where(r), ['coral-2']);
  t.same(r.moves.map((m) => `${m.from}->${m.to}:${m.reason}`), ['coral-1->coral-2:failing']);
  t.same(where(r, 'e-later'), ['coral-1', 'coral-2'], 'coral-1 free again, coral-2 has its second TPU');
});

t.test('a new revision that needs more devices is re-placed where they are', async (t) => {
  const devices = corals();
  const shared = tpuOnly({ replicas: 2, resources: { memory: '1Gi', cpus: 1, accelerators: 0 } });
  const p = [at('coral-1', 0), at('coral-1', 1)];
  const exclusive = tpuOnly({ replicas: 2 });
  const r = plan({
    devices, deployments: [{ spec: exclusive, revision: 2, others: [{ spec: shared, revision: 1 }] }], placements: p, measurements: [],
    health: p.map((x) => ({ deployment: 'det', replica: x.replica, deviceId: x.deviceId, revision: 1, phase: 'running', restarts: 0 })),
    rollouts: [], now: NOW, graceMs: 60_000,
  });
  // The canary switches replica 0 first: revision 2 holds coral-1's TPU, so replica 1 (still
  // sharing at revision 1) finds no free device there and moves.
  t.same(r.placements.map((x) => `${x.replica}@${x.deviceId}:r${x.revision}`), ['0@coral-1:r2', '1@coral-2:r1']);
  t.same(r.moves.map((m) => `${m.replica}:${m.reason}`), ['1:device-unfit']);
});

t.test('selector deployments: a board whose TPU is held has no room', async (t) => {
  const devices = corals();
  const holder = tpuOnly({ name: 'a-holder', replicas: 1 });
  const everywhere = spec({ replicas: undefined, selector: {}, accelerators: ['edgetpu'] });
  const r = run(devices, [holder, everywhere]);
  t.same(where(r, 'a-holder'), ['coral-1']);
  t.same(where(r), ['coral-2'], 'coral-1 has no free TPU');
  const st = r.status.find((s) => s.name === 'det');
  t.equal(st?.unschedulable.replicas, 1);
  t.same(st?.unschedulable.reasons, [{ reason: 'no free edgetpu device (a replica holds 1 edgetpu)', devices: 1 }]);
});

t.test('resources.accelerators in the deployment file', async (t) => {
  const base = {
    name: 'det', model: { name: 'yolo', variants: [{ accelerator: 'edgetpu', precision: 'int8', url: 'https://m.example/a', sha256: 'a'.repeat(64) }] },
    runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'https://i.example/a', sha256: 'b'.repeat(64) }] },
    replicas: 1, accelerators: ['edgetpu'],
  };
  const parse = (accelerators: unknown): unknown => validateDeployment({ ...base, resources: { memory: '64Mi', cpus: 1, accelerators } }).resources.accelerators;
  t.equal(validateDeployment({ ...base, resources: { memory: '64Mi', cpus: 1 } }).resources.accelerators, undefined, 'absent stays absent: the defaults apply');
  t.equal(parse(0), 0);
  t.same(parse({ edgetpu: 2, cuda: 1 }), { edgetpu: 2, cuda: 1 });
  const issues = (accelerators: unknown): string[] => {
    try {
      parse(accelerators);
    } catch (e: unknown) {
      if (e instanceof DeploymentSpecError) return e.issues.map((i) => `${i.path}: ${i.message}`);
      throw e;
    }
    return [];
  };
  t.same(issues(-1), ['resources.accelerators: must be a whole number from 0 to 16, got number -1']);
  t.same(issues('all'), ['resources.accelerators: must be a count of devices (0-16) or a mapping of accelerator kind to count, got the string "all"']);
  t.same(issues({ cpu: 1, tpu: 1, edgetpu: 1.5 }), [
    'resources.accelerators.cpu: cpu is not a device a replica holds; resources.cpus counts cores',
    'resources.accelerators.tpu: unknown accelerator kind; use tensorrt, cuda, edgetpu, npu, gpu',
    'resources.accelerators.edgetpu: must be a whole number from 0 to 16, got number 1.5',
  ]);
});

t.test('the lazy tiers pick exactly what scoring every device picks, with devices held', async (t) => {
  // Boards with one or two TPUs, NPUs, one or two GPUs; a third of the deployments hold GPUs too.
  const boards: Parameters<typeof dev>[1][] = [
    { accels: ['edgetpu'] }, { accels: ['edgetpu', 'edgetpu'] }, { arch: 'aarch64', accels: ['npu'] }, { accels: ['cuda', 'cuda', 'tensorrt'] },
    { arch: 'aarch64', accels: ['cuda', 'tensorrt'] }, { accels: ['gpu'] }, {}, { arch: 'aarch64' },
  ];
  for (const [n, deps, reps] of [[200, 12, 25], [60, 10, 40]] as const) {
    const devices = Array.from({ length: n }, (_, i) => dev(`d${String(i).padStart(4, '0')}`, { ...boards[(i * 7) % boards.length], memGi: 4 + (i % 5) * 4, cores: 4 + (i % 3) * 4, boardClass: `b${i % boards.length}` }));
    const deployments: DeploymentInput[] = makeDeployments(deps, reps).map((d, i) => (i % 3 === 1
      ? { ...d, spec: { ...d.spec, resources: { ...d.spec.resources, accelerators: { cuda: 1, tensorrt: 1 } } } }
      : d));
    const measurements = makeMeasurements(devices, 10, n + 3);
    const fast = schedule({ devices, deployments, placements: [], measurements, now: NOW, graceMs: 300_000 });
    t.same(fast.placements, scoreAll(devices, deployments, measurements), `${n} devices, ${deps} x ${reps} replicas`);
    // Never more holders than devices.
    const held = new Map<string, number>();
    for (const p of fast.placements) {
      if (p.accelerator === 'edgetpu' || p.accelerator === 'npu' || ((p.accelerator === 'cuda' || p.accelerator === 'tensorrt') && Number(p.deployment.slice(4)) % 3 === 1)) {
        const k = `${p.deviceId}/${p.accelerator === 'tensorrt' ? 'cuda' : p.accelerator}`;
        held.set(k, (held.get(k) ?? 0) + 1);
      }
    }
    const over = [...held].filter(([k, c]) => {
      const d = devices.find((x) => x.id === k.split('/')[0]);
      const kind = k.split('/')[1];
      const cap = new Set(d?.inventory?.accelerators.filter((a) => (a.kind === 'tensorrt' ? 'cuda' : a.kind) === kind).map((a) => a.device)).size;
      return c > cap;
    });
    t.same(over, [], 'no device over-committed');
  }
});

t.test('featherctl describe deployment: what a replica holds, and why a replica waits', async (t) => {
  const s = spec({ accelerators: ['tensorrt', 'edgetpu', 'cpu'], resources: { memory: '1Gi', cpus: 1, accelerators: { tensorrt: 1 } } });
  const r = run(corals(), [tpuOnly({ replicas: 4 })]);
  const st = r.status[0];
  const detail: DeploymentDetail = {
    name: 'det', revision: 1, phase: st?.phase ?? 'Failed', message: st?.message ?? '', model: 'yolo', desired: 4, placed: 3, running: 0, updated: 3,
    p95Ms: null, objectiveMs: null, rollout: null, createdAt: NOW, updatedAt: NOW, spec: s,
    replicas: (st?.replicas ?? []).map((x) => ({ ...x, container: x.deviceId === undefined ? null : `det-${x.replica}` })),
    unschedulable: st?.unschedulable ?? null, rolloutStatus: null, revisions: [{ revision: 1, createdAt: NOW, current: true }],
  };
  const text = describeDeployment(detail, NOW);
  t.match(text, /^Resources: +memory 1Gi, cpus 1, pids 256, accelerator devices per replica: tensorrt 1, edgetpu 1$/m, 'tensorrt as the file says, edgetpu by default');
  t.match(text, /^ {2}3 +- +unschedulable .*0 of 2 devices fit \(2 no free edgetpu device \(a replica holds 1 edgetpu\)\)$/m);
  t.match(text, /^ {2}2 device\(s\): no free edgetpu device \(a replica holds 1 edgetpu\)$/m);
  const shared = describeDeployment({ ...detail, spec: spec({ accelerators: ['cuda', 'npu'], resources: { memory: '1Gi', cpus: 1, accelerators: 0 } }) }, NOW);
  t.match(shared, /, accelerator devices per replica: cuda shared, npu shared$/m);
  t.match(describeDeployment({ ...detail, spec: spec({ accelerators: ['cpu'] }) }, NOW), /^Resources: +memory 1Gi, cpus 1, pids 256$/m);
});
