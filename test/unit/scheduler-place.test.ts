// schedule(): filters, scores, capacity, selector, strategy, determinism, no churn.
import t from 'tap';
import type { DeviceView, Placement } from '../../controller/model/types.js';
import { schedule } from '../../controller/scheduler/index.js';
import { makeDeployments, makeDevices, makeMeasurements, scoreAll } from '../../bench/scheduler.js';

import { GiB, MODEL_VARIANTS, NOW, SHA, dev, measure, run, spec, where } from '../helpers/scheduler-fixture.js';

t.test('filters: offline, no inventory, no runtime image for the arch, no accelerator with a variant', async (t) => {
  const devices = [
    dev('a-offline', { online: false, lastSeen: NOW - 1000 }),
    dev('b-noinv', { noInventory: true }),
    dev('c-riscv', { arch: 'riscv64' }),
    dev('d-ok'),
  ];
  const r = run(devices, [spec({ replicas: 3 })]);
  t.same(where(r), ['d-ok', 'd-ok', 'd-ok'], 'only d fits; spread falls back to several per device');
  const r2 = run(devices.slice(0, 3), [spec({ replicas: 1 })]);
  t.same(r2.placements, []);
  const st = r2.status[0];
  t.equal(st?.phase, 'Failed');
  t.same(st?.unschedulable, { replicas: 1, reasons: [
    { reason: 'no inventory reported yet', devices: 1 },
    { reason: 'no runtime image for riscv64', devices: 1 },
    { reason: 'offline', devices: 1 },
  ] });
  t.match(st?.replicas[0]?.reason, /^0 of 3 devices fit \(1 no inventory reported yet, 1 no runtime image for riscv64, 1 offline\)/);

  const tpuOnly = spec({ accelerators: ['edgetpu'] });
  const r3 = run([dev('cpu-box'), dev('tpu-box', { accels: ['edgetpu'] })], [tpuOnly]);
  t.same(where(r3), ['tpu-box'], 'a device without the accelerator is filtered out when cpu is not on the list');
  const r4 = run([dev('cpu-box')], [tpuOnly]);
  t.same(r4.status[0]?.unschedulable.reasons, [{ reason: 'no accelerator on the preference list with a model variant', devices: 1 }]);
});

t.test('an accelerator on the list without a model variant does not count', async (t) => {
  const s = spec({ accelerators: ['npu', 'cpu'], model: { name: 'yolo', variants: [MODEL_VARIANTS[6]] } });
  const r = run([dev('npu-box', { accels: ['npu'] })], [s]);
  t.equal(r.placements[0]?.accelerator, 'cpu', 'the npu box runs it on its CPU');
});

t.test('accelerator preference: rank in the list wins, cpu is the fallback on any device', async (t) => {
  const devices = [
    dev('a-cpu', { memGi: 64, cores: 64 }),
    dev('b-tpu', { accels: ['edgetpu'] }),
    dev('c-jetson', { arch: 'aarch64', accels: ['cuda', 'tensorrt'] }),
    dev('d-npu', { accels: ['npu'] }),
  ];
  const r = run(devices, [spec({ replicas: 4, resources: { memory: '3Gi', cpus: 1 } })]);
  t.same(r.placements.map((p) => `${p.deviceId}:${p.accelerator}/${p.precision}`),
    ['c-jetson:tensorrt/fp16', 'b-tpu:edgetpu/int8', 'd-npu:npu/int8', 'a-cpu:cpu/fp32'], 'tensorrt, then edgetpu, then npu, then cpu');
  const cudaFirst = run(devices, [spec({ accelerators: ['cuda', 'tensorrt', 'cpu'] })]);
  t.equal(cudaFirst.placements[0]?.accelerator, 'cuda', 'the list order, not a built-in order');
  const cpuOnly = run([dev('c-jetson', { arch: 'aarch64', accels: ['cuda', 'tensorrt'] })], [spec({ accelerators: ['edgetpu', 'cpu'] })]);
  t.same(cpuOnly.placements.map((p) => `${p.deviceId}:${p.accelerator}`), ['c-jetson:cpu'], 'no edgetpu: the GPU box runs it on CPU');
});

