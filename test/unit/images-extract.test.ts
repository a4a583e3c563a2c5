// Extraction under our rules, with hostile archives built here (agent/images/extract.ts).
// Real files in a temp dir; a directory "outside" the data dir must never change.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extractArchive, LayerCache } from '../../agent/images/extract.js';
import { writeTarball, type TarEntrySpec } from '../../agent/images/tarwriter.js';
import { configureLogging } from '../../shared/logging.js';
import { failure } from '../helpers/failure.js';

const logLines: string[] = [];
configureLogging({ level: 'info', sink: (line) => logLines.push(line) });

const root = mkdtempSync(join(tmpdir(), 'feather-extract-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const outside = join(root, 'outside');
const data = join(root, 'data');
mkdirSync(outside);
mkdirSync(join(data, 'tmp'), { recursive: true });
writeFileSync(join(outside, 'victim'), 'original\n');

/** Every path under `dir` with its type and content: what "nothing changed" compares. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = lstatSync(p);
      if (st.isDirectory()) { out[p] = 'dir'; walk(p); } else if (st.isSymbolicLink()) out[p] = `-> ${readlinkSync(p)}`;
      else out[p] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

let n = 0;
async function archive(entries: TarEntrySpec[], gzip = true): Promise<string> {
  const p = join(root, `a${n++}.tar${gzip ? '.gz' : ''}`);
  await writeTarball(p, entries, { gzip });
  return p;
}

async function refused(t: Test, entries: TarEntrySpec[], code: string, message: RegExp): Promise<void> {
  const before = snapshot(outside);
  const target = join(data, 'tmp', `x${n}`);
  const err = await failure(extractArchive(await archive(entries), target));
  t.equal(err.code, code, 'code');
  t.match(err.message, message, 'message names the entry');
  t.notOk(existsSync(target), 'the partial extraction is removed');
  t.same(snapshot(outside), before, 'nothing outside changed');
}

t.test('absolute paths are refused', async (t) => {
  await refused(t, [{ type: 'file', path: join(outside, 'pwned'), data: 'x' }], 'BAD_REQUEST', /absolute path/);
  t.notOk(existsSync(join(outside, 'pwned')));
});

t.test('.. escapes are refused', async (t) => {
  await refused(t, [{ type: 'dir', path: 'a' }, { type: 'file', path: 'a/../../../outside/pwned', data: 'x' }], 'BAD_REQUEST', /"a\/\.\.\/\.\.\/\.\.\/outside\/pwned" has a '\.\.'/);
});

t.test('a symlink, then a write through it, is refused', async (t) => {
  await refused(t, [
    { type: 'file', path: 'ok', data: 'written before the hostile entry' },
    { type: 'symlink', path: 'evil', target: outside },
    { type: 'file', path: 'evil/pwned', data: 'x' },
  ], 'BAD_REQUEST', /"evil\/pwned" would be written through the symlink "evil"/);
  await refused(t, [
    { type: 'symlink', path: 'evil', target: '../../../outside' },
    { type: 'dir', path: 'evil/sub' },
  ], 'BAD_REQUEST', /through the symlink "evil"/);
  await refused(t, [
    { type: 'symlink', path: 'evil', target: outside },
    { type: 'file', path: 'evil/victim', data: 'overwritten' },
  ], 'BAD_REQUEST', /through the symlink/);
  t.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'original\n');
});

t.test('a file at a symlink\'s path replaces the link, never writes through it', async (t) => {
  const target = join(data, 'tmp', 'replace');
  await extractArchive(await archive([
    { type: 'symlink', path: 'link', target: join(outside, 'victim') },
    { type: 'file', path: 'link', data: 'pwned' },
  ]), target);
  t.ok(lstatSync(join(target, 'link')).isFile(), 'the link became a file');
  t.equal(readFileSync(join(target, 'link'), 'utf8'), 'pwned');
  t.equal(readFileSync(join(outside, 'victim'), 'utf8'), 'original\n', 'its old target is untouched');
  rmSync(target, { recursive: true });
});

t.test('hardlinks that leave the root are refused', async (t) => {
  await refused(t, [{ type: 'hardlink', path: 'h', target: join(outside, 'victim') }], 'BAD_REQUEST', /hardlink "h" points outside the image/);
  await refused(t, [{ type: 'hardlink', path: 'h', target: '../outside/victim' }], 'BAD_REQUEST', /points outside the image/);
  await refused(t, [
    { type: 'symlink', path: 'evil', target: outside },
    { type: 'hardlink', path: 'h', target: 'evil/victim' },
  ], 'BAD_REQUEST', /through the symlink "evil"/);
  t.equal(statSync(join(outside, 'victim')).nlink, 1, 'no new link to the victim');
});

t.test('hardlinks inside the archive work', async (t) => {
  const target = join(data, 'tmp', 'hl');
  await extractArchive(await archive([
    { type: 'file', path: 'a', data: 'same', mode: 0o600 },
    { type: 'hardlink', path: 'b', target: 'a' },
  ]), target);
  t.equal(statSync(join(target, 'a')).ino, statSync(join(target, 'b')).ino);
  t.equal(statSync(join(target, 'a')).mode & 0o7777, 0o600);
  rmSync(target, { recursive: true });
});

t.test('device nodes and fifos are skipped with a log line', async (t) => {
  const target = join(data, 'tmp', 'dev');
  logLines.length = 0;
  const stats = await extractArchive(await archive([
    { type: 'dir', path: 'dev' },
    { type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
    { type: 'blockdev', path: 'dev/sda', major: 8, minor: 0 },
    { type: 'fifo', path: 'dev/fifo' },
    { type: 'file', path: 'dev/regular', data: 'x' },
  ]), target);
  t.equal(stats.skipped, 3);
  t.same(readdirSync(join(target, 'dev')), ['regular']);
  const skipped = logLines.map((l) => JSON.parse(l) as { event: string; entry?: string }).filter((l) => l.event === 'image.entry_skipped');
  t.same(skipped.map((l) => l.entry), ['dev/null', 'dev/sda', 'dev/fifo']);
  rmSync(target, { recursive: true });
});

t.test('a root filesystem keeps absolute symlinks, modes and owners', async (t) => {
  const target = join(data, 'tmp', 'rootfs');
  await extractArchive(await archive([
    { type: 'dir', path: '.', mode: 0o755 },
    { type: 'dir', path: 'bin' },
    { type: 'file', path: 'bin/busybox', data: '#!', mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: '/bin/busybox' },
    { type: 'file', path: 'bin/su', data: 'su', mode: 0o4755 },
    { type: 'dir', path: 'tmp', mode: 0o1777 },
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'dir', path: 'home/u', mode: 0o750, uid: 1234, gid: 4321 },
    { type: 'file', path: 'home/u/notes', data: 'n', mode: 0o640, uid: 1234, gid: 4321 },
  ], false), target);
  t.equal(readlinkSync(join(target, 'bin/sh')), '/bin/busybox', 'absolute target kept as is');
  t.equal(statSync(join(target, 'bin/su')).mode & 0o7777, 0o4755, 'setuid survives the chown');
  t.equal(statSync(join(target, 'tmp')).mode & 0o7777, 0o1777);
  t.equal(statSync(join(target, 'root')).mode & 0o7777, 0o700);
  if (process.getuid?.() === 0) {
    const st = statSync(join(target, 'home/u/notes'));
    t.same([st.uid, st.gid, st.mode & 0o7777], [1234, 4321, 0o640], 'owner and mode');
    t.equal(statSync(join(target, 'home/u')).uid, 1234);
  }
  rmSync(target, { recursive: true });
});

t.test('the root may not become a symlink; a file may not replace a directory', async (t) => {
  await refused(t, [{ type: 'symlink', path: '.', target: '/' }], 'BAD_REQUEST', /would replace the image root/);
  await refused(t, [{ type: 'dir', path: 'etc' }, { type: 'file', path: 'etc/x', data: '1' }, { type: 'symlink', path: 'etc', target: outside }], 'BAD_REQUEST', /would replace a directory/);
});

t.test('an entry larger than the space left is NO_SPACE and the partial extraction goes', async (t) => {
  const target = join(data, 'tmp', 'big');
  const p = await archive([{ type: 'file', path: 'small', data: 'x' }, { type: 'file', path: 'big', data: Buffer.alloc(3 * 2 ** 20) }]);
  const fs = await statfs(data);
  const err = await failure(extractArchive(p, target, { reserveBytes: fs.bavail * fs.bsize - 2 ** 20 }));
  t.equal(err.code, 'NO_SPACE');
  t.match(err.message, /"big" needs 3Mi but only/);
  t.notOk(existsSync(target));
});

t.test('garbage is BAD_REQUEST, not a crash', async (t) => {
  const p = join(root, 'garbage.tar.gz');
  writeFileSync(p, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(600, 7)]));
  const err = await failure(extractArchive(p, join(data, 'tmp', 'g')));
  t.equal(err.code, 'BAD_REQUEST');
  t.notOk(existsSync(join(data, 'tmp', 'g')));
});

t.test('LayerCache: once, shared, verified, never from a leftover', async (t) => {
  const cache = new LayerCache({ cache: join(data, 'cache'), tmp: join(data, 'tmp') });
  const p = await archive([{ type: 'dir', path: 'etc' }, { type: 'file', path: 'etc/os-release', data: 'ID=test\n' }]);
  const sha = createHash('sha256').update(readFileSync(p)).digest('hex');
  // a half-extracted temp dir from a killed agent: junk that must never be used
  const leftover = join(data, 'tmp', `extract-${sha}.99999999.deadbeef`);
  mkdirSync(join(leftover, 'etc'), { recursive: true });
  writeFileSync(join(leftover, 'etc/os-release'), 'HALF');

  const wrong = 'f'.repeat(64);
  const bad = await failure(cache.ensure(p, wrong));
  t.equal(bad.code, 'CHECKSUM_MISMATCH');
  t.match(bad.message, new RegExp(`expected sha256 ${wrong}, got ${sha}`));
  t.notOk(existsSync(join(data, 'cache', wrong)), 'no cache dir for a mismatch');

  const [a, b] = await Promise.all([cache.ensure(p, sha), cache.ensure(p, sha)]);
  t.equal(a.path, join(data, 'cache', sha));
  t.equal(b.path, a.path);
  t.equal([a.extracted, b.extracted].filter(Boolean).length, 1, 'one extraction for two callers');
  t.equal(readFileSync(join(a.path, 'etc/os-release'), 'utf8'), 'ID=test\n');
  const again = await cache.ensure(p, sha);
  t.equal(again.extracted, false, 'cached afterwards');
  t.same(readdirSync(join(data, 'tmp')).filter((x) => x.startsWith('extract-') && !x.includes('99999999')), [], 'no temp dirs of ours left');
});

t.test('in a worker thread: the same rules, errors, log lines and result', async (t) => {
  const before = snapshot(outside);
  const hostile = await archive([{ type: 'file', path: 'ok', data: 'x' }, { type: 'file', path: '../outside/victim', data: 'pwned' }]);
  const target = join(data, 'tmp', 'w-hostile');
  const err = await failure(extractArchive(hostile, target, { inWorker: true }));
  t.equal(err.code, 'BAD_REQUEST', 'a FeatherError with its code crosses the thread boundary');
  t.match(err.message, /refused image archive .*\.\.\/outside\/victim/);
  t.notOk(existsSync(target), 'the partial extraction is removed');
  t.same(snapshot(outside), before, 'nothing outside changed');

  const good = await archive([
    { type: 'dir', path: 'dev' },
    { type: 'chardev', path: 'dev/null', major: 1, minor: 3 },
    { type: 'file', path: 'bin/tool', data: 'tool', mode: 0o4755 },
  ]);
  const sha = createHash('sha256').update(readFileSync(good)).digest('hex');
  const wrong = await failure(extractArchive(good, join(data, 'tmp', 'w-wrong'), { inWorker: true, sha256: 'e'.repeat(64) }));
  t.equal(wrong.code, 'CHECKSUM_MISMATCH');
  t.same((wrong as { details?: unknown }).details, { expected: 'e'.repeat(64), actual: sha }, 'with its details');
  t.notOk(existsSync(join(data, 'tmp', 'w-wrong')));

  logLines.length = 0;
  const ok = join(data, 'tmp', 'w-ok');
  const stats = await extractArchive(good, ok, { inWorker: true, sha256: sha });
  t.match(stats, { entries: 2, skipped: 1, sha256: sha });
  t.equal(statSync(join(ok, 'bin/tool')).mode & 0o7777, 0o4755, 'modes restored');
  const skipped = logLines.map((l) => JSON.parse(l) as { event: string; ns: string; entry?: string }).filter((l) => l.event === 'image.entry_skipped');
  t.same(skipped.map((l) => [l.ns, l.entry]), [['agent:images', 'dev/null']], "the worker's log line is written by this thread's logger");
  rmSync(ok, { recursive: true });
});
