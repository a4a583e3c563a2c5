// The store end to end on real files: recipes build images that extract and run, verify()
// catches a corrupted tarball, rm respects containers, gc, models, and an archive entry
// larger than a small tmpfs (agent/images/store.ts, recipes.ts, extract.ts).
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containersUsingImage } from '../../agent/runtime/state.js';
import { buildRecipe, busyboxTarball, RecipeBuilder } from '../../agent/images/recipes.js';
import { ImageStore } from '../../agent/images/store.js';
import { writeTarball } from '../../agent/images/tarwriter.js';
import { DataPaths } from '../../agent/paths.js';
import { configureLogging } from '../../shared/logging.js';
import { failure } from '../helpers/failure.js';

configureLogging({ level: 'silent' });
const isRoot = process.getuid?.() === 0;
const root = mkdtempSync(join(tmpdir(), 'feather-store-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function fresh(): ImageStore {
  return new ImageStore(new DataPaths(join(root, `d${n++}`)));
}

const hasBusybox = existsSync('/bin/busybox') || existsSync('/usr/bin/busybox');

t.test('busybox recipe: a reproducible tarball that extracts with bin/sh and runs', { skip: hasBusybox ? false : 'busybox-static is not installed' }, async (t) => {
  const s = fresh();
  const b = await buildRecipe(s, 'busybox');
  t.match(b, { name: 'busybox', recipe: 'busybox', source: 'recipe:busybox', cached: false });
  const again = await busyboxTarball(join(root, 'bb-again.tar.gz'));
  t.equal(again.sha256, b.sha256, 'the same host builds the same bytes');
  const dir = await s.ensureExtracted('busybox');
  t.equal(dir, s.paths.cacheDir(b.sha256));
  t.ok(s.get('busybox')?.cached);
  t.equal(readlinkSync(join(dir, 'bin/sh')), 'busybox');
  t.ok(statSync(join(dir, 'bin/sh')).isFile(), 'bin/sh resolves to the binary');
  t.equal(statSync(join(dir, 'tmp')).mode & 0o7777, 0o1777);
  t.match(readFileSync(join(dir, 'etc/passwd'), 'utf8'), /^root:x:0:0:/);
  t.equal(readlinkSync(join(dir, 'usr/bin')), '../bin');
  if (isRoot) {
    const r = spawnSync('chroot', [dir, '/bin/sh', '-c', 'echo hello from $(basename $(readlink /bin/ls))'], { encoding: 'utf8' });
    t.equal(r.stdout.trim(), 'hello from busybox', 'a shell runs in the extracted root');
  }
});

t.test('host recipe: named executables with their libraries run in a chroot', async (t) => {
  const s = fresh();
  const b = await new RecipeBuilder(s).build('host', { name: 'tools', bins: ['sh', 'ls'] });
  t.equal(b.name, 'tools');
  const dir = await s.ensureExtracted('tools');
  t.ok(existsSync(join(dir, 'bin/sh')) || existsSync(join(dir, 'usr/bin/sh')), 'sh is there');
  if (isRoot) {
    const r = spawnSync('chroot', [dir, '/bin/sh', '-c', 'ls /'], { encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, /etc/);
  }
  const err = await failure(new RecipeBuilder(s).build('host', { bins: ['no-such-program-here'] }));
  t.equal(err.code, 'NOT_FOUND');
  t.equal((await failure(new RecipeBuilder(s).build('nope'))).code, 'BAD_REQUEST');
});

t.test('verify() recomputes every checksum and finds a corrupted tarball', async (t) => {
  const s = fresh();
  const src = join(root, 'v.tar.gz');
  const a = await writeTarball(src, [{ type: 'file', path: 'a', data: randomBytes(50_000) }]);
  await s.import(src, { name: 'good' });
  await s.import(src, { name: 'bad', sha256: a.sha256 });
  await s.import(src, { name: 'gone' });
  t.same((await s.verify()).map((r) => r.ok), [true, true, true]);
  const fd = openSync(s.paths.imageTarball('bad'), 'r+');
  writeSync(fd, Buffer.from([0xff, 0xff]), 0, 2, 1000);
  closeSync(fd);
  rmSync(s.paths.imageTarball('gone'));
  const results = await s.verify();
  const bad = results.find((r) => r.name === 'bad');
  t.equal(bad?.ok, false);
  t.equal(bad?.expected, a.sha256);
  t.ok(bad?.actual !== null && bad?.actual !== a.sha256 && /^[0-9a-f]{64}$/.test(bad?.actual ?? ''), 'the actual digest is reported');
  t.match(results.find((r) => r.name === 'gone'), { ok: false, actual: null, error: 'tarball missing' });
  t.equal(results.find((r) => r.name === 'good')?.ok, true);
  const ext = await failure(s.ensureExtracted('bad'));
  t.equal(ext.code, 'CHECKSUM_MISMATCH', 'a corrupted tarball is not extracted either');
  t.notOk(existsSync(s.paths.cacheDir(a.sha256)));
});

t.test('import checks a given sha256; rm is refused while a container uses the image; gc', async (t) => {
  const s = fresh();
  const src = join(root, 'i.tar.gz');
  const a = await writeTarball(src, [{ type: 'dir', path: 'etc' }, { type: 'file', path: 'etc/x', data: 'x' }]);
  const wrong = await failure(s.import(src, { name: 'img', sha256: '1'.repeat(64) }));
  t.equal(wrong.code, 'CHECKSUM_MISMATCH');
  t.match(wrong.message, `expected sha256 ${'1'.repeat(64)}, got ${a.sha256}`);
  t.notOk(existsSync(s.paths.imageTarball('img')));
  t.equal((await failure(s.import(join(root, 'absent.tar.gz'), { name: 'img' }))).code, 'NOT_FOUND');
  t.equal((await failure(s.import(src, { name: '../evil' }))).code, 'BAD_REQUEST');

  await s.import(src, { name: 'img', sha256: `sha256:${a.sha256.toUpperCase()}` });
  await s.import(src, { name: 'alias' });
  const layer = await s.ensureExtracted('img');
  // a container of the runtime's shape uses it
  mkdirSync(s.paths.container('web').dir, { recursive: true });
  writeFileSync(s.paths.container('web').config, JSON.stringify({ name: 'web', image: 'img', imageSha256: a.sha256 }));
  mkdirSync(s.paths.container('broken').dir, { recursive: true });
  writeFileSync(s.paths.container('broken').config, '{not json');
  const inUseBy = (sha: string): string[] => containersUsingImage(s.paths.containers, sha);
  t.same(await inUseBy(a.sha256), ['web']);
  const busy = await failure(s.remove('img', { inUseBy }));
  t.equal(busy.code, 'CONFLICT');
  t.match(busy.message, /used by container web/);
  t.ok(existsSync(s.paths.imageTarball('img')));

  rmSync(s.paths.container('web').dir, { recursive: true });
  await s.remove('img', { inUseBy });
  t.notOk(existsSync(s.paths.imageTarball('img')));
  t.ok(existsSync(layer), 'the layer stays while "alias" shares it');
  await s.remove('alias', { inUseBy });
  t.notOk(existsSync(layer), 'and goes with the last image using it');
  t.equal((await failure(s.remove('alias', { inUseBy }))).code, 'NOT_FOUND');

  // gc: an orphan layer, a dead process's extraction, a stale partial and lock
  const orphan = s.paths.cacheDir('c'.repeat(64));
  mkdirSync(orphan, { recursive: true });
  mkdirSync(join(s.paths.tmp, `extract-${'d'.repeat(64)}.99999999.0badf00d`), { recursive: true });
  writeFileSync(join(s.paths.tmp, `${'e'.repeat(64)}.partial`), 'half');
  writeFileSync(join(s.paths.tmp, `${'e'.repeat(64)}.lock`), '99999999\n');
  const kept = await s.gc();
  t.same(kept.removedCache, ['c'.repeat(64)]);
  t.same(readdirSync(s.paths.tmp), [`${'e'.repeat(64)}.partial`], 'a fresh partial is kept for a resume');
  const all = await s.gc({ partialMaxAgeMs: 0 });
  t.same(all.removedTmp, [`${'e'.repeat(64)}.partial`]);
});

t.test('ensureModel: models/<sha256>/<file>, verified, fetched once', async (t) => {
  const model = randomBytes(200_000);
  const sha = createHash('sha256').update(model).digest('hex');
  let requests = 0;
  const server = createServer((_req, res) => { requests++; res.end(model); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models/resnet18-int8.onnx?x=1`;
  const s = fresh();
  const dir = await s.ensureModel(url, sha);
  t.equal(dir, s.paths.modelDir(sha));
  t.ok(readFileSync(join(dir, 'resnet18-int8.onnx')).equals(model));
  t.equal(lstatSync(join(dir, 'resnet18-int8.onnx')).mode & 0o777, 0o444);
  t.equal(await s.ensureModel(url, sha), dir);
  t.equal(requests, 1);
  t.equal((await failure(s.ensureModel(url, '2'.repeat(64)))).code, 'CHECKSUM_MISMATCH');
});

t.test('an archive entry larger than a small tmpfs: NO_SPACE, nothing left', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const mnt = join(root, 'small');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  t.teardown(() => { execFileSync('umount', [mnt]); });
  const src = join(root, 'huge.tar.gz');
  // 512 KiB of noise (stays big when gzipped) then 8 MiB of zeros (tiny when gzipped)
  await writeTarball(src, [
    { type: 'file', path: 'noise', data: randomBytes(512 * 1024) },
    { type: 'file', path: 'zeros', data: Buffer.alloc(8 * 2 ** 20) },
  ]);
  const s = new ImageStore(new DataPaths(join(mnt, 'data')));
  await s.import(src, { name: 'huge' });
  const err = await failure(s.ensureExtracted('huge'));
  t.equal(err.code, 'NO_SPACE');
  t.match(err.message, /"zeros" needs 8Mi but only/);
  t.same(readdirSync(s.paths.tmp), [], 'the partial extraction is removed');
  t.notOk(existsSync(s.paths.cacheDir(s.get('huge')?.sha256 ?? '')));
});

t.test('debian recipe (slow, needs the mirror): FEATHER_TEST_DEBIAN=1', { skip: process.env['FEATHER_TEST_DEBIAN'] === '1' ? false : 'set FEATHER_TEST_DEBIAN=1' }, async (t) => {
  const s = fresh();
  const b = await buildRecipe(s, 'debian', { name: 'debian' });
  const dir = await s.ensureExtracted('debian');
  t.ok(b.size > 10 * 2 ** 20);
  t.match(readFileSync(join(dir, 'etc/os-release'), 'utf8'), /Debian/);
  const r = spawnSync('chroot', [dir, '/bin/sh', '-c', 'dpkg -l | wc -l'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
});
