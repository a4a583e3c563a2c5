import t from 'tap';
import { validateDesired, type DesiredState, type Workload } from '../../shared/protocol/desired.js';
import { OWNER_LABEL, SPEC_HASH_LABEL, specHash } from '../../agent/reconcile/labels.js';
import {
  plan, restartDelayMs, DEFAULT_RESTART_BACKOFF, type CurrentState, type Step,
} from '../../agent/reconcile/plan.js';
import type { ContainerInfo } from '../../agent/runtime/types.js';

const NOW = 1_700_000_000_000;
const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);
const SHA_M = 'c'.repeat(64);

function desired(generation: number, workloads: unknown[], images: unknown[] = []): DesiredState {
  return validateDesired({ generation, workloads, images });
}

function current(containers: ContainerInfo[], extra: Partial<CurrentState> = {}): CurrentState {
  return { now: NOW, containers, images: { busybox: SHA_A, rt: SHA_A }, models: new Set(), ...extra };
}

/** A container started by the reconciler for workload `w`. */
function owned(w: Workload, over: Partial<ContainerInfo> = {}): ContainerInfo {
  return handStarted(w.name, { image: w.image, restart: w.restart, labels: { [OWNER_LABEL]: 'desired', [SPEC_HASH_LABEL]: specHash(w) }, ...over });
}

function handStarted(name: string, over: Partial<ContainerInfo> = {}): ContainerInfo {
  return {
    name, image: 'busybox', imageSha256: SHA_A, status: 'running', pid: 100, exitCode: undefined, oomKilled: false,
    createdAt: NOW - 60_000, startedAt: NOW - 60_000, finishedAt: undefined,
    limits: { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 }, args: ['sleep', '1000'], restart: 'no', restarts: 0,
    labels: {}, ...over,
  };
}

function exited(exitCode: number | undefined, ranMs: number, agoMs: number, oomKilled = false): Partial<ContainerInfo> {
  return { status: 'exited', pid: undefined, exitCode, oomKilled, startedAt: NOW - agoMs - ranMs, finishedAt: NOW - agoMs };
}

const actions = (steps: Step[]): string[] => steps.map((s) => `${s.action} ${describe(s)}`);
function describe(s: Step): string {
  switch (s.action) {
    case 'pull': return `${s.image.name} for ${s.workloads.join(',')}`;
    case 'fetchModel': return `${s.model.name} for ${s.workloads.join(',')}`;
    case 'pullLayer': return `${s.layer.name} for ${s.workloads.join(',')}`;
    case 'start': case 'replace': return s.workload.name;
    default: return s.name;
  }
}

const web = { name: 'web', image: 'busybox', args: ['httpd', '-f'] };
const det = { name: 'det', image: 'busybox', args: ['sleep', '1000'], restart: 'always' };

t.test('nothing desired and nothing running: no steps', async (t) => {
  t.same(plan(current([]), desired(0, [])), []);
});

t.test('empty -> start every workload, in desired order', async (t) => {
  const d = desired(1, [web, det]);
  const steps = plan(current([]), d);
  t.same(actions(steps), ['start web', 'start det']);
  const first = steps[0];
  t.equal(first?.action === 'start' && first.generation, 1);
});

t.test('workloads that match their containers: no steps', async (t) => {
  const d = desired(2, [web, det]);
  t.same(plan(current(d.workloads.map((w) => owned(w))), d), []);
});

t.test('a changed spec -> replace', async (t) => {
  const before = desired(1, [web]);
  const after = desired(2, [{ ...web, env: { PORT: '8080' } }]);
  const steps = plan(current([owned(before.workloads[0]!)]), after);
  t.same(actions(steps), ['replace web']);
  t.match(steps[0], { action: 'replace', why: 'spec changed', generation: 2 });
});

t.test('only the generation changed: no replace', async (t) => {
  const before = desired(1, [web]);
  t.same(plan(current([owned(before.workloads[0]!)]), desired(9, [web])), []);
});

