import t from 'tap';
import { decodeCommand, pickEncoding, readRunBody, scanRequestId, validateCommand } from '../../shared/protocol/commands.js';
import { Fields } from '../../shared/protocol/fields.js';
import { decodeCommandProto, decodeReplyProto, encodeCommandProto, encodeReplyProto, locateProto } from '../../shared/protocol/proto.js';

const dec = (payload: string | Buffer, verb = 'ping', extra: { contentType?: string; max?: number } = {}) =>
  decodeCommand(typeof payload === 'string' ? Buffer.from(payload) : payload, { verb, maxPayloadBytes: extra.max ?? 1024, contentType: extra.contentType });

t.test('encoding: first non-blank byte, then the MQTT 5 content type', async (t) => {
  t.equal(pickEncoding(Buffer.from('  \n{"a":1}')), 'json');
  t.equal(pickEncoding(Buffer.from([0x0a, 0x02, 0x72, 0x31])), 'protobuf');
  t.equal(pickEncoding(Buffer.from('{"a":1}'), 'application/x-protobuf'), 'protobuf');
  t.equal(pickEncoding(Buffer.from([0x0a]), 'application/json; charset=utf-8'), 'json');
  t.equal(pickEncoding(Buffer.from('[1]'), 'text/plain'), 'protobuf', 'any other payload is protobuf');
});

t.test('JSON commands: requestId apart, the rest is the body', async (t) => {
  const d = dec('{"requestId":"r1","name":"web1"}', 'container.stop');
  t.equal(d.encoding, 'json');
  t.equal(d.requestId, 'r1');
  t.same(d.body, { name: 'web1' });
  t.equal(d.error, undefined);
});

