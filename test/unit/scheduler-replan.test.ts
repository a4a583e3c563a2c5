// schedule(): re-planning (grace period, failing replicas, latency objective, revisions) and status phases.
import t from 'tap';
import type { DeviceView, Placement } from '../../controller/model/types.js';
import { schedule, type ReplicaHealth } from '../../controller/scheduler/index.js';

import { NOW, SHA, dev, measure, run, spec, where } from '../helpers/scheduler-fixture.js';

const at = (deviceId: string, replica = 0, o: Partial<Placement> = {}): Placement => ({
  deployment: 'det', revision: 1, replica, deviceId, accelerator: 'cpu', precision: 'fp32', container: `det-${replica}`, arch: 'x86_64', ...o,
});

function healthy(placements: Placement[], o: Partial<ReplicaHealth> = {}): ReplicaHealth[] {
  return placements.map((p) => ({ deployment: p.deployment, replica: p.replica, deviceId: p.deviceId, revision: p.revision, phase: 'running', restarts: 0, ...o }));
}

t.test('offline within the grace period: kept; past it: moved', async (t) => {
  const s = spec({ accelerators: ['cpu'] });
  const devices = (lastSeen: number): DeviceView[] => [dev('a', { online: false, lastSeen }), dev('b')];
  const within = run(devices(NOW - 30_000), [s], { placements: [at('a')] });
  t.same(within.placements, [at('a')], 'kept on a during the 60 s grace');
  t.same(within.moves, []);
  t.same(within.affectedDevices, []);
  t.equal(within.status[0]?.replicas[0]?.state, 'offline');
  t.match(within.status[0]?.replicas[0]?.reason, /within the grace period/);
  t.equal(within.status[0]?.phase, 'Degraded');

  const past = run(devices(NOW - 120_000), [s], { placements: [at('a')] });
  t.same(past.placements, [at('b')]);
  t.same(past.moves.map((m) => `${m.from}->${m.to}:${m.reason}`), ['a->b:device-offline']);
  t.match(past.moves[0]?.detail, /offline for 2 min, past the 60 s grace period/);
  t.same(past.affectedDevices, ['a', 'b'], 'both desired sets change: a drops it (retained for when it returns), b gets it');
  t.equal(past.placements[0]?.avoid, undefined, 'an offline device is not avoided later');
});

t.test('offline past grace with nowhere to go: stays, reported offline', async (t) => {
  const r = run([dev('a', { online: false, lastSeen: NOW - 3_600_000 }), dev('b', { arch: 'riscv64' })], [spec()], { placements: [at('a')] });
  t.same(r.placements, [at('a')]);
  t.same(r.moves, []);
  t.match(r.status[0]?.replicas[0]?.reason, /offline/);
});

t.test('a device that left the fleet: its replica is re-placed, or unscheduled', async (t) => {
  const r = run([dev('b')], [spec()], { placements: [at('gone')] });
  t.same(r.placements.map((p) => p.deviceId), ['b']);
  t.same(r.moves.map((m) => `${m.from}->${m.to}:${m.reason}`), ['gone->b:device-gone']);
  const nowhere = run([], [spec()], { placements: [at('gone')] });
  t.same(nowhere.placements, []);
  t.same(nowhere.moves.map((m) => `${m.from}->${m.to ?? 'nowhere'}`), ['gone->nowhere']);
  t.equal(nowhere.status[0]?.replicas[0]?.state, 'unschedulable');
});

