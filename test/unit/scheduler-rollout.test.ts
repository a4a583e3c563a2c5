// rolloutStep() and plan(): canary, waves, rollback; desiredFor(): the agent accepts what it writes.
import t from 'tap';
import type { DeploymentSpec, Placement } from '../../controller/model/types.js';
import { validateDesired } from '../../shared/protocol/desired.js';
import { desiredFor, plan, rolloutStep, schedule, type ReplicaHealth, type RolloutResult, type RolloutStatus } from '../../controller/scheduler/index.js';

import { NOW, SHA, dev, run, spec } from '../helpers/scheduler-fixture.js';

const at = (deviceId: string, replica: number, revision = 1): Placement => ({
  deployment: 'det', revision, replica, deviceId, accelerator: 'cpu', precision: 'fp32', container: `det-${replica}`, arch: 'x86_64',
});

const V1 = spec({ replicas: 5, accelerators: ['cpu'], runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'https://i.example/rt1', sha256: SHA('a') }] } });
const V2 = spec({ replicas: 5, accelerators: ['cpu'], runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'https://i.example/rt2', sha256: SHA('c') }] } });
const withPolicy = (s: DeploymentSpec, rollout: Record<string, number>): DeploymentSpec => ({ ...s, rollout: { maxUnavailable: 1, canary: 1, failureThreshold: 2, ...rollout } });

const DEVICES = ['a', 'b', 'c', 'd', 'e'].map((id) => dev(id));
const V1_PLACED = DEVICES.map((d, i) => at(d.id, i));

/** What the devices report: every placement running at its revision (for a minute), unless told otherwise. */
function report(placements: Placement[], over: Record<number, Partial<ReplicaHealth>> = {}): ReplicaHealth[] {
  return placements.map((p) => ({ deployment: p.deployment, replica: p.replica, deviceId: p.deviceId, revision: p.revision, phase: 'running', restarts: 0, runningSince: NOW - 60_000, ...over[p.replica] }));
}

const revs = (ps: Placement[]): string => ps.map((p) => p.revision).join('');

function stepOnce(placements: Placement[], health: ReplicaHealth[], rollouts: RolloutStatus[], target: DeploymentSpec = V2, others = [{ spec: V1, revision: 1 }]): RolloutResult {
  return rolloutStep({ deployments: [{ spec: target, revision: 2, others }], placements, health, rollouts, now: NOW });
}

t.test('a first deployment needs no waves', async (t) => {
  const r = rolloutStep({ deployments: [{ spec: V1, revision: 1 }], placements: [], health: [], rollouts: [], now: NOW });
  t.equal(r.rollouts[0]?.phase, 'Complete');
  t.equal(r.rollouts[0]?.stable, 1);
  t.equal(r.rollouts[0]?.placeRevision, 1);
  const again = rolloutStep({ deployments: [{ spec: V1, revision: 1 }], placements: V1_PLACED, health: report(V1_PLACED), rollouts: r.rollouts, now: NOW });
  t.equal(again.rollouts[0]?.phase, 'Complete');
  t.same(again.placements, V1_PLACED);
  t.same(again.affectedDevices, []);
});

