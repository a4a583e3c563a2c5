// Verified fetch from file:// URLs: verify-then-rename, resume from a kept partial, locks
// (agent/images/blobs.ts). HTTP is in test/integration/images-pull.test.ts.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BlobFetcher, type FetchProgress } from '../../agent/images/blobs.js';
import { configureLogging } from '../../shared/logging.js';
import { failure } from '../helpers/failure.js';

const logLines: string[] = [];
configureLogging({ level: 'info', sink: (l) => logLines.push(l) });

const root = mkdtempSync(join(tmpdir(), 'feather-blobs-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const blob = randomBytes(3 * 2 ** 20 + 123);
const sha = createHash('sha256').update(blob).digest('hex');
const src = join(root, 'blob.bin');
writeFileSync(src, blob);
const url = pathToFileURL(src).href;

let n = 0;
function dirs(): { tmpDir: string; dest: string } {
  const d = join(root, `d${n++}`);
  mkdirSync(join(d, 'tmp'), { recursive: true });
  return { tmpDir: join(d, 'tmp'), dest: join(d, 'images', 'x.tar.gz') };
}

const fetcher = new BlobFetcher({ retries: 0 });

t.test('a verified copy lands at dest; nothing is left in tmp', async (t) => {
  const d = dirs();
  const seen: FetchProgress[] = [];
  const r = await fetcher.fetchVerified({ url, sha256: sha.toUpperCase(), ...d, onProgress: (p) => seen.push(p) });
  t.equal(r.sha256, sha);
  t.equal(r.bytes, blob.length);
  t.equal(r.resumedFrom, 0);
  t.ok(readFileSync(d.dest).equals(blob));
  t.same(readdirSync(d.tmpDir), []);
  t.same(seen.at(-1), { bytes: blob.length, total: blob.length, rate: seen.at(-1)?.rate }, 'last progress is complete');
});

t.test('a mismatch leaves nothing behind and names both digests', async (t) => {
  const d = dirs();
  mkdirSync(join(d.dest, '..'), { recursive: true });
  writeFileSync(d.dest, 'the previous, verified version');
  const wrong = '0'.repeat(64);
  const err = await failure(fetcher.fetchVerified({ url, sha256: wrong, ...d }));
  t.equal(err.code, 'CHECKSUM_MISMATCH');
  t.match(err.message, `expected sha256 ${wrong}, got ${sha}`);
  t.equal(readFileSync(d.dest, 'utf8'), 'the previous, verified version', 'dest untouched');
  t.same(readdirSync(d.tmpDir), [], 'no partial, no lock');
});

t.test('a kept partial is resumed', async (t) => {
  const d = dirs();
  writeFileSync(join(d.tmpDir, `${sha}.partial`), blob.subarray(0, 1_000_000));
  const r = await fetcher.fetchVerified({ url, sha256: sha, ...d });
  t.equal(r.resumedFrom, 1_000_000);
  t.ok(readFileSync(d.dest).equals(blob));
  t.same(readdirSync(d.tmpDir), []);
});

t.test('a garbage partial is detected and the blob fetched again from byte 0', async (t) => {
  const d = dirs();
  writeFileSync(join(d.tmpDir, `${sha}.partial`), Buffer.alloc(500_000, 0xee));
  logLines.length = 0;
  const r = await fetcher.fetchVerified({ url, sha256: sha, ...d });
  t.ok(readFileSync(d.dest).equals(blob));
  t.equal(r.attempts, 2);
  t.ok(logLines.some((l) => l.includes('"pull.resumed_mismatch"')));
});

t.test('a partial longer than the blob is discarded', async (t) => {
  const d = dirs();
  writeFileSync(join(d.tmpDir, `${sha}.partial`), Buffer.concat([blob, Buffer.from('extra')]));
  await fetcher.fetchVerified({ url, sha256: sha, ...d });
  t.ok(readFileSync(d.dest).equals(blob));
});

t.test('a lock held by a live process is CONFLICT; a dead one is taken over', async (t) => {
  const d = dirs();
  writeFileSync(join(d.tmpDir, `${sha}.lock`), '1\n');
  const err = await failure(fetcher.fetchVerified({ url, sha256: sha, ...d }));
  t.equal(err.code, 'CONFLICT');
  t.match(err.message, /pid 1/);
  writeFileSync(join(d.tmpDir, `${sha}.lock`), '99999999\n');
  await fetcher.fetchVerified({ url, sha256: sha, ...d });
  t.ok(existsSync(d.dest));
  t.same(readdirSync(d.tmpDir), []);
});

t.test('bad requests', async (t) => {
  const d = dirs();
  t.equal((await failure(fetcher.fetchVerified({ url, sha256: 'abc', ...d }))).code, 'BAD_REQUEST');
  t.equal((await failure(fetcher.fetchVerified({ url: 'ftp://h/x', sha256: sha, ...d }))).code, 'BAD_REQUEST');
  const missing = await failure(fetcher.fetchVerified({ url: pathToFileURL(join(root, 'nope')).href, sha256: sha, ...d }));
  t.equal(missing.code, 'PULL_FAILED');
  t.match(missing.message, /nope/);
  t.notOk(existsSync(d.dest));
});

t.test('a cancelled fetch is PULL_FAILED and leaves nothing at dest', async (t) => {
  const d = dirs();
  const ac = new AbortController();
  ac.abort();
  const err = await failure(fetcher.fetchVerified({ url, sha256: sha, ...d, signal: ac.signal }));
  t.equal(err.code, 'PULL_FAILED');
  t.match(err.message, /cancelled/);
  t.notOk(existsSync(d.dest));
});

t.test('two callers with different destinations share one transfer', async (t) => {
  const d = dirs();
  const other = join(d.tmpDir, '..', 'other.bin');
  const [a, b] = await Promise.all([
    fetcher.fetchVerified({ url, sha256: sha, ...d }),
    fetcher.fetchVerified({ url, sha256: sha, tmpDir: d.tmpDir, dest: other }),
  ]);
  t.same([a.shared, b.shared], [false, true]);
  t.ok(readFileSync(d.dest).equals(blob));
  t.ok(readFileSync(other).equals(blob));
});
