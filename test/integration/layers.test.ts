// Layered images end to end, as root: a busybox base image, a runtime-module layer and a top layer
// adding /opt/mod/file, each a verified tarball served over HTTP, stacked by overlayfs in real
// containers. Each layer is fetched and extracted once; replacing the top layer fetches and
// extracts that one only. Plus the container.run contract (validator, executor) for `layers`.
import t from 'tap';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXECUTORS, type ExecutorContext } from '../../agent/control/executors.js';
import { EventPublisher } from '../../agent/control/events.js';
import { checkLayers, type LayerRef } from '../../shared/protocol/layers.js';
import { containersUsingLayer, ensureLayers, layerImageName } from '../../agent/images/layers.js';
import { writeTarball } from '../../agent/images/tarwriter.js';
import { validateCommand } from '../../shared/protocol/commands.js';
import { decodeCommandProto, encodeCommandProto } from '../../shared/protocol/proto.js';
import { Topics } from '../../shared/protocol/topics.js';
import { createLogger } from '../../shared/logging.js';
import { cgroupLeftovers, hostMountsUnder, isRoot, runtimeFixture, type RuntimeFixture } from '../helpers/runtime-fixture.js';

const SHA = 'a'.repeat(64);

t.test('the contract: container.run takes layers, topmost first', async (t) => {
  const body = validateCommand('container.run', {
    name: 'det', image: 'busybox',
    layers: [{ name: 'model', url: 'https://example.com/m.tar.gz', sha256: `sha256:${'A'.repeat(64)}` }, { name: 'onnxruntime', url: 'file:///srv/ort.tar.gz', sha256: SHA }],
  });
  t.same(body.layers, [{ name: 'model', url: 'https://example.com/m.tar.gz', sha256: SHA }, { name: 'onnxruntime', url: 'file:///srv/ort.tar.gz', sha256: SHA }]);
  t.equal(validateCommand('container.run', { name: 'det', image: 'busybox' }).layers, undefined);
  t.throws(() => validateCommand('container.run', { name: 'd', image: 'b', layers: [{ name: 'm', url: 'ftp://x', sha256: SHA }] }), { code: 'BAD_REQUEST', message: /field layers\[0\]\.url/ });
  t.throws(() => validateCommand('container.run', { name: 'd', image: 'b', layers: [{ name: 'm', url: 'file:///x' }] }), { message: /field layers\[0\]\.sha256 is required/ });
  t.throws(() => validateCommand('container.run', { name: 'd', image: 'b', layers: [{ name: 'm', url: 'file:///x', sha256: SHA, size: 1 }] }), { message: /unknown field layers\[0\]\.size/ });
  t.throws(() => validateCommand('container.run', { name: 'd', image: 'b', layers: Array.from({ length: 17 }, (_, i) => ({ name: `l${i}`, url: 'file:///x', sha256: SHA })) }), { message: /field layers has 17 items; at most 16/ });
  const proto = decodeCommandProto(encodeCommandProto('container.run', 'r1', { name: 'det', image: 'busybox', layers: [{ name: 'model', url: 'file:///m.tar', sha256: SHA }] }));
  t.same(validateCommand('container.run', proto.body).layers, [{ name: 'model', url: 'file:///m.tar', sha256: SHA }], 'protobuf carries layers too');
});

t.test('layer names and stacking rules', async (t) => {
  t.equal(layerImageName({ name: 'onnxruntime', sha256: `sha256:${'0123456789abcdef'.repeat(4)}` }), 'onnxruntime.0123456789abcdef');
  t.equal(layerImageName({ name: 'x'.repeat(63), sha256: SHA }), `${'x'.repeat(46)}.${'a'.repeat(16)}`, 'fits an image name');
  t.throws(() => checkLayers([{ name: 'a', url: 'file:///a', sha256: SHA }, { name: 'b', url: 'file:///b', sha256: SHA }]), { code: 'BAD_REQUEST', message: 'layers[1] (b) has the same sha256 as layers[0] (a): a layer can be stacked once' });
  t.throws(() => checkLayers([{ name: 'a', url: 'file:///a', sha256: SHA }], SHA), { message: /layers\[0\] \(a\) is the image itself/ });
});