t.test('canary first, then one wave at a time (maxUnavailable 1)', async (t) => {
  // Step 1: the canary switches; the stable revision is inferred from the placements.
  const s1 = stepOnce(V1_PLACED, report(V1_PLACED), []);
  t.equal(revs(s1.placements), '21111');
  t.equal(s1.rollouts[0]?.phase, 'Canary');
  t.equal(s1.rollouts[0]?.stable, 1);
  t.equal(s1.rollouts[0]?.placeRevision, 2);
  t.same(s1.affectedDevices, ['a']);
  t.same(s1.deployments[0]?.revision, 2, 'new replicas get the new revision');
  // Step 2: a still reports the old container: wait.
  const s2 = stepOnce(s1.placements, report(V1_PLACED), s1.rollouts);
  t.equal(revs(s2.placements), '21111');
  t.equal(s2.rollouts[0]?.phase, 'Canary');
  t.same(s2.affectedDevices, []);
  // Step 3: the canary runs: the first wave.
  const s3 = stepOnce(s2.placements, report(s2.placements), s2.rollouts);
  t.equal(revs(s3.placements), '22111');
  t.equal(s3.rollouts[0]?.phase, 'Waves');
  // Step 4: replica 1 is starting: the budget is spent.
  const s4 = stepOnce(s3.placements, report(s3.placements, { 1: { revision: 1 } }), s3.rollouts);
  t.equal(revs(s4.placements), '22111');
  // Then one by one to the end.
  let cur = s4;
  for (const expected of ['22211', '22221', '22222']) {
    cur = stepOnce(cur.placements, report(cur.placements), cur.rollouts);
    t.equal(revs(cur.placements), expected);
  }
  t.equal(cur.rollouts[0]?.phase, 'Waves', 'the last one switched, not running yet');
  cur = stepOnce(cur.placements, report(cur.placements), cur.rollouts);
  t.equal(cur.rollouts[0]?.phase, 'Complete');
  t.equal(cur.rollouts[0]?.stable, 2);
  t.match(cur.rollouts[0]?.message, /rolled out to 5 replicas/);
});

t.test('waves of maxUnavailable; old replicas that are down switch for free', async (t) => {
  const v2 = withPolicy(V2, { maxUnavailable: 2, canary: 2 });
  const s1 = stepOnce(V1_PLACED, report(V1_PLACED, { 3: { phase: 'failed' } }), [], v2);
  t.equal(revs(s1.placements), '21121', 'the canary is the replica that is down anyway, then the lowest');
  const s2 = stepOnce(s1.placements, report(s1.placements), s1.rollouts, v2);
  t.equal(revs(s2.placements), '22221', 'two canaries running: a wave of two');
  t.equal(s2.rollouts[0]?.phase, 'Waves');
  const down = stepOnce(V1_PLACED.map((p) => (p.replica === 0 ? { ...p, revision: 2 } : p)), report(V1_PLACED, { 4: { phase: 'failed' } }).map((h) => (h.replica === 0 ? { ...h, revision: 2 } : h)), [], withPolicy(V2, { maxUnavailable: 1 }));
  t.equal(revs(down.placements), '21112', 'one down already: only the down one switches');
});

t.test('failures of the new revision cross the threshold: roll back, and stay rolled back', async (t) => {
  const s1 = stepOnce(V1_PLACED, report(V1_PLACED), []);
  t.equal(revs(s1.placements), '21111');
  // The canary fails once, restarts, fails again: 1, then 1 (running, 1 restart), then 2.
  const f1 = stepOnce(s1.placements, report(s1.placements, { 0: { phase: 'failed', restarts: 0 } }), s1.rollouts);
  t.equal(f1.rollouts[0]?.failureCount, 1);
  t.equal(f1.rollouts[0]?.phase, 'Canary');
  const f2 = stepOnce(f1.placements, report(f1.placements, { 0: { phase: 'running', restarts: 1 } }), f1.rollouts);
  t.equal(f2.rollouts[0]?.failureCount, 1);
  t.equal(revs(f2.placements), '22111', 'the canary runs again: a wave goes');
  const f3 = stepOnce(f2.placements, report(f2.placements, { 0: { phase: 'failed', restarts: 1 } , 1: { revision: 1 } }), f2.rollouts);
  t.equal(f3.rollouts[0]?.phase, 'RolledBack');
  t.equal(revs(f3.placements), '11111');
  t.same(f3.affectedDevices, ['a', 'b']);
  t.equal(f3.rollouts[0]?.placeRevision, 1);
  t.same(f3.rollouts[0]?.failures, [{ replica: 0, deviceId: 'a', count: 2 }]);
  t.match(f3.rollouts[0]?.message, /revision 2 rolled back to 1 after 2 failures \(threshold 2\)/);
  t.equal(f3.deployments[0]?.revision, 1, 'the scheduler places new replicas at revision 1');
  t.same(f3.deployments[0]?.others?.map((o) => o.revision), [2]);

  const later = stepOnce(f3.placements, report(f3.placements), f3.rollouts);
  t.equal(later.rollouts[0]?.phase, 'RolledBack', 'stays rolled back while revision 2 is the newest');
  t.equal(revs(later.placements), '11111');

  const v3 = rolloutStep({ deployments: [{ spec: V2, revision: 3, others: [{ spec: V1, revision: 1 }] }], placements: later.placements, health: report(later.placements), rollouts: later.rollouts, now: NOW });
  t.equal(v3.rollouts[0]?.phase, 'Canary', 'a newer revision rolls out again');
  t.equal(v3.rollouts[0]?.stable, 1);
  t.equal(revs(v3.placements), '31111');
});