t.test('a new image sha256 -> pull first, then replace', async (t) => {
  const d = desired(3, [{ ...web, image: 'rt' }], [{ name: 'rt', url: 'http://h/rt.tar.gz', sha256: SHA_B }]);
  const steps = plan(current([owned(d.workloads[0]!, { imageSha256: SHA_A })]), d);
  t.same(actions(steps), ['pull rt for web', 'replace web']);
  t.match(steps[1], { why: 'image changed' });
});

t.test('after the pull the new image is present and the container is replaced for it', async (t) => {
  const d = desired(3, [{ ...web, image: 'rt' }], [{ name: 'rt', url: 'http://h/rt.tar.gz', sha256: SHA_B }]);
  const steps = plan(current([owned(d.workloads[0]!, { imageSha256: SHA_A })], { images: { rt: SHA_B } }), d);
  t.same(actions(steps), ['replace web']);
});

t.test('a workload removed from desired -> stop and remove (only remove when it already ended)', async (t) => {
  const old = desired(1, [web, det]);
  const steps = plan(current([owned(old.workloads[0]!), owned(old.workloads[1]!, exited(0, 5000, 1000))]), desired(2, []));
  t.same(actions(steps), ['stop web', 'remove web', 'remove det']);
});

t.test('containers started by hand are never touched', async (t) => {
  const mine = handStarted('mine');
  const exitedByHand = handStarted('job', { ...exited(1, 10, 10), restart: 'always' });
  t.same(plan(current([mine, exitedByHand]), desired(0, [])), [], 'empty desired leaves them');
  t.same(actions(plan(current([mine]), desired(1, [web]))), ['start web'], 'other names are started beside them');
  const clash = plan(current([handStarted('web')]), desired(1, [web]));
  t.same(actions(clash), ['fail web'], 'a clash is a failure, not a takeover');
  t.match(clash[0], { code: 'CONFLICT', reason: /started by hand/ });
  const otherOwner = handStarted('web', { labels: { [OWNER_LABEL]: 'someone-else' } });
  t.same(actions(plan(current([otherOwner]), desired(0, []))), [], 'another owner value is not ours');
});

t.test('images: missing and listed -> one pull shared by its workloads; missing and unlisted -> fail', async (t) => {
  const d = desired(1, [
    { name: 'a', image: 'rt' }, { name: 'b', image: 'rt' }, { name: 'c', image: 'nowhere' },
  ], [{ name: 'rt', url: 'file:///x.tar.gz', sha256: SHA_B }]);
  const steps = plan(current([], { images: {} }), d);
  t.same(actions(steps), ['pull rt for a,b', 'start a', 'start b', 'fail c']);
  t.match(steps[3], { code: 'NOT_FOUND', reason: /nowhere/ });
});

t.test('a listed image nobody uses yet is pulled ahead; one present with its sha256 is not', async (t) => {
  const d = desired(1, [], [
    { name: 'next', url: 'file:///n.tar.gz', sha256: SHA_B },
    { name: 'rt', url: 'file:///rt.tar.gz', sha256: SHA_A },
  ]);
  t.same(actions(plan(current([]), d)), ['pull next for ']);
});

t.test('a running container whose image left the store is left running', async (t) => {
  const d = desired(1, [web]);
  t.same(plan(current([owned(d.workloads[0]!)], { images: {} }), d), []);
});

t.test('models missing are fetched once before the starts; present ones are not', async (t) => {
  const model = { name: 'resnet', url: 'http://h/m.tar', sha256: SHA_M };
  const other = { name: 'yolo', url: 'http://h/y.tar', sha256: SHA_B };
  const d = desired(1, [{ ...web, models: [model] }, { ...det, models: [model, other] }]);
  t.same(actions(plan(current([]), d)), ['fetchModel resnet for web,det', 'fetchModel yolo for det', 'start web', 'start det']);
  t.same(actions(plan(current([], { models: new Set([SHA_M, SHA_B]) }), d)), ['start web', 'start det']);
});

