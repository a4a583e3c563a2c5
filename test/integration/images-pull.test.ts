// Pulls from a real HTTP server on 127.0.0.1: verification, resume with Range, single flight,
// retries, stalls, NO_SPACE on a small tmpfs, and extraction while downloading (agent/images/blobs.ts,
// tee.ts, through ImageStore).
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobFetcher, type FetchProgress } from '../../agent/images/blobs.js';
import { ImageStore } from '../../agent/images/store.js';
import { LayerCache } from '../../agent/images/extract.js';
import { writeTarball, type TarEntrySpec } from '../../agent/images/tarwriter.js';
import { DataPaths } from '../../agent/paths.js';
import { configureLogging } from '../../shared/logging.js';
import { failure } from '../helpers/failure.js';

configureLogging({ level: 'silent' });

const root = mkdtempSync(join(tmpdir(), 'feather-pull-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const blob = randomBytes(4 * 2 ** 20 + 77);
const sha = createHash('sha256').update(blob).digest('hex');

interface Seen { path: string; range: string | undefined }
type Handler = (req: IncomingMessage, res: ServerResponse, i: number) => void;

async function serve(t: Test, handler: Handler): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ path: req.url ?? '', range: req.headers.range });
    handler(req, res, seen.length - 1);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/img.tar.gz`, seen };
}

/** Serve `blob`, honouring `Range: bytes=N-` unless told not to. */
function sendBlob(req: IncomingMessage, res: ServerResponse, honourRange = true): void {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m && honourRange) {
    const start = Number(m[1]);
    res.writeHead(206, { 'content-length': blob.length - start, 'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}` });
    res.end(blob.subarray(start));
    return;
  }
  res.writeHead(200, { 'content-length': blob.length });
  res.end(blob);
}

/** Send the headers for the whole blob, then `cut` bytes, then kill the connection. */
function dieAfter(res: ServerResponse, cut: number): void {
  res.writeHead(200, { 'content-length': blob.length });
  res.write(blob.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 100));
}

let n = 0;
function store(opts: ConstructorParameters<typeof BlobFetcher>[0] = {}): ImageStore {
  const paths = new DataPaths(join(root, `d${n++}`));
  return new ImageStore(paths, { fetcher: new BlobFetcher({ backoffBaseMs: 10, backoffMaxMs: 50, ...opts }) });
}

t.test('the right sha256: tarball, manifest record, progress', async (t) => {
  const { url, seen } = await serve(t, (req, res) => sendBlob(req, res));
  const s = store();
  const progress: FetchProgress[] = [];
  const r = await s.pull(url, { name: 'web', sha256: sha, onProgress: (p) => progress.push(p) });
  t.same({ ...r, durationMs: 0 }, { name: 'web', sha256: sha, bytes: blob.length, durationMs: 0 });
  t.ok(readFileSync(s.paths.imageTarball('web')).equals(blob));
  t.match(s.get('web'), { name: 'web', sha256: sha, size: blob.length, source: url, cached: false });
  t.equal(seen.length, 1);
  t.equal(progress.at(-1)?.bytes, blob.length);
  t.equal(progress.at(-1)?.total, blob.length);
  t.ok(progress.every((p, i) => i === 0 || p.bytes >= (progress[i - 1]?.bytes ?? 0)), 'bytes only grow');
  const again = await s.pull(url, { name: 'web', sha256: sha });
  t.equal(again.durationMs, 0, 'already present: no transfer');
  t.equal(seen.length, 1);
});

t.test('the wrong sha256: nothing left behind, both digests in the message', async (t) => {
  const { url } = await serve(t, (req, res) => sendBlob(req, res));
  const s = store();
  const wrong = 'ab'.repeat(32);
  const err = await failure(s.pull(url, { name: 'web', sha256: wrong }));
  t.equal(err.code, 'CHECKSUM_MISMATCH');
  t.match(err.message, wrong);
  t.match(err.message, sha);
  t.notOk(existsSync(s.paths.imageTarball('web')));
  t.same(readdirSync(s.paths.tmp), []);
  t.equal(s.get('web'), undefined);
});