t.test('failures counted per replica and device: a moved canary keeps its count', async (t) => {
  const s1 = stepOnce(V1_PLACED, report(V1_PLACED), []);
  const f1 = stepOnce(s1.placements, report(s1.placements, { 0: { phase: 'failed', restarts: 0 } }), s1.rollouts);
  const moved = f1.placements.map((p) => (p.replica === 0 ? { ...p, deviceId: 'z' } : p));
  const f2 = stepOnce(moved, report(moved, { 0: { phase: 'failed', restarts: 0 } }), f1.rollouts);
  t.same(f2.rollouts[0]?.failures, [{ replica: 0, deviceId: 'a', count: 1 }, { replica: 0, deviceId: 'z', count: 1 }]);
  t.equal(f2.rollouts[0]?.phase, 'RolledBack');
});

t.test('no stable spec to go back to: halted, no more replicas switch', async (t) => {
  const s1 = stepOnce(V1_PLACED, report(V1_PLACED), [], V2, []);
  const h = stepOnce(s1.placements, report(s1.placements, { 0: { phase: 'failed', restarts: 3 } }), s1.rollouts, V2, []);
  t.equal(h.rollouts[0]?.phase, 'Halted');
  t.equal(revs(h.placements), '21111');
  const h2 = stepOnce(h.placements, report(h.placements), h.rollouts, V2, []);
  t.equal(h2.rollouts[0]?.phase, 'Halted');
  t.equal(revs(h2.placements), '21111');
});

t.test('canary 0 goes straight to waves; placements of unknown deployments pass through', async (t) => {
  const stray: Placement = { ...at('a', 0), deployment: 'gone', container: 'gone-0' };
  const r = stepOnce([...V1_PLACED, stray], report(V1_PLACED), [], withPolicy(V2, { canary: 0 }));
  t.equal(r.rollouts[0]?.phase, 'Waves');
  t.equal(revs(r.placements.filter((p) => p.deployment === 'det')), '21111');
  t.ok(r.placements.includes(stray));
});

