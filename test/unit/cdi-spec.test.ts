// CDI spec files: JSON and YAML, versions 0.5.0 to 1.x, and errors that name the file and field
// (agent/devices/cdi/spec.ts, registry.ts). No root, no devices: pure parsing and temp dirs.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCdiSpec, parseKind, parseQualifiedName } from '../../agent/devices/cdi/spec.js';
import { CdiRegistry } from '../../agent/devices/cdi/registry.js';

const FILE = '/etc/cdi/acme.json';
const json = (doc: unknown, file = FILE): ReturnType<typeof parseCdiSpec> => parseCdiSpec(JSON.stringify(doc), file);
const base = (extra: Record<string, unknown> = {}, version = '0.6.0'): Record<string, unknown> => ({
  cdiVersion: version,
  kind: 'acme.com/npu',
  devices: [{ name: 'npu0', containerEdits: { deviceNodes: [{ path: '/dev/acme0' }] } }],
  ...extra,
});

t.test('a full JSON spec is read as it is', async (t) => {
  const spec = json({
    cdiVersion: '0.7.0',
    kind: 'acme.com/npu',
    annotations: { 'acme.com/driver': '2.1' },
    containerEdits: {
      env: ['ACME_RUNTIME=1'],
      mounts: [{ hostPath: '/usr/lib/libacme.so.2', containerPath: '/usr/lib/libacme.so.2', options: ['ro', 'nosuid', 'nodev', 'bind'], type: 'bind' }],
      hooks: [{ hookName: 'poststart', path: '/usr/bin/acme-hook', args: ['acme-hook', 'start'], env: ['A=1'], timeout: 5 }],
      additionalGids: [44],
    },
    devices: [
      {
        name: 'npu0',
        annotations: { slot: 'pcie0' },
        containerEdits: {
          env: ['ACME_VISIBLE=0'],
          deviceNodes: [{ path: '/dev/acme0', hostPath: '/dev/acme0', type: 'c', major: 240, minor: 0, fileMode: 0o660, permissions: 'rw', uid: 0, gid: 44 }],
        },
      },
      { name: '1', containerEdits: { deviceNodes: [{ path: '/dev/acme1' }] } },
    ],
  });
  t.equal(spec.kind, 'acme.com/npu');
  t.equal(spec.devices.length, 2);
  t.same(spec.devices[0]?.containerEdits.deviceNodes?.[0], { path: '/dev/acme0', hostPath: '/dev/acme0', type: 'c', major: 240, minor: 0, fileMode: 0o660, permissions: 'rw', uid: 0, gid: 44 });
  t.same(spec.containerEdits?.hooks, [{ hookName: 'poststart', path: '/usr/bin/acme-hook', args: ['acme-hook', 'start'], env: ['A=1'], timeout: 5 }]);
  t.same(spec.containerEdits?.additionalGids, [44]);
  t.same(spec.devices[1]?.name, '1', 'a name may start with a digit (0.5.0)');
});

t.test('YAML reads the same as JSON', async (t) => {
  const yaml = [
    'cdiVersion: 0.6.0',
    'kind: hailo.ai/hailo',
    'devices:',
    '  - name: hailo0',
    '    containerEdits:',
    '      deviceNodes:',
    '        - path: /dev/hailo0',
    '          permissions: rw',
    'containerEdits:',
    '  env:',
    '    - HAILO_MONITOR=1',
    '',
  ].join('\n');
  const fromYaml = parseCdiSpec(yaml, '/etc/cdi/hailo.yaml');
  const fromJson = json({
    cdiVersion: '0.6.0', kind: 'hailo.ai/hailo',
    devices: [{ name: 'hailo0', containerEdits: { deviceNodes: [{ path: '/dev/hailo0', permissions: 'rw' }] } }],
    containerEdits: { env: ['HAILO_MONITOR=1'] },
  });
  t.same(fromYaml, fromJson);
  t.same(parseCdiSpec(yaml, '/etc/cdi/hailo.yml'), fromJson, '.yml too');
});

t.test('versions 0.5.0 to 1.x', async (t) => {
  for (const v of ['0.5.0', '0.6.0', '0.7.0', '0.8.0', '1.0.0', '1.1.0', '1.9.3']) t.equal(json(base({}, v)).cdiVersion, v, v);
  t.throws(() => json(base({}, '0.4.0')), { code: 'BAD_REQUEST', message: `CDI spec ${FILE}: field cdiVersion "0.4.0" is not supported: feather reads CDI 0.5.0 to 1.x` });
  t.throws(() => json(base({}, '2.0.0')), { message: /"2\.0\.0" is not supported/ });
  t.throws(() => json(base({}, 'latest')), { message: /field cdiVersion the string "latest" is not a version/ });
  t.throws(() => json({ kind: 'a.com/b', devices: [] }), { message: `CDI spec ${FILE}: field cdiVersion is required (the CDI version the spec follows, e.g. "0.6.0")` });
});

