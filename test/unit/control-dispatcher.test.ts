// The dispatcher without a broker: messages in, publishes captured. The ContainerRuntime here is
// a counting test double (how many times did a verb really run?); the real runtime is driven in
// test/integration/control-containers.test.ts.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { Dispatcher, requestIdFromCorrelation, type CommandRecord } from '../../agent/control/dispatcher.js';
import { EventPublisher } from '../../agent/control/events.js';
import type { ImagesApi } from '../../agent/control/executors.js';
import { KeyedMutex } from '../../agent/control/keyed-mutex.js';
import type { IncomingMessage, PublishOptions } from '../../agent/control/mqtt.js';
import { ReplyCache } from '../../agent/control/reply-cache.js';
import type { ContainerRuntime } from '../../agent/runtime/api.js';
import type { ContainerInfo, RunRequest } from '../../agent/runtime/types.js';
import { FeatherError } from '../../shared/errors.js';
import { configureLogging, createLogger } from '../../shared/logging.js';
import { decodeReplyProto, encodeCommandProto } from '../../shared/protocol/proto.js';
import { Topics } from '../../shared/protocol/topics.js';

const logLines: string[] = [];
configureLogging({ level: 'debug', sink: (l) => logLines.push(l) });

interface Published { topic: string; payload: string | Buffer; opts: PublishOptions }

class CountingRuntime implements ContainerRuntime {
  calls: Array<{ verb: string; name: string; at: number; end?: number }> = [];
  delayMs = 0;
  failWith: Error | undefined;
  private readonly containers = new Map<string, ContainerInfo>();

  private async track<T>(verb: string, name: string, fn: () => T): Promise<T> {
    const call: { verb: string; name: string; at: number; end?: number } = { verb, name, at: performance.now() };
    this.calls.push(call);
    if (this.delayMs > 0) await sleep(this.delayMs);
    call.end = performance.now();
    if (this.failWith) throw this.failWith;
    return fn();
  }
  count(verb: string): number { return this.calls.filter((c) => c.verb === verb).length; }

  run(req: RunRequest) {
    return this.track('run', req.name, () => {
      this.containers.set(req.name, {
        name: req.name, image: req.image, imageSha256: 'ab'.repeat(32), status: 'running', pid: 4242, exitCode: undefined, oomKilled: false,
        createdAt: 1, startedAt: 2, finishedAt: undefined, limits: { memoryBytes: 1, cpus: 1, pids: 1 }, args: req.args ?? [], restart: 'no', restarts: 0, labels: {},
      });
      return { name: req.name, pid: 4242, startedAt: 2 };
    });
  }
  start(name: string) { return this.track('start', name, () => ({ name, pid: 1, startedAt: 1 })); }
  stop(name: string) { return this.track('stop', name, () => ({ name, exitCode: 0 })); }
  remove(name: string) { return this.track('remove', name, () => ({ name, exitCode: 0 })); }
  list() { return [...this.containers.values()]; }
  inspect(name: string): ContainerInfo {
    const c = this.containers.get(name);
    if (!c) throw new FeatherError('NOT_FOUND', `no container ${name}`);
    return c;
  }
  logs(name: string) { return this.track('logs', name, () => ['hello']); }
  usage() { return undefined; }
  async gc() { return { reaped: [], cgroups: [], tmp: [] }; }
  onExit() { return () => undefined; }
}

const images: ImagesApi = {
  list: async () => [],
  get: () => undefined,
  pull: async () => { throw new FeatherError('PULL_FAILED', 'no network here'); },
  remove: async () => undefined,
  ensureModel: async () => '/nowhere',
};

