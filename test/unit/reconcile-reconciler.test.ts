// The Reconciler against an in-memory runtime and image store: the wiring of plan, executors,
// runner, reported and persistence, without containers. test/integration/reconcile.test.ts does
// the same with real ones.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FeatherError } from '../../shared/errors.js';
import { configureLogging } from '../../shared/logging.js';
import { DataPaths } from '../../agent/paths.js';
import type { ContainerExit, ContainerRuntime, GcReport } from '../../agent/runtime/api.js';
import type { ContainerInfo, RunRequest, RunResult, StopResult } from '../../agent/runtime/types.js';
import { Reconciler, OWNER_LABEL, type ReconcilerOptions } from '../../agent/reconcile/index.js';
import type { Reported } from '../../shared/protocol/reported.js';

configureLogging({ level: 'silent' });

const SHA = 'a'.repeat(64);
const SHA2 = 'b'.repeat(64);

class FakeImages {
  readonly store = new Map<string, string>([['busybox', SHA]]);
  readonly pulls: string[] = [];
  /** sha256 of what was extracted, in order. */
  readonly extracted: string[] = [];
  failPull = false;
  get(name: string): { sha256: string } | undefined {
    const sha256 = this.store.get(name);
    return sha256 === undefined ? undefined : { sha256 };
  }
  async list(): Promise<Array<{ name: string; sha256: string; cached: boolean }>> {
    return [...this.store].map(([name, sha256]) => ({ name, sha256, cached: this.extracted.includes(sha256) }));
  }
  async pull(url: string, opts: { name: string; sha256: string }): Promise<unknown> {
    this.pulls.push(opts.name);
    if (this.failPull) throw new FeatherError('PULL_FAILED', `cannot reach ${url}`);
    this.store.set(opts.name, opts.sha256);
    return { name: opts.name, sha256: opts.sha256, bytes: 1, durationMs: 1 };
  }
  async ensureExtracted(name: string): Promise<string> {
    const sha256 = this.store.get(name);
    if (sha256 === undefined) throw new FeatherError('NOT_FOUND', `no image ${name}`);
    if (!this.extracted.includes(sha256)) this.extracted.push(sha256);
    return `/cache/${sha256}`;
  }
  async ensureModel(_url: string, sha256: string): Promise<string> {
    return `/models-store/${sha256}`;
  }
}

class FakeRuntime implements ContainerRuntime {
  readonly containers = new Map<string, ContainerInfo>();
  readonly calls: string[] = [];
  readonly requests: RunRequest[] = [];
  private readonly listeners = new Set<(e: ContainerExit) => void>();
  constructor(private readonly images: FakeImages) {}