t.test('minReadyS: a canary counts only after running that long without a break', async (t) => {
  const v2 = withPolicy(V2, { minReadyS: 5 });
  const step = (placements: Placement[], health: ReplicaHealth[], rollouts: RolloutStatus[], now: number): RolloutResult =>
    rolloutStep({ deployments: [{ spec: v2, revision: 2, others: [{ spec: V1, revision: 1 }] }], placements, health, rollouts, now });
  const s1 = step(V1_PLACED, report(V1_PLACED), [], NOW);
  t.equal(revs(s1.placements), '21111');
  t.equal(s1.rollouts[0]?.readyAt, undefined, 'the canary is not running yet: nothing to wait for');
  // The canary reports running, just now: not ready, and the step says when it will be.
  const s2 = step(s1.placements, report(s1.placements, { 0: { runningSince: NOW } }), s1.rollouts, NOW + 100);
  t.equal(revs(s2.placements), '21111', 'no wave on the first running report');
  t.equal(s2.rollouts[0]?.phase, 'Canary');
  t.equal(s2.rollouts[0]?.ready, 0);
  t.equal(s2.rollouts[0]?.readyAt, NOW + 5000);
  t.same(s2.affectedDevices, []);
  t.match(s2.rollouts[0]?.message, /waiting for 1 ready \(running for 5s; 0 now\)/);
  // Still short of 5 s: the same.
  const s3 = step(s2.placements, report(s2.placements, { 0: { runningSince: NOW } }), s2.rollouts, NOW + 4999);
  t.equal(revs(s3.placements), '21111');
  // 5 s later: the wave goes.
  const s4 = step(s3.placements, report(s3.placements, { 0: { runningSince: NOW } }), s3.rollouts, NOW + 5000);
  t.equal(revs(s4.placements), '22111');
  t.equal(s4.rollouts[0]?.phase, 'Waves');
  t.equal(s4.rollouts[0]?.ready, 1);
  t.equal(s4.rollouts[0]?.readyAt, undefined, 'replica 1 is not running at revision 2 yet');
  // Replica 1 runs but is not ready yet: it is unavailable, so the budget (1) is spent.
  const s5 = step(s4.placements, report(s4.placements, { 1: { runningSince: NOW + 6000 } }), s4.rollouts, NOW + 6000);
  t.equal(revs(s5.placements), '22111', 'the next wave waits for replica 1 to be ready');
  t.equal(s5.rollouts[0]?.readyAt, NOW + 11_000);
  const s6 = step(s5.placements, report(s5.placements, { 1: { runningSince: NOW + 6000 } }), s5.rollouts, NOW + 11_000);
  t.equal(revs(s6.placements), '22211');
  // Complete only once every replica is ready.
  const all = withPolicy(V2, { minReadyS: 5 });
  const done = rolloutStep({ deployments: [{ spec: all, revision: 2, others: [{ spec: V1, revision: 1 }] }], placements: V1_PLACED.map((p) => ({ ...p, revision: 2 })), health: report(V1_PLACED.map((p) => ({ ...p, revision: 2 })), { 4: { runningSince: NOW - 1000 } }), rollouts: s6.rollouts, now: NOW });
  t.equal(done.rollouts[0]?.phase, 'Waves', 'replica 4 has run for 1 s only');
  t.equal(done.rollouts[0]?.readyAt, NOW + 4000);
});

t.test('minReadyS: a canary that exits at once never lets a wave start; runningSince unknown is not ready; 0 is the old rule', async (t) => {
  // The canary is reported running for a second, then failed and restarting: rolled back with
  // replica 1 never switched.
  const s1 = stepOnce(V1_PLACED, report(V1_PLACED), []);
  const s2 = stepOnce(s1.placements, report(s1.placements, { 0: { runningSince: NOW - 1000 } }), s1.rollouts);
  t.equal(revs(s2.placements), '21111', 'running for 1 s: no wave');
  const s3 = stepOnce(s2.placements, report(s2.placements, { 0: { phase: 'failed', restarts: 0, runningSince: undefined } }), s2.rollouts);
  t.equal(revs(s3.placements), '21111');
  const s4 = stepOnce(s3.placements, report(s3.placements, { 0: { restarts: 1, runningSince: NOW - 500 } }), s3.rollouts);
  t.equal(revs(s4.placements), '21111', 'running again after a restart, for 0.5 s: still no wave');
  const s5 = stepOnce(s4.placements, report(s4.placements, { 0: { phase: 'failed', restarts: 1, runningSince: undefined } }), s4.rollouts);
  t.equal(s5.rollouts[0]?.phase, 'RolledBack');
  t.equal(revs(s5.placements), '11111');
  t.same(s5.affectedDevices, ['a'], 'only the canary\'s device changes');

  const unknown = stepOnce(s1.placements, report(s1.placements, { 0: { runningSince: undefined } }), s1.rollouts);
  t.equal(revs(unknown.placements), '21111', 'running since an unknown time: not ready');
  t.equal(unknown.rollouts[0]?.readyAt, undefined);
  const zero = withPolicy(V2, { minReadyS: 0 });
  const z1 = stepOnce(V1_PLACED, report(V1_PLACED), [], zero);
  const z2 = stepOnce(z1.placements, report(z1.placements, { 0: { runningSince: undefined } }), z1.rollouts, zero);
  t.equal(revs(z2.placements), '22111', 'minReadyS 0: the first running report is enough');
});

