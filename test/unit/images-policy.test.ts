// The archive rules, decided before anything reaches the disk (agent/images/policy.ts).
import t from 'tap';
import { ArchivePolicy, splitArchivePath, type PolicyEntry } from '../../agent/images/policy.js';

const BIG = 2 ** 40;
const file = (path: string, size = 10): PolicyEntry => ({ path, type: 'File', size });
const dir = (path: string): PolicyEntry => ({ path, type: 'Directory', size: 0 });
const symlink = (path: string, linkpath: string): PolicyEntry => ({ path, type: 'SymbolicLink', linkpath, size: 0 });
const hardlink = (path: string, linkpath: string): PolicyEntry => ({ path, type: 'Link', linkpath, size: 0 });

function run(entries: PolicyEntry[], space = BIG): ReturnType<ArchivePolicy['check']>[] {
  const p = new ArchivePolicy({ spaceBytes: space, blockSize: 4096 });
  return entries.map((e) => p.check(e));
}

t.test('paths are split, normalised, and refused when absolute or climbing', async (t) => {
  t.same(splitArchivePath('./a//b/./c/'), ['a', 'b', 'c']);
  t.same(splitArchivePath('.'), []);
  t.match(splitArchivePath('/etc/passwd'), /absolute/);
  t.match(splitArchivePath('a/../../x'), /'\.\.'/);
  t.match(splitArchivePath('..'), /'\.\.'/);
  t.same(splitArchivePath('a..b/..c'), ['a..b', '..c'], 'dots inside a name are fine');
});

t.test('an ordinary root filesystem passes', async (t) => {
  const v = run([
    dir('./'), dir('./bin'), file('./bin/busybox', 2_000_000), symlink('./bin/sh', 'busybox'),
    symlink('./sbin', 'bin'), symlink('./usr/bin/env', '/bin/busybox'), file('./etc/passwd'),
    hardlink('./bin/busybox2', './bin/busybox'),
  ]);
  t.same(v.map((x) => x.action), Array(8).fill('extract'));
  t.same(v[7], { action: 'extract', key: 'bin/busybox2', kind: 'file', hardlink: true });
});

t.test('hostile entries are refused with the entry named', async (t) => {
  const cases: Array<[string, PolicyEntry[], RegExp]> = [
    ['absolute path', [file('/etc/cron.d/x')], /"\/etc\/cron\.d\/x" is an absolute path/],
    ['.. escape', [file('a/../../etc/x')], /"a\/\.\.\/\.\.\/etc\/x" has a '\.\.' component/],
    ['write through a symlink', [symlink('evil', '/etc'), file('evil/passwd')], /"evil\/passwd" would be written through the symlink "evil"/],
    ['dir through a symlink', [symlink('evil', '../..'), dir('evil/sub')], /through the symlink "evil"/],
    ['deep write through a symlink', [dir('a'), symlink('a/b', '/'), file('a/b/c/d')], /through the symlink "a\/b"/],
    ['hardlink absolute', [hardlink('h', '/etc/shadow')], /hardlink "h" points outside the image/],
    ['hardlink ..', [file('x'), hardlink('h', '../x')], /points outside the image/],
    ['hardlink through a symlink', [symlink('evil', '/etc'), hardlink('h', 'evil/shadow')], /through the symlink "evil"/],
    ['hardlink to nothing earlier', [hardlink('h', 'later'), file('later')], /not an earlier entry/],
    ['hardlink to a directory', [dir('d'), hardlink('h', 'd')], /points to the directory/],
    ['root replaced by a symlink', [symlink('./', '/')], /would replace the image root/],
    ['file replaces a directory', [dir('a'), file('a')], /would replace a directory/],
    ['file used as a directory', [file('a'), file('a/b')], /needs "a" to be a directory/],
    ['unknown type', [{ path: 'x', type: 'SparseFile', size: 0 }], /unsupported type SparseFile/],
  ];
  for (const [what, entries, message] of cases) {
    const verdicts = run(entries);
    const last = verdicts.find((v) => v.action !== 'extract');
    const refused = last?.action === 'refuse' ? last : undefined;
    t.ok(refused, `${what}: refused`);
    t.equal(refused?.code, 'BAD_REQUEST', `${what}: BAD_REQUEST`);
    t.match(refused?.message ?? '', message, `${what}: message`);
  }
});

t.test('a file at a symlink\'s own path replaces the link (tar unlinks it first)', async (t) => {
  const v = run([symlink('link', '/etc/passwd'), file('link')]);
  t.equal(v[1]?.action, 'extract');
});

t.test('device nodes and fifos are skipped, not refused', async (t) => {
  for (const type of ['CharacterDevice', 'BlockDevice', 'FIFO']) {
    t.equal(run([{ path: 'dev/x', type, size: 0 }])[0]?.action, 'skip', type);
  }
});

t.test('entries are charged against the space left', async (t) => {
  const p = new ArchivePolicy({ spaceBytes: 3 * 4096, blockSize: 4096 });
  t.equal(p.check(file('a', 1)).action, 'extract', 'one block');
  t.equal(p.spaceLeft, 2 * 4096);
  t.equal(p.check(symlink('s', 'a')).action, 'extract', 'symlinks cost nothing here');
  const v = p.check(file('big', 3 * 4096));
  t.equal(v.action, 'refuse');
  t.equal(v.action === 'refuse' ? v.code : '', 'NO_SPACE');
  t.match(v.action === 'refuse' ? v.message : '', /"big" needs 12Ki but only 8Ki is left/);
});