if (!isRoot()) {
  t.pass('skipped: layered containers need root');
} else {
  let fx: RuntimeFixture;
  let srv: Server;
  let base = '';
  let dir = '';
  const hits = new Map<string, number>();

  t.before(async () => {
    fx = await runtimeFixture();
    dir = mkdtempSync(join(tmpdir(), 'feather-layers-it-'));
    srv = createServer((req, res) => {
      const file = (req.url ?? '/').slice(1);
      hits.set(file, (hits.get(file) ?? 0) + 1);
      try {
        const size = statSync(join(dir, file)).size;
        res.writeHead(200, { 'content-length': size });
        createReadStream(join(dir, file)).pipe(res);
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  });
  t.teardown(async () => {
    await fx.cleanup();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function layer(name: string, file: string, content: string, extra: string): Promise<LayerRef> {
    const { sha256 } = await writeTarball(join(dir, file), [
      { type: 'dir', path: 'opt' }, { type: 'dir', path: 'opt/mod' },
      { type: 'file', path: 'opt/mod/file', data: content },
      { type: 'file', path: `opt/mod/${extra}`, data: extra },
    ]);
    return { name, url: `${base}/${file}`, sha256 };
  }

  async function exited(name: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (fx.runtime.inspect(name).status !== 'exited') {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${name}`);
      await sleep(25);
    }
  }

  const ino = (p: string): string => { const s = statSync(p); return `${s.ino}:${s.birthtimeMs}`; };

  t.test('two layers over busybox; the top one replaced: the other is neither fetched nor extracted again', async (t) => {
    const runtimeMod = await layer('ortmod', 'ort.tar.gz', 'from the runtime module\n', 'runtime.so');
    const topV1 = await layer('model', 'model-v1.tar.gz', 'model v1\n', 'v1.onnx');
    const busyboxCache = await fx.images.ensureExtracted('busybox');
    const before = ino(busyboxCache);

    const lowers1 = await ensureLayers(fx.images, [topV1, runtimeMod]);
    t.same(lowers1, [fx.paths.cacheDir(topV1.sha256), fx.paths.cacheDir(runtimeMod.sha256)], 'cache/<sha256>, topmost first');
    await fx.runtime.run({ name: 'lay1', image: 'busybox', extraLayers: lowers1, args: ['sh', '-c', 'cat /opt/mod/file; ls /opt/mod; echo x > /opt/mod/file && cat /opt/mod/file'] });
    await exited('lay1');
    t.same(await fx.runtime.logs('lay1'), ['model v1', 'file', 'runtime.so', 'v1.onnx', 'x'], 'the top layer wins, the others show through, writes go to the upper');
    t.equal(fx.runtime.inspect('lay1').exitCode, 0);
    t.same(hits, new Map([['ort.tar.gz', 1], ['model-v1.tar.gz', 1]]));
    const ortIno = ino(lowers1[1] as string);
    t.equal(readCache(lowers1[0] as string), 'model v1\n', 'the write did not reach the cached layer');

    // The same stack again: nothing fetched, nothing extracted.
    t.same(await ensureLayers(fx.images, [topV1, runtimeMod]), lowers1);
    t.same(hits, new Map([['ort.tar.gz', 1], ['model-v1.tar.gz', 1]]));

    // A new model: only it is fetched and extracted.
    const topV2 = await layer('model', 'model-v2.tar.gz', 'model v2\n', 'v2.onnx');
    const lowers2 = await ensureLayers(fx.images, [topV2, runtimeMod]);
    t.same(hits, new Map([['ort.tar.gz', 1], ['model-v1.tar.gz', 1], ['model-v2.tar.gz', 1]]));
    t.equal(lowers2[1], lowers1[1]);
    t.equal(ino(lowers2[1] as string), ortIno, 'the runtime module was not extracted again');
    t.equal(ino(busyboxCache), before, 'nor the base image');
    await fx.runtime.run({ name: 'lay2', image: 'busybox', extraLayers: lowers2, args: ['sh', '-c', 'cat /opt/mod/file; ls /opt/mod'] });
    await exited('lay2');
    t.same(await fx.runtime.logs('lay2'), ['model v2', 'file', 'runtime.so', 'v2.onnx']);

    // Both versions stay, under digest-bearing names, each used by its own container.
    const names = (await fx.images.list()).map((i) => i.name).sort();
    t.same(names, ['busybox', layerImageName(topV1), layerImageName(topV2), layerImageName(runtimeMod)].sort());
    t.same(containersUsingLayer(fx.paths, topV1.sha256), ['lay1']);
    t.same(containersUsingLayer(fx.paths, runtimeMod.sha256), ['lay1', 'lay2']);
    await fx.runtime.start('lay1');
    await exited('lay1');
    t.equal((await fx.runtime.logs('lay1')).at(-1), 'x', 'the old container still runs on its own layers');
    for (const n of ['lay1', 'lay2']) {
      await fx.runtime.remove(n);
      t.same(cgroupLeftovers(n), []);
      t.same(hostMountsUnder(fx.paths.container(n).dir), []);
    }
  });

  t.test('a layer whose bytes do not match: CHECKSUM_MISMATCH naming the layer, nothing kept', async (t) => {
    const good = await layer('bad', 'bad.tar.gz', 'bad\n', 'bad');
    await t.rejects(ensureLayers(fx.images, [{ ...good, sha256: 'b'.repeat(64) }]), { code: 'CHECKSUM_MISMATCH', message: /^layer bad: / });
    t.notOk((await fx.images.list()).some((i) => i.name.startsWith('bad.')));
  });

  t.test('a layer that is an image already is not fetched again', async (t) => {
    const busybox = fx.images.get('busybox');
    const ref: LayerRef = { name: 'bb', url: `${base}/nothing-here.tar.gz`, sha256: busybox?.sha256 ?? '' };
    t.same(await ensureLayers(fx.images, [ref]), [fx.paths.cacheDir(ref.sha256)]);
    t.equal(hits.get('nothing-here.tar.gz'), undefined);
  });

  t.test('container.run with layers, through the executor', async (t) => {
    const top = await layer('exec', 'exec.tar.gz', 'through the executor\n', 'e');
    const ctx: ExecutorContext = {
      runtime: fx.runtime, images: fx.images, inventory: () => ({}), devices: undefined,
      events: new EventPublisher(new Topics('feather/v1', 'it'), async () => undefined, createLogger('test:events')),
      logger: createLogger('test:exec'), signal: new AbortController().signal,
    };
    const body = validateCommand('container.run', { name: 'lay3', image: 'busybox', args: ['cat', '/opt/mod/file'], layers: [top] });
    await EXECUTORS['container.run'].run(body, ctx);
    await exited('lay3');
    t.same(await fx.runtime.logs('lay3'), ['through the executor']);
    await fx.runtime.remove('lay3');
    await t.rejects(EXECUTORS['container.run'].run(validateCommand('container.run', { name: 'lay4', image: 'busybox', layers: [{ ...top, name: 'missing', url: `${base}/missing.tar.gz`, sha256: 'c'.repeat(64) }] }), ctx),
      { code: 'PULL_FAILED', message: /^layer missing: / });
    t.throws(() => fx.runtime.inspect('lay4'), { code: 'NOT_FOUND' });
  });
}

function readCache(layerDir: string): string {
  return readFileSync(join(layerDir, 'opt/mod/file'), 'utf8');
}