t.test('plan(): a rollout driven to the end never has more than maxUnavailable replicas down', async (t) => {
  const v2 = withPolicy(V2, { maxUnavailable: 2, canary: 1 });
  let placements = V1_PLACED;
  let rollouts: RolloutStatus[] = [];
  let health = report(placements);
  const phases: string[] = [];
  for (let i = 0; i < 20; i++) {
    const r = plan({
      devices: DEVICES, deployments: [{ spec: v2, revision: 2, others: [{ spec: V1, revision: 1 }] }], placements, measurements: [],
      health, rollouts, now: NOW, graceMs: 60_000,
    });
    phases.push(r.rollouts[0]?.phase ?? '?');
    // Devices whose desired set changed replace the container: down until the next report.
    const changed = new Set(r.affectedDevices);
    const down = r.placements.filter((p) => changed.has(p.deviceId)).length + health.filter((h) => h.phase !== 'running').length;
    t.ok(down <= 2, `step ${i}: ${down} down`);
    placements = r.placements;
    rollouts = r.rollouts;
    health = report(placements);
    if (r.rollouts[0]?.phase === 'Complete') {
      t.equal(r.status[0]?.phase, 'Available');
      break;
    }
    t.equal(r.status[0]?.phase, 'Progressing');
  }
  t.same(phases, ['Canary', 'Waves', 'Waves', 'Complete'], 'canary, two waves of two, done');
  t.equal(revs(placements), '22222');
});

t.test('plan(): a rolled-back deployment is Degraded, not Available', async (t) => {
  const s1 = plan({ devices: DEVICES, deployments: [{ spec: V2, revision: 2, others: [{ spec: V1, revision: 1 }] }], placements: V1_PLACED, measurements: [], health: report(V1_PLACED), rollouts: [], now: NOW, graceMs: 60_000 });
  const s2 = plan({ devices: DEVICES, deployments: [{ spec: V2, revision: 2, others: [{ spec: V1, revision: 1 }] }], placements: s1.placements, measurements: [], health: report(s1.placements, { 0: { phase: 'failed', restarts: 4 } }), rollouts: s1.rollouts, now: NOW, graceMs: 60_000 });
  t.equal(s2.rollouts[0]?.phase, 'RolledBack');
  t.equal(revs(s2.placements), '11111');
  t.same(s2.placements.map((p) => p.deviceId), ['a', 'b', 'c', 'd', 'e'], 'rolled back in place, not moved for failing');
  const s3 = plan({ devices: DEVICES, deployments: [{ spec: V2, revision: 2, others: [{ spec: V1, revision: 1 }] }], placements: s2.placements, measurements: [], health: report(s2.placements), rollouts: s2.rollouts, now: NOW, graceMs: 60_000 });
  t.equal(s3.status[0]?.phase, 'Degraded');
  t.match(s3.status[0]?.message, /^revision 2 rolled back to 1 after/);
  t.equal(s3.status[0]?.revision, 1);
});