t.test('fields newer than the declared version are refused, naming the field', async (t) => {
  t.throws(() => json(base({ annotations: { a: 'b' } }, '0.5.0')), { message: /field annotations needs cdiVersion 0\.6\.0 or later, but the spec declares 0\.5\.0/ });
  t.throws(() => json({ ...base({}, '0.6.0'), devices: [{ name: 'x', containerEdits: { additionalGids: [1] } }] }),
    { message: /field devices\[0\]\.containerEdits\.additionalGids needs cdiVersion 0\.7\.0/ });
  t.throws(() => json({ ...base({}, '1.0.0'), containerEdits: { netDevices: [{ hostInterfaceName: 'eth1', name: 'net0' }] } }),
    { message: /field containerEdits\.netDevices needs cdiVersion 1\.1\.0/ });
  t.throws(() => json({ ...base({}, '0.5.0'), kind: 'acme.com/npu.v2' }), { message: /a '\.' in the class needs cdiVersion 0\.6\.0/ });
  t.equal(json({ ...base({}, '1.1.0'), containerEdits: { netDevices: [{ hostInterfaceName: 'eth1', name: 'net0' }] } }).containerEdits?.netDevices?.length, 1);
});

t.test('malformed specs: the message names the file and the field', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ ...base(), kind: 'acme' }, /field kind the string "acme" is not valid: use vendor\.com\/class/],
    [{ ...base(), devices: [] }, /field devices must list at least one device/],
    [{ ...base(), devices: 'npu0' }, /field devices must be an array/],
    [{ ...base(), devices: [{ name: 'npu0' }] }, /field devices\[0\]\.containerEdits is required/],
    [{ ...base(), devices: [{ name: 'npu0', containerEdits: {} }] }, /field devices\[0\]\.containerEdits is empty/],
    [{ ...base(), devices: [{ name: '-bad', containerEdits: { env: ['A=1'] } }] }, /field devices\[0\]\.name the string "-bad" is not valid/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { env: ['A=1'] } }, { name: 'a', containerEdits: { env: ['A=1'] } }] }, /field devices\[1\]\.name "a" is already used by devices\[0\]/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { deviceNodes: [{ hostPath: '/dev/x' }] } }] }, /field devices\[0\]\.containerEdits\.deviceNodes\[0\]\.path is required/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { deviceNodes: [{ path: 'dev/x' }] } }] }, /field devices\[0\]\.containerEdits\.deviceNodes\[0\]\.path the string "dev\/x" must be an absolute path/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { deviceNodes: [{ path: '/dev/x', type: 'z' }] } }] }, /field devices\[0\]\.containerEdits\.deviceNodes\[0\]\.type must be one of "b", "c", "u", "p"/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { deviceNodes: [{ path: '/dev/x', major: 1 }] } }] }, /deviceNodes\[0\]\.minor is required when major is set/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { deviceNodes: [{ path: '/dev/x', major: -1, minor: 0 }] } }] }, /deviceNodes\[0\]\.major must be a whole number from 0/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { deviceNodes: [{ path: '/dev/x', permissions: 'rx' }] } }] }, /deviceNodes\[0\]\.permissions the string "rx" must be some of r, w, m/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { deviceNodes: [{ path: '/dev/x', permision: 'rw' }] } }] }, /unknown field devices\[0\]\.containerEdits\.deviceNodes\[0\]\.permision in a CDI spec/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { mounts: [{ hostPath: '/a', containerPath: 'b' }] } }] }, /field devices\[0\]\.containerEdits\.mounts\[0\]\.containerPath the string "b" must be an absolute path/],
    [{ ...base(), devices: [{ name: 'a', containerEdits: { env: ['NOEQUALS'] } }] }, /field devices\[0\]\.containerEdits\.env\[0\] the string "NOEQUALS" is not valid: use KEY=VALUE/],
    [{ ...base(), containerEdits: { hooks: [{ path: '/bin/true' }] } }, /field containerEdits\.hooks\[0\]\.hookName is required \(one of prestart, createRuntime/],
    [{ ...base(), containerEdits: { hooks: [{ hookName: 'poststart', path: '/bin/true', timeout: 0 }] } }, /field containerEdits\.hooks\[0\]\.timeout must be a whole number from 1/],
    [{ ...base(), containerEdits: { hooks: [{ hookName: 'onBoot', path: '/bin/true' }] } }, /field containerEdits\.hooks\[0\]\.hookName must be one of/],
    [{ ...base(), containerRuntime: ['docker'] }, /unknown field containerRuntime in a CDI spec/],
    [[1, 2], /the document must be an object, got an array/],
  ];
  for (const [doc, message] of cases) {
    t.throws(() => json(doc), { code: 'BAD_REQUEST', message }, String(message));
    t.throws(() => json(doc), { message: /^CDI spec \/etc\/cdi\/acme\.json: / }, 'names the file');
  }
});

