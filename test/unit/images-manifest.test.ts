// images/manifest.json: tolerant reads, atomic writes, clear errors (agent/images/manifest.ts).
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Manifest, parseManifest, type ManifestEntry } from '../../agent/images/manifest.js';
import { ImageStore } from '../../agent/images/store.js';
import { DataPaths } from '../../agent/paths.js';
import { FeatherError } from '../../shared/errors.js';
import { configureLogging } from '../../shared/logging.js';

configureLogging({ level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'feather-manifest-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function fresh(): { paths: DataPaths; manifest: Manifest } {
  const paths = new DataPaths(join(root, `d${n++}`));
  return { paths, manifest: new Manifest(paths.manifest) };
}

const entry = (name: string, c = 'a'): ManifestEntry => ({
  name, sha256: c.repeat(64), size: 10, source: 'file:///x.tar.gz', pulledAt: '2026-01-01T00:00:00.000Z',
});

function thrown(fn: () => unknown): FeatherError {
  try {
    fn();
  } catch (e: unknown) {
    if (e instanceof FeatherError) return e;
    throw e;
  }
  throw new Error('expected a throw');
}

t.test('a missing manifest is an empty one', async (t) => {
  const { paths, manifest } = fresh();
  t.same(manifest.read(), []);
  t.same(await new ImageStore(paths).list(), []);
  t.equal(new ImageStore(paths).get('busybox'), undefined);
});

t.test('written as a sorted JSON array and read back', async (t) => {
  const { manifest } = fresh();
  await manifest.upsert(entry('zeta', 'b'));
  await manifest.upsert(entry('alpha'));
  await manifest.upsert({ ...entry('zeta', 'c'), size: 99 });
  const doc = JSON.parse(readFileSync(manifest.path, 'utf8')) as ManifestEntry[];
  t.same(doc.map((e) => e.name), ['alpha', 'zeta']);
  t.equal(doc[1]?.sha256, 'c'.repeat(64), 'upsert replaces');
  t.same(manifest.read(), doc);
  t.same(await manifest.remove('alpha'), entry('alpha'));
  t.equal(await manifest.remove('alpha'), undefined);
  t.same(manifest.read().map((e) => e.name), ['zeta']);
});

t.test('the other shapes the contract allows are read', async (t) => {
  t.same(parseManifest(JSON.stringify({ images: [entry('a')] }), 'm'), [entry('a')]);
  const { name: _n, ...rest } = entry('keyed');
  t.same(parseManifest(JSON.stringify({ keyed: rest }), 'm'), [entry('keyed')]);
  t.same(parseManifest('', 'm'), []);
});

t.test('a corrupt manifest is a clear error naming the file, not a crash', async (t) => {
  const { paths, manifest } = fresh();
  mkdirSync(paths.images, { recursive: true });
  const cases: Array<[string, RegExp]> = [
    ['{"truncated": [', /not JSON/],
    ['42', /neither an array nor an object/],
    [JSON.stringify([{ ...entry('a'), sha256: 'nothex' }]), /record 0 has no valid sha256/],
    [JSON.stringify([{ ...entry('a'), size: -1 }]), /record 0 has no valid size/],
    [JSON.stringify([{ ...entry('a'), name: '../etc' }]), /invalid name/],
    [JSON.stringify([entry('a'), entry('a', 'b')]), /"a" appears twice/],
  ];
  for (const [text, why] of cases) {
    writeFileSync(paths.manifest, text);
    const err = thrown(() => manifest.read());
    t.equal(err.code, 'INTERNAL', text);
    t.match(err.message, why, text);
    t.match(err.message, paths.manifest, 'names the file');
    t.match(err.message, /restore it from a backup, or move it aside/, 'says what to do');
  }
  await t.rejects(new ImageStore(paths).list(), { code: 'INTERNAL' });
});

t.test('writes are atomic: readers never see a torn file; concurrent updates are all kept', async (t) => {
  const { paths, manifest } = fresh();
  let reads = 0;
  let torn = 0;
  const reader = setInterval(() => {
    try {
      manifest.read();
      reads++;
    } catch {
      torn++;
    }
  }, 0);
  await Promise.all(Array.from({ length: 40 }, (_, i) => manifest.upsert(entry(`img${String(i).padStart(2, '0')}`))));
  clearInterval(reader);
  t.equal(torn, 0, `no torn reads in ${reads}`);
  t.equal(manifest.read().length, 40, 'every concurrent update kept');
  t.same(readdirSync(paths.images), ['manifest.json'], 'no temp files left');
});

t.test('a temp file a crash left behind is ignored, and gc removes it', async (t) => {
  const { paths, manifest } = fresh();
  await manifest.upsert(entry('kept'));
  const leftover = join(paths.images, '.manifest.json.tmp.99999999.deadbeef');
  writeFileSync(leftover, '[{"name": "half');
  t.same(manifest.read().map((e) => e.name), ['kept']);
  const gc = await new ImageStore(paths).gc();
  t.same(gc.removedTmp, ['.manifest.json.tmp.99999999.deadbeef']);
  t.notOk(existsSync(leftover));
});
