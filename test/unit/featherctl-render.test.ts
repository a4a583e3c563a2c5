// What featherctl prints (controller/cli/render.ts) and how --wait decides (cli/wait.ts): tables
// pinned line by line, JSON and YAML that parse back to the data, describe blocks, progress.
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import type { DeploymentDetail, DeploymentSummary, DeviceDetail, DeviceSummary } from '../../controller/api/views.js';
import {
  deploymentsTable, describeDeployment, describeDevice, devicesTable, eventDetails, eventsTable, formatBytes, formatMs, modelsTable, progressLine, serialize,
} from '../../controller/cli/render.js';
import { FAILED_GRACE_MS, judge, waitForDeployment, type Seen } from '../../controller/cli/wait.js';

const NOW = Date.parse('2026-12-04T12:00:00Z');

const device: DeviceSummary = {
  id: 'edge-01', online: true, state: 'online', lastSeen: NOW - 5000, stateChangedAt: NOW - 600_000, agentVersion: '0.1.0', arch: 'aarch64',
  cpu: { model: 'Cortex-A72', cores: 4 }, memoryBytes: 4 * 2 ** 30, accelerators: ['edgetpu:Coral'], labels: { site: 'lab' }, token: true,
  workloads: { desired: 2, running: 1 }, generation: { desired: 3, reported: 3 }, metricsTarget: '10.0.0.7:9464',
};
const offline: DeviceSummary = { ...device, id: 'edge-02', online: false, state: 'offline', lastSeen: NOW - 7_200_000, token: false, accelerators: [], arch: null, agentVersion: null, workloads: { desired: 0, running: 0 }, metricsTarget: 'edge-02:9464' };

const summary: DeploymentSummary = {
  name: 'det', revision: 3, phase: 'Progressing', message: '2/3 running; 1 starting', model: 'resnet', desired: 3, placed: 3, running: 2, updated: 2,
  p95Ms: 12.34, objectiveMs: 40, rollout: { phase: 'Waves', message: 'waves: 2 of 3 at revision 3' }, createdAt: NOW - 3_600_000, updatedAt: NOW - 1000,
};

t.test('units', async (t) => {
  t.equal(formatBytes(512), '512B');
  t.equal(formatBytes(1536), '1.5Ki');
  t.equal(formatBytes(4 * 2 ** 30), '4Gi');
  t.equal(formatBytes(300 * 2 ** 20), '300Mi');
  t.equal(formatBytes(null), '-');
  t.equal(formatMs(12.34), '12.3ms');
  t.equal(formatMs(250.6), '251ms');
  t.equal(formatMs(null), '-');
  t.equal(eventDetails({ name: 'web', exitCode: 1, why: { a: 1 } }), 'name=web exitCode=1 why={"a":1}');
});

t.test('tables', async (t) => {
  t.equal(devicesTable([device, offline], NOW), [
    'NAME     STATUS            LAST SEEN  ARCH     ACCELERATORS   WORKLOADS  AGENT  METRICS',
    'edge-01  online            5s ago     aarch64  edgetpu:Coral  1/2        0.1.0  10.0.0.7:9464',
    'edge-02  offline,no-token  2h ago     -        -              0/0        -      edge-02:9464',
  ].join('\n'));
  t.equal(deploymentsTable([summary], NOW), [
    'NAME  REVISION  PHASE        READY  UPDATED  P95     OBJECTIVE  ROLLOUT  AGE',
    'det   3         Progressing  2/3    2/3      12.3ms  40ms       Waves    1h',
  ].join('\n'));
  t.equal(eventsTable([{ id: 1, ts: NOW, deviceId: 'edge-01', type: 'container.oom', body: { name: 'web' } }]), [
    'TIME                 DEVICE   TYPE           DETAILS',
    '2026-12-04 12:00:00  edge-01  container.oom  name=web',
  ].join('\n'));
  t.equal(modelsTable([{ name: 'resnet', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'u', sha256: 's' }, { accelerator: 'edgetpu', precision: 'int8', url: 'u', sha256: 's' }], deployments: ['det'], measurements: [{ boardClass: 'a', precision: 'fp32', p95Ms: 10, devices: 1, at: 1 }, { boardClass: 'b', precision: 'int8', p95Ms: 4, devices: 2, at: 1 }] }]), [
    'NAME    VARIANTS               DEPLOYMENTS  P95',
    'resnet  cpu/fp32,edgetpu/int8  det          4ms..10ms',
  ].join('\n'));
});

