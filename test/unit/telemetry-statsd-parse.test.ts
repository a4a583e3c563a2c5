import t from 'tap';
import { parseStatsdDatagram, parseStatsdLine, STATSD_LIMITS, type StatsdSample } from '../../agent/telemetry/statsd-parse.js';

function sample(line: string): StatsdSample {
  const r = parseStatsdLine(line);
  if (r.kind !== 'sample') throw new Error(`${line}: ${r.kind === 'malformed' ? r.reason : r.kind}`);
  return r.sample;
}

t.test('the contract example: a timer with a model tag', async (t) => {
  const s = sample('inference.latency:12.7|ms|#model:resnet18');
  t.equal(s.name, 'inference.latency');
  t.equal(s.type, 'timer');
  t.same(s.values, [12.7]);
  t.equal(s.sampleRate, 1);
  t.same({ ...s.tags }, { model: 'resnet18' });
  t.equal(s.gaugeDelta, false);
});

t.test('every type', async (t) => {
  t.equal(sample('a:1|c').type, 'counter');
  t.equal(sample('a:1|g').type, 'gauge');
  t.equal(sample('a:1|ms').type, 'timer');
  t.equal(sample('a:1|h').type, 'histogram');
  t.equal(sample('a:1|d').type, 'distribution');
});

t.test('sample rate, several tags, valueless tags, tag order with rate', async (t) => {
  const s = sample('inference.latency:5|ms|@0.5|#model:yolo,env:prod,canary');
  t.equal(s.sampleRate, 0.5);
  t.same({ ...s.tags }, { model: 'yolo', env: 'prod', canary: '' });
  const r = sample('x:1|c|#a:b|@0.25');
  t.equal(r.sampleRate, 0.25);
  t.same({ ...r.tags }, { a: 'b' });
  // a tag value may itself hold colons (DogStatsD splits at the first)
  t.same({ ...sample('x:1|c|#url:http://h:80/p').tags }, { url: 'http://h:80/p' });
});

t.test('numbers: negative, exponent, leading dot; gauge deltas', async (t) => {
  t.same(sample('a:-3|c').values, [-3]);
  t.same(sample('a:1e3|ms').values, [1000]);
  t.same(sample('a:.5|ms').values, [0.5]);
  t.equal(sample('a:+4|g').gaugeDelta, true);
  t.equal(sample('a:-4|g').gaugeDelta, true);
  t.equal(sample('a:4|g').gaugeDelta, false);
});

t.test('DogStatsD 1.1 packed values and newer sections', async (t) => {
  t.same(sample('inference.latency:1:2:3.5|ms|#model:m').values, [1, 2, 3.5]);
  const s = sample('inference.latency:9|d|#model:m|c:ci-0123456789abcdef|T1656581400|card:low');
  t.same(s.values, [9]);
  t.same({ ...s.tags }, { model: 'm' });
});

t.test('tags cannot reach the prototype', async (t) => {
  const s = sample('a:1|c|#__proto__:x,constructor:y');
  t.equal(Object.getPrototypeOf(s.tags), null);
  t.equal(s.tags['__proto__'], 'x');
  t.equal(({} as Record<string, unknown>)['x'], undefined);
});

t.test('sets, events and service checks are ignored, not malformed', async (t) => {
  t.equal(parseStatsdLine('users:alice|s').kind, 'ignored');
  t.equal(parseStatsdLine('_e{5,4}:title|text|#a:b').kind, 'ignored');
  t.equal(parseStatsdLine('_sc|redis.up|0').kind, 'ignored');
});

t.test('malformed lines', async (t) => {
  const bad = [
    'nocolon|c', 'a:1', 'a:|c', ':1|c', 'a:x|c', 'a:1|zz', 'a:1|c|@0', 'a:1|c|@1.5', 'a:1|c|@x',
    'a:1|c|', 'a:1|c|#:v', 'a b:1|c', '9a:1|c', 'a:NaN|c', 'a:Infinity|ms', 'a:1|c|!x', 'a:1e999|ms',
    'a'.repeat(STATSD_LIMITS.nameMaxLength + 1) + ':1|c',
    'a:1|c|#' + Array.from({ length: STATSD_LIMITS.tagsMax + 1 }, (_, i) => `t${i}:v`).join(','),
    'a:' + Array.from({ length: STATSD_LIMITS.valuesMax + 1 }, () => '1').join(':') + '|ms',
  ];
  for (const line of bad) t.equal(parseStatsdLine(line).kind, 'malformed', line.slice(0, 60));
});

t.test('a datagram of several lines: good ones kept, bad ones counted', async (t) => {
  const dgram = Buffer.from([
    'inference.latency:10|ms|#model:a',
    '',
    'garbage',
    'inference.latency:20|ms|#model:b\r',
    'users:bob|s',
    'requests:1|c',
    'inference.latency:oops|ms',
    '',
  ].join('\n'));
  const r = parseStatsdDatagram(dgram);
  t.same(r.samples.map((s) => [s.name, s.values[0], s.tags['model']]), [
    ['inference.latency', 10, 'a'],
    ['inference.latency', 20, 'b'],
    ['requests', 1, undefined],
  ]);
  t.equal(r.malformed, 2);
  t.equal(r.ignored, 1);
});

t.test('binary junk never throws, and every line is accounted for', async (t) => {
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const alphabet = 'ab:|#@,.\n\r0123456789msgcdh-+_e';
  const mismatches: string[] = [];
  for (let i = 0; i < 500; i++) {
    const text = i % 2 === 0
      ? Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 300) }, () => Math.floor(rand() * 256))).toString('utf8')
      : Array.from({ length: 1 + Math.floor(rand() * 120) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
    const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)).filter((l) => l.length > 0).length;
    const r = parseStatsdDatagram(text);
    if (r.samples.length + r.malformed + r.ignored !== lines) mismatches.push(JSON.stringify(text));
  }
  t.same(mismatches, []);
});
