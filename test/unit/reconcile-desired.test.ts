import t from 'tap';
import {
  parseDesired, validateDesired, isDesiredStateError, DesiredStateError, MAX_DESIRED_BYTES, type FieldIssue, type Workload,
} from '../../shared/protocol/desired.js';
import { createHash } from 'node:crypto';
import { canonicalJson, specHash } from '../../agent/reconcile/labels.js';

const SHA = 'a'.repeat(64);
const SHA2 = 'b'.repeat(64);
const SHA3 = 'c'.repeat(64);

function issuesOf(fn: () => unknown): FieldIssue[] {
  try {
    fn();
  } catch (e: unknown) {
    if (isDesiredStateError(e)) return [...e.issues];
    throw e;
  }
  throw new Error('expected a DesiredStateError');
}

t.test('an empty payload means nothing is desired', async (t) => {
  for (const p of [null, undefined, '', '  \n', Buffer.alloc(0), Buffer.from(' \t ')]) {
    t.same(parseDesired(p), { generation: 0, workloads: [], images: [] });
  }
});

t.test('a full payload is normalised with defaults', async (t) => {
  const d = parseDesired(JSON.stringify({
    generation: 7,
    workloads: [
      {
        name: 'det', image: 'rt', args: ['sleep', '60'], env: { MODE: 'fast' },
        limits: { memory: '128Mi', cpu: 0.5, pids: 10, cpuset: '0-1' }, network: 'host', restart: 'always',
        models: [{ name: 'resnet', url: 'https://example.test/r.tar', sha256: SHA.toUpperCase() }],
        layers: [{ name: 'resnet-layer', url: 'https://example.test/l.tar.gz', sha256: `sha256:${SHA2.toUpperCase()}` }, { name: 'onnxruntime', url: 'file:///srv/ort.tar.gz', sha256: SHA3 }],
        devices: ['nvidia.com/gpu=0'],
      },
      { name: 'min', image: 'busybox' },
    ],
    images: [{ name: 'rt', url: 'file:///tmp/rt.tar.gz', sha256: SHA }],
  }));
  t.equal(d.generation, 7);
  t.same(d.workloads[0], {
    name: 'det', image: 'rt', args: ['sleep', '60'], env: { MODE: 'fast' },
    limits: { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10, cpuset: '0-1' }, network: 'host', restart: 'always',
    models: [{ name: 'resnet', url: 'https://example.test/r.tar', sha256: SHA }],
    layers: [{ name: 'resnet-layer', url: 'https://example.test/l.tar.gz', sha256: SHA2 }, { name: 'onnxruntime', url: 'file:///srv/ort.tar.gz', sha256: SHA3 }],
    devices: ['nvidia.com/gpu=0'],
  });
  t.same(d.workloads[1], {
    name: 'min', image: 'busybox', args: [], env: {}, limits: {}, network: 'none', restart: 'no', models: [], layers: [], devices: [],
  });
  t.same(d.images, [{ name: 'rt', url: 'file:///tmp/rt.tar.gz', sha256: SHA }]);
});

t.test('a Buffer payload with leading blanks is JSON', async (t) => {
  const d = parseDesired(Buffer.from('  \n{"generation": 3, "workloads": []}'));
  t.equal(d.generation, 3);
  t.same(d.workloads, []);
});

t.test('bad payloads fail with BAD_REQUEST as a DesiredStateError', async (t) => {
  t.throws(() => parseDesired('{not json'), { code: 'BAD_REQUEST' });
  t.throws(() => parseDesired('[1,2]'), { code: 'BAD_REQUEST' });
  t.throws(() => parseDesired(Buffer.from([0x0a, 0x01, 0x07])), { code: 'BAD_REQUEST' });
  t.throws(() => parseDesired('{"workloads": []}'), { code: 'BAD_REQUEST', name: 'DesiredStateError' });
  t.throws(() => parseDesired('x'.repeat(MAX_DESIRED_BYTES + 1)), { code: 'BAD_REQUEST' });
  try {
    parseDesired('{"generation": -1}');
    t.fail('should throw');
  } catch (e: unknown) {
    t.ok(e instanceof DesiredStateError);
    t.match((e as Error).message, /generation/);
    t.match((e as Error).message, /publish it again/);
  }
});