t.test('-o json and -o yaml print the data itself', async (t) => {
  const data = [device, offline];
  t.same(JSON.parse(serialize(data, 'json') ?? ''), data);
  t.same(parseYaml(serialize(data, 'yaml') ?? ''), data);
  t.equal(serialize(data, 'table'), undefined);
  t.equal(serialize({ id: 'x', token: 'T' }, 'json'), '{\n  "id": "x",\n  "token": "T"\n}');
});

t.test('describe device and deployment', async (t) => {
  const detail: DeviceDetail = {
    ...device, createdAt: NOW - 86_400_000, status: { online: true, ts: NOW, agentVersion: '0.1.0' },
    inventory: { id: 'edge-01', arch: 'aarch64', cpu: { model: 'Cortex-A72', cores: 4, flags: [] }, memoryBytes: 4 * 2 ** 30, disk: { freeBytes: 1 }, kernel: '6.1.0', cgroup: 'v2', accelerators: [{ kind: 'edgetpu', vendor: 'Google', model: 'Coral', device: '/dev/apex_0' }], labels: {}, runtimes: ['shim', 'crun'] },
    capacity: { cpuPercent: 12.4, cpuCores: 4, load1: 0.5, memoryTotalBytes: 4 * 2 ** 30, memoryAvailableBytes: 2 * 2 ** 30, diskTotalBytes: 32 * 2 ** 30, diskFreeBytes: 20 * 2 ** 30 },
    telemetryAt: NOW - 2000, desired: { generation: 3, workloads: ['det-0'], images: ['rt'], cleared: false }, reported: { generation: 3, workloads: [] },
    containers: [{ name: 'det-0', deployment: 'det', replica: 0, revision: 3, desired: true, phase: 'running', reason: null, restarts: 0, running: true, cpuPercent: 20, memoryBytes: 50 * 2 ** 20, memoryLimitBytes: 64 * 2 ** 20, p95Ms: 11 }],
    measurements: [{ deviceId: 'edge-01', model: 'resnet', precision: 'int8', boardClass: 'x', p95Ms: 11, count: 40, at: NOW - 3000 }],
    events: [],
  };
  const text = describeDevice(detail, NOW);
  t.match(text, /^Name: +edge-01$/m);
  t.match(text, /^Status: +online since 10m ago, last seen 5s ago$/m);
  t.match(text, /^Hardware: +aarch64, Cortex-A72 \(4 cores\), 4Gi memory, kernel 6.1.0, cgroup v2$/m);
  t.match(text, /^Accelerators: +edgetpu Google Coral \(\/dev\/apex_0\)$/m);
  t.match(text, /^Capacity: +cpu 12% of 4 cores \(load 0.5\), memory 2Gi free of 4Gi, disk 20Gi free of 32Gi \(2s ago\)$/m);
  t.match(text, /^ {2}det-0 +det\/0 +3 +yes +running +0 +20% +50Mi\/64Mi +11ms +-$/m);
  t.match(text, /^ {2}resnet +int8 +11ms +40 +3s ago$/m);
  t.match(text, /Events:\n {2}none/);

  const dep: DeploymentDetail = {
    ...summary,
    spec: { name: 'det', model: { name: 'resnet', variants: [{ accelerator: 'cpu', precision: 'fp32', url: 'u', sha256: 'a'.repeat(64) }] }, runtime: { variants: [{ arch: 'x86_64', image: 'rt', url: 'u', sha256: 'b'.repeat(64) }] }, replicas: 3, resources: { memory: '64Mi', cpus: 0.25, pids: 256 }, accelerators: ['cpu'], p95LatencyMs: 40, strategy: 'spread' },
    replicas: [
      { replica: 0, deviceId: 'edge-01', revision: 3, accelerator: 'cpu', precision: 'fp32', state: 'running', reason: 'running', restarts: 0, p95Ms: 12.34, container: 'det-0' },
      { replica: 1, state: 'unschedulable', reason: '0 of 2 devices fit', restarts: 0, container: null },
    ],
    unschedulable: { replicas: 1, reasons: [{ reason: 'not enough free memory', devices: 2 }] },
    rolloutStatus: { deployment: 'det', revision: 3, stable: 2, phase: 'Waves', placeRevision: 3, total: 3, updated: 2, ready: 2, failures: [], failureCount: 0, message: 'waves: 2 of 3 at revision 3' },
    revisions: [{ revision: 2, createdAt: 1, current: false }, { revision: 3, createdAt: 2, current: true }],
  };
  const d = describeDeployment(dep, NOW);
  t.match(d, /^Revision: +3 \(revisions 2, 3\)$/m);
  t.match(d, /^Runtime: +x86_64 rt sha256:bbbbbbbbbbbb$/m);
  t.match(d, /^Latency: +p95 12.3ms \(worst replica\), objective 40ms$/m);
  t.match(d, /^Rollout: +Waves: waves: 2 of 3 at revision 3$/m);
  t.match(d, /^ {2}0 +edge-01 +running +3 +cpu +fp32 +0 +12.3ms +running$/m);
  t.match(d, /^ {2}1 +- +unschedulable +- +- +- +0 +- +0 of 2 devices fit$/m);
  t.match(d, /Unschedulable: 1 replica\(s\)\n {2}2 device\(s\): not enough free memory/);
});