t.test('a replica that fails repeatedly moves to another device, and not back', async (t) => {
  const s = spec({ accelerators: ['cpu'] });
  const devices = [dev('a'), dev('b'), dev('c')];
  const p = at('a');
  const once = run(devices, [s], { placements: [p], health: healthy([p], { phase: 'failed', restarts: 2, reason: 'exited with code 1' }) });
  t.same(once.placements, [p], '2 restarts: not yet (failureRestarts 3)');
  t.equal(once.status[0]?.replicas[0]?.state, 'failed');
  t.equal(once.status[0]?.phase, 'Failed', 'the only replica fails');

  const thrice = run(devices, [s], { placements: [p], health: healthy([p], { phase: 'failed', restarts: 3, reason: 'exited with code 1' }) });
  t.same(thrice.placements, [at('b', 0, { avoid: ['a'] })]);
  t.same(thrice.moves, [{ deployment: 'det', replica: 0, from: 'a', to: 'b', reason: 'failing', detail: 'failed after 3 restarts (exited with code 1)' }]);
  t.equal(thrice.status[0]?.replicas[0]?.state, 'pending', 'the new home has not reported yet');

  const moved = thrice.placements[0] as Placement;
  const again = run(devices, [s], { placements: [moved], health: healthy([moved], { phase: 'failed', restarts: 5 }) });
  t.same(again.placements, [at('c', 0, { avoid: ['a', 'b'] })], 'not back to a');

  const running = run(devices, [s], { placements: [p], health: healthy([p], { restarts: 7 }) });
  t.same(running.placements, [p], 'restarts long ago, running now: stays');
  const stale = run(devices, [s], { placements: [p], health: healthy([p], { phase: 'failed', restarts: 9, revision: 0 }) });
  t.same(stale.placements, [p], 'health of another revision does not count');
  const elsewhere = run(devices, [s], { placements: [p], health: healthy([p], { phase: 'failed', restarts: 9, deviceId: 'b' }) });
  t.same(elsewhere.placements, [p], 'health from the device it left does not count');
});

t.test('a replica moved maxAvoid times is not moved again', async (t) => {
  const p = at('d', 0, { avoid: ['a', 'b', 'c'] });
  const r = run(['a', 'b', 'c', 'd', 'e'].map((id) => dev(id)), [spec({ accelerators: ['cpu'] })], { placements: [p], health: healthy([p], { phase: 'failed', restarts: 4 }) });
  t.same(r.placements, [p]);
  t.same(r.moves, []);
  t.match(r.status[0]?.replicas[0]?.reason, /moved 3 times already, not moved again/);
});

t.test('failing with no other device: stays, with the reason', async (t) => {
  const p = at('a');
  const r = run([dev('a')], [spec({ accelerators: ['cpu'] })], { placements: [p], health: healthy([p], { phase: 'failed', restarts: 3 }) });
  t.same(r.placements, [p]);
  t.match(r.status[0]?.replicas[0]?.reason, /no other device fits/);
});

t.test('latency objective broken over the window: moves to a better board class if one exists', async (t) => {
  const s = spec({ accelerators: ['cpu'], p95LatencyMs: 40 });
  const devices = [dev('a', { boardClass: 'pi4' }), dev('b', { boardClass: 'pi4' }), dev('c', { boardClass: 'nuc' }), dev('d', { boardClass: 'unknown' })];
  const p = at('a');
  const slow = [50, 60, 55].map((ms, i) => measure('a', 'pi4', ms, { at: NOW - 60_000 * (i + 1) }));
  const nucFast = measure('x', 'nuc', 20);
  const r = run(devices, [s], { placements: [p], measurements: [...slow, nucFast], health: healthy([p]) });
  t.same(r.placements, [at('c', 0, { avoid: ['a'] })], 'c: its class measured at 20 ms; b is a pi4 (median 55), d unknown');
  t.same(r.moves.map((m) => `${m.from}->${m.to}:${m.reason}`), ['a->c:latency']);
  t.match(r.moves[0]?.detail, /p95 above 40 ms in all 3 measurements of the last 300 s \(lowest 50 ms\)/);

  const noBetter = run(devices.filter((d) => d.id !== 'c'), [s], { placements: [p], measurements: slow, health: healthy([p]) });
  t.same(noBetter.placements, [p], 'no board known to meet the objective: stays (an unknown board is not a better one)');
  t.equal(noBetter.status[0]?.replicas[0]?.slow, true);
  t.equal(noBetter.status[0]?.replicas[0]?.p95Ms, 50, 'the latest measurement');
  t.equal(noBetter.status[0]?.phase, 'Degraded');
  t.match(noBetter.status[0]?.replicas[0]?.reason, /no board known to meet the objective has room/);

  const twoSamples = run(devices, [s], { placements: [p], measurements: [...slow.slice(0, 2), nucFast], health: healthy([p]) });
  t.same(twoSamples.placements, [p], 'fewer than 3 samples in the window: not judged yet');
  const oneGood = run(devices, [s], { placements: [p], measurements: [...slow, measure('a', 'pi4', 30, { at: NOW - 30_000 }), nucFast], health: healthy([p]) });
  t.same(oneGood.placements, [p], 'one measurement within the objective: not a breach');
  const old = run(devices, [s], { placements: [p], measurements: [...slow.map((m) => ({ ...m, at: m.at - 600_000 })), nucFast], health: healthy([p]) });
  t.same(old.placements, [p], 'outside the window: not a breach');
  const noObjective = run(devices, [spec({ accelerators: ['cpu'] })], { placements: [p], measurements: [...slow, nucFast] });
  t.same(noObjective.placements, [p]);
});