t.test('the server dies mid-transfer: the retry resumes with Range and verifies', async (t) => {
  const { url, seen } = await serve(t, (req, res, i) => (i === 0 ? dieAfter(res, 1_500_000) : sendBlob(req, res)));
  const fetcher = new BlobFetcher({ retries: 2, backoffBaseMs: 10 });
  const s = new ImageStore(new DataPaths(join(root, `d${n++}`)), { fetcher });
  const r = await s.pull(url, { name: 'web', sha256: sha });
  t.equal(seen.length, 2);
  t.equal(seen[0]?.range, undefined);
  const offset = Number(/^bytes=(\d+)-$/.exec(seen[1]?.range ?? '')?.[1]);
  t.ok(offset > 0 && offset <= 1_500_000, `second request asked for bytes=${offset}-`);
  t.equal(r.bytes, blob.length);
  t.ok(readFileSync(s.paths.imageTarball('web')).equals(blob));
  t.same(readdirSync(s.paths.tmp), []);
});

t.test('a pull that gave up is resumed by the next one (a restarted agent)', async (t) => {
  const { url, seen } = await serve(t, (req, res, i) => (i === 0 ? dieAfter(res, 2_000_000) : sendBlob(req, res)));
  const paths = new DataPaths(join(root, `d${n++}`));
  const first = new ImageStore(paths, { fetcher: new BlobFetcher({ retries: 0 }) });
  const err = await failure(first.pull(url, { name: 'web', sha256: sha }));
  t.equal(err.code, 'PULL_FAILED');
  t.match(err.message, /received are kept and the next pull resumes/);
  t.ok(existsSync(join(paths.tmp, `${sha}.partial`)), 'the partial is kept');
  t.notOk(existsSync(paths.imageTarball('web')), 'nothing at the destination');
  const fetcher = new BlobFetcher({ retries: 0 });
  const res = await fetcher.fetchVerified({ url, sha256: sha, dest: paths.imageTarball('web'), tmpDir: paths.tmp });
  t.match(seen[1]?.range, /^bytes=\d+-$/, 'the second request carried a Range header');
  t.ok(res.resumedFrom > 0, `resumed from ${res.resumedFrom}`);
  t.ok(readFileSync(paths.imageTarball('web')).equals(blob));
});

t.test('a cancelled pull keeps its partial, leaves nothing at the destination, and is resumed', async (t) => {
  const { url, seen } = await serve(t, (req, res, i) => {
    if (i > 0) { sendBlob(req, res); return; }
    res.writeHead(200, { 'content-length': blob.length });
    res.write(blob.subarray(0, 1_000_000)); // then wait for the cancel
  });
  const s = store();
  const ac = new AbortController();
  const pulling = s.pull(url, {
    name: 'web', sha256: sha, signal: ac.signal,
    onProgress: (p) => { if (p.bytes >= 1_000_000) ac.abort(); },
  });
  const err = await failure(pulling);
  t.equal(err.code, 'PULL_FAILED');
  t.match(err.message, /cancelled/);
  t.notOk(existsSync(s.paths.imageTarball('web')));
  t.same(readdirSync(s.paths.tmp), [`${sha}.partial`], 'the partial is kept, the lock released');
  await s.pull(url, { name: 'web', sha256: sha });
  t.equal(seen[1]?.range, 'bytes=1000000-');
  t.ok(readFileSync(s.paths.imageTarball('web')).equals(blob));
});

t.test('a server that ignores Range: the partial is dropped and the whole blob verifies', async (t) => {
  const { url, seen } = await serve(t, (req, res, i) => (i === 0 ? dieAfter(res, 1_000_000) : sendBlob(req, res, false)));
  const s = store({ retries: 1 });
  await s.pull(url, { name: 'web', sha256: sha });
  t.match(seen[1]?.range, /^bytes=/);
  t.ok(readFileSync(s.paths.imageTarball('web')).equals(blob));
});

t.test('two concurrent pulls of one digest make one HTTP request', async (t) => {
  const { url, seen } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    let off = 0;
    const step = (): void => {
      if (off >= blob.length) { res.end(); return; }
      res.write(blob.subarray(off, off + 256 * 1024));
      off += 256 * 1024;
      setTimeout(step, 5);
    };
    step();
  });
  const s = store();
  const [a, b] = await Promise.all([s.pull(url, { name: 'one', sha256: sha }), s.pull(url, { name: 'two', sha256: sha })]);
  t.equal(seen.length, 1);
  t.same([a.sha256, b.sha256], [sha, sha]);
  t.ok(readFileSync(s.paths.imageTarball('one')).equals(blob));
  t.ok(readFileSync(s.paths.imageTarball('two')).equals(blob));
  t.same((await s.list()).map((i) => i.name), ['one', 'two']);
});

