// The fleet end to end: one controller (embedded broker, temp data dir, offlineGraceS 3) and three
// real `feather-agent daemon` processes on this machine, each with its own data dir, run dir,
// device token and fake host root (test/helpers/fleet-fixture.ts), so the controller sees three
// different boards:
//   jetson  aarch64, CUDA (Jetson files), 4 cores     labels zone=north board=jetson
//   tpu     x86_64, Coral PCIe Edge TPU, 8 cores      labels zone=south board=coral
//           (/dev/apex_0 under its fake root is a real character node, 1:3)
//   cpu     x86_64, CPU only, 8 cores                 labels zone=north board=nuc
// Every container really runs here, on x86_64, whatever the board reports: the deployments give
// the same busybox tarball for x86_64 and aarch64, and tiny model files per accelerator and
// precision, all served over node:http. What is checked, through the controller's context
// (ctx.deployments.apply of YAML files; status from the store) and each board's
// `feather-agent ps --json` / `logs`:
//   - each inventory names the CDI devices of its accelerators: the TPU box's agent wrote its
//     Coral spec under its fake root and reports google.com/edgetpu=apex_0; the Jetson has no
//     NVIDIA spec and reports none;
//   - a selector deployment lands on the labelled boards only, and deleting it removes them;
//   - an Edge TPU deployment of two replicas: one holds the TPU, its workload names the TPU's CDI
//     device and its container opens and writes /dev/apex_0; the other is unschedulable (one
//     TPU); deleting it frees the TPU;
//   - accelerators [cuda, edgetpu, cpu], replicas 2, 3 cores each: the Jetson (one fits) then the
//     Edge TPU box; precisions per docs/scheduling.md (cuda fp16, edgetpu int8, cpu fp32), the
//     model file of that variant mounted in each container; status Available;
//   - a board dies (agent SIGKILL, its containers gone): after the grace period its replica runs
//     on the CPU box, status Available again;
//   - the controller stopped while revision 2 is Progressing and started again on the same data
//     dir: the rollout finishes, one container per replica across the fleet;
//   - a revision whose container exits 3 at once: the rollout stops, rolls back to revision 2
//     (running again), status Degraded saying so; the replica outside the canary is never touched
//     (a canary counts only after running for rollout.minReadyS, default 5 s).
// Broker authentication and ACLs (device tokens, refusals, revocation) are covered by
// controller-broker.test.ts and controller-fleet.test.ts, not repeated here.
// Needs root and `npm run build` (the agents run from dist/).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { parseDeployment } from '../../controller/deployments/spec.js';
import type { Placement } from '../../controller/model/types.js';
import type { DeploymentRecord } from '../../controller/store/types.js';
import { configureLogging } from '../../shared/logging.js';
import { cannotRun, until, type PsEntry } from '../helpers/daemon-fixture.js';
import { FleetFixture, type FleetAgent, type Served } from '../helpers/fleet-fixture.js';

configureLogging({ level: process.env['FEATHER_LOG_LEVEL'] === 'debug' ? 'debug' : 'silent' });

const GRACE_S = 3;
const skip = cannotRun();

/** A replica's command: print the model file it got and the revision, then sleep until SIGTERM. */
function sleeper(rev: number): string[] {
  return ['sh', '-c', `cat "$FEATHER_MODEL_PATH"; echo "rev=${rev} $FEATHER_ACCELERATOR/$FEATHER_PRECISION"; trap 'exit 0' TERM; sleep 3600 & wait`];
}

interface Artifacts {
  image: Served;
  models: Record<string, Served>;
}

function variant(a: Artifacts, key: string): string {
  const [accelerator, precision] = key.split('-');
  const m = a.models[key];
  if (m === undefined) throw new Error(`no model ${key}`);
  return `    - { accelerator: ${accelerator}, precision: ${precision}, url: "${m.url}", sha256: "${m.sha256}" }`;
}