t.test('desiredFor: the agent accepts the set it writes', async (t) => {
  const devices = [dev('arm', { arch: 'aarch64', accels: ['edgetpu'], memGi: 16, cores: 8 }), dev('x86', { accels: ['tensorrt'], memGi: 16, cores: 8 })];
  const s = spec({ replicas: 4, strategy: 'binpack', runtime: {
    variants: [
      { arch: 'x86_64', image: 'rt', url: 'https://i.example/rt-amd64.tar.gz', sha256: SHA('a') },
      { arch: 'aarch64', image: 'rt', url: 'https://i.example/rt-arm64.tar.gz', sha256: SHA('b') },
    ],
    args: ['/app/detect', '--fast'], env: { LOG: 'info' },
  }, resources: { memory: '256Mi', cpus: 0.5 } });
  const r = schedule({ devices, deployments: [{ spec: s, revision: 1 }], placements: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(r.placements.map((p) => `${p.container}@${p.deviceId}:${p.accelerator}`), ['det-0@x86:tensorrt', 'det-1@x86:tensorrt', 'det-2@x86:tensorrt', 'det-3@x86:tensorrt']);
  const set = desiredFor('x86', r.placements, [{ spec: s, revision: 1 }]);
  t.same(set.workloads[0], {
    name: 'det-0', image: `rt-${'a'.repeat(12)}`, args: ['/app/detect', '--fast'],
    env: { LOG: 'info', FEATHER_DEPLOYMENT: 'det', FEATHER_REPLICA: '0', FEATHER_ACCELERATOR: 'tensorrt', FEATHER_PRECISION: 'fp16', FEATHER_MODEL_PATH: '/models/yolo/trt16.engine' },
    limits: { memory: '256Mi', cpu: 0.5, pids: 256 }, restart: 'always',
    models: [{ name: 'yolo', url: 'https://m.example/trt16.engine', sha256: SHA('1') }],
  });
  t.same(set.workloads.map((w) => w.name), ['det-0', 'det-1', 'det-2', 'det-3']);
  t.same(set.images, [{ name: `rt-${'a'.repeat(12)}`, url: 'https://i.example/rt-amd64.tar.gz', sha256: SHA('a') }], 'one image for four replicas');
  const parsed = validateDesired(JSON.parse(JSON.stringify({ generation: 7, ...set })));
  t.equal(parsed.workloads.length, 4);
  t.equal(parsed.workloads[0]?.limits.memoryBytes, 256 * 2 ** 20);
  t.equal(parsed.workloads[0]?.restart, 'always');
  t.same(desiredFor('arm', r.placements, [{ spec: s, revision: 1 }]), { workloads: [], images: [] }, 'nothing placed there');

  const arm = desiredFor('arm', [{ ...(r.placements[0] as Placement), deviceId: 'arm', arch: 'aarch64', accelerator: 'edgetpu', precision: 'int8' }], [{ spec: s, revision: 1 }]);
  t.equal(arm.images[0]?.url, 'https://i.example/rt-arm64.tar.gz', 'the arm image on the arm device');
  t.equal(arm.workloads[0]?.models[0]?.url, 'https://m.example/tpu8.tflite', 'the int8 Edge TPU model');
});

t.test('desiredFor: two revisions on one device, images named apart; revisions must be given', async (t) => {
  const mixed = [at('a', 0, 2), at('a', 1, 1)];
  const set = desiredFor('a', mixed, [{ spec: V2, revision: 2, others: [{ spec: V1, revision: 1 }] }]);
  t.same(set.images.map((i) => i.name), [`rt-${'a'.repeat(12)}`, `rt-${'c'.repeat(12)}`]);
  t.same(set.workloads.map((w) => `${w.name}:${w.image}`), [`det-0:rt-${'c'.repeat(12)}`, `det-1:rt-${'a'.repeat(12)}`]);
  t.doesNotThrow(() => validateDesired({ generation: 1, ...set }));
  t.throws(() => desiredFor('a', mixed, [{ spec: V2, revision: 2 }]), { code: 'INTERNAL', message: /revision 1 of det, which is not among the deployments given/ });
  const withDevices = desiredFor('a', [at('a', 0, 2)], [{ spec: V2, revision: 2 }], { devices: (p) => [`feather.dev/${p.accelerator}=0`] });
  t.same(withDevices.workloads[0]?.devices, ['feather.dev/cpu=0']);
  const noArch = { ...at('a', 0, 2) };
  delete noArch.arch;
  t.equal(desiredFor('a', [noArch], [{ spec: V2, revision: 2 }]).workloads.length, 1, 'one runtime variant: no arch needed');
});
