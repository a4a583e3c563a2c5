// The desired-state reconciler with the real runtime (ShimRuntime over feather-shim, this host's
// cgroups) and the real image store: containers really start, get replaced, restart, outlive the
// reconciler, and go away, while a container started by hand is left alone. Layered workloads
// stack a layer tarball above busybox and are replaced when, and only when, a layer digest changes.
import t from 'tap';
import { copyFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataPaths } from '../../agent/paths.js';
import { ImageStore } from '../../agent/images/store.js';
import { containersUsingLayer, layerImageName } from '../../agent/images/layers.js';
import { busyboxTarball } from '../../agent/images/recipes.js';
import { writeTarball } from '../../agent/images/tarwriter.js';
import { detectCgroups } from '../../agent/runtime/cgroups/detect.js';
import { ShimRuntime } from '../../agent/runtime/runtime.js';
import { isPidAlive } from '../../shared/process.js';
import { Reconciler, OWNER_LABEL, SPEC_HASH_LABEL, type ReconcilerOptions } from '../../agent/reconcile/index.js';
import type { Reported } from '../../shared/protocol/reported.js';
import { cgroupLeftovers, hostMountsUnder, isRoot, runtimeFixture, type RuntimeFixture } from '../helpers/runtime-fixture.js';

const OPTIONS: ReconcilerOptions = {
  retry: { baseMs: 200, maxMs: 2000 },
  restartBackoff: { baseMs: 200, maxMs: 1000, healthyAfterMs: 60_000 },
  resyncMs: 0,
  stopTimeoutS: 1,
};

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const phases = (r: Reported): Record<string, string> => Object.fromEntries(r.workloads.map((w) => [w.name, w.phase]));