t.test('a new revision that no longer fits the device moves the replica', async (t) => {
  const arm = dev('arm', { arch: 'aarch64' });
  const x86 = dev('x86');
  const p = at('arm', 0, { arch: 'aarch64' });
  const x86only = spec({ runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'https://i.example/rt', sha256: SHA('a') }] }, accelerators: ['cpu'] });
  const r = schedule({ devices: [arm, x86], deployments: [{ spec: x86only, revision: 2 }], placements: [{ ...p, revision: 2 }], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(r.placements, [at('x86', 0, { revision: 2 })]);
  t.same(r.moves.map((m) => `${m.from}->${m.to}:${m.reason}`), ['arm->x86:device-unfit']);
  t.match(r.moves[0]?.detail, /no runtime image for aarch64 in revision 2/);

  const bigger = spec({ replicas: 3, accelerators: ['cpu'], resources: { memory: '3Gi', cpus: 1 } });
  const crowded = [at('x86', 0), at('x86', 1), at('x86', 2)].map((q) => ({ ...q, revision: 2 }));
  const r2 = schedule({ devices: [x86, dev('y')], deployments: [{ spec: bigger, revision: 2 }], placements: crowded, measurements: [], now: NOW, graceMs: 60_000 });
  t.same(r2.placements.map((q) => `${q.replica}@${q.deviceId}`), ['0@x86', '1@y'], 'the first keeps its room; the others move where they fit');
  t.equal(r2.status[0]?.unschedulable.replicas, 1);
  t.same(r2.moves.map((m) => `${m.replica}:${m.to ?? 'nowhere'}:${m.reason}`), ['1:y:device-unfit', '2:nowhere:device-unfit']);
});

t.test('placements at older revisions are judged by their own spec, new replicas get the current one', async (t) => {
  const v1 = spec({ accelerators: ['cpu'], resources: { memory: '3Gi', cpus: 1 } });
  const v2 = spec({ accelerators: ['cpu'], replicas: 2, resources: { memory: '2Gi', cpus: 1 } });
  const old = at('a');
  const r = schedule({
    devices: [dev('a')], deployments: [{ spec: v2, revision: 2, others: [{ spec: v1, revision: 1 }] }],
    placements: [old], measurements: [], now: NOW, graceMs: 60_000,
  });
  t.same(r.placements.map((p) => `${p.replica}@${p.deviceId}:r${p.revision}`), ['0@a:r1'], 'r1 holds 3Gi of a (r1 resources), so r2 (2Gi) finds no room for replica 1');
  t.equal(r.status[0]?.unschedulable.replicas, 1);
  t.equal(r.status[0]?.updated, 0);
  t.match(r.status[0]?.message, /1 at another revision than 2/);
});

