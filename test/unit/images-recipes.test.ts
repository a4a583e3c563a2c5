// Recipe inputs that are pure parsing: apt sources, ldd output, model file names, the skeleton.
import t from 'tap';
import { parseAptSources } from '../../agent/images/debootstrap.js';
import { parseLdd } from '../../agent/images/hostbundle.js';
import { parseRecipe, recipes, rootfsSkeleton } from '../../agent/images/recipes.js';
import { modelFileName } from '../../shared/protocol/model-file.js';

t.test('apt sources, one-line and deb822', async (t) => {
  const oneLine = parseAptSources([
    '# comment',
    'deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib',
    'deb-src http://mirror.example/debian bookworm main',
    'deb http://security.debian.org/debian-security bookworm-security main # trailing',
  ].join('\n'), false);
  t.same(oneLine[0], { types: ['deb'], uri: 'http://mirror.example/debian', suites: ['bookworm'], components: ['main', 'contrib'] });
  t.equal(oneLine.length, 3);
  const deb822 = parseAptSources([
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://deb.debian.org/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb',
    'URIs: http://off.example/debian',
    'Suites: trixie',
    'Enabled: no',
  ].join('\n'), true);
  t.same(deb822, [{ types: ['deb'], uri: 'http://deb.debian.org/debian', suites: ['bookworm', 'bookworm-updates'], components: ['main'] }]);
});

t.test('ldd output: libraries, the loader, and a missing library', async (t) => {
  const out = [
    '\tlinux-vdso.so.1 (0x00007ffc1a3e5000)',
    '\tlibselinux.so.1 => /lib/x86_64-linux-gnu/libselinux.so.1 (0x00007f0d3c9a1000)',
    '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0d3c7c0000)',
    '\t/lib64/ld-linux-x86-64.so.2 (0x00007f0d3ca0b000)',
  ].join('\n');
  t.same(parseLdd(out, '/bin/ls'), ['/lib/x86_64-linux-gnu/libselinux.so.1', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
  t.throws(() => parseLdd('\tlibfoo.so.1 => not found\n', '/opt/x'), { code: 'RUNTIME_ERROR' });
});

t.test('model file names come from the URL, or "model"', async (t) => {
  t.equal(modelFileName('https://h/models/resnet18-int8.onnx?sig=1'), 'resnet18-int8.onnx');
  t.equal(modelFileName('https://h/models/%2e%2e'), 'model');
  t.equal(modelFileName('https://h/'), 'model');
  t.equal(modelFileName('file:///a/b/weights.bin'), 'weights.bin');
});

t.test('recipes and the skeleton', async (t) => {
  t.same(recipes().map((r) => r.name), ['busybox', 'debian', 'host', 'onnx']);
  t.throws(() => parseRecipe('alpine'), { code: 'BAD_REQUEST' });
  const skel = rootfsSkeleton();
  const modes = Object.fromEntries(skel.filter((e) => e.type === 'dir').map((e) => [e.path, e.mode]));
  t.equal(modes['tmp'], 0o1777);
  t.equal(modes['root'], 0o700);
  for (const d of ['proc', 'sys', 'dev', 'run']) t.ok(d in modes, d);
  t.ok(skel.some((e) => e.path === 'etc/passwd'));
});
