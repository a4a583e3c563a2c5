// The image CLI handlers: exit codes, one-line errors, --json (agent/cli/images.ts).
// A temp data dir and file:// sources: no network, no root.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatProgress, imageCommands } from '../../agent/cli/images.js';
import type { CliContext } from '../../agent/cli/context.js';
import { writeTarball } from '../../agent/images/tarwriter.js';
import { DataPaths } from '../../agent/paths.js';
import { loadAgentConfig } from '../../shared/config/agent.js';
import { configureLogging } from '../../shared/logging.js';

configureLogging({ level: 'silent' });
const root = mkdtempSync(join(tmpdir(), 'feather-imgcli-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

interface Run { code: number; out: string[]; err: string[] }

let n = 0;
function context(): { ctx: CliContext; out: string[]; err: string[] } {
  const dataDir = join(root, `d${n++}`);
  const out: string[] = [];
  const err: string[] = [];
  const config = loadAgentConfig({ env: {}, overrides: { dataDir } });
  return { ctx: { config, paths: new DataPaths(dataDir), out: (l) => out.push(l), err: (l) => err.push(l), isTTY: false }, out, err };
}

async function cli(c: ReturnType<typeof context>, line: string[]): Promise<Run> {
  c.out.length = 0;
  c.err.length = 0;
  const [cmd, ...args] = line;
  const handler = imageCommands[cmd as string];
  if (!handler) throw new Error(`no handler ${cmd}`);
  const code = await handler(args, c.ctx);
  return { code, out: [...c.out], err: [...c.err] };
}

const tarball = join(root, 'img.tar.gz');
let sha = '';
t.before(async () => {
  sha = (await writeTarball(tarball, [{ type: 'dir', path: 'etc' }, { type: 'file', path: 'etc/hostname', data: 'x\n' }])).sha256;
});

t.test('the command table', async (t) => {
  t.same(Object.keys(imageCommands).sort(), ['image', 'images', 'pull']);
});

t.test('images on an empty store', async (t) => {
  const c = context();
  const plain = await cli(c, ['images']);
  t.equal(plain.code, 0);
  t.match(plain.out[0], /^NAME\s+SHA256\s+SIZE\s+CACHED/);
  const json = await cli(c, ['images', '--json']);
  t.same(JSON.parse(json.out[0] ?? ''), []);
});

t.test('import, list, verify, rm', async (t) => {
  const c = context();
  const imp = await cli(c, ['image', 'import', tarball, '--name', 'tiny', '--sha256', sha]);
  t.equal(imp.code, 0, imp.err.join());
  t.match(imp.out[0], `imported tiny sha256:${sha}`);
  const list = JSON.parse((await cli(c, ['images', '--json'])).out[0] ?? '') as Array<Record<string, unknown>>;
  t.match(list, [{ name: 'tiny', sha256: sha, cached: false, source: pathToFileURL(tarball).href }]);
  const table = await cli(c, ['image', 'ls']);
  t.match(table.out[0], new RegExp(`tiny\\s+${sha.slice(0, 12)}\\s`));
  const ok = await cli(c, ['image', 'verify']);
  t.equal(ok.code, 0);
  t.match(ok.out[0], /^ok\s+tiny/);

  mkdirSync(c.ctx.paths.container('web').dir, { recursive: true });
  writeFileSync(c.ctx.paths.container('web').config, JSON.stringify({ name: 'web', image: 'tiny', imageSha256: sha }));
  const busy = await cli(c, ['image', 'rm', 'tiny']);
  t.equal(busy.code, 1);
  t.equal(busy.err.length, 1, 'one line');
  t.match(busy.err[0], /used by container web; remove it first/);
  rmSync(c.ctx.paths.container('web').dir, { recursive: true });
  const rm = await cli(c, ['image', 'rm', 'tiny']);
  t.equal(rm.code, 0);
  t.same(rm.out, ['removed tiny']);
  t.equal((await cli(c, ['image', 'rm', 'tiny'])).code, 1, 'NOT_FOUND is 1');
});

t.test('pull from file:// with the digest; a wrong digest names both', async (t) => {
  const c = context();
  const url = pathToFileURL(tarball).href;
  const good = await cli(c, ['pull', url, '--name', 'p', '--sha256', sha, '--json']);
  t.equal(good.code, 0, good.err.join());
  t.match(JSON.parse(good.out[0] ?? ''), { name: 'p', sha256: sha });
  const wrong = '9'.repeat(64);
  const bad = await cli(c, ['pull', url, '--name', 'q', '--sha256', wrong]);
  t.equal(bad.code, 1);
  t.equal(bad.err.length, 1);
  t.match(bad.err[0], wrong);
  t.match(bad.err[0], sha);
});

t.test('a corrupted tarball fails verify with exit 1', async (t) => {
  const c = context();
  await cli(c, ['image', 'import', tarball, '--name', 'x']);
  writeFileSync(c.ctx.paths.imageTarball('x'), 'not what was imported');
  const r = await cli(c, ['image', 'verify', '--json']);
  t.equal(r.code, 1);
  t.match(JSON.parse(r.out[0] ?? ''), [{ name: 'x', ok: false, expected: sha }]);
  t.match(r.err[0], /1 of 1 images failed verification \(x\)/);
});

t.test('usage errors are exit 2 with one line', async (t) => {
  const c = context();
  const cases: string[][] = [
    ['image'],
    ['image', 'frobnicate'],
    ['image', 'import', tarball],
    ['image', 'import', '--name', 'x'],
    ['image', 'import', tarball, '--name', 'x', '--sha256', 'short'],
    ['image', 'import', tarball, '--name', 'bad/name'],
    ['pull', 'file:///x'],
    ['pull', 'gopher://x', '--name', 'a', '--sha256', sha],
    ['images', '--bogus'],
    ['image', 'build', 'nonsense'],
  ];
  for (const line of cases) {
    const r = await cli(c, line);
    t.equal(r.code, 2, line.join(' '));
    t.equal(r.err.length, 1, `${line.join(' ')}: one line`);
    t.notMatch(r.err[0] ?? '', /\n/);
  }
});

t.test('a corrupt manifest is one line and exit 1', async (t) => {
  const c = context();
  mkdirSync(c.ctx.paths.images, { recursive: true });
  writeFileSync(c.ctx.paths.manifest, '[{"name": "x", ');
  const r = await cli(c, ['images']);
  t.equal(r.code, 1);
  t.match(r.err[0], /manifest\.json is corrupt/);
});

t.test('recipes are listed', async (t) => {
  const c = context();
  const r = await cli(c, ['image', 'recipes', '--json']);
  t.same((JSON.parse(r.out[0] ?? '') as Array<{ name: string }>).map((x) => x.name), ['busybox', 'debian', 'host', 'onnx']);
  t.match((await cli(c, ['image', 'recipes'])).out[0], /^RECIPE\s+DESCRIPTION/);
});

t.test('the progress bar', async (t) => {
  t.equal(formatProgress({ bytes: 0, total: 100, rate: 0 }, 10), '[          ]   0%  0B/100B  0B/s');
  t.equal(formatProgress({ bytes: 50, total: 100, rate: 2048 }, 10), '[====>     ]  50%  50B/100B  2Ki/s');
  t.equal(formatProgress({ bytes: 100, total: 100, rate: 1 }, 10), '[==========] 100%  100B/100B  1B/s');
  t.equal(formatProgress({ bytes: 3 * 2 ** 20, total: undefined, rate: 2 ** 20 }), '3Mi  1Mi/s');
});