t.test('precision: int8 on Edge TPU/NPU, fp16 on GPUs, fp32 on CPU, unless only another variant exists', async (t) => {
  const devices = [dev('tpu', { accels: ['edgetpu'] }), dev('trt', { accels: ['tensorrt', 'cuda'] }), dev('cpu')];
  const pick = (variants: typeof MODEL_VARIANTS, accelerators: string[]): string[] => {
    // 3Gi each: one replica per device, whatever the rank.
    const r = run(devices, [spec({ replicas: 3, accelerators, model: { name: 'yolo', variants }, resources: { memory: '3Gi', cpus: 1 } })]);
    return r.placements.map((p) => `${p.deviceId}:${p.accelerator}/${p.precision}`).sort();
  };
  t.same(pick(MODEL_VARIANTS, ['tensorrt', 'edgetpu', 'cpu']), ['cpu:cpu/fp32', 'tpu:edgetpu/int8', 'trt:tensorrt/fp16']);
  const onlyOthers = MODEL_VARIANTS.filter((v) => ['2', '7', '8'].includes(v.sha256[0] as string));
  t.same(pick(onlyOthers, ['tensorrt', 'edgetpu', 'cpu']), ['cpu:cpu/int8', 'tpu:edgetpu/fp32', 'trt:tensorrt/fp32'],
    'tensorrt fp32, edgetpu fp32, cpu int8 when those are all the deployment offers');
});

t.test('architecture variants: each device gets the image of its arch; a missing one filters the device', async (t) => {
  const devices = [dev('arm', { arch: 'aarch64' }), dev('x86')];
  const r = run(devices, [spec({ replicas: 2 })]);
  t.same(r.placements.map((p) => `${p.deviceId}:${p.arch}`), ['arm:aarch64', 'x86:x86_64']);
  const armOnly = spec({ replicas: 2, runtime: { variants: [{ arch: 'aarch64', image: 'rt', url: 'https://i.example/a', sha256: SHA('b') }] } });
  t.same(where(run(devices, [armOnly])), ['arm', 'arm']);
});

t.test('memory and CPU capacity, after what is already placed', async (t) => {
  const devices = [dev('a', { memGi: 4, cores: 8 }), dev('b', { memGi: 2, cores: 1 })];
  const r = run(devices, [spec({ replicas: 6, resources: { memory: '1Gi', cpus: 1 } })]);
  t.same(where(r).sort(), ['a', 'a', 'a', 'a', 'b'], 'a holds 4 x 1Gi, b has one core');
  t.equal(r.status[0]?.unschedulable.replicas, 1);
  t.same(r.status[0]?.unschedulable.reasons, [{ reason: 'not enough free CPU (needs 1 cores)', devices: 1 }, { reason: 'not enough free memory (needs 1Gi)', devices: 1 }]);
  t.equal(r.status[0]?.replicas[5]?.state, 'unschedulable');

  // Another deployment's placements take room first.
  const other = spec({ name: 'other', replicas: 1, resources: { memory: '3Gi', cpus: 0.5 } });
  const existing: Placement = { deployment: 'other', revision: 1, replica: 0, deviceId: 'a', accelerator: 'cpu', precision: 'fp32', container: 'other-0', arch: 'x86_64' };
  const r2 = run(devices, [spec({ replicas: 3 }), other], { placements: [existing] });
  t.same(where(r2).sort(), ['a', 'b'], 'a has 1Gi left after other-0, b has 2Gi but one core');
  t.same(where(r2, 'other'), ['a'], 'the existing placement stays');

  // Fractional CPUs add up exactly (10 x 0.1 = 1 core).
  const tenth = run([dev('c', { cores: 1, memGi: 64 })], [spec({ replicas: 11, resources: { memory: '64Mi', cpus: 0.1 } })]);
  t.equal(tenth.placements.length, 10);
});