t.test('syntax errors name the file and where', async (t) => {
  t.throws(() => parseCdiSpec('{"cdiVersion": "0.6.0",', '/var/run/cdi/x.json'), { code: 'BAD_REQUEST', message: /^CDI spec \/var\/run\/cdi\/x\.json: not valid JSON: / });
  t.throws(() => parseCdiSpec('kind: a.com/b\n  devices: [\n', '/etc/cdi/x.yaml'), { code: 'BAD_REQUEST', message: /^CDI spec \/etc\/cdi\/x\.yaml: not valid YAML at line \d+, column \d+: / });
  t.throws(() => parseCdiSpec('kind: a\nkind: b\n', '/etc/cdi/x.yaml'), { message: /not valid YAML.*Map keys must be unique/ });
  t.throws(() => parseCdiSpec('{}', '/etc/cdi/x.toml'), { message: /unknown file type "\.toml"/ });
});

t.test('names: kinds and qualified device names', async (t) => {
  t.same(parseKind('google.com/edgetpu'), { vendor: 'google.com', class: 'edgetpu' });
  t.same(parseKind('foo.bar.baz/foo-bar123.B_az'), { vendor: 'foo.bar.baz', class: 'foo-bar123.B_az' });
  for (const bad of ['foo', 'vendor.com/foo/', 'vendor.com/foo/bar', '/x', 'a.com/-x']) t.equal(parseKind(bad), undefined, bad);
  t.same(parseQualifiedName('hailo.ai/hailo=hailo0'), { kind: 'hailo.ai/hailo', name: 'hailo0' });
  t.same(parseQualifiedName('nvidia.com/gpu=GPU-8a1b:0'), { kind: 'nvidia.com/gpu', name: 'GPU-8a1b:0' });
  for (const bad of ['hailo.ai/hailo', 'hailo.ai/hailo=', 'hailo=x', 'a.com/b=-x']) t.equal(parseQualifiedName(bad), undefined, bad);
});

t.test('the registry: /etc/cdi then /var/run/cdi, later wins, bad files kept as errors', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'feather-cdi-reg-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const write = (p: string, doc: unknown): void => {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), typeof doc === 'string' ? doc : JSON.stringify(doc));
  };
  const spec = (kind: string, names: string[], env: string): unknown => ({
    cdiVersion: '0.6.0', kind, devices: names.map((name) => ({ name, containerEdits: { env: [`WHO=${env}`] } })),
  });
  write('etc/cdi/acme.json', spec('acme.com/npu', ['npu0', 'npu1'], 'etc'));
  write('var/run/cdi/acme-override.yaml', 'cdiVersion: 0.6.0\nkind: acme.com/npu\ndevices:\n  - name: npu1\n    containerEdits:\n      env: [WHO=run]\n');
  write('etc/cdi/dup-a.json', spec('dup.com/x', ['d0'], 'a'));
  write('etc/cdi/dup-b.json', spec('dup.com/x', ['d0'], 'b'));
  write('etc/cdi/broken.json', '{"cdiVersion":"0.6.0","kind":"broken.com/x","devices":[{"name":"b0"}]}');
  write('etc/cdi/README.md', 'not a spec');
  write('etc/cdi/.hidden.json', 'not read');
  const reg = CdiRegistry.load({ root });
  t.same(reg.kinds(), ['acme.com/npu', 'dup.com/x']);
  t.same(reg.deviceNames(), ['acme.com/npu=npu0', 'acme.com/npu=npu1', 'dup.com/x=d0']);
  t.equal(reg.get('acme.com/npu=npu1')?.specFile.file, join(root, 'var/run/cdi/acme-override.yaml'), '/var/run/cdi wins');
  t.equal(reg.get('acme.com/npu=npu0')?.specFile.file, join(root, 'etc/cdi/acme.json'));
  t.throws(() => reg.get('dup.com/x=d0'), { code: 'CONFLICT', message: /defined in more than one spec file of the same directory: .*dup-a\.json, .*dup-b\.json/ });
  t.equal(reg.errors.length, 1);
  t.equal(reg.errors[0]?.kind, 'broken.com/x');
  t.match(reg.errors[0]?.error.message ?? '', /^CDI spec .*broken\.json: field devices\[0\]\.containerEdits is required$/);
  t.equal(reg.describeDirs(), `/etc/cdi, /var/run/cdi under ${root}`);
});