async function setup(opts: { maxPayloadBytes?: number; inventory?: () => unknown } = {}) {
  const topics = new Topics('feather/v1', 'dev1');
  const published: Published[] = [];
  const records: CommandRecord[] = [];
  const publish = async (topic: string, payload: string | Buffer, o: PublishOptions) => { published.push({ topic, payload, opts: o }); };
  const logger = createLogger('test');
  const events = new EventPublisher(topics, publish, logger);
  const runtime = new CountingRuntime();
  const cache = await ReplyCache.open({ file: undefined, logger });
  const dispatcher = new Dispatcher({
    topics, maxPayloadBytes: opts.maxPayloadBytes ?? 4096, cache, publish, events, logger,
    onCommand: (r) => records.push(r),
    context: { runtime, images, inventory: opts.inventory ?? (() => ({ id: 'dev1' })), events, devices: undefined, logger, signal: new AbortController().signal },
  });
  const send = async (verb: string, payload: string | Buffer, extra: Partial<IncomingMessage> = {}) => {
    dispatcher.handle({
      topic: extra.topic ?? topics.cmd(verb), payload: typeof payload === 'string' ? Buffer.from(payload) : payload, retain: false,
      responseTopic: undefined, correlationData: undefined, contentType: undefined, ...extra,
    });
    await dispatcher.drain();
  };
  const replies = (id: string) => published.filter((p) => p.topic === topics.reply(id)).map((p) => JSON.parse(String(p.payload)) as Record<string, unknown>);
  const eventsOut = () => published.filter((p) => p.topic === topics.events).map((p) => JSON.parse(String(p.payload)) as Record<string, unknown>);
  return { topics, published, records, runtime, dispatcher, send, replies, eventsOut };
}

t.test('ping answers on reply/{requestId} with QoS 1', async (t) => {
  const s = await setup();
  await s.send('ping', '{"requestId":"r1"}');
  const [reply] = s.replies('r1');
  t.match(reply, { requestId: 'r1', ok: true, result: { pong: true, ts: Number } });
  t.equal(s.published[0]?.opts.qos, 1);
  t.equal(s.published[0]?.opts.properties?.contentType, 'application/json');
  t.same(s.records.map((r) => [r.verb, r.outcome]), [['ping', 'ok']]);
});

t.test('a repeated requestId is answered again and not executed twice', async (t) => {
  const s = await setup();
  const cmd = '{"requestId":"run-1","name":"web1","image":"busybox"}';
  await s.send('container.run', cmd);
  await s.send('container.run', cmd);
  t.equal(s.runtime.count('run'), 1, 'executed once');
  const rs = s.replies('run-1');
  t.equal(rs.length, 2, 'answered twice');
  t.same(rs[0], rs[1]);
  t.same(rs[0], { requestId: 'run-1', ok: true, result: { name: 'web1', pid: 4242, startedAt: 2 } });
  t.same(s.records.map((r) => r.outcome), ['ok', 'replayed']);

  // …also while the first is still running
  s.runtime.delayMs = 100;
  const stop = '{"requestId":"stop-1","name":"web1"}';
  const a = s.send('container.stop', stop);
  await sleep(10);
  const b = s.send('container.stop', stop);
  await Promise.all([a, b]);
  t.equal(s.runtime.count('stop'), 1);
  t.equal(s.replies('stop-1').length, 2);
});

t.test('commands on one container run one at a time, on different ones together', async (t) => {
  const s = await setup();
  s.runtime.delayMs = 80;
  const started = performance.now();
  await Promise.all([
    s.send('container.stop', '{"requestId":"s1","name":"a"}'),
    s.send('container.logs', '{"requestId":"s2","name":"a"}'),
    s.send('container.stop', '{"requestId":"s3","name":"b"}'),
  ]);
  const elapsed = performance.now() - started;
  const onA = s.runtime.calls.filter((c) => c.name === 'a').sort((x, y) => x.at - y.at);
  t.equal(onA.length, 2);
  t.ok((onA[1]?.at ?? 0) >= (onA[0]?.end ?? Infinity), 'the second command on a started after the first ended');
  const onB = s.runtime.calls.find((c) => c.name === 'b');
  t.ok((onB?.at ?? Infinity) < (onA[0]?.end ?? 0), 'b ran alongside a');
  t.ok(elapsed < 400, `three commands, two lanes: ${elapsed.toFixed(0)} ms`);
});