t.test('reserved memory and CPU per device are kept free', async (t) => {
  const r = run([dev('a', { memGi: 4, cores: 4 })], [spec({ replicas: 4 })], { options: { reserved: { memoryBytes: GiB, cpus: 0.5 } } });
  t.equal(r.placements.length, 3);
});

t.test('selector: one replica per matching device, stable replica numbers', async (t) => {
  const devices = [
    dev('a', { labels: { site: 'lyon' } }), dev('b', { labels: { site: 'paris' } }), dev('c', { labels: { site: 'lyon', zone: '1' } }),
    dev('d', { labels: { site: 'lyon' }, online: false, lastSeen: NOW - 10 }), dev('e', { labels: { site: 'lyon' }, arch: 'riscv64' }),
  ];
  const s = spec({ replicas: undefined, selector: { site: 'lyon' } });
  const r = run(devices, [s]);
  t.same(r.placements.map((p) => `${p.deviceId}:${p.replica}:${p.container}`), ['a:0:det-0', 'c:1:det-1']);
  const st = r.status[0];
  t.equal(st?.desired, 3, 'a and c, plus e which matches but has no image for riscv64');
  t.equal(st?.unschedulable.replicas, 1);
  t.equal(st?.phase, 'Degraded');

  // A new matching device gets the lowest free number; the others keep theirs.
  const more = [...devices, dev('0-first', { labels: { site: 'lyon' } })];
  const kept = r.placements.filter((p) => p.deviceId !== 'a');
  const r2 = run(more, [s], { placements: kept });
  t.same(r2.placements.map((p) => `${p.deviceId}:${p.replica}`), ['0-first:0', 'c:1', 'a:2']);

  // A device whose labels stop matching loses its replica; nothing else moves.
  const relabelled = devices.map((d) => (d.id === 'c' ? { ...d, labels: { site: 'paris' } } : d));
  const r3 = run(relabelled, [s], { placements: r.placements });
  t.same(r3.placements.map((p) => `${p.deviceId}:${p.replica}`), ['a:0']);
  t.same(r3.removals, [{ deployment: 'det', replica: 1, deviceId: 'c', reason: 'unselected' }]);
  t.same(r3.affectedDevices, ['c']);

  const none = run(devices, [spec({ replicas: undefined, selector: { site: 'berlin' } })]);
  t.equal(none.status[0]?.phase, 'Available');
  t.match(none.status[0]?.message, /no device matches the selector/);
});

t.test('spread vs binpack', async (t) => {
  const devices = ['a', 'b', 'c', 'd'].map((id) => dev(id, { memGi: 8, cores: 8 }));
  const spread = run(devices, [spec({ replicas: 6 })]);
  t.same(spread.placements.map((p) => p.deviceId), ['a', 'b', 'c', 'd', 'a', 'b'], 'one per device first, ties by id');
  const binpack = run(devices, [spec({ replicas: 6, strategy: 'binpack' })]);
  t.same(binpack.placements.map((p) => p.deviceId), ['a', 'a', 'a', 'a', 'a', 'a'], 'fill one device first');
  const fuller = run(devices, [spec({ replicas: 10, strategy: 'binpack' })]);
  t.same(fuller.placements.map((p) => p.deviceId), [...'aaaaaaaa', 'b', 'b'], 'then the next');

  // Binpack prefers the device already most used; spread the emptiest.
  const busy: Placement = { deployment: 'other', revision: 1, replica: 0, deviceId: 'c', accelerator: 'cpu', precision: 'fp32', container: 'other-0', arch: 'x86_64' };
  const other = spec({ name: 'other', replicas: 1, resources: { memory: '4Gi', cpus: 1 } });
  t.same(where(run(devices, [spec({ strategy: 'binpack' }), other], { placements: [busy] })), ['c']);
  t.same(where(run(devices, [spec(), other], { placements: [busy] })), ['a']);
  // Spread among devices with equal counts: the one with the most headroom.
  const mixed = [dev('a', { memGi: 4, cores: 4 }), dev('b', { memGi: 16, cores: 16 })];
  t.same(where(run(mixed, [spec()])), ['b']);
});