t.test('HTTP errors: 404 at once, 503 retried, redirects followed', async (t) => {
  const { url, seen } = await serve(t, (req, res, i) => {
    if (req.url === '/missing') { res.writeHead(404); res.end(); return; }
    if (req.url === '/moved') { res.writeHead(302, { location: '/img.tar.gz' }); res.end(); return; }
    if (i === 1) { res.writeHead(503); res.end(); return; }
    sendBlob(req, res);
  });
  const s = store({ retries: 2 });
  const base = url.replace('/img.tar.gz', '');
  const err = await failure(s.pull(`${base}/missing`, { name: 'x', sha256: sha }));
  t.equal(err.code, 'PULL_FAILED');
  t.match(err.message, /HTTP 404/);
  t.equal(seen.length, 1, 'a 404 is not retried');
  await s.pull(url, { name: 'y', sha256: sha });
  t.equal(seen.length, 3, 'the 503 was retried');
  await s.pull(`${base}/moved`, { name: 'z', sha256: sha });
  t.same(seen.slice(3).map((x) => x.path), ['/moved', '/img.tar.gz']);
});

t.test('a stalled transfer times out and is retried, then reported', async (t) => {
  const { url, seen } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.write(blob.subarray(0, 1000)); // then nothing
  });
  const s = store({ idleTimeoutMs: 300, retries: 1 });
  const started = Date.now();
  const err = await failure(s.pull(url, { name: 'x', sha256: sha }));
  t.equal(err.code, 'PULL_FAILED');
  t.match(err.message, /no data received for 0.3s/);
  t.equal(seen.length, 2, 'retried once');
  t.match(seen[1]?.range, /^bytes=1000-$/);
  t.ok(Date.now() - started < 5000);
});

const isRoot = process.getuid?.() === 0;

t.test('NO_SPACE on a small tmpfs, before and during the transfer', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const mnt = join(root, 'small');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
  t.teardown(() => { execFileSync('umount', [mnt]); });
  const { url, seen } = await serve(t, (req, res) => {
    if (req.url === '/chunked') {
      res.writeHead(200); // no Content-Length: only the writes can tell
      res.end(blob);
      return;
    }
    sendBlob(req, res);
  });
  const paths = new DataPaths(join(mnt, 'data'));
  const s = new ImageStore(paths, { fetcher: new BlobFetcher({ retries: 0 }) });
  const before = await failure(s.pull(url, { name: 'big', sha256: sha }));
  t.equal(before.code, 'NO_SPACE');
  t.match(before.message, /more needed/);
  t.equal(seen.length, 1);
  t.same(readdirSync(paths.tmp), [], 'nothing written');

  const during = await failure(s.pull(url.replace('/img.tar.gz', '/chunked'), { name: 'big', sha256: sha }));
  t.equal(during.code, 'NO_SPACE');
  t.same(readdirSync(paths.tmp), [], 'the partial is removed');
  t.notOk(existsSync(paths.imageTarball('big')));
});

// ---- extraction while downloading (tee.ts, LayerCache.streamingSink) ----

/** A gzipped image archive of ~3 MB (big enough to arrive in many chunks), or a hostile one. */
async function imageArchive(hostile = false): Promise<{ bytes: Buffer; sha256: string }> {
  const file = join(root, `archive-${n++}.tar.gz`);
  const entries: TarEntrySpec[] = [
    { type: 'dir', path: 'etc' },
    { type: 'file', path: 'etc/os-release', data: 'NAME=tee\n', mode: 0o644 },
    { type: 'file', path: 'bin/tool', data: randomBytes(3 * 2 ** 20), mode: 0o4755 },
    { type: 'symlink', path: 'bin/alias', target: 'tool' },
    ...(hostile ? [{ type: 'file', path: '../escape', data: 'out' } as TarEntrySpec] : []),
    { type: 'file', path: 'last', data: 'end\n', mode: 0o600 },
  ];
  const { sha256 } = await writeTarball(file, entries);
  return { bytes: readFileSync(file), sha256 };
}

const layerCache = (s: ImageStore): LayerCache => new LayerCache({ cache: s.paths.cache, tmp: s.paths.tmp });