if (!isRoot()) {
  t.plan(0, 'reconciler integration tests need root');
} else {
  let fx: RuntimeFixture;
  let imageUrl: string;
  let imageSha: string;
  const reconcilers: Reconciler[] = [];
  const events: Array<{ type: string; body: Record<string, unknown> }> = [];
  const published: Reported[] = [];

  function reconciler(runtime: ShimRuntime, images: ImageStore): Reconciler {
    const rec = new Reconciler({
      runtime, images, dataPaths: fx.paths, options: OPTIONS,
      publishReported: (r) => { published.push(r); },
      publishEvent: (type, body) => { events.push({ type, body }); },
    });
    reconcilers.push(rec);
    return rec;
  }

  t.before(async () => {
    fx = await runtimeFixture();
    // A second image, pulled by the reconciler from a file:// URL.
    const file = join(fx.root, 'bb2.tar.gz');
    imageSha = (await busyboxTarball(file)).sha256;
    imageUrl = pathToFileURL(file).href;
  });
  t.teardown(async () => {
    for (const r of reconcilers) await r.stop();
    await fx.cleanup();
  });

  let first: Reconciler;
  const desired = (generation: number, workloads: unknown[]): string =>
    JSON.stringify({ generation, workloads, images: [{ name: 'bb2', url: imageUrl, sha256: imageSha }] });
  const web = { name: 'web', image: 'busybox', args: ['sleep', '300'], limits: { memory: '32Mi', pids: 5 } };
  const pulled = { name: 'pulled', image: 'bb2', args: ['sleep', '300'] };

  t.test('a desired set is pulled and started; a hand-started container is left alone', async (t) => {
    await fx.runtime.run({ name: 'byhand', image: 'busybox', args: ['sleep', '300'] });
    first = reconciler(fx.runtime, fx.images);
    first.start();
    t.same(first.setDesired(desired(1, [web, pulled])), { ok: true, generation: 1 });
    const rep = await waitFor('both running', () => {
      const r = first.reported();
      return r.generation === 1 && phases(r)['web'] === 'running' && phases(r)['pulled'] === 'running' ? r : undefined;
    });
    t.same(rep.workloads.map((w) => w.restarts), [0, 0]);
    t.equal(fx.images.get('bb2')?.sha256, imageSha, 'the image was pulled into the store');
    const w = fx.runtime.inspect('web');
    t.equal(w.status, 'running');
    t.ok(w.pid !== undefined && isPidAlive(w.pid), 'the process is alive');
    t.equal(w.labels[OWNER_LABEL], 'desired');
    t.match(w.labels[SPEC_HASH_LABEL], /^[0-9a-f]{64}$/);
    t.equal(w.limits.memoryBytes, 32 * 2 ** 20);
    t.equal(w.limits.pids, 5);
    t.equal(fx.runtime.inspect('pulled').imageSha256, imageSha);
    t.equal(fx.runtime.inspect('byhand').labels[OWNER_LABEL], undefined);
    t.ok(published.some((r) => r.workloads.some((x) => x.name === 'pulled' && x.phase === 'pulling')), 'pulling was reported');
    t.ok(events.some((e) => e.type === 'image.pulled' && e.body['name'] === 'bb2'));
  });

  t.test('a changed workload is replaced; the unchanged one keeps running', async (t) => {
    const before = { web: fx.runtime.inspect('web'), pulled: fx.runtime.inspect('pulled') };
    first.setDesired(desired(2, [{ ...web, args: ['sleep', '301'] }, pulled]));
    await waitFor('generation 2', () => first.reported().generation === 2);
    const after = fx.runtime.inspect('web');
    t.same(after.args, ['sleep', '301']);
    t.not(after.pid, before.web.pid, 'a new process');
    t.not(after.labels[SPEC_HASH_LABEL], before.web.labels[SPEC_HASH_LABEL]);
    t.equal(fx.runtime.inspect('pulled').pid, before.pulled.pid, 'pulled was not touched');
    t.equal(fx.runtime.inspect('pulled').startedAt, before.pulled.startedAt);
    t.same(phases(first.reported()), { web: 'running', pulled: 'running' });
    t.same(cgroupLeftovers('web').length > 0, true, 'the new web has its cgroups');
  });

  t.test('restart policy always: a container that exits is restarted and its restarts counted', async (t) => {
    const flappy = { name: 'flappy', image: 'busybox', args: ['sh', '-c', 'sleep 0.3; exit 3'], restart: 'always' };
    first.setDesired(desired(3, [{ ...web, args: ['sleep', '301'] }, pulled, flappy]));
    await waitFor('two restarts', () => fx.runtime.list({ all: true }).some((c) => c.name === 'flappy' && c.restarts >= 2), 60_000);
    const rep = await waitFor('reported restarts', () => {
      const f = first.reported().workloads.find((x) => x.name === 'flappy');
      return f !== undefined && f.restarts >= 2 ? f : undefined;
    });
    t.ok(rep.restarts >= 2);
    t.ok(published.some((r) => r.workloads.some((x) => x.name === 'flappy' && x.phase === 'failed' && /exited with code 3/.test(x.reason ?? ''))),
      'the exit was reported between the restarts');
    t.ok(events.filter((e) => e.type === 'container.restarted' && e.body['name'] === 'flappy').length >= 2);
  });

  t.test('a new reconciler over the same data dir adopts running containers without restarting them', async (t) => {
    await first.stop();
    // Swap flappy for a quiet one so the check below is not racing its restarts.
    await fx.runtime.remove('flappy', { force: true });
    const pidsBefore = { web: fx.runtime.inspect('web').pid, byhand: fx.runtime.inspect('byhand').pid };
    const startedBefore = fx.runtime.inspect('web').startedAt;
    // 'pulled' (restart: no) ends while no reconciler runs.
    const stopped = await fx.runtime.stop('pulled', 0);
    t.equal(stopped.exitCode, 137);
    events.length = 0;

    // A new agent process: its own runtime and image store over the same data dir, no broker.
    const paths = new DataPaths(fx.paths.root);
    const images = new ImageStore(paths);
    const runtime = new ShimRuntime({
      paths, images, cgroups: detectCgroups(), defaults: { memory: '128Mi', cpus: 0.5, pids: 10 }, logMaxBytes: 64 * 1024,
    });
    const second = reconciler(runtime, images);
    second.start();
    await second.idle();
    // flappy was removed by hand: the saved generation 3 wants it, so it is started again.
    await waitFor('flappy back', () => phases(second.reported())['flappy'] !== undefined && runtime.list().some((c) => c.name === 'flappy'));
    t.equal(runtime.inspect('web').pid, pidsBefore.web, 'web was adopted, not restarted');
    t.equal(runtime.inspect('web').startedAt, startedBefore);
    t.equal(runtime.inspect('byhand').pid, pidsBefore.byhand);
    const rep = second.reported();
    t.equal(rep.generation, 3, 'the generation reached survived the restart');
    t.match(rep.workloads.find((w) => w.name === 'pulled'), { phase: 'failed', exitCode: 137, reason: /137/ });
    t.equal(runtime.inspect('pulled').status, 'exited', 'restart policy no: not restarted');
    t.match(events.find((e) => e.type === 'container.exited'), { body: { name: 'pulled', exitCode: 137, atStartup: true } });

    t.test('an empty desired payload stops and removes what the reconciler owns, and only that', async (t) => {
      t.same(second.setDesired(''), { ok: true, generation: 0 });
      await waitFor('owned containers gone', () => runtime.list({ all: true }).every((c) => c.name === 'byhand'), 30_000);
      await second.idle();
      t.same(second.reported(), { generation: 0, workloads: [] });
      t.equal(runtime.inspect('byhand').status, 'running', 'the hand-started container still runs');
      for (const name of ['web', 'pulled', 'flappy']) {
        t.same(cgroupLeftovers(name), [], `no cgroup left for ${name}`);
        t.same(hostMountsUnder(paths.container(name).dir), [], `no mount left for ${name}`);
      }
    });
  });

  t.test('layers: busybox plus a layer adding /opt/mod/file; a new top layer replaces the container, the base stays as it is', async (t) => {
    for (const r of reconcilers) await r.stop(); // the earlier reconcilers own nothing now, but would remove what this one starts
    const layerFile = async (tag: string): Promise<{ name: string; url: string; sha256: string }> => {
      const file = join(fx.root, `mod-${tag}.tar.gz`);
      const { sha256 } = await writeTarball(file, [
        { type: 'dir', path: 'opt' }, { type: 'dir', path: 'opt/mod' }, { type: 'file', path: 'opt/mod/file', data: `module ${tag}\n` },
      ]);
      return { name: 'mod', url: pathToFileURL(file).href, sha256 };
    };
    const logsOf = async (name: string, line: string): Promise<string[]> => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const lines = await fx.runtime.logs(name);
        if (lines.includes(line) || Date.now() > deadline) return lines;
        await sleep(50);
      }
    };
    const ino = (p: string): string => { const st = statSync(p); return `${st.ino}:${st.birthtimeMs}`; };
    const lay = (layer: { name: string; url: string; sha256: string }): Record<string, unknown> =>
      ({ name: 'lay', image: 'busybox', args: ['sh', '-c', 'cat /opt/mod/file; exec sleep 300'], layers: [layer] });
    const layDesired = (generation: number, layer: { name: string; url: string; sha256: string }): string => JSON.stringify({ generation, workloads: [lay(layer)] });
    const running = (rec: Reconciler, generation: number) => (): boolean => rec.reported().generation === generation && phases(rec.reported())['lay'] === 'running';

    const v1 = await layerFile('v1');
    const baseCache = await fx.images.ensureExtracted('busybox');
    const baseIno = ino(baseCache);
    const rec = reconciler(fx.runtime, fx.images);
    rec.start();
    published.length = 0;
    events.length = 0;
    t.same(rec.setDesired(layDesired(10, v1)), { ok: true, generation: 10 });
    await waitFor('lay running', running(rec, 10));
    t.same(await logsOf('lay', 'module v1'), ['module v1'], 'the layer\'s file is visible in the container');
    t.ok(published.some((r) => r.workloads.some((w) => w.name === 'lay' && w.phase === 'pulling' && w.reason === 'pulling layer mod')), 'pulling was reported');
    t.match(events.find((e) => e.type === 'image.pulled'), { body: { layer: 'mod', name: layerImageName(v1), sha256: v1.sha256 } });
    t.equal(fx.images.get(layerImageName(v1))?.sha256, v1.sha256, 'stored under its digest-bearing name');
    t.same(containersUsingLayer(fx.paths, v1.sha256), ['lay']);
    const first = fx.runtime.inspect('lay');
    const v1Ino = ino(fx.paths.cacheDir(v1.sha256));

    // The same digest from another URL, in a new generation: nothing is replaced or fetched.
    const moved = join(fx.root, 'mod-v1-mirror.tar.gz');
    copyFileSync(fileURLToPath(v1.url), moved);
    rec.setDesired(layDesired(11, { ...v1, url: pathToFileURL(moved).href }));
    await waitFor('generation 11', running(rec, 11));
    t.equal(fx.runtime.inspect('lay').pid, first.pid, 'an unchanged layer digest does not replace the container');
    t.equal(events.filter((e) => e.type === 'image.pulled').length, 1);

    // Only the top layer changes.
    const v2 = await layerFile('v2');
    rec.setDesired(layDesired(12, v2));
    await waitFor('generation 12', running(rec, 12));
    const second = fx.runtime.inspect('lay');
    t.not(second.pid, first.pid, 'a new container');
    t.not(second.labels[SPEC_HASH_LABEL], first.labels[SPEC_HASH_LABEL]);
    t.same(await logsOf('lay', 'module v2'), ['module v2'], 'the new layer is stacked');
    t.equal(ino(baseCache), baseIno, 'the base image\'s cache dir was not extracted again');
    t.equal(ino(fx.paths.cacheDir(v1.sha256)), v1Ino, 'the old layer version stays as it was');
    t.same(containersUsingLayer(fx.paths, v2.sha256), ['lay']);
    t.same(containersUsingLayer(fx.paths, v1.sha256), []);

    // A layer that does not verify: the workload fails with the reason, and the running container stays.
    events.length = 0;
    rec.setDesired(layDesired(13, { ...v2, sha256: 'f'.repeat(64) }));
    await waitFor('lay failed', () => rec.reported().workloads[0]?.phase === 'failed');
    t.match(rec.reported().workloads[0], { name: 'lay', phase: 'failed', reason: /^CHECKSUM_MISMATCH: pulling layer mod: / });
    t.equal(rec.reported().generation, 12, 'generation 13 not reached');
    t.match(events.find((e) => e.type === 'pull.failed'), { body: { layer: 'mod', code: 'CHECKSUM_MISMATCH', by: 'desired' } });
    t.equal(fx.runtime.inspect('lay').pid, second.pid, 'the old container is not stopped for a layer that cannot be had');

    t.same(rec.setDesired(''), { ok: true, generation: 0 });
    await waitFor('lay gone', () => !fx.runtime.list({ all: true }).some((c) => c.name === 'lay'));
    t.same(cgroupLeftovers('lay'), []);
    t.same(hostMountsUnder(fx.paths.container('lay').dir), []);
  });
}
