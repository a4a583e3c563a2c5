// Pulls from a real HTTP server on 127.0.0.1: verification, resume with Range, single flight,
// retries, stalls, and NO_SPACE on a small tmpfs (agent/images/blobs.ts through ImageStore).
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobFetcher, type FetchProgress } from '../../agent/images/blobs.js';
import { ImageStore } from '../../agent/images/store.js';
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