function serveBytes(bytes: Buffer): Handler {
  return (req, res) => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    res.writeHead(m ? 206 : 200, { 'content-length': bytes.length - start, ...(m ? { 'content-range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` } : {}) });
    res.end(bytes.subarray(start));
  };
}

t.test('a pulled image is extracted while it downloads: cached once verified, with the archive modes', async (t) => {
  const img = await imageArchive();
  const { url } = await serve(t, serveBytes(img.bytes));
  const s = store();
  await s.pull(url, { name: 'teed', sha256: img.sha256 });
  t.ok(existsSync(s.paths.cacheDir(img.sha256)), 'the layer is in the cache when the pull returns');
  const dir = s.paths.cacheDir(img.sha256);
  t.equal(readFileSync(join(dir, 'etc/os-release'), 'utf8'), 'NAME=tee\n');
  t.equal(statSync(join(dir, 'bin/tool')).mode & 0o7777, 0o4755, 'setuid restored after tar chowned the file');
  t.equal(readlinkSync(join(dir, 'bin/alias')), 'tool');
  t.equal(statSync(join(dir, 'last')).mode & 0o7777, 0o600);
  const again = await layerCache(s).ensure(s.paths.imageTarball('teed'), img.sha256);
  t.equal(again.extracted, false, 'nothing is extracted again');
  t.same(readdirSync(s.paths.tmp), [], 'no temp extraction left');
});

t.test('extraction while downloading keeps nothing of a blob that does not verify', async (t) => {
  const img = await imageArchive();
  const { url } = await serve(t, serveBytes(img.bytes));
  const s = store();
  const other = createHash('sha256').update('other').digest('hex');
  const err = await failure(s.pull(url, { name: 'teed', sha256: other }));
  t.equal(err.code, 'CHECKSUM_MISMATCH');
  t.notOk(existsSync(s.paths.cacheDir(other)));
  t.notOk(existsSync(s.paths.cacheDir(img.sha256)), 'not even under the digest the bytes really have');
  t.same(readdirSync(s.paths.tmp), [], 'the temp extraction is removed');
  t.notOk(existsSync(s.paths.cache) && readdirSync(s.paths.cache).length > 0, 'the cache is empty');
});

t.test('a transfer resumed after a cut goes on extracting; one resumed from an earlier run extracts afterwards', async (t) => {
  const img = await imageArchive();
  const { url, seen } = await serve(t, (req, res, i) => {
    if (i === 0) {
      res.writeHead(200, { 'content-length': img.bytes.length });
      res.write(img.bytes.subarray(0, 1_000_000), () => setTimeout(() => res.socket?.destroy(), 100));
      return;
    }
    serveBytes(img.bytes)(req, res, i);
  });
  const s = store({ retries: 2 });
  await s.pull(url, { name: 'cut', sha256: img.sha256 });
  t.match(seen[1]?.range, /^bytes=\d+-$/, 'the retry asked for the rest');
  t.ok(existsSync(s.paths.cacheDir(img.sha256)), 'the sink held exactly the bytes kept, so it went on');
  t.equal(readFileSync(join(s.paths.cacheDir(img.sha256), 'last'), 'utf8'), 'end\n');
  t.same(readdirSync(s.paths.tmp), []);

  // A partial left by an earlier process: the sink cannot have its first bytes, so the layer is
  // extracted from the verified file when a container needs it.
  const s2 = store();
  mkdirSync(s2.paths.tmp, { recursive: true });
  writeFileSync(join(s2.paths.tmp, `${img.sha256}.partial`), img.bytes.subarray(0, 700_000));
  await s2.pull(url, { name: 'resumed', sha256: img.sha256 });
  t.notOk(existsSync(s2.paths.cacheDir(img.sha256)), 'not extracted during a resumed transfer');
  t.same(readdirSync(s2.paths.tmp), [], 'and no temp extraction is left');
  const later = await layerCache(s2).ensure(s2.paths.imageTarball('resumed'), img.sha256);
  t.equal(later.extracted, true);
  t.equal(readFileSync(join(later.path, 'last'), 'utf8'), 'end\n');
});

t.test('a hostile archive: the pull stores the verified tarball, nothing is extracted, extraction later refuses it', async (t) => {
  const img = await imageArchive(true);
  const { url } = await serve(t, serveBytes(img.bytes));
  const s = store();
  await s.pull(url, { name: 'hostile', sha256: img.sha256 });
  t.notOk(existsSync(s.paths.cacheDir(img.sha256)));
  t.same(readdirSync(s.paths.tmp), [], 'the refused temp extraction is removed');
  t.notOk(existsSync(join(root, 'escape')) || existsSync(join(s.paths.tmp, '..', 'escape')), 'nothing escaped');
  const err = await failure(s.ensureExtracted('hostile'));
  t.equal(err.code, 'BAD_REQUEST');
  t.match(err.message, /\.\.\/escape/);
});