t.test('order: removals, pulls, model fetches, then workload steps', async (t) => {
  const old = desired(1, [{ name: 'gone', image: 'busybox' }, web]);
  const d = desired(2, [
    { ...web, args: ['new'] },
    { name: 'fresh', image: 'rt', models: [{ name: 'm', url: 'http://h/m', sha256: SHA_M }] },
  ], [{ name: 'rt', url: 'http://h/rt', sha256: SHA_B }]);
  const steps = plan(current([owned(old.workloads[0]!), owned(old.workloads[1]!)], { images: {} }), d);
  t.same(actions(steps), ['stop gone', 'remove gone', 'pull rt for fresh', 'fetchModel m for fresh', 'fail web', 'start fresh']);
  t.match(steps[4], { code: 'NOT_FOUND' }, 'web needs busybox, which is gone from the store and not listed');
});

t.test('layers: a changed digest pulls that layer then replaces; the same digests (new url or generation) change nothing', async (t) => {
  const top = { name: 'model', url: 'http://h/model-1.tar.gz', sha256: SHA_M };
  const base = { name: 'ort', url: 'http://h/ort.tar.gz', sha256: SHA_B };
  const before = desired(1, [{ ...web, layers: [top, base] }]);
  const running = owned(before.workloads[0]!);
  const ready = new Set([SHA_M, SHA_B]);
  t.same(plan(current([running], { layers: ready }), desired(2, [{ ...web, layers: [top, base] }])), [], 'unchanged: not replaced');
  t.same(plan(current([running], { layers: ready }), desired(3, [{ ...web, layers: [{ ...top, url: 'https://mirror/model-1.tar.gz' }, base] }])), [],
    'a new url for the same digest: not replaced');

  const top2 = { name: 'model', url: 'http://h/model-2.tar.gz', sha256: 'd'.repeat(64) };
  const after = desired(4, [{ ...web, layers: [top2, base] }]);
  const steps = plan(current([running], { layers: ready }), after);
  t.same(actions(steps), ['pullLayer model for web', 'replace web'], 'only the new layer is pulled, before the old container goes');
  t.match(steps[0], { layer: top2 });
  t.match(steps[1], { action: 'replace', why: 'spec changed', generation: 4 });
  t.same(actions(plan(current([running], { layers: new Set([...ready, top2.sha256]) }), after)), ['replace web'], 'pulled already: replace only');
  t.same(actions(plan(current([running], { layers: ready }), desired(5, [web]))), ['replace web'], 'layers dropped: replaced too');
});

t.test('layers: one pull per digest for the workloads that start with it; ready ones none; order pulls, layers, models', async (t) => {
  const base = { name: 'ort', url: 'http://h/ort.tar.gz', sha256: SHA_B };
  const model = { name: 'm', url: 'http://h/m', sha256: SHA_M };
  const d = desired(1, [
    { ...web, layers: [{ name: 'top', url: 'http://h/top.tar.gz', sha256: 'e'.repeat(64) }, base] },
    { ...det, image: 'rt2', layers: [{ ...base, name: 'ort-again' }], models: [model] },
  ], [{ name: 'rt2', url: 'http://h/rt2', sha256: 'f'.repeat(64) }]);
  t.same(actions(plan(current([]), d)), [
    'pull rt2 for det', 'pullLayer top for web', 'pullLayer ort for web,det', 'fetchModel m for det', 'start web', 'start det',
  ]);
  t.same(actions(plan(current([], { layers: new Set([SHA_B]), models: new Set([SHA_M]), images: { busybox: SHA_A, rt2: 'f'.repeat(64) } }), d)),
    ['pullLayer top for web', 'start web', 'start det'], 'a digest ready under any name is not pulled again');
  const running = d.workloads.map((w) => owned(w, w.image === 'rt2' ? { imageSha256: 'f'.repeat(64) } : {}));
  t.same(plan(current(running, { images: { busybox: SHA_A, rt2: 'f'.repeat(64) } }), d), [],
    'running containers need no pull, even when the layer left the cache');
});

t.test('a container created but never started is replaced', async (t) => {
  const d = desired(1, [web]);
  const steps = plan(current([owned(d.workloads[0]!, { status: 'created', pid: undefined, startedAt: undefined })]), d);
  t.match(steps, [{ action: 'replace', why: 'never started' }]);
});