t.test('--wait: done, failed, rolled back, timeout; one progress line per change', async (t) => {
  const base: Seen = { name: 'det', revision: 3, phase: 'Progressing', running: 0, desired: 2, updated: 0, placed: 2, message: '', rollout: { phase: 'Canary', message: 'canary' } };
  t.equal(judge(base, 3), undefined);
  t.equal(judge({ ...base, phase: 'Available', running: 2, updated: 2, rollout: { phase: 'Complete', message: '' } }, 3), 'done');
  t.equal(judge({ ...base, phase: 'Available', running: 2, updated: 1, rollout: { phase: 'Complete', message: '' } }, 3), undefined, 'not every replica at the revision yet');
  t.equal(judge({ ...base, rollout: { phase: 'RolledBack', message: 'x' } }, 3), 'failed');
  t.equal(judge({ ...base, phase: 'Failed' }, 3, 0), undefined, 'Failed right after an apply: devices may still come');
  t.equal(judge({ ...base, phase: 'Failed' }, 3, FAILED_GRACE_MS), 'failed');
  t.equal(judge({ ...base, revision: 4 }, 3), 'failed', 'another revision was applied');
  t.equal(progressLine(base), 'det: revision 3 Progressing, 0/2 running, 0/2 updated; rollout Canary: canary');

  let clock = 0;
  const states: Seen[] = [base, base, { ...base, running: 1, updated: 1 }, { ...base, phase: 'Available', running: 2, updated: 2, rollout: { phase: 'Complete', message: '' } }];
  const lines: string[] = [];
  const r = await waitForDeployment({
    poll: async () => states.shift() ?? base, revision: 3, timeoutMs: 60_000, progress: (l) => lines.push(l),
    now: () => clock, sleep: async (ms) => { clock += ms; },
  });
  t.equal(r.outcome, 'done');
  t.same(lines, [
    '[  0s] det: revision 3 Progressing, 0/2 running, 0/2 updated; rollout Canary: canary',
    '[  2s] det: revision 3 Progressing, 1/2 running, 1/2 updated; rollout Canary: canary',
    '[  3s] det: revision 3 Available, 2/2 running, 2/2 updated',
  ], 'unchanged polls print nothing');

  clock = 0;
  const stuck = await waitForDeployment({ poll: async () => base, revision: 3, timeoutMs: 5000, progress: () => undefined, now: () => clock, sleep: async (ms) => { clock += ms; } });
  t.equal(stuck.outcome, 'timeout');
  t.equal(clock, 5000, 'waited exactly the timeout');

  clock = 0;
  const failing = await waitForDeployment({ poll: async () => ({ ...base, phase: 'Failed' }), revision: 3, timeoutMs: 60_000, progress: () => undefined, now: () => clock, sleep: async (ms) => { clock += ms; } });
  t.equal(failing.outcome, 'failed');
  t.equal(clock, FAILED_GRACE_MS, 'given up once Failed for the grace period');
});