t.test('bad input gets the right error reply, or an event when no requestId can be read', async (t) => {
  const s = await setup({ maxPayloadBytes: 256 });
  await s.send('container.explode', '{"requestId":"u1"}');
  t.match(s.replies('u1')[0], { ok: false, error: { code: 'UNKNOWN_VERB', message: /unknown verb "container.explode"; this agent knows ping, inventory/ } });
  await s.send('container.run', '{"requestId":"b1","name":"web1","image":"busybox","args":"sleep"}');
  t.match(s.replies('b1')[0], { ok: false, error: { code: 'BAD_REQUEST', message: /field args must be an array of strings/ } });
  await s.send('container.run', '{"requestId":"b2","name":"bad/name","image":"busybox"}');
  t.match(s.replies('b2')[0], { error: { code: 'BAD_REQUEST', message: /container name "bad\/name" is invalid/ } });
  await s.send('ping', '{"requestId":"t1","x":');
  t.match(s.replies('t1')[0], { error: { code: 'BAD_REQUEST', message: /not valid JSON/ } });
  await s.send('ping', `{"requestId":"o1","pad":"${'x'.repeat(300)}"}`);
  t.match(s.replies('o1')[0], { error: { code: 'BAD_REQUEST', message: /above this agent's limit of 256/ } });
  t.equal(s.runtime.calls.length, 0, 'nothing reached the runtime');

  const before = s.published.length;
  await s.send('ping', 'not json');
  await s.send('ping', '[1,2]');
  await s.send('ping', '{"verb":"ping"}');
  await s.send('ping', '{"requestId":17}');
  await s.send('ping', Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]));
  const evs = s.eventsOut();
  t.equal(s.published.length - before, 5, 'one event each, no reply');
  t.ok(evs.every((e) => e['type'] === 'command.rejected' && e['deviceId'] === 'dev1' && typeof e['reason'] === 'string'));
  t.match(evs.map((e) => e['reason']), [/neither JSON/, /an array, not a JSON object/, /requestId is missing/, /requestId must be a string, got number 17/, /neither JSON/]);
  t.match(logLines.filter((l) => l.includes('"command.rejected"')).length, 5, 'and a log line each');

  await s.send('ping', '{"requestId":"after"}');
  t.match(s.replies('after')[0], { ok: true }, 'still answering');
});

t.test('runtime errors become replies with their code; unexpected ones INTERNAL', async (t) => {
  const s = await setup();
  await s.send('container.logs', '{"requestId":"n1","name":"ghost"}');
  t.match(s.replies('n1')[0], { ok: true, result: { lines: ['hello'] } });
  await s.send('container.rm', '{"requestId":"n2","name":"ghost"}');
  t.match(s.replies('n2')[0], { ok: false, error: { code: 'NOT_FOUND', message: 'no container ghost' } });
  s.runtime.failWith = new Error('boom');
  await s.send('container.stop', '{"requestId":"n3","name":"x"}');
  t.match(s.replies('n3')[0], { ok: false, error: { code: 'INTERNAL', message: 'boom' } });
  await s.send('image.pull', `{"requestId":"p1","name":"bb","url":"https://example.com/bb.tar.gz","sha256":"${'a'.repeat(64)}"}`);
  t.match(s.replies('p1')[0], { ok: false, error: { code: 'PULL_FAILED' } });
  t.match(s.eventsOut().find((e) => e['type'] === 'pull.failed'), { name: 'bb', code: 'PULL_FAILED' });
  await s.send('container.run', '{"requestId":"d1","name":"w","image":"busybox","devices":["nvidia.com/gpu=0"]}');
  t.match(s.replies('d1')[0], { ok: false, error: { code: 'NOT_FOUND', message: /no device registry/ } });
});

t.test('a result that cannot be encoded is answered INTERNAL, not dropped', async (t) => {
  const s = await setup({ inventory: () => ({ big: 10n }) });
  await s.send('inventory', '{"requestId":"enc-1"}');
  t.match(s.replies('enc-1')[0], { requestId: 'enc-1', ok: false, error: { code: 'INTERNAL', message: /could not be encoded as json/ } });
});

t.test('MQTT 5: response topic and correlation data are honoured', async (t) => {
  const s = await setup();
  const corr = Buffer.from('corr-7');
  await s.send('ping', '{}', { responseTopic: 'ctl/replies/x', correlationData: corr });
  const out = s.published.find((p) => p.topic === 'ctl/replies/x');
  t.ok(out, 'published on the response topic');
  t.same(out?.opts.properties?.correlationData, corr);
  t.match(JSON.parse(String(out?.payload)), { requestId: 'corr-7', ok: true }, 'requestId from the correlation data');

  await s.send('ping', '{"requestId":"j1"}', { responseTopic: 'ctl/replies/y', correlationData: Buffer.from([0xff, 0x00]) });
  t.match(JSON.parse(String(s.published.find((p) => p.topic === 'ctl/replies/y')?.payload)), { requestId: 'j1' }, 'the JSON requestId wins');

  await s.send('ping', '{"x":1}', { responseTopic: 'ctl/replies/z' });
  t.match(JSON.parse(String(s.published.find((p) => p.topic === 'ctl/replies/z')?.payload)), { requestId: null, ok: false, error: { code: 'BAD_REQUEST' } },
    'no requestId, but a place to say so');

  await s.send('ping', '{"requestId":"w1"}', { responseTopic: 'ctl/+/bad' });
  t.equal(s.replies('w1').length, 1, 'a wildcard response topic is not published to; the reply topic is used');

  t.equal(requestIdFromCorrelation(Buffer.from([1, 2, 255])), '0x0102ff');
  t.equal(requestIdFromCorrelation(Buffer.alloc(0)), undefined);
});

t.test('protobuf in, protobuf out (content type application/x-protobuf)', async (t) => {
  const s = await setup();
  await s.send('ping', encodeCommandProto('ping', 'pb1'), { contentType: 'application/x-protobuf' });
  const out = s.published.find((p) => p.topic === s.topics.reply('pb1'));
  t.equal(out?.opts.properties?.contentType, 'application/x-protobuf');
  t.ok(Buffer.isBuffer(out?.payload));
  t.match(decodeReplyProto(out?.payload as Buffer), { requestId: 'pb1', ok: true, result: { pong: true, ts: Number } });
  // the same id again, as JSON: the first reply, in the encoding of the asker
  await s.send('ping', '{"requestId":"pb1"}');
  const again = s.published.filter((p) => p.topic === s.topics.reply('pb1'))[1];
  t.equal(again?.opts.properties?.contentType, 'application/json');
  t.same(JSON.parse(String(again?.payload)), decodeReplyProto(out?.payload as Buffer));
});

t.test('another device\'s topic, retained commands: ignored with a log line', async (t) => {
  const s = await setup();
  logLines.length = 0;
  await s.send('ping', '{"requestId":"x1"}', { topic: 'feather/v1/dev/other/cmd/ping' });
  t.equal(s.published.length, 0);
  t.match(logLines.join('\n'), /command.ignored.*addressed to device other/);
  await s.send('ping', '{"requestId":"x2"}', { retain: true });
  t.equal(s.replies('x2').length, 0);
  t.match(s.eventsOut()[0], { type: 'command.rejected', reason: /retained commands are ignored/ });
  await s.send('ping', '{"requestId":"f1"}', { topic: 'feather/v1/fleet/cmd/ping' });
  t.match(s.replies('f1')[0], { ok: true }, 'fleet commands reply on the device\'s own reply topic');
});

t.test('keyed mutex: FIFO per key, multi-key without deadlock, released on failure', async (t) => {
  const m = new KeyedMutex();
  const order: string[] = [];
  const job = (name: string, ms: number, fail = false) => async () => { order.push(`${name}>`); await sleep(ms); order.push(`<${name}`); if (fail) throw new Error(name); return name; };
  const results = await Promise.allSettled([
    m.run(['a', 'b'], job('ab', 30, true)),
    m.run(['b', 'a'], job('ba', 10)),
    m.run(['c'], job('c', 5)),
  ]);
  t.equal(results[0]?.status, 'rejected');
  t.equal(results[1]?.status, 'fulfilled');
  t.same(order.filter((x) => x.includes('a')), ['ab>', '<ab', 'ba>', '<ba']);
  t.ok(order.indexOf('c>') < order.indexOf('<ab'), 'c did not wait');
  t.same(m.busyKeys, [], 'nothing left held');
});