t.test('bad JSON says what is wrong and still finds the requestId when it can', async (t) => {
  const truncated = dec('{"requestId":"r2","name":"we');
  t.match(truncated.error, { code: 'BAD_REQUEST', message: /not valid JSON/ });
  t.equal(truncated.requestId, 'r2', 'scanned from the head');

  const garbage = dec('{nope');
  t.match(garbage.error, { code: 'BAD_REQUEST' });
  t.equal(garbage.requestId, undefined);

  const arr = dec('[{"requestId":"r3"}]');
  t.match(arr.error, { code: 'BAD_REQUEST', message: /an array, not a JSON object/ });
  t.equal(arr.requestId, undefined, 'an array has no requestId to answer');

  const str = dec('"hello"');
  t.match(str.error, { message: /not a JSON object/ });

  const empty = dec('  ');
  t.match(empty.error, { code: 'BAD_REQUEST', message: /empty/ });

  const big = dec(`{"requestId":"r4","pad":"${'x'.repeat(2000)}"}`);
  t.match(big.error, { code: 'BAD_REQUEST', message: /above this agent's limit of 1024/ });
  t.equal(big.requestId, 'r4');
});

t.test('requestId problems are reported, not guessed', async (t) => {
  const num = dec('{"requestId":42}');
  t.equal(num.requestId, undefined);
  t.match(num.requestIdProblem, /must be a string, got number 42/);
  const slash = dec('{"requestId":"a/b"}');
  t.match(slash.requestIdProblem, /not usable in a reply topic/);
  t.equal(dec('{}').requestIdProblem, undefined, 'absent is not a problem of its own');
  t.equal(scanRequestId(Buffer.from('{"x":1,"requestId":"a b"')), undefined, 'a space makes no topic level');
  t.equal(scanRequestId(Buffer.from('{"x":1,"requestId":"a\\"b"')), 'a"b', 'escapes are undone');
  t.equal(scanRequestId(Buffer.from('{"requestId" : "ok-1", "x": [')), 'ok-1');
});

t.test('binary junk is refused as neither JSON nor protobuf', async (t) => {
  const junk = dec(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
  t.equal(junk.encoding, 'protobuf');
  t.match(junk.error, { code: 'BAD_REQUEST', message: /neither JSON .* nor a feather.v1.Command protobuf/ });
});

t.test('protobuf commands round-trip to the same body as JSON', async (t) => {
  t.ok(locateProto('feather.proto').endsWith('shared/protocol/feather.proto'));
  const body = { name: 'web1', image: 'busybox', args: ['sleep', '60'], env: { A: '1' }, limits: { memory: '64Mi', cpu: 0.25, pids: 5 }, network: 'none', restart: 'always' };
  const buf = encodeCommandProto('container.run', 'r7', body);
  const d = dec(buf, 'container.run');
  t.equal(d.encoding, 'protobuf');
  t.equal(d.requestId, 'r7');
  t.same(d.body, body);
  t.same(validateCommand('container.run', d.body ?? {}), validateCommand('container.run', body));

  const wrongVerb = dec(buf, 'container.stop');
  t.match(wrongVerb.error, { code: 'BAD_REQUEST', message: /body is for verb container.run but the topic says container.stop/ });
  t.equal(wrongVerb.requestId, 'r7');

  const ping = decodeCommandProto(encodeCommandProto('ping', 'p1'));
  t.same(ping, { requestId: 'p1', bodyVerb: 'ping', body: {} });
  const stop0 = decodeCommandProto(encodeCommandProto('container.stop', 's1', { name: 'x', timeoutS: 0 }));
  t.same(stop0.body, { name: 'x', timeoutS: 0 }, 'an explicit 0 survives (proto3 optional)');
});

t.test('protobuf replies round-trip, lists included', async (t) => {
  const pong = { requestId: 'p1', ok: true as const, result: { pong: true, ts: 1764860000123 } };
  t.same(decodeReplyProto(encodeReplyProto('ping', pong)), pong);
  const list = { requestId: 'l1', ok: true as const, result: [{ name: 'web1', image: 'busybox', state: 'running', pid: 42, exitCode: null }] };
  t.same(decodeReplyProto(encodeReplyProto('container.list', list)), { requestId: 'l1', ok: true, result: [{ name: 'web1', image: 'busybox', state: 'running', pid: 42 }] });
  const err = { requestId: 'e1', ok: false as const, error: { code: 'NOT_FOUND' as const, message: 'no such container' } };
  t.same(decodeReplyProto(encodeReplyProto('container.stop', err)), err);
  t.same(decodeReplyProto(encodeReplyProto(undefined, { ...err, error: { code: 'UNKNOWN_VERB', message: 'x' } })).ok, false);
  const accelerators = [
    { kind: 'edgetpu', vendor: 'google', model: 'Coral', device: '/dev/apex_0', cdi: ['google.com/edgetpu=apex_0'] },
    { kind: 'gpu', vendor: 'intel', model: 'i915', device: '/dev/dri/renderD128', cdi: [] },
  ];
  const inv = { requestId: 'i1', ok: true as const, result: { id: 'd', arch: 'x86_64', accelerators } };
  const back = decodeReplyProto(encodeReplyProto('inventory', inv));
  t.same((back.ok ? back.result as { accelerators: unknown[] } : { accelerators: [] }).accelerators, [accelerators[0], { kind: 'gpu', vendor: 'intel', model: 'i915', device: '/dev/dri/renderD128' }],
    'accelerators[].cdi travels as Accelerator.cdi (an empty list is not sent: proto3)');
});

t.test('validation per verb names the field', async (t) => {
  t.same(validateCommand('ping', {}), {});
  t.throws(() => validateCommand('ping', { extra: 1 }), { code: 'BAD_REQUEST', message: /unknown field extra in ping \(it takes no fields\)/ });
  t.same(validateCommand('image.pull', { name: 'busybox', url: 'https://example.com/b.tar.gz', sha256: 'sha256:' + 'AB'.repeat(32) }),
    { name: 'busybox', url: 'https://example.com/b.tar.gz', sha256: 'ab'.repeat(32) });
  t.throws(() => validateCommand('image.pull', { name: 'busybox', url: 'ftp://x', sha256: 'ab'.repeat(32) }), { message: /field url .*http:\/\/, https:\/\/ or file:\/\/\// });
  t.throws(() => validateCommand('image.pull', { name: 'busybox', url: 'file:///x', sha256: 'abc' }), { message: /field sha256/ });
  t.throws(() => validateCommand('image.pull', { url: 'file:///x', sha256: 'ab'.repeat(32) }), { message: /field name is required/ });

  const run = validateCommand('container.run', { name: 'web1', image: 'busybox', limits: { memory: '64Mi', cpu: '0.5', pids: 10 }, env: { PATH: '/bin' } });
  t.same(run.limits, { memoryBytes: 64 * 2 ** 20, cpus: 0.5, pids: 10 });
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ name: '../etc', image: 'busybox' }, /container name "..\/etc" is invalid/],
    [{ name: 'web1', image: 7 }, /image name 7 is invalid/],
    [{ name: 'web1', image: 'busybox', args: 'sleep 60' }, /field args must be an array of strings, got the string "sleep 60"/],
    [{ name: 'web1', image: 'busybox', args: ['sleep', 60] }, /field args\[1\] must be a string, got number 60/],
    [{ name: 'web1', image: 'busybox', env: { A: 1 } }, /field env.A must be a string/],
    [{ name: 'web1', image: 'busybox', env: { '1A': 'x' } }, /field env has the key "1A"/],
    [{ name: 'web1', image: 'busybox', env: ['A=1'] }, /field env must be an object of strings, got an array/],
    [{ name: 'web1', image: 'busybox', limits: { memory: 'lots' } }, /field limits.memory: memory limit "lots" is not a size/],
    [{ name: 'web1', image: 'busybox', limits: { cpu: true } }, /field limits.cpu must be a number or a string, got boolean true/],
    [{ name: 'web1', image: 'busybox', limits: { pids: 0 } }, /field limits.pids: pids limit/],
    [{ name: 'web1', image: 'busybox', limits: { memroy: '1Gi' } }, /unknown field limits.memroy in container.run/],
    [{ name: 'web1', image: 'busybox', limits: 5 }, /limits must be an object, got number 5/],
    [{ name: 'web1', image: 'busybox', network: 'bridge' }, /field network must be one of "none", "host", got the string "bridge"/],
    [{ name: 'web1', image: 'busybox', restart: true }, /field restart must be one of "no", "on-failure", "always"/],
    [{ name: 'web1', image: 'busybox', models: [{ name: 'm', url: 'https://x/m', sha256: 'zz' }] }, /field models\[0\].sha256/],
    [{ name: 'web1', image: 'busybox', devices: ['gpu0'] }, /field devices\[0\] .* CDI name/],
    [{ name: 'web1', image: 'busybox', limit: {} }, /unknown field limit in container.run; known fields: name, image/],
  ];
  for (const [body, msg] of cases) t.throws(() => validateCommand('container.run', body), { code: 'BAD_REQUEST', message: msg }, JSON.stringify(body));

  t.same(validateCommand('container.stop', { name: 'web1', timeoutS: 3 }), { name: 'web1', timeoutS: 3 });
  t.throws(() => validateCommand('container.stop', { name: 'web1', timeoutS: '3' }), { message: /field timeoutS must be a whole number from 0 to 3600, got the string "3"/ });
  t.same(validateCommand('container.list', {}), { all: false });
  t.throws(() => validateCommand('container.list', { all: 'yes' }), { message: /field all must be true or false/ });
  t.same(validateCommand('container.logs', { name: 'w' }), { name: 'w', tail: 100 });
  t.throws(() => validateCommand('container.logs', { name: 'w', tail: 0 }), { message: /field tail/ });
  t.same(validateCommand('container.stop', { name: 'web1', timeoutS: null }), { name: 'web1', timeoutS: undefined }, 'null means not given');
});

t.test('layers: one reader for container.run and desired workloads (readRunBody)', async (t) => {
  const layers = [{ name: 'model', url: 'https://x/m.tar.gz', sha256: `sha256:${'AB'.repeat(32)}` }, { name: 'onnxruntime', url: 'file:///srv/ort.tar.gz', sha256: 'cd'.repeat(32) }];
  const body = { name: 'det', image: 'busybox', layers };
  const f = Fields.of(body, 'workloads[0]', 'a desired workload');
  const desired = readRunBody(f);
  f.done();
  const expected = [{ name: 'model', url: 'https://x/m.tar.gz', sha256: 'ab'.repeat(32) }, { name: 'onnxruntime', url: 'file:///srv/ort.tar.gz', sha256: 'cd'.repeat(32) }];
  t.same(desired.layers, expected, 'topmost first, digests normalised');
  t.same(validateCommand('container.run', body).layers, expected, 'container.run reads them the same way');
  t.throws(() => readRunBody(Fields.of({ name: 'd', image: 'b', layers: [{ name: 'm', url: 'http://x/m' }] }, 'workloads[2]', 'a desired workload')),
    { code: 'BAD_REQUEST', message: /field workloads\[2\]\.layers\[0\]\.sha256 is required/ });
});