t.test('status phases: Progressing, Available, Degraded, Failed', async (t) => {
  const devices = [dev('a'), dev('b'), dev('c')];
  const s = spec({ replicas: 3, accelerators: ['cpu'] });
  const first = run(devices, [s]);
  t.equal(first.status[0]?.phase, 'Progressing');
  t.same(first.status[0]?.replicas.map((r) => r.state), ['pending', 'pending', 'pending']);
  t.match(first.status[0]?.message, /0\/3 running; 3 starting/);
  const ps = first.placements;
  const pulling = run(devices, [s], { placements: ps, health: healthy(ps, { phase: 'pulling' }) });
  t.equal(pulling.status[0]?.phase, 'Progressing');
  const up = run(devices, [s], { placements: ps, health: healthy(ps) });
  t.equal(up.status[0]?.phase, 'Available');
  t.same(up.status[0]?.replicas.map((r) => `${r.replica}@${r.deviceId}:${r.state}`), ['0@a:running', '1@b:running', '2@c:running']);
  t.equal(up.status[0]?.message, '3/3 running');
  const oneFailed = run(devices, [s], { placements: ps, health: [...healthy(ps.slice(0, 2)), ...healthy(ps.slice(2), { phase: 'failed', reason: 'exited with code 2' })] });
  t.equal(oneFailed.status[0]?.phase, 'Degraded');
  t.equal(oneFailed.status[0]?.replicas[2]?.reason, 'exited with code 2');
  const allFailed = run(devices, [s], { placements: ps, health: healthy(ps, { phase: 'failed' }) });
  t.equal(allFailed.status[0]?.phase, 'Failed');
  const updating = run(devices, [s], { placements: ps, health: healthy(ps, { revision: 0 }) });
  t.equal(updating.status[0]?.phase, 'Progressing');
  t.equal(updating.status[0]?.replicas[0]?.reason, 'updating from revision 0');
  const zero = run(devices, [spec({ replicas: 0 })], { placements: ps });
  t.equal(zero.status[0]?.phase, 'Available');
  t.match(zero.status[0]?.message, /scaled to 0/);
});

t.test('an invalid spec fails its deployment and leaves its placements alone', async (t) => {
  const bad = { ...spec(), resources: { memory: 'lots', cpus: 1 } };
  const p = at('a');
  const r = run([dev('a')], [bad], { placements: [p] });
  t.same(r.placements, [p]);
  t.equal(r.status[0]?.phase, 'Failed');
  t.match(r.status[0]?.message, /invalid spec: memory limit "lots" is not a size/);
});

t.test('several slow replicas, room on a fast board for one: the first moves, the others stay', async (t) => {
  const s = spec({ replicas: 3, accelerators: ['cpu'], p95LatencyMs: 40, resources: { memory: '3Gi', cpus: 1 } });
  const devices = [dev('a', { boardClass: 'pi4' }), dev('b', { boardClass: 'pi4' }), dev('c', { boardClass: 'pi4' }), dev('f', { boardClass: 'nuc' })];
  const ps = [at('a', 0), at('b', 1), at('c', 2)];
  const slow = ['a', 'b', 'c'].flatMap((id) => [50, 60, 55].map((ms, i) => measure(id, 'pi4', ms, { at: NOW - 60_000 * (i + 1) })));
  const r = run(devices, [s], { placements: ps, measurements: [...slow, measure('x', 'nuc', 20)], health: healthy(ps) });
  t.same(r.placements.map((p) => `${p.replica}@${p.deviceId}`), ['0@f', '1@b', '2@c']);
  t.same(r.moves.map((m) => `${m.replica}:${m.from}->${m.to}`), ['0:a->f']);
  t.same(r.status[0]?.replicas.map((x) => x.slow ?? false), [false, true, true]);
  t.match(r.status[0]?.replicas[2]?.reason, /no board known to meet the objective has room/);
});