t.test('the first bad field of each workload is named by its path', async (t) => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ limits: { memory: '12Zi' } }, 'workloads[0].limits.memory'],
    [{ limits: { cpu: 'x' } }, 'workloads[0].limits.cpu'],
    [{ limits: { pids: 0 } }, 'workloads[0].limits.pids'],
    [{ limits: { swap: 1 } }, 'workloads[0].limits.swap'],
    [{ restart: 'sometimes' }, 'workloads[0].restart'],
    [{ network: 'bridge' }, 'workloads[0].network'],
    [{ args: ['x', 3] }, 'workloads[0].args[1]'],
    [{ env: { C: 5 } }, 'workloads[0].env.C'],
    [{ env: { 'A-B': 'x' } }, 'workloads[0].env'],
    [{ devices: ['gpu0'] }, 'workloads[0].devices[0]'],
    [{ models: [{ name: 'm', url: 'ftp://x', sha256: SHA }] }, 'workloads[0].models[0].url'],
    [{ models: [{ name: 'm', url: 'http://h/m', sha256: 'abc' }] }, 'workloads[0].models[0].sha256'],
    [{ models: [{ name: 'm', url: 'http://h/m', sha256: SHA }, { name: 'm', url: 'http://h/n', sha256: SHA }] }, 'workloads[0].models'],
    [{ layers: [{ name: 'ort', url: 'ftp://x', sha256: SHA }] }, 'workloads[0].layers[0].url'],
    [{ layers: [{ name: 'ort', url: 'http://h/l' }] }, 'workloads[0].layers[0].sha256'],
    [{ layers: [{ name: '../ort', url: 'http://h/l', sha256: SHA }] }, 'workloads[0]'], // a bad name is named by the validator's message, as for the workload's own
    [{ layers: [{ name: 'ort', url: 'http://h/l', sha256: SHA, size: 3 }] }, 'workloads[0].layers[0].size'],
    [{ layers: { name: 'ort' } }, 'workloads[0].layers'],
    [{ layers: Array.from({ length: 17 }, (_, i) => ({ name: `l${i}`, url: 'http://h/l', sha256: i.toString(16).padStart(64, '0') })) }, 'workloads[0].layers'],
    [{ layers: [{ name: 'a', url: 'http://h/a', sha256: SHA }, { name: 'b', url: 'http://h/b', sha256: SHA.toUpperCase() }] }, 'workloads[0].layers'],
    [{ requestId: 'r1' }, 'workloads[0].requestId'],
    [{ image: undefined }, 'workloads[0].image'],
    [{ name: '../evil' }, 'workloads[0]'],
  ];
  for (const [over, path] of cases) {
    const w = { name: 'w', image: 'busybox', ...over };
    const issues = issuesOf(() => validateDesired({ generation: 1, workloads: [w] }));
    t.same(issues.map((i) => i.path), [path], JSON.stringify(over));
    t.match(issues[0]?.message, /\S/, 'with a message');
  }
});

t.test('all bad workloads and top-level fields are reported at once', async (t) => {
  const issues = issuesOf(() => validateDesired({
    generation: 1.5,
    workloads: [
      { name: 'ok', image: 'busybox', limits: { memory: '12Zi' } },
      { name: 'fine', image: 'busybox' },
      { name: 'bad', image: 'busybox', network: 'bridge' },
      'not an object',
    ],
    images: [{ name: 'img', url: 'http://x/y', sha256: SHA }, { name: 'img', url: 'http://x/z', sha256: SHA }, { name: 'x', url: 'gopher://x', sha256: SHA }],
    extra: true,
  }));
  t.same(issues.map((i) => i.path).sort(), [
    'extra', 'generation', 'images', 'images[2].url', 'workloads[0].limits.memory', 'workloads[2].network', 'workloads[3]',
  ].sort());
  const err = new DesiredStateError(issues);
  t.match(err.message, /workloads\[0\]\.limits\.memory/);
  t.same(err.details, { issues });
});