t.test('scores: measured p95 on the device, else on its board class; a known breach sorts last', async (t) => {
  const devices = [dev('a', { boardClass: 'slow' }), dev('b', { boardClass: 'fast' }), dev('c', { boardClass: 'fast' }), dev('d', { boardClass: 'new' })];
  const s = spec({ accelerators: ['cpu'], p95LatencyMs: 50 });
  // b was measured on its own; c has never run it, its class (fast) has.
  const m = [measure('a', 'slow', 30), measure('b', 'fast', 10)];
  t.same(where(run(devices, [s], { measurements: m })), ['b']);
  t.same(where(run(devices.filter((d) => d.id !== 'b'), [s], { measurements: m })), ['c'], 'c: unseen, its class measured at 10 ms');
  t.same(where(run([devices[0] as DeviceView, devices[3] as DeviceView], [s], { measurements: m })), ['a'], 'measured 30 ms beats unknown');
  const slow = [measure('a', 'slow', 80)];
  t.same(where(run([devices[0] as DeviceView, devices[3] as DeviceView], [s], { measurements: slow })), ['d'], 'unknown beats a known breach');
  t.same(where(run([devices[0] as DeviceView], [s], { measurements: slow })), ['a'], 'a breach is still better than nothing');
  // A breach sorts after a worse-ranked accelerator.
  const tpu = dev('t', { accels: ['edgetpu'], boardClass: 'tpu' });
  const trt = dev('g', { accels: ['tensorrt'], boardClass: 'gpu' });
  const prefs = spec({ p95LatencyMs: 20 });
  t.same(where(run([tpu, trt], [prefs], { measurements: [measure('g', 'gpu', 25, { precision: 'fp16' })] })), ['t']);
  t.same(where(run([tpu, trt], [prefs], { measurements: [measure('g', 'gpu', 15, { precision: 'fp16' })] })), ['g']);
  t.same(where(run([tpu, trt], [prefs], { measurements: [measure('g', 'gpu', 25, { precision: 'fp32' })] })), ['g'], 'a measurement at another precision does not count');
});

t.test('scores: latency within a board class is coarse, so spread still spreads', async (t) => {
  const devices = ['a', 'b', 'c'].map((id) => dev(id, { boardClass: 'x', memGi: 16, cores: 16 }));
  const m = [measure('a', 'x', 10.0), measure('b', 'x', 10.3), measure('c', 'x', 10.1)];
  const r = run(devices, [spec({ replicas: 3, accelerators: ['cpu'] })], { measurements: m });
  t.same(where(r), ['a', 'b', 'c']);
});

t.test('deterministic: same input, same output; device order in the input does not matter', async (t) => {
  const devices = Array.from({ length: 30 }, (_, i) => dev(`d${String(i).padStart(2, '0')}`, {
    accels: i % 3 === 0 ? ['edgetpu'] : i % 3 === 1 ? ['cuda'] : [], arch: i % 2 === 0 ? 'x86_64' : 'aarch64', memGi: 2 + (i % 4),
  }));
  const specs = [spec({ replicas: 20 }), spec({ name: 'b', replicas: 15, strategy: 'binpack', resources: { memory: '512Mi', cpus: 0.5 } })];
  const a = run(devices, specs);
  const b = run([...devices].reverse(), [...specs].reverse());
  t.same(a, b);
  t.same(run(devices, specs), a);
});