/** A deployment file as an operator writes it (YAML; args as a JSON flow sequence). */
function deploymentYaml(a: Artifacts, o: { name: string; args: string[]; variants: string[]; accelerators: string[]; replicas?: number; selector?: Record<string, string>; cpus: number }): string {
  return [
    `name: ${o.name}`,
    'model:',
    '  name: det',
    '  variants:',
    ...o.variants.map((k) => variant(a, k)),
    'runtime:',
    '  variants:',
    `    - { arch: x86_64, image: fleetrt, url: "${a.image.url}", sha256: "${a.image.sha256}" }`,
    `    - { arch: aarch64, image: fleetrt, url: "${a.image.url}", sha256: "${a.image.sha256}" }`,
    `  args: ${JSON.stringify(o.args)}`,
    o.replicas !== undefined ? `replicas: ${o.replicas}` : `selector: ${JSON.stringify(o.selector ?? {})}`,
    'resources:',
    '  memory: 32Mi',
    `  cpus: ${o.cpus}`,
    '  pids: 16',
    `accelerators: [${o.accelerators.join(', ')}]`,
    'rollout: { maxUnavailable: 1, canary: 1, failureThreshold: 2 }',
    '',
  ].join('\n');
}

t.test('three real agents: placement, failover, controller restart mid-rollout, rollback', { skip, timeout: 240_000 }, async (t) => {
  const fx = await FleetFixture.create({ offlineGraceS: GRACE_S });
  t.teardown(async () => { await fx.cleanup(); });
  await fx.startController();
  const context = (): string => fx.tails();

  const art: Artifacts = {
    image: await fx.serveImage('/fleetrt.tar.gz', { 'etc/fleetrt': 'fleet runtime\n' }),
    models: Object.fromEntries(['cuda-fp32', 'cuda-fp16', 'edgetpu-fp32', 'edgetpu-int8', 'cpu-int8', 'cpu-fp32']
      .map((k) => [k, fx.serveFile(`/det-${k}.bin`, `model ${k.replace('-', '/')}\n`)])),
  };
  const jetson = await fx.addAgent({ name: 'jetson', box: 'arm64', accelerators: ['jetson'], labels: { zone: 'north', board: 'jetson' } });
  const tpu = await fx.addAgent({ name: 'tpu', box: 'x86', accelerators: ['coral-pcie'], labels: { zone: 'south', board: 'coral' }, charNodes: ['/dev/apex_0'] });
  const cpu = await fx.addAgent({ name: 'cpu', box: 'x86', accelerators: [], labels: { zone: 'north', board: 'nuc' } });
  await Promise.all(fx.agents.map((a) => a.start(fx.brokerUrl)));

  await until('three devices online with their inventories', () => fx.agents.every((a) => {
    const d = fx.ctx.store.getDevice(a.id);
    return d?.online === true && d.inventory !== undefined;
  }), { context, ms: 30_000 });

  await t.test('inventories differ by architecture, accelerators and labels', async (t) => {
    const inv = (a: FleetAgent) => fx.ctx.store.getDevice(a.id)?.inventory;
    t.equal(inv(jetson)?.arch, 'aarch64');
    t.same(inv(jetson)?.accelerators.map((x) => x.kind), ['cuda']);
    t.equal(inv(tpu)?.arch, 'x86_64');
    t.same(inv(tpu)?.accelerators.map((x) => x.kind), ['edgetpu']);
    t.equal(inv(cpu)?.arch, 'x86_64');
    t.same(inv(cpu)?.accelerators, []);
    t.same([inv(jetson)?.cpu.cores, inv(tpu)?.cpu.cores, inv(cpu)?.cpu.cores], [4, 8, 8], 'cores from the fake hosts');
    t.same(inv(tpu)?.labels, { zone: 'south', board: 'coral' });
  });

  await t.test('each inventory names its accelerators\' CDI devices: the spec the agent wrote, none without one', async (t) => {
    const inv = (a: FleetAgent) => fx.ctx.store.getDevice(a.id)?.inventory;
    const spec = JSON.parse(readFileSync(join(tpu.host.root, 'var/run/cdi/feather-google.com-edgetpu.json'), 'utf8')) as { kind: string; devices: Array<{ name: string; containerEdits: unknown }> };
    t.equal(spec.kind, 'google.com/edgetpu', 'the TPU box\'s agent wrote its Coral spec under its fake root');
    t.same(spec.devices, [{ name: 'apex_0', annotations: { 'feather/model': 'google Coral Edge TPU (PCIe)' }, containerEdits: { deviceNodes: [{ path: '/dev/apex_0', permissions: 'rw', type: 'c', major: 1, minor: 3 }] } }]);
    t.same(inv(tpu)?.accelerators.map((x) => [x.device, x.cdi]), [['/dev/apex_0', ['google.com/edgetpu=apex_0']]], 'and reports its name');
    t.same(inv(jetson)?.accelerators.map((x) => [x.kind, x.cdi]), [['cuda', []]], 'no NVIDIA spec on the Jetson: no name');
    t.same(inv(cpu)?.accelerators, []);
  });

  /** The deployment's containers on every board, by device id. */
  const containersOf = async (deployment: string): Promise<Map<string, PsEntry[]>> => {
    const all = await fx.psAll();
    for (const [id, list] of all) all.set(id, list.filter((c) => c.name.startsWith(`${deployment}-`)));
    return all;
  };
  const apply = async (yaml: string): Promise<DeploymentRecord> => (await fx.ctx.deployments.apply(parseDeployment(yaml))).deployment;

  await t.test('a selector deployment runs on the labelled boards only; delete removes it', async (t) => {
    const name = `sel-${fx.tag}`;
    await apply(deploymentYaml(art, { name, args: sleeper(1), variants: ['cpu-fp32'], accelerators: ['cpu'], selector: { zone: 'north' }, cpus: 0.1 }));
    const placed = fx.ctx.store.listPlacements({ deployment: name });
    t.same(placed.map((p) => p.deviceId).sort(), [cpu.id, jetson.id].sort(), 'one replica per zone=north board');
    for (const p of placed) fx.name(p.container);
    await until(`${name} Available`, () => fx.ctx.store.getDeployment(name)?.phase === 'Available', { context, ms: 60_000 });
    const running = await containersOf(name);
    for (const p of placed) {
      t.same(running.get(p.deviceId)?.map((c) => [c.name, c.status]), [[p.container, 'running']], `${p.container} runs on ${p.deviceId}`);
    }
    t.same(running.get(tpu.id), [], 'nothing on the zone=south board');
    t.ok(await fx.ctx.deployments.delete(name));
    await until(`${name}'s containers removed`, async () => [...(await containersOf(name)).values()].every((l) => l.length === 0), { context, ms: 30_000 });
  });

  await t.test('an Edge TPU deployment: the replica holding the TPU opens /dev/apex_0 through CDI; the second finds it held', async (t) => {
    const name = `tpu-${fx.tag}`;
    for (const r of [0, 1]) fx.name(`${name}-${r}`);
    const probe = [
      'ls -l /dev/apex_0',
      'test -c /dev/apex_0 && echo "apex_0: a character device"',
      'echo probe > /dev/apex_0 && echo "apex_0: written"',
      'echo "on $FEATHER_ACCELERATOR/$FEATHER_PRECISION"',
      'trap \'exit 0\' TERM; sleep 3600 & wait',
    ].join('; ');
    await apply(deploymentYaml(art, { name, args: ['sh', '-c', probe], variants: ['edgetpu-int8'], accelerators: ['edgetpu'], replicas: 2, cpus: 0.1 }));
    const placed = fx.ctx.store.listPlacements({ deployment: name });
    t.same(placed.map((p) => [p.container, p.deviceId, p.accelerator]), [[`${name}-0`, tpu.id, 'edgetpu']], 'one TPU in the fleet: one replica');
    const st = fx.ctx.store.getDeployment(name)?.status;
    t.match(st?.replicas[1], { replica: 1, state: 'unschedulable', reason: /no free edgetpu device \(a replica holds 1 edgetpu\)/ });
    t.same(fx.ctx.store.getDesired(tpu.id)?.workloads.map((w) => [w.name, w.devices]), [[`${name}-0`, ['google.com/edgetpu=apex_0']]],
      'the workload names the TPU\'s CDI device from the inventory');

    const lines = await until(`${name}-0 opened /dev/apex_0`, async () => {
      const running = (await tpu.ps()).find((c) => c.name === `${name}-0` && c.status === 'running');
      if (running === undefined) return false;
      const l = await tpu.logs(`${name}-0`);
      return l.some((x) => x.startsWith('on ')) && l;
    }, { context, ms: 60_000 });
    t.match(lines[0], /^crw-rw-rw-\s+\d+\s+\S+\s+\S+\s+1,\s+3 .*\/dev\/apex_0$/, 'the container sees the host\'s node: character, 1:3');
    t.same(lines.slice(1), ['apex_0: a character device', 'apex_0: written', 'on edgetpu/int8'], 'and can write it');

    t.ok(await fx.ctx.deployments.delete(name));
    await until(`${name}'s containers removed`, async () => [...(await containersOf(name)).values()].every((l) => l.length === 0), { context, ms: 30_000 });
    t.same(fx.ctx.store.listPlacements({ deployment: name }), [], 'the TPU is free again');
  });

  const name = `det-${fx.tag}`;
  for (const r of [0, 1]) fx.name(`${name}-${r}`);
  const rec = (): DeploymentRecord => {
    const d = fx.ctx.store.getDeployment(name);
    if (d === undefined) throw new Error(`${name} is not known to the controller`);
    return d;
  };
  const placement = (replica: number): Placement | undefined => fx.ctx.store.listPlacements({ deployment: name }).find((p) => p.replica === replica);
  const allVariants = ['cuda-fp32', 'cuda-fp16', 'edgetpu-fp32', 'edgetpu-int8', 'cpu-int8', 'cpu-fp32'];
  const revision = (rev: number, args = sleeper(rev)): string => deploymentYaml(art, { name, args, variants: allVariants, accelerators: ['cuda', 'edgetpu', 'cpu'], replicas: 2, cpus: 3 });
  const describe = (): string => `${JSON.stringify({ phase: rec().phase, message: rec().message, rollout: rec().rollout?.message })}\n${context()}`;

  /** Both replicas run at `rev` where the controller placed them, nowhere else; returns their ps entries. */
  const runningAt = async (rev: number): Promise<PsEntry[] | false> => {
    const placed = fx.ctx.store.listPlacements({ deployment: name });
    if (placed.length !== 2 || placed.some((p) => p.revision !== rev)) return false;
    const all = await containersOf(name);
    const out: PsEntry[] = [];
    for (const [id, list] of all) {
      const mine = placed.filter((p) => p.deviceId === id).map((p) => p.container).sort();
      const names = list.map((c) => c.name).sort();
      if (JSON.stringify(mine) !== JSON.stringify(names)) return false;
      if (list.some((c) => c.status !== 'running' || !c.args.join(' ').includes(`rev=${rev} `))) return false;
      out.push(...list);
    }
    return out;
  };
  const available = async (rev: number): Promise<PsEntry[]> => until(`${name} Available at revision ${rev}`, async () => {
    const d = fx.ctx.store.getDeployment(name);
    if (d?.phase !== 'Available' || d.status?.revision !== rev || d.status.running !== 2) return false;
    return runningAt(rev);
  }, { context: describe, ms: 60_000 });

  await t.test('accelerator preference and precision: the Jetson, then the Edge TPU box', async (t) => {
    const r = await apply(revision(1));
    t.equal(r.revision, 1);
    const p0 = placement(0);
    const p1 = placement(1);
    t.same([p0?.deviceId, p0?.accelerator, p0?.precision], [jetson.id, 'cuda', 'fp16'], 'replica 0: CUDA at fp16 (fp16 before fp32 on cuda)');
    t.same([p1?.deviceId, p1?.accelerator, p1?.precision], [tpu.id, 'edgetpu', 'int8'], 'replica 1: the Jetson is full (3 of 4 cores), Edge TPU at int8');
    const list = await available(1);
    t.equal(list.length, 2);
    t.same(await jetson.logs(`${name}-0`), ['model cuda/fp16', 'rev=1 cuda/fp16'], 'the cuda fp16 model file is mounted in the Jetson replica');
    t.same(await tpu.logs(`${name}-1`), ['model edgetpu/int8', 'rev=1 edgetpu/int8'], 'the edgetpu int8 model file in the TPU replica');
    t.same(fx.ctx.store.getDesired(tpu.id)?.workloads.map((w) => w.devices), [['google.com/edgetpu=apex_0']], 'replica 1 holds the TPU, by its CDI name');
    t.same(fx.ctx.store.getDesired(jetson.id)?.workloads.map((w) => w.devices), [undefined], 'replica 0 shares a GPU the Jetson names no CDI device for: placed, without devices');
    t.same((await cpu.ps()).filter((c) => c.name.startsWith(name)), [], 'nothing on the CPU-only box');
    t.match(rec().status?.replicas, [{ replica: 0, state: 'running', deviceId: jetson.id }, { replica: 1, state: 'running', deviceId: tpu.id }]);
  });

  await t.test('a board dies: after the grace period its replica runs on the CPU box', async (t) => {
    await tpu.kill();
    // The board lost power: its containers die with it. (They must also go because all three
    // boards share this host's cgroup tree, where a container name is host-wide.)
    const removed = await tpu.removeAll();
    t.same(removed, { names: [`${name}-1`], errors: [] });
    await until('the TPU box offline', () => fx.ctx.store.getDevice(tpu.id)?.online === false, { context });
    t.equal(placement(1)?.deviceId, tpu.id, 'within the grace period the replica stays where it was');
    const moved = await until('replica 1 placed elsewhere', () => placement(1)?.deviceId !== tpu.id && placement(1), { context: describe, ms: GRACE_S * 1000 + 15_000 });
    t.same([moved.deviceId, moved.accelerator, moved.precision], [cpu.id, 'cpu', 'fp32'], 'the CPU box (the Jetson is full), cpu at fp32');
    t.equal(placement(0)?.deviceId, jetson.id, 'replica 0 did not move');
    await available(1);
    t.same(await cpu.logs(`${name}-1`), ['model cpu/fp32', 'rev=1 cpu/fp32']);
    t.same(fx.ctx.store.getDesired(tpu.id)?.workloads, [], 'the dead board\'s desired state is empty');
  });

  await t.test('the controller restarts while revision 2 rolls out: it finishes, nothing duplicated', async (t) => {
    const r = await apply(revision(2));
    t.equal(r.revision, 2);
    const at = rec();
    t.equal(at.phase, 'Progressing', 'revision 2 is rolling out');
    t.equal(at.rollout?.phase, 'Canary');
    await fx.stopController();
    await sleep(300);
    await fx.startController();
    t.equal(rec().revision, 2, 'revision 2 survived the restart');
    const list = await available(2);
    // Both run revision 2; the rollout completes once each has run for rollout.minReadyS (5 s).
    const done = await until('revision 2 rolled out', () => rec().rollout?.phase === 'Complete' && rec(), { context: describe, ms: 30_000 });
    t.equal(done.rollout?.stable, 2, 'revision 2 is the stable one');
    t.same(list.map((c) => c.name).sort(), [`${name}-0`, `${name}-1`], 'one container per replica across the fleet');
    t.same([placement(0)?.deviceId, placement(1)?.deviceId], [jetson.id, cpu.id], 'no replica moved during the restart');
    t.same(await jetson.logs(`${name}-0`), ['model cuda/fp16', 'rev=2 cuda/fp16'], 'replaced: the log starts again');
  });

  await t.test('a revision that exits 3 at once is rolled back to revision 2', async (t) => {
    const before = await containersOf(name);
    const pidOf = (id: string, n: string): number | undefined => before.get(id)?.find((c) => c.name === n)?.pid;
    const untouched = pidOf(cpu.id, `${name}-1`);
    t.ok(untouched, 'replica 1 runs on the CPU box');
    await apply(revision(3, ['sh', '-c', 'exit 3']));
    t.equal(rec().revision, 3);
    const rolled = await until('the rollout rolled back', () => rec().rollout?.phase === 'RolledBack' && rec(), { context: describe, ms: 60_000 });
    t.equal(rolled.phase, 'Degraded');
    t.match(rolled.message, /revision 3 rolled back to 2 after \d+ failures \(threshold 2\)/);
    t.equal(rolled.rollout?.placeRevision, 2);
    t.ok((rolled.rollout?.failureCount ?? 0) >= 2, 'failures counted from the reports');
    const list = await until('revision 2 running again on both boards', async () => {
      const d = rec();
      return d.status?.revision === 2 && d.status.running === 2 && runningAt(2);
    }, { context: describe, ms: 60_000 });
    t.equal(list.length, 2);
    t.equal(rec().phase, 'Degraded', 'still says the newest revision was rolled back');
    t.match(rec().message, /rolled back/);
    const after = await containersOf(name);
    // A container that exits at once is reported `running` for about a second first (exit
    // polling); the canary counts only after running for rollout.minReadyS (5 s by default), so
    // the failures roll it back before any other replica switches.
    t.equal(after.get(cpu.id)?.find((c) => c.name === `${name}-1`)?.pid, untouched, 'the replica outside the canary was never touched');
    t.same(await jetson.logs(`${name}-0`), ['model cuda/fp16', 'rev=2 cuda/fp16'], 'the canary runs revision 2 again');
  });

  t.same(await fx.cleanup(), { cgroups: [], mounts: [], containers: [] }, 'nothing of ours is left on the host');
});