t.test('duplicate workload names are refused', async (t) => {
  const issues = issuesOf(() => validateDesired({
    generation: 1, workloads: [{ name: 'a', image: 'i' }, { name: 'a', image: 'j' }],
  }));
  t.same(issues.map((i) => i.path), ['workloads']);
  t.match(issues[0]?.message, /"a" appears more than once/);
});

t.test('a binary payload goes to the decoder when there is one', async (t) => {
  const d = parseDesired(Buffer.from([8, 4]), { decodeBinary: () => ({ generation: 4, workloads: [] }) });
  t.equal(d.generation, 4);
  t.throws(() => parseDesired(Buffer.from([8, 4]), { decodeBinary: () => { throw new Error('bad wire type'); } }), {
    code: 'BAD_REQUEST', message: /bad wire type/,
  });
});

t.test('the spec hash ignores key order and counts defaults', async (t) => {
  const a = parseDesired('{"generation":1,"workloads":[{"name":"w","image":"i","args":["a"],"restart":"no","limits":{"memory":"64Mi","cpu":0.5}}]}');
  const b = parseDesired('{"workloads":[{"limits":{"cpu":0.5,"memory":67108864},"args":["a"],"image":"i","name":"w"}],"generation":2}');
  const c = parseDesired('{"generation":1,"workloads":[{"name":"w","image":"i","args":["b"],"limits":{"memory":"64Mi","cpu":0.5}}]}');
  t.equal(specHash(a.workloads[0]!), specHash(b.workloads[0]!));
  t.not(specHash(a.workloads[0]!), specHash(c.workloads[0]!));
  t.match(specHash(a.workloads[0]!), /^[0-9a-f]{64}$/);
});

t.test('layers: the same digest twice, or the digest of the image itself where images lists it, is refused', async (t) => {
  const twice = issuesOf(() => validateDesired({ generation: 1, workloads: [
    { name: 'w', image: 'busybox', layers: [{ name: 'a', url: 'http://h/a', sha256: SHA }, { name: 'b', url: 'http://h/b', sha256: SHA }] },
  ] }));
  t.match(twice, [{ path: 'workloads[0].layers', message: /layers\[1\] \(b\) has the same sha256 as layers\[0\] \(a\)/ }]);
  const itself = issuesOf(() => validateDesired({
    generation: 1,
    workloads: [{ name: 'ok', image: 'busybox' }, { name: 'w', image: 'rt', layers: [{ name: 'ort', url: 'http://h/o', sha256: SHA2 }, { name: 'copy', url: 'http://h/rt', sha256: SHA }] }],
    images: [{ name: 'rt', url: 'http://h/rt', sha256: SHA }],
  }));
  t.match(itself, [{ path: 'workloads[1].layers[1]', message: /layer copy is the image rt itself/ }]);
  t.equal(validateDesired({ generation: 1, workloads: [{ name: 'w', image: 'busybox', layers: [] }] }).workloads[0]?.layers.length, 0, 'an empty list is no layers');
});

t.test('the spec hash counts layer digests in order, not their urls or names; no layers hash as before layers existed', async (t) => {
  const w = (layers?: unknown[]): Workload => {
    const d = validateDesired({ generation: 1, workloads: [{ name: 'w', image: 'busybox', args: ['x'], ...(layers ? { layers } : {}) }] });
    return d.workloads[0]!;
  };
  const top = { name: 'model', url: 'http://h/m1.tar.gz', sha256: SHA2 };
  const base = { name: 'ort', url: 'http://h/ort.tar.gz', sha256: SHA3 };
  const two = specHash(w([top, base]));
  t.equal(specHash(w([{ ...top, url: 'https://mirror/m1.tar.gz', name: 'model-renamed' }, base])), two, 'same digests: same hash');
  t.not(specHash(w([{ ...top, sha256: SHA }, base])), two, 'a new top layer digest: another hash');
  t.not(specHash(w([base, top])), two, 'the order counts');
  t.not(specHash(w([base])), two);
  t.equal(specHash(w([])), specHash(w()), 'layers: [] is no layers');
  // What an agent without layers hashed: the workload without the field.
  const { layers: _none, ...before } = w();
  t.equal(specHash(w()), createHash('sha256').update(canonicalJson(before)).digest('hex'), 'containers started before layers are not replaced by the upgrade');
});