t.test('no churn: feeding the result back changes nothing', async (t) => {
  const devices = Array.from({ length: 12 }, (_, i) => dev(`d${i}`, { accels: i % 2 ? ['npu'] : [], memGi: 3 }));
  const specs = [spec({ replicas: 10 }), spec({ name: 'sel', replicas: undefined, selector: {} , resources: { memory: '256Mi', cpus: 0.25 } })];
  const first = run(devices, specs);
  t.equal(first.affectedDevices.length, 12);
  const second = run(devices, specs, { placements: first.placements });
  t.same(second.placements, first.placements);
  t.same(second.moves, []);
  t.same(second.removals, []);
  t.same(second.affectedDevices, []);
  // Even with new, better devices around.
  const better = [...devices, dev('z-trt', { accels: ['tensorrt'], memGi: 64, cores: 64 })];
  const third = run(better, specs, { placements: first.placements });
  t.same(third.placements.filter((p) => p.deployment === 'det'), first.placements.filter((p) => p.deployment === 'det'));
  t.same(third.affectedDevices, ['z-trt'], 'only the selector deployment lands on the new device');
});

t.test('scale down drops the highest replicas; a deleted deployment drops all', async (t) => {
  const devices = ['a', 'b', 'c'].map((id) => dev(id));
  const first = run(devices, [spec({ replicas: 3 })]);
  const down = run(devices, [spec({ replicas: 1 })], { placements: first.placements });
  t.same(down.placements.map((p) => `${p.replica}@${p.deviceId}`), ['0@a']);
  t.same(down.removals.map((r) => `${r.replica}@${r.deviceId}:${r.reason}`), ['1@b:scaled-down', '2@c:scaled-down']);
  t.same(down.affectedDevices, ['b', 'c']);
  const gone = run(devices, [], { placements: first.placements });
  t.same(gone.placements, []);
  t.same(gone.removals.map((r) => r.reason), ['deleted', 'deleted', 'deleted']);
  t.same(gone.status, []);
});

t.test('container names: <deployment>-<replica>, unique on a device', async (t) => {
  const r = run([dev('a', { memGi: 64, cores: 64 })], [spec({ replicas: 3, strategy: 'binpack' }), spec({ name: 'det-1', replicas: 2 })]);
  t.same(r.placements.map((p) => p.container), ['det-0', 'det-1', 'det-2', 'det-1-0', 'det-1-1']);
  t.equal(new Set(r.placements.map((p) => p.container)).size, 5);
});

t.test('duplicate placements in the input keep the first', async (t) => {
  const p: Placement = { deployment: 'det', revision: 1, replica: 0, deviceId: 'a', accelerator: 'cpu', precision: 'fp32', container: 'det-0', arch: 'x86_64' };
  const r = run([dev('a'), dev('b')], [spec({ accelerators: ['cpu'] })], { placements: [p, { ...p, deviceId: 'b' }] });
  t.same(r.placements, [p]);
  t.same(r.removals, [{ deployment: 'det', replica: 0, deviceId: 'b', reason: 'duplicate' }]);
});

t.test('a placement whose accelerator is gone from the device is re-chosen in place', async (t) => {
  const p: Placement = { deployment: 'det', revision: 1, replica: 0, deviceId: 'a', accelerator: 'edgetpu', precision: 'int8', container: 'det-0', arch: 'x86_64' };
  const r = run([dev('a'), dev('b', { accels: ['edgetpu'] })], [spec()], { placements: [p] });
  t.same(r.placements, [{ ...p, accelerator: 'cpu', precision: 'fp32' }], 'the TPU was unplugged: same device, CPU variant');
  t.same(r.affectedDevices, ['a']);
  t.same(r.moves, []);
});

t.test('the lazy tiers and heap pick exactly what scoring every device for every replica picks', async (t) => {
  for (const [n, deps, reps] of [[300, 12, 20], [40, 10, 60], [1000, 5, 150]] as const) {
    const devices = makeDevices(n, n);
    const deployments = makeDeployments(deps, reps);
    const measurements = makeMeasurements(devices, 10, n + 1);
    const fast = schedule({ devices, deployments, placements: [], measurements, now: NOW, graceMs: 300_000 });
    t.same(fast.placements, scoreAll(devices, deployments, measurements), `${n} devices, ${deps} x ${reps} replicas`);
    if (n === 40) t.ok(fast.status.some((s) => s.unschedulable.replicas > 0), 'the small fleet runs out of room');
  }
});