t.test('restart policy "no": an exited container stays exited', async (t) => {
  const d = desired(1, [{ ...web, restart: 'no' }]);
  t.same(plan(current([owned(d.workloads[0]!, exited(1, 100, 5000))]), d), []);
  t.same(plan(current([owned(d.workloads[0]!, exited(0, 100, 5000))]), d), []);
});

t.test('restart policy "on-failure": restarts after a failure only', async (t) => {
  const d = desired(1, [{ ...web, restart: 'on-failure' }]);
  const w = d.workloads[0]!;
  t.same(plan(current([owned(w, exited(0, 100, 5000))]), d), [], 'exit 0 is not a failure');
  t.match(plan(current([owned(w, exited(3, 100, 5000))]), d), [{ action: 'restart', name: 'web', lastExit: 'exited with code 3', streak: 1 }]);
  t.match(plan(current([owned(w, exited(undefined, 100, 5000))]), d), [{ action: 'restart', lastExit: 'killed by a signal' }]);
  t.match(plan(current([owned(w, exited(0, 100, 5000, true))]), d), [{ action: 'restart', lastExit: /out of memory/ }], 'an OOM kill is a failure');
});

t.test('restart policy "always": restarts after any exit', async (t) => {
  const d = desired(1, [det]);
  t.match(plan(current([owned(d.workloads[0]!, exited(0, 100, 5000))]), d), [{ action: 'restart', name: 'det' }]);
});

t.test('restarts back off: wait until finishedAt + base * 2^streak, capped', async (t) => {
  const d = desired(1, [det]);
  const w = d.workloads[0]!;
  // ran 100 ms, ended 2 s ago, 3 quick restarts so far: delay 8 s -> wait until 6 s from now
  const steps = plan(current([owned(w, exited(1, 100, 2000))], { restartStreaks: { det: 3 } }), d);
  t.same(steps, [{ action: 'wait', name: 'det', until: NOW - 2000 + 8000, lastExit: 'exited with code 1', failed: true }]);
  // a long streak is capped at 60 s
  const capped = plan(current([owned(w, exited(0, 100, 2000))], { restartStreaks: { det: 20 } }), d);
  t.same(capped, [{ action: 'wait', name: 'det', until: NOW - 2000 + 60_000, lastExit: 'exited with code 0', failed: false }]);
  // once the delay has passed: restart, streak + 1
  t.match(plan(current([owned(w, exited(1, 100, 9000))], { restartStreaks: { det: 3 } }), d), [{ action: 'restart', streak: 4 }]);
  // a healthy run (>= 60 s) resets the streak: base delay, streak back to 1
  t.match(plan(current([owned(w, exited(1, 120_000, 1500))], { restartStreaks: { det: 7 } }), d), [{ action: 'restart', streak: 1 }]);
  t.match(plan(current([owned(w, exited(1, 120_000, 500))], { restartStreaks: { det: 7 } }), d), [{ action: 'wait', until: NOW - 500 + 1000 }]);
});

t.test('restartDelayMs doubles from base to the cap', async (t) => {
  const b = DEFAULT_RESTART_BACKOFF;
  t.same([0, 1, 2, 3, 4, 5, 6, 7, 100].map((s) => restartDelayMs(s, 10, b)), [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  t.equal(restartDelayMs(9, 60_000, b), 1000);
});

t.test('a running container is never restarted, whatever its policy', async (t) => {
  const d = desired(1, [det]);
  t.same(plan(current([owned(d.workloads[0]!)], { restartStreaks: { det: 5 } }), d), []);
});

t.test('plan is pure: it changes nothing it is given and gives the same answer twice', async (t) => {
  const old = desired(1, [web, det]);
  const d = desired(2, [{ ...web, args: ['x'] }, { name: 'n', image: 'rt' }], [{ name: 'rt', url: 'http://h/rt', sha256: SHA_B }]);
  const cur = current([owned(old.workloads[0]!), owned(old.workloads[1]!, exited(1, 1, 1)), handStarted('mine')]);
  const snapshot = JSON.stringify({ cur: { ...cur, models: [...cur.models] }, d });
  const a = plan(cur, d);
  const b = plan(cur, d);
  t.same(a, b);
  t.equal(JSON.stringify({ cur: { ...cur, models: [...cur.models] }, d }), snapshot);
});
