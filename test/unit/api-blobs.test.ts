// The blob store (controller/blobs): Range parsing, verified uploads that leave nothing on a
// mismatch, names, and the /blobs HTTP handler (Range 206/416, HEAD, ETag, auth on uploads) on a
// loopback node:http server.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { createBlobHandler } from '../../controller/blobs/http.js';
import { parseRange } from '../../controller/blobs/range.js';
import { BlobStore, parseDigest } from '../../controller/blobs/store.js';
import { FeatherError } from '../../shared/errors.js';
import { configureLogging, createLogger } from '../../shared/logging.js';

configureLogging({ level: 'silent' });
const log = createLogger('test');
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const DATA = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
const DIGEST = sha(DATA);

function chunks(buf: Buffer, size = 1000): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

async function store(t: Test): Promise<BlobStore> {
  const dir = mkdtempSync(join(tmpdir(), 'feather-blobs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = new BlobStore(join(dir, 'blobs'), log);
  await s.init();
  return s;
}

t.test('parseRange: one range, suffixes, ignored and unsatisfiable ones', async (t) => {
  t.same(parseRange(undefined, 100), { kind: 'full' });
  t.same(parseRange('bytes=0-9', 100), { kind: 'partial', start: 0, end: 9 });
  t.same(parseRange('bytes=90-', 100), { kind: 'partial', start: 90, end: 99 });
  t.same(parseRange('bytes=90-500', 100), { kind: 'partial', start: 90, end: 99 }, 'the end is clipped');
  t.same(parseRange('bytes=-10', 100), { kind: 'partial', start: 90, end: 99 });
  t.same(parseRange('bytes=-500', 100), { kind: 'partial', start: 0, end: 99 });
  t.same(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
  t.same(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
  for (const ignored of ['bytes=0-1,5-6', 'items=0-1', 'bytes=5-1', 'bytes=x-y', 'bytes=-']) t.same(parseRange(ignored, 100), { kind: 'full' }, ignored);
});

t.test('put: verified while streaming; a mismatch or a short body leaves nothing', async (t) => {
  const s = await store(t);
  const put = await s.put(DIGEST, chunks(DATA), { size: DATA.length });
  t.same([put.created, put.info.digest, put.info.size], [true, DIGEST, DATA.length]);
  t.same(readFileSync(s.path(DIGEST)), DATA);
  t.same(readdirSync(s.tmpDir), [], 'no temp file left');

  const again = await s.put(`sha256:${DIGEST.toUpperCase()}`, chunks(DATA));
  t.equal(again.created, false, 'already there: verified and dropped');

  const other = sha('something else');
  await t.rejects(s.put(other, chunks(DATA)), { code: 'CHECKSUM_MISMATCH', message: new RegExp(`${DIGEST}.*${other}`) });
  t.notOk(existsSync(join(s.dir, other)));
  t.same(readdirSync(s.tmpDir), [], 'the mismatch left no temp file');
  await t.rejects(s.put(other, chunks(DATA)), { code: 'CHECKSUM_MISMATCH' });
  await t.rejects(s.put(DIGEST, chunks(DATA.subarray(0, 10))), { code: 'CHECKSUM_MISMATCH' }, 'an existing blob still checks what was sent');

  const short = sha(DATA.subarray(0, 500));
  await t.rejects(s.put(short, chunks(DATA.subarray(0, 500)), { size: 501 }), { code: 'BAD_REQUEST', message: /500 of the 501/ });
  await t.rejects(s.put(short, chunks(DATA.subarray(0, 500)), { size: 499 }), { code: 'BAD_REQUEST', message: /Content-Length/ });
  t.same(readdirSync(s.tmpDir), []);
  t.notOk(existsSync(join(s.dir, short)));

  const failing = new Readable({ read() { this.push(DATA.subarray(0, 100)); this.destroy(new Error('client went away')); } });
  await t.rejects(s.put(sha('x'), failing), { message: 'client went away' });
  t.same(readdirSync(s.tmpDir), [], 'an aborted upload leaves nothing');

  t.throws(() => parseDigest('abc'), FeatherError);
  await t.rejects(s.stat('nope'), { code: 'BAD_REQUEST' });
});

t.test('names point at blobs; removing a blob drops its names; stale temp files go at init', async (t) => {
  const s = await store(t);
  await s.put(DIGEST, chunks(DATA));
  await t.rejects(s.tag('x', sha('missing')), { code: 'NOT_FOUND' });
  await t.rejects(s.tag('bad name', DIGEST), { code: 'BAD_REQUEST' });
  await Promise.all([s.tag('busybox', DIGEST), s.tag('busybox.tar.gz', DIGEST), s.tag('other', DIGEST)]);
  t.same((await s.names()).map((n) => [n.name, n.digest]), [['busybox', DIGEST], ['busybox.tar.gz', DIGEST], ['other', DIGEST]], 'concurrent tags all kept');
  t.same((await s.list()).map((b) => b.digest), [DIGEST]);
  t.equal(await s.remove(DIGEST), true);
  t.equal(await s.remove(DIGEST), false);
  t.same(await s.names(), []);

  // A temp file of a dead process (pid 2^22 + 1 does not exist) is removed by init.
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(s.tmpDir, `${DIGEST}.4194305.deadbeef`), 'partial');
  await s.init();
  t.same(readdirSync(s.tmpDir), []);
});

t.test('/blobs over HTTP: Range, HEAD, ETag, uploads with the admin token only', async (t) => {
  const s = await store(t);
  const handler = createBlobHandler({ store: s, isAdmin: (tok) => tok === 'secret', logger: log });
  const server = http.createServer((req, res) => { void handler(req, res); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = `${base}/blobs/sha256/${DIGEST}`;

  t.equal((await fetch(url)).status, 404, 'not stored yet');
  const anon = await fetch(url, { method: 'PUT', body: DATA });
  t.equal(anon.status, 401);
  t.match(await anon.json(), { error: { code: 'UNAUTHORIZED' } });
  t.equal((await fetch(url, { method: 'PUT', body: DATA, headers: { authorization: 'Bearer wrong' } })).status, 401);

  const wrong = await fetch(`${base}/blobs/sha256/${sha('other')}`, { method: 'PUT', body: DATA, headers: { authorization: 'Bearer secret' } });
  t.equal(wrong.status, 400);
  t.match(await wrong.json(), { error: { code: 'CHECKSUM_MISMATCH' } });
  t.same(readdirSync(s.dir), [], 'nothing stored');

  const up = await fetch(`${url}?name=data.bin`, { method: 'PUT', body: DATA, headers: { authorization: 'Bearer secret' } });
  t.equal(up.status, 201);
  t.match(await up.json(), { digest: DIGEST, size: DATA.length, created: true, name: 'data.bin', url: `${base}/blobs/sha256/${DIGEST}` });
  const post = await fetch(url, { method: 'POST', body: DATA, headers: { authorization: 'Bearer secret' } });
  t.equal(post.status, 200, 'POST works too; already there');
  t.same((await s.names()).map((n) => n.name), ['data.bin']);

  const full = await fetch(url);
  t.equal(full.status, 200);
  t.equal(full.headers.get('accept-ranges'), 'bytes');
  t.equal(full.headers.get('content-length'), String(DATA.length));
  t.same(Buffer.from(await full.arrayBuffer()), DATA);
  const etag = full.headers.get('etag') ?? '';
  t.equal(etag, `"sha256:${DIGEST}"`);

  const part = await fetch(url, { headers: { range: 'bytes=1000-1999' } });
  t.equal(part.status, 206);
  t.equal(part.headers.get('content-range'), `bytes 1000-1999/${DATA.length}`);
  t.same(Buffer.from(await part.arrayBuffer()), DATA.subarray(1000, 2000), 'the bytes asked for');
  const tail = await fetch(url, { headers: { range: 'bytes=9990-' } });
  t.same(Buffer.from(await tail.arrayBuffer()), DATA.subarray(9990));
  const past = await fetch(url, { headers: { range: `bytes=${DATA.length}-` } });
  t.equal(past.status, 416);
  t.equal(past.headers.get('content-range'), `bytes */${DATA.length}`);
  await past.arrayBuffer();
  const staleIfRange = await fetch(url, { headers: { range: 'bytes=0-9', 'if-range': '"sha256:other"' } });
  t.equal(staleIfRange.status, 200, 'If-Range that does not match: the whole blob');
  await staleIfRange.arrayBuffer();
  const matchingIfRange = await fetch(url, { headers: { range: 'bytes=0-9', 'if-range': etag } });
  t.equal(matchingIfRange.status, 206);
  await matchingIfRange.arrayBuffer();
  t.equal((await fetch(url, { headers: { 'if-none-match': etag } })).status, 304);

  const head = await fetch(url, { method: 'HEAD' });
  t.same([head.status, head.headers.get('content-length')], [200, String(DATA.length)]);
  const named = await fetch(`${url}/model.onnx`);
  t.equal(named.status, 200, 'a trailing file name is allowed');
  t.same(Buffer.from(await named.arrayBuffer()), DATA);
  t.equal((await fetch(`${url}/model.onnx`, { method: 'PUT', body: 'x', headers: { authorization: 'Bearer secret' } })).status, 405);
  t.equal((await fetch(`${base}/blobs/sha256/xyz`)).status, 400);
  t.equal((await fetch(`${base}/blobs/md5/${DIGEST}`)).status, 404);
  const patch = await fetch(url, { method: 'PATCH' });
  t.equal(patch.status, 405);
  t.match(patch.headers.get('allow'), /GET, HEAD, PUT, POST, DELETE/);

  t.equal((await fetch(url, { method: 'DELETE' })).status, 401);
  t.equal((await fetch(url, { method: 'DELETE', headers: { authorization: 'Bearer secret' } })).status, 200);
  t.equal((await fetch(url)).status, 404);
});