  async run(req: RunRequest): Promise<RunResult> {
    this.calls.push(`run ${req.name}`);
    if (this.containers.has(req.name)) throw new FeatherError('CONFLICT', `name ${req.name} in use`);
    const image = this.images.get(req.image);
    if (!image) throw new FeatherError('NOT_FOUND', `no image ${req.image}`);
    this.requests.push(req);
    const now = Date.now();
    this.containers.set(req.name, {
      name: req.name, image: req.image, imageSha256: image.sha256, status: 'running', pid: 1000 + this.calls.length,
      exitCode: undefined, oomKilled: false, createdAt: now, startedAt: now, finishedAt: undefined,
      limits: { memoryBytes: 2 ** 27, cpus: 0.5, pids: 10 }, args: req.args ?? [], restart: req.restart ?? 'no',
      restarts: 0, labels: { ...(req.labels ?? {}) },
    });
    return { name: req.name, pid: 1, startedAt: now };
  }
  async start(name: string): Promise<RunResult> {
    this.calls.push(`start ${name}`);
    const c = this.inspect(name);
    if (c.status === 'running') throw new FeatherError('CONFLICT', 'running');
    Object.assign(c, { status: 'running', startedAt: Date.now(), finishedAt: undefined, exitCode: undefined });
    return { name, pid: 1, startedAt: Date.now() };
  }
  async stop(name: string): Promise<StopResult> {
    this.calls.push(`stop ${name}`);
    const c = this.inspect(name);
    if (c.status === 'running') Object.assign(c, { status: 'exited', exitCode: 143, finishedAt: Date.now(), pid: undefined });
    return { name, exitCode: c.exitCode };
  }
  async remove(name: string): Promise<StopResult> {
    this.calls.push(`remove ${name}`);
    const c = this.inspect(name);
    this.containers.delete(name);
    return { name, exitCode: c.exitCode };
  }
  list(opts: { all?: boolean } = {}): ContainerInfo[] {
    return [...this.containers.values()].filter((c) => opts.all || c.status === 'running').map((c) => structuredClone(c));
  }
  inspect(name: string): ContainerInfo {
    const c = this.containers.get(name);
    if (!c) throw new FeatherError('NOT_FOUND', `no container ${name}`);
    return c;
  }
  async logs(): Promise<string[]> { return []; }
  usage(): undefined { return undefined; }
  async gc(): Promise<GcReport> { return { reaped: [], cgroups: [], tmp: [] }; }
  onExit(listener: (exit: ContainerExit) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  recordRestart(name: string): void {
    this.inspect(name).restarts += 1;
  }
  /** The container's process ends by itself. */
  exit(name: string, exitCode: number, ranMs = 10): void {
    const c = this.inspect(name);
    const now = Date.now();
    Object.assign(c, { status: 'exited', exitCode, pid: undefined, startedAt: now - ranMs, finishedAt: now });
    for (const l of this.listeners) l({ name, exitCode, signal: undefined, oomKilled: false, finishedAt: now });
  }
  /** A container started by hand (no owner label). */
  handStart(name: string): void {
    this.containers.set(name, { ...structuredClone([...this.containers.values()][0] ?? baseInfo(name)), name, labels: {}, status: 'running' });
  }
}

function baseInfo(name: string): ContainerInfo {
  return {
    name, image: 'busybox', imageSha256: SHA, status: 'running', pid: 7, exitCode: undefined, oomKilled: false,
    createdAt: 0, startedAt: 0, finishedAt: undefined, limits: { memoryBytes: 2 ** 27, cpus: 0.5, pids: 10 },
    args: ['sleep', '999'], restart: 'no', restarts: 0, labels: {},
  };
}

const FAST: ReconcilerOptions = {
  retry: { baseMs: 20, maxMs: 80 },
  restartBackoff: { baseMs: 20, maxMs: 80, healthyAfterMs: 60_000 },
  resyncMs: 0,
};

interface Harness {
  rec: Reconciler;
  runtime: FakeRuntime;
  images: FakeImages;
  paths: DataPaths;
  published: Reported[];
  events: Array<{ type: string; body: Record<string, unknown> }>;
}

/** What the harness needs of a tap test. */
interface Teardown { teardown(fn: () => unknown): void }

function harness(t: Teardown, shared?: { runtime: FakeRuntime; images: FakeImages; paths: DataPaths }): Harness {
  let paths = shared?.paths;
  if (!paths) {
    const dir = mkdtempSync(join(tmpdir(), 'feather-rec-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    paths = new DataPaths(dir);
  }
  const images = shared?.images ?? new FakeImages();
  const runtime = shared?.runtime ?? new FakeRuntime(images);
  const published: Reported[] = [];
  const events: Harness['events'] = [];
  const rec = new Reconciler({
    runtime, images, dataPaths: paths, options: FAST,
    publishReported: (r) => { published.push(r); },
    publishEvent: (type, body) => { events.push({ type, body }); },
  });
  t.teardown(() => rec.stop());
  return { rec, runtime, images, paths, published, events };
}

async function eventually(what: string, cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

const payload = (generation: number, workloads: unknown[], images: unknown[] = []): string => JSON.stringify({ generation, workloads, images });
const phases = (r: Reported): string[] => r.workloads.map((w) => `${w.name}:${w.phase}`);

t.test('reconciles to a desired state and reports it', async (t) => {
  const h = harness(t);
  h.rec.start();
  t.same(h.rec.setDesired(payload(1, [
    { name: 'web', image: 'busybox', args: ['httpd'], limits: { memory: '64Mi' } },
    { name: 'det', image: 'busybox', restart: 'always' },
  ])), { ok: true, generation: 1 });
  await h.rec.idle();
  t.same(h.runtime.calls, ['run web', 'run det']);
  const req = h.runtime.requests[0]!;
  t.equal(req.labels?.[OWNER_LABEL], 'desired');
  t.match(req.labels?.['feather.spec-hash'], /^[0-9a-f]{64}$/);
  t.same(req.limits, { memoryBytes: 64 * 2 ** 20 });
  t.same(h.rec.reported(), { generation: 1, workloads: [
    { name: 'web', phase: 'running', restarts: 0 }, { name: 'det', phase: 'running', restarts: 0 },
  ] });
  t.same(h.published.at(-1), h.rec.reported(), 'the last published document is the current one');
  const jsons = h.published.map((r) => JSON.stringify(r));
  t.equal(new Set(jsons).size, jsons.length, 'nothing is published twice in a row unchanged');
  t.ok(h.published.some((r) => r.workloads.some((w) => w.phase === 'starting')), 'starting was reported on the way');
  const saved = JSON.parse(readFileSync(join(h.paths.root, 'desired.json'), 'utf8')) as { reached: number; payload: { generation: number } };
  t.equal(saved.reached, 1);
  t.equal(saved.payload.generation, 1);
});

t.test('a changed workload is replaced; an unchanged one is left alone', async (t) => {
  const h = harness(t);
  h.rec.start();
  h.rec.setDesired(payload(1, [{ name: 'a', image: 'busybox', args: ['1'] }, { name: 'b', image: 'busybox' }]));
  await h.rec.idle();
  h.runtime.calls.length = 0;
  h.rec.setDesired(payload(2, [{ name: 'a', image: 'busybox', args: ['2'] }, { name: 'b', image: 'busybox' }]));
  await h.rec.idle();
  t.same(h.runtime.calls, ['stop a', 'remove a', 'run a']);
  t.same(h.runtime.inspect('a').args, ['2']);
  t.equal(h.rec.reported().generation, 2);
});

t.test('an empty payload stops and removes owned containers and leaves hand-started ones', async (t) => {
  const h = harness(t);
  h.rec.start();
  h.rec.setDesired(payload(3, [{ name: 'a', image: 'busybox' }]));
  await h.rec.idle();
  h.runtime.handStart('mine');
  h.runtime.calls.length = 0;
  t.same(h.rec.setDesired(Buffer.alloc(0)), { ok: true, generation: 0 });
  await h.rec.idle();
  t.same(h.runtime.calls, ['stop a', 'remove a']);
  t.same([...h.runtime.containers.keys()], ['mine']);
  t.same(h.rec.reported(), { generation: 0, workloads: [] });
});

t.test('an invalid payload is rejected without a crash; the previous state stays', async (t) => {
  const h = harness(t);
  h.rec.start();
  h.rec.setDesired(payload(1, [{ name: 'a', image: 'busybox' }]));
  await h.rec.idle();
  h.runtime.calls.length = 0;
  const result = h.rec.setDesired('{"generation": 2, "workloads": [{"name": "a", "image": "busybox", "limits": {"memory": "lots"}}]}');
  t.equal(result.ok, false);
  t.match(result, { error: { code: 'BAD_REQUEST', issues: [{ path: 'workloads[0].limits.memory' }] } });
  t.match(h.rec.setDesired('not json at all'), { ok: false, error: { code: 'BAD_REQUEST' } });
  await h.rec.idle();
  t.same(h.runtime.calls, [], 'nothing was touched');
  const rep = h.rec.reported();
  t.equal(rep.generation, 1);
  t.same(phases(rep), ['a:running']);
  t.match(rep.reason, /desired state rejected/);
  const ev = h.events.filter((e) => e.type === 'desired.rejected');
  t.equal(ev.length, 2);
  t.match(ev[0]?.body, { code: 'BAD_REQUEST', issues: [{ path: 'workloads[0].limits.memory' }] });
  h.rec.setDesired(payload(2, [{ name: 'a', image: 'busybox' }]));
  await h.rec.idle();
  t.equal(h.rec.reported().reason, undefined, 'a valid payload clears the reason');
  t.equal(h.rec.reported().generation, 2);
});

t.test('images named in desired are pulled; a failed pull is reported and retried with backoff', async (t) => {
  const h = harness(t);
  h.images.failPull = true;
  h.rec.start();
  h.rec.setDesired(payload(5, [{ name: 'det', image: 'rt' }, { name: 'side', image: 'busybox' }], [{ name: 'rt', url: 'http://h/rt.tar.gz', sha256: SHA2 }]));
  await eventually('pull failed twice', () => h.images.pulls.length >= 2);
  const rep = h.rec.reported();
  t.equal(rep.generation, 0, 'generation not reached while a pull fails');
  t.match(rep.workloads, [{ name: 'det', phase: 'failed', reason: /PULL_FAILED.*rt.*cannot reach/ }, { name: 'side', phase: 'running' }]);
  t.ok(h.events.some((e) => e.type === 'pull.failed' && e.body['name'] === 'rt'));
  t.ok(h.published.some((r) => r.workloads.some((w) => w.name === 'det' && w.phase === 'pulling')), 'pulling was reported');
  h.images.failPull = false;
  await eventually('det running', () => h.rec.reported().workloads[0]?.phase === 'running');
  t.equal(h.rec.reported().generation, 5);
  t.ok(h.events.some((e) => e.type === 'image.pulled' && e.body['name'] === 'rt'));
});

t.test('a name held by a hand-started container fails that workload only', async (t) => {
  const h = harness(t);
  h.runtime.handStart('web');
  h.rec.start();
  h.rec.setDesired(payload(1, [{ name: 'web', image: 'busybox' }, { name: 'ok', image: 'busybox' }]));
  await eventually('reported', () => phases(h.rec.reported()).join() === 'web:failed,ok:running');
  t.match(h.rec.reported().workloads[0], { reason: /CONFLICT.*started by hand/ });
  t.notOk(h.runtime.calls.some((c) => c.endsWith(' web')), 'the hand-started container was not touched');
  t.equal(h.rec.reported().generation, 0);
});

t.test('restart policy always: an exit is restarted after a backoff and counted', async (t) => {
  const h = harness(t);
  h.rec.start();
  h.rec.setDesired(payload(1, [{ name: 'det', image: 'busybox', restart: 'always' }]));
  await h.rec.idle();
  h.runtime.exit('det', 0);
  await eventually('first restart', () => h.runtime.inspect('det').restarts === 1 && h.runtime.inspect('det').status === 'running');
  h.runtime.exit('det', 2);
  await eventually('second restart', () => h.runtime.inspect('det').restarts === 2 && h.runtime.inspect('det').status === 'running');
  await h.rec.idle();
  t.match(h.rec.reported().workloads, [{ name: 'det', phase: 'running', restarts: 2 }]);
  t.same(h.runtime.calls.filter((c) => c.startsWith('start')), ['start det', 'start det']);
  t.ok(h.published.some((r) => r.workloads[0]?.phase === 'failed' && /exited with code 2; restarting after/.test(r.workloads[0]?.reason ?? '')),
    'the wait before the restart was reported with its reason');
  t.same(h.events.filter((e) => e.type === 'container.restarted').map((e) => e.body['restarts']), [1, 2]);
});

t.test('restart policy no and on-failure: what ended is reported with its exit code', async (t) => {
  const h = harness(t);
  h.rec.start();
  h.rec.setDesired(payload(1, [
    { name: 'job', image: 'busybox' },
    { name: 'crash', image: 'busybox' },
    { name: 'fine', image: 'busybox', restart: 'on-failure' },
  ]));
  await h.rec.idle();
  h.runtime.exit('job', 0);
  h.runtime.exit('crash', 3);
  h.runtime.exit('fine', 0);
  await h.rec.idle();
  await sleep(100); // longer than any restart backoff: nothing restarts
  await h.rec.idle();
  t.same(h.rec.reported().workloads, [
    { name: 'job', phase: 'stopped', restarts: 0, exitCode: 0 },
    { name: 'crash', phase: 'failed', reason: 'exited with code 3', restarts: 0, exitCode: 3 },
    { name: 'fine', phase: 'stopped', restarts: 0, exitCode: 0 },
  ]);
  t.notOk(h.runtime.calls.some((c) => c.startsWith('start')));
});

t.test('the desired state survives an agent restart; running containers are adopted, not restarted', async (t) => {
  const first = harness(t);
  first.rec.start();
  first.rec.setDesired(payload(4, [{ name: 'keep', image: 'busybox' }, { name: 'ended', image: 'busybox' }]));
  await first.rec.idle();
  await first.rec.stop();
  first.runtime.exit('ended', 9); // while no agent runs
  first.runtime.calls.length = 0;

  const second = harness(t, { runtime: first.runtime, images: first.images, paths: first.paths });
  second.rec.start(); // offline: no setDesired
  await second.rec.idle();
  t.same(first.runtime.calls, [], 'nothing started, stopped or replaced');
  t.same(second.rec.reported(), { generation: 4, workloads: [
    { name: 'keep', phase: 'running', restarts: 0 },
    { name: 'ended', phase: 'failed', reason: 'exited with code 9', restarts: 0, exitCode: 9 },
  ] });
  t.same(second.published[0]?.generation, 4, 'the first report already has the generation reached');
  t.match(second.events, [{ type: 'container.exited', body: { name: 'ended', exitCode: 9, atStartup: true } }]);
});

t.test('no saved state and no message: nothing is changed', async (t) => {
  const h = harness(t);
  h.runtime.handStart('mine');
  await h.runtime.run({ name: 'orphan', image: 'busybox', labels: { [OWNER_LABEL]: 'desired' } });
  h.runtime.calls.length = 0;
  h.rec.start();
  await h.rec.idle();
  t.same(h.runtime.calls, [], 'an unknown desired state is not an empty one');
  t.same(h.rec.reported(), { generation: 0, workloads: [] });
});

t.test('a message that came before start() wins over the saved state', async (t) => {
  const h = harness(t);
  h.rec.setDesired(payload(2, [{ name: 'b', image: 'busybox' }]));
  const other = harness(t, { runtime: new FakeRuntime(h.images), images: h.images, paths: h.paths });
  other.rec.setDesired(payload(3, [{ name: 'c', image: 'busybox' }]));
  other.rec.start();
  await other.rec.idle();
  t.same([...other.runtime.containers.keys()], ['c']);
});

t.test('a failing publish hook does not stop reconciliation', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'feather-rec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const images = new FakeImages();
  const runtime = new FakeRuntime(images);
  const rec = new Reconciler({
    runtime, images, dataPaths: new DataPaths(dir), options: FAST,
    publishReported: () => { throw new Error('broker gone'); },
    publishEvent: async () => { throw new Error('broker gone'); },
  });
  t.teardown(() => rec.stop());
  rec.start();
  rec.setDesired(payload(1, [{ name: 'a', image: 'busybox' }]));
  rec.setDesired('{bad');
  await rec.idle();
  t.same(phases(rec.reported()), ['a:running']);
});

t.test('stop() ends reconciling: later messages are kept but not acted on', async (t) => {
  const h = harness(t);
  h.rec.start();
  await h.rec.stop();
  h.rec.setDesired(payload(1, [{ name: 'a', image: 'busybox' }]));
  await sleep(30);
  t.same(h.runtime.calls, []);
});

t.test('models are bind-mounted read-only under /models; devices need a resolver', async (t) => {
  const h = harness(t);
  h.rec.start();
  const model = { name: 'resnet', url: 'http://h/resnet.onnx', sha256: SHA2 };
  h.rec.setDesired(payload(1, [
    { name: 'inf', image: 'busybox', models: [model] },
    { name: 'gpu', image: 'busybox', devices: ['vendor.com/npu=0'] },
  ]));
  await eventually('reported', () => phases(h.rec.reported()).join() === 'inf:running,gpu:failed');
  t.same(h.runtime.requests.find((r) => r.name === 'inf')?.binds, [{ source: `/models-store/${SHA2}`, target: '/models/resnet', readonly: true }]);
  t.match(h.rec.reported().workloads[1], { reason: /NOT_FOUND.*no device registry/ });

  const dir = mkdtempSync(join(tmpdir(), 'feather-rec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const images = new FakeImages();
  const runtime = new FakeRuntime(images);
  const rec = new Reconciler({
    runtime, images, dataPaths: new DataPaths(dir), options: FAST, publishReported: () => undefined,
    resolveDevices: async (names) => names.map((n) => ({ hostPath: `/dev/${n.split('=')[1]}`, containerPath: '/dev/npu0' })),
  });
  t.teardown(() => rec.stop());
  rec.start();
  rec.setDesired(payload(1, [{ name: 'gpu', image: 'busybox', devices: ['vendor.com/npu=npu7'] }]));
  await rec.idle();
  t.same(runtime.requests[0]?.devices, [{ hostPath: '/dev/npu7', containerPath: '/dev/npu0' }]);
});

t.test('layers: pulled once per digest while the workloads show pulling, then stacked topmost first; a new top layer replaces', async (t) => {
  const h = harness(t);
  h.rec.start();
  const top = { name: 'model', url: 'http://h/model-1.tar.gz', sha256: 'c'.repeat(64) };
  const base = { name: 'ort', url: 'http://h/ort.tar.gz', sha256: 'd'.repeat(64) };
  h.rec.setDesired(payload(1, [{ name: 'a', image: 'busybox', layers: [top, base] }, { name: 'b', image: 'busybox', layers: [base] }]));
  await h.rec.idle();
  t.same(h.images.pulls, [`model.${'c'.repeat(16)}`, `ort.${'d'.repeat(16)}`], 'each digest once, under its digest-bearing name');
  t.same(h.runtime.requests.map((r) => [r.name, r.extraLayers]), [['a', [`/cache/${'c'.repeat(64)}`, `/cache/${'d'.repeat(64)}`]], ['b', [`/cache/${'d'.repeat(64)}`]]]);
  t.ok(h.published.some((r) => r.workloads.some((w) => w.name === 'b' && w.phase === 'pulling' && w.reason === 'pulling layer ort')), 'pulling was reported');
  t.same(h.events.filter((e) => e.type === 'image.pulled').map((e) => e.body['layer']), ['model', 'ort']);
  t.same(h.rec.reported(), { generation: 1, workloads: [{ name: 'a', phase: 'running', restarts: 0 }, { name: 'b', phase: 'running', restarts: 0 }] });

  h.runtime.calls.length = 0;
  h.rec.setDesired(payload(2, [{ name: 'a', image: 'busybox', layers: [{ ...top, url: 'http://h/model-2.tar.gz', sha256: 'e'.repeat(64) }, base] }, { name: 'b', image: 'busybox', layers: [base] }]));
  await h.rec.idle();
  t.same(h.runtime.calls, ['stop a', 'remove a', 'run a'], 'only a is replaced');
  t.same(h.images.pulls.slice(2), [`model.${'e'.repeat(16)}`], 'only the new layer is pulled');
  t.same(h.runtime.requests.at(-1)?.extraLayers, [`/cache/${'e'.repeat(64)}`, `/cache/${'d'.repeat(64)}`]);
  t.equal(h.rec.reported().generation, 2);
});

t.test('layers: a failed pull fails the workload with the reason and publishes pull.failed; it is retried', async (t) => {
  const h = harness(t);
  h.images.failPull = true;
  h.rec.start();
  const base = { name: 'ort', url: 'http://h/ort.tar.gz', sha256: 'd'.repeat(64) };
  h.rec.setDesired(payload(3, [{ name: 'det', image: 'busybox', layers: [base] }, { name: 'side', image: 'busybox' }]));
  await eventually('layer pull failed twice', () => h.images.pulls.length >= 2);
  t.match(h.rec.reported(), { generation: 0, workloads: [
    { name: 'det', phase: 'failed', reason: 'PULL_FAILED: pulling layer ort: cannot reach http://h/ort.tar.gz' }, { name: 'side', phase: 'running' },
  ] });
  t.match(h.events.find((e) => e.type === 'pull.failed'), { body: { layer: 'ort', name: `ort.${'d'.repeat(16)}`, sha256: base.sha256, code: 'PULL_FAILED', by: 'desired' } });
  t.notOk(h.runtime.containers.has('det'), 'nothing started without its layer');
  h.images.failPull = false;
  await eventually('det running', () => h.rec.reported().workloads[0]?.phase === 'running');
  t.equal(h.rec.reported().generation, 3);
});
