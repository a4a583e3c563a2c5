// Layered runtime images in deployments: a runtime variant's `layers` travel into the workloads
// desiredFor writes, the agent accepts them, and a revision that changes only a layer rolls out
// like any other change (the agent replaces the containers that move to it, and only those).
import t from 'tap';
import type { Inventory } from '../../shared/protocol/inventory.js';
import { validateDesired } from '../../shared/protocol/desired.js';
import { OWNER_LABEL, SPEC_HASH_LABEL, specHash } from '../../agent/reconcile/labels.js';
import { plan as agentPlan } from '../../agent/reconcile/plan.js';
import type { ContainerInfo } from '../../agent/runtime/types.js';
import { validateDeployment } from '../../controller/deployments/spec.js';
import type { DeploymentSpec, DeviceView, Placement } from '../../controller/model/types.js';
import { desiredFor, plan, workloadFor, type DesiredSet, type ReplicaHealth } from '../../controller/scheduler/index.js';

const NOW = 1_700_000_000_000;
const SHA = (c: string): string => c.repeat(64);
const ORT_1 = { name: 'onnxruntime', url: 'https://i.example/ort-1.17.tar.gz', sha256: SHA('1') };
const ORT_2 = { name: 'onnxruntime', url: 'https://i.example/ort-1.18.tar.gz', sha256: SHA('2') };

function dev(id: string, arch: 'x86_64' | 'aarch64' = 'x86_64'): DeviceView {
  const inventory: Inventory = {
    id, arch, cpu: { model: 'test cpu', cores: 4, flags: [] }, memoryBytes: 4 * 2 ** 30, disk: { freeBytes: 1e10 },
    kernel: '6.1', cgroup: 'v2', accelerators: [], labels: {}, runtimes: ['shim'],
  };
  return { id, online: true, lastSeen: NOW, inventory, labels: {}, boardClass: `${arch}/cpu` };
}

function spec(ort: typeof ORT_1, replicas = 3): DeploymentSpec {
  return validateDeployment({
    name: 'det',
    model: { name: 'yolo', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'https://m.example/yolo.onnx', sha256: SHA('9') }] },
    runtime: { variants: [
      { arch: 'x86_64', image: 'busybox', url: 'https://i.example/busybox-amd64.tar.gz', sha256: SHA('a'), layers: [ort] },
      { arch: 'aarch64', image: 'busybox', url: 'https://i.example/busybox-arm64.tar.gz', sha256: SHA('b') },
    ], args: ['/opt/ort/bin/detect'] },
    replicas,
    resources: { memory: '256Mi', cpus: 0.5 },
    rollout: { maxUnavailable: 1, canary: 1, failureThreshold: 2 },
  });
}

t.test('workloadFor/desiredFor: the variant of the device\'s arch brings its layers; the agent accepts the set', async (t) => {
  const s = spec(ORT_1);
  const p: Placement = { deployment: 'det', revision: 1, replica: 0, deviceId: 'x', accelerator: 'cpu', precision: 'fp32', container: 'det-0', arch: 'x86_64' };
  const { workload, image } = workloadFor(p, s);
  t.same(workload.layers, [ORT_1]);
  t.equal(image.sha256, SHA('a'));
  t.notOk('layers' in workloadFor({ ...p, arch: 'aarch64' }, s).workload, 'a variant without layers writes no layers field');

  const set = desiredFor('x', [p, { ...p, replica: 1, container: 'det-1' }], [{ spec: s, revision: 1 }]);
  t.same(set.images.map((i) => i.name), [`busybox-${'a'.repeat(12)}`], 'layers are not images: they travel in the workloads');
  const parsed = validateDesired(JSON.parse(JSON.stringify({ generation: 3, ...set })));
  t.same(parsed.workloads.map((w) => w.layers), [[ORT_1], [ORT_1]]);
});

t.test('a revision that changes only a layer rolls out like any change: canary first, only moved replicas are replaced', async (t) => {
  const devices = ['a', 'b', 'c'].map((id) => dev(id));
  const v1 = spec(ORT_1);
  const v2 = spec(ORT_2);
  const r1 = plan({ devices, deployments: [{ spec: v1, revision: 1 }], placements: [], rollouts: [], measurements: [], now: NOW, graceMs: 60_000 });
  t.same(r1.placements.map((p) => p.deviceId).sort(), ['a', 'b', 'c']);
  const health = (ps: Placement[]): ReplicaHealth[] => ps.map((p) => ({ deployment: p.deployment, replica: p.replica, deviceId: p.deviceId, revision: p.revision, phase: 'running', restarts: 0 }));

  // Each device runs what revision 1 asked for: owned containers with the agent's spec hash.
  const deployments = [{ spec: v2, revision: 2, others: [{ spec: v1, revision: 1 }] }];
  const before = new Map(devices.map((d) => [d.id, desiredFor(d.id, r1.placements, [{ spec: v1, revision: 1 }])]));
  const running = (set: DesiredSet | undefined): ContainerInfo[] => validateDesired({ generation: 1, ...set }).workloads.map((w) => ({
    name: w.name, image: w.image, imageSha256: SHA('a'), status: 'running', pid: 10, exitCode: undefined, oomKilled: false,
    createdAt: NOW, startedAt: NOW, finishedAt: undefined, limits: { memoryBytes: 2 ** 28, cpus: 0.5, pids: 256 },
    args: w.args, restart: w.restart, restarts: 0, labels: { [OWNER_LABEL]: 'desired', [SPEC_HASH_LABEL]: specHash(w) },
  }));

  const r2 = plan({ devices, deployments, placements: r1.placements, rollouts: r1.rollouts, health: health(r1.placements), measurements: [], now: NOW, graceMs: 60_000 });
  t.equal(r2.rollouts[0]?.phase, 'Canary');
  const moved = r2.placements.filter((p) => p.revision === 2);
  t.equal(moved.length, 1, 'one canary');
  t.same(r2.affectedDevices, [moved[0]?.deviceId]);

  for (const d of devices) {
    const after = desiredFor(d.id, r2.placements, deployments);
    const desired = validateDesired({ generation: 2, ...after });
    const steps = agentPlan({ now: NOW, containers: running(before.get(d.id)), images: { [`busybox-${'a'.repeat(12)}`]: SHA('a') }, models: new Set([SHA('9')]), layers: new Set([SHA('1')]) }, desired);
    if (d.id === moved[0]?.deviceId) {
      t.same(after.workloads[0]?.layers, [ORT_2], 'the canary gets the new layer');
      t.same(steps.map((s) => s.action), ['pullLayer', 'replace'], 'the device pulls the new layer only, then replaces');
      t.match(steps[0], { layer: { sha256: SHA('2') } });
    } else {
      t.same(after, before.get(d.id), `${d.id}: the desired set is unchanged`);
      t.same(steps, [], `${d.id}: nothing to do`);
    }
  }
});
