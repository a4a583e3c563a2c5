// The retained desired state, end to end: a person publishes `feather/v1/dev/ID/desired` with
// `mosquitto_pub -r`, the real daemon reconciles (containers really run: `feather-agent ps --json`),
// a change replaces what changed, `mosquitto_pub -r -n` empties it, and a container started by hand
// with `feather-agent run -d` is never touched. Over aedes and mosquitto.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isPidAlive } from '../../shared/process.js';
import { BROKERS } from '../helpers/brokers.js';
import {
  busyboxImageTarball, cannotRun, daemonTestbed, Device, type PsEntry, type ReportedDoc,
} from '../helpers/daemon-fixture.js';

// PID 1 shell that prints its tag, then exits 0 at once on SIGTERM (a stop costs no timeout).
const LOOP = (tag: string): string[] =>
  ['sh', '-c', `echo ${tag}; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done`];

const phases = (r: ReportedDoc): Record<string, string> => Object.fromEntries(r.workloads.map((w) => [w.name, w.phase]));

const why = cannotRun();
if (why !== undefined) {
  t.plan(0, why);
} else {
  const bed = daemonTestbed(t);

  for (const { kind, start } of BROKERS) {
    t.test(`desired state over ${kind}`, async (t) => {
      const { fx, http } = bed;
      const broker = await start();
      t.teardown(() => broker.close());
      const id = `${fx.tag}-${kind}`;
      const dev = await Device.open(broker, id, { context: () => fx.tails() });
      t.teardown(() => dev.close());
      let daemon = await fx.startDaemon({ broker, deviceId: id });
      t.teardown(() => daemon.stop());
      const [hand, a, b, c] = ['hand', 'a', 'b', 'c'].map((s) => fx.name(`${kind}-${s}`)) as [string, string, string, string];
      const ours = (list: PsEntry[]): Record<string, PsEntry> =>
        Object.fromEntries(list.filter((x) => [hand, a, b, c].includes(x.name)).map((x) => [x.name, x]));
      let handPid: number | undefined;
      let gen1: Record<string, PsEntry> = {};
      let gen2: Record<string, PsEntry> = {};

      t.test('a container started by hand with feather-agent run -d', async (t) => {
        const r = await fx.cli(['run', '-d', '--image', 'busybox', '--name', hand, '--', 'sleep', '300']);
        t.equal(r.code, 0, r.stderr);
        handPid = ours(await fx.ps())[hand]?.pid;
        t.ok(isPidAlive(handPid), 'runs');
      });

      t.test('desired generation 1 (mosquitto_pub -r): both workloads run, reported with the generation', async (t) => {
        const after = dev.mark();
        await dev.publish('desired', JSON.stringify({
          generation: 1,
          workloads: [
            { name: a, image: 'busybox', args: LOOP('a1'), limits: { memory: '32Mi' }, restart: 'always' },
            { name: b, image: 'busybox', args: LOOP('b1') },
          ],
        }), { retain: true });
        const rep = await dev.reported('generation 1, both running', (r) => r.generation === 1 && phases(r)[a] === 'running' && phases(r)[b] === 'running', { after, ms: 30_000 });
        t.same(rep.workloads.map((w) => w.name), [a, b], 'in desired order');
        gen1 = ours(await fx.ps());
        for (const n of [a, b]) {
          t.match(gen1[n], { status: 'running', image: 'busybox', labels: { 'feather.owner': 'desired', 'feather.generation': '1' } }, `${n} runs, owned`);
          t.ok(isPidAlive(gen1[n]?.pid), `${n}'s pid is alive`);
        }
        t.equal(gen1[hand]?.pid, handPid, 'the hand-started container is untouched');
        t.notOk(gen1[hand]?.labels['feather.owner'], 'and not owned');
      });

      t.test('generation 2: a changed (replaced), b dropped (removed), c added with an image pulled over HTTP', async (t) => {
        const file = join(fx.root, `${kind}-desired.tar.gz`);
        const { sha256 } = await busyboxImageTarball(file, { 'data/origin': `desired over ${kind}\n` });
        const url = http.serve(`/${kind}/desired.tar.gz`, readFileSync(file));
        const image = `bb-desired-${kind}`;
        const after = dev.mark();
        await dev.publish('desired', JSON.stringify({
          generation: 2,
          workloads: [
            { name: a, image: 'busybox', args: LOOP('a2'), limits: { memory: '32Mi' }, restart: 'always' },
            { name: c, image, args: ['sh', '-c', `cat /data/origin; trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done`] },
          ],
          images: [{ name: image, url, sha256 }],
        }), { retain: true });
        const rep = await dev.reported('generation 2, a and c running', (r) => r.generation === 2 && phases(r)[a] === 'running' && phases(r)[c] === 'running', { after, ms: 30_000 });
        t.same(rep.workloads.map((w) => w.name), [a, c], 'b is no longer reported');
        gen2 = ours(await fx.ps());
        t.match(gen2[a], { status: 'running', labels: { 'feather.generation': '2' } });
        t.not(gen2[a]?.pid, gen1[a]?.pid, 'a was replaced: a new process');
        t.ok(isPidAlive(gen2[a]?.pid));
        t.notOk(isPidAlive(gen1[a]?.pid), 'the old one is gone');
        t.notOk(gen2[b], 'b was removed');
        t.notOk(isPidAlive(gen1[b]?.pid), 'and its process is gone');
        t.match(gen2[c], { status: 'running', image, imageSha256: sha256 });
        t.ok(http.requests.some((r) => r.path === `/${kind}/desired.tar.gz` && r.status === 200), 'the image came from the HTTP server');
        t.equal(gen2[hand]?.pid, handPid, 'the hand-started container is untouched');
        t.same(await dev.ask('container.logs', { name: c }).then((r) => r.result), { lines: [`desired over ${kind}`] });
      });

      t.test('an agent restart adopts the owned containers: nothing is restarted', async (t) => {
        t.same(await daemon.stop(), { code: 0, signal: null });
        const after = dev.mark();
        daemon = await fx.startDaemon({ broker, deviceId: id });
        await dev.reported('generation 2 again', (r) => r.generation === 2 && phases(r)[a] === 'running' && phases(r)[c] === 'running', { after, ms: 30_000 });
        const now = ours(await fx.ps());
        t.equal(now[a]?.pid, gen2[a]?.pid, 'a kept its process');
        t.equal(now[c]?.pid, gen2[c]?.pid, 'c kept its process');
        t.equal(now[hand]?.pid, handPid);
      });

      t.test('an invalid desired payload changes nothing and is reported', async (t) => {
        const after = dev.mark();
        await dev.publish('desired', JSON.stringify({ generation: 3, workloads: [{ name: a, image: 'busybox', limits: { memory: 'lots' } }] }), { retain: true });
        t.match(await dev.event('desired.rejected', () => true, { after }), { code: 'BAD_REQUEST', message: /memory/ });
        const rep = await dev.reported('a reason', (r) => typeof r.reason === 'string', { after });
        t.equal(rep.generation, 2, 'still generation 2');
        const now = ours(await fx.ps());
        t.equal(now[a]?.pid, gen2[a]?.pid, 'a untouched');
        t.equal(now[c]?.pid, gen2[c]?.pid, 'c untouched');
      });

      t.test('emptied with mosquitto_pub -r -n: owned containers go, the hand-started one stays', async (t) => {
        const after = dev.mark();
        await dev.publish('desired', '', { retain: true });
        const rep = await dev.reported('generation 0, nothing', (r) => r.generation === 0 && r.workloads.length === 0, { after, ms: 30_000 });
        t.notOk(rep.reason, 'no rejection left');
        const now = ours(await fx.ps());
        t.same(Object.keys(now), [hand], 'only the hand-started container is left');
        t.match(now[hand], { status: 'running', pid: handPid });
        t.notOk(isPidAlive(gen2[a]?.pid) || isPidAlive(gen2[c]?.pid), 'the owned processes are gone');
        const late = await Device.open(broker, id);
        t.teardown(() => late.close());
        await late.status(true);
        t.equal(late.on('desired').length, 0, 'no retained desired message is left on the broker');
      });

      t.test('SIGTERM', async (t) => {
        t.same(await daemon.stop(), { code: 0, signal: null });
        t.equal(ours(await fx.ps())[hand]?.pid, handPid, 'containers outlive the agent');
      });
    });
  }

  t.test('nothing is left: containers, cgroups, mounts', async (t) => {
    const { fx } = bed;
    const left = await fx.cleanup();
    t.same(left, { cgroups: [], mounts: [], containers: [] });
  });
}
