import t from 'tap';
import { Topics, isPublishableTopic, isValidRequestId } from '../../shared/protocol/topics.js';

t.test('builds every topic of the contract under the prefix', async (t) => {
  const tp = new Topics('feather/v1', 'edge-01');
  t.equal(tp.status, 'feather/v1/dev/edge-01/status');
  t.equal(tp.inventory, 'feather/v1/dev/edge-01/inventory');
  t.equal(tp.desired, 'feather/v1/dev/edge-01/desired');
  t.equal(tp.reported, 'feather/v1/dev/edge-01/reported');
  t.equal(tp.telemetry, 'feather/v1/dev/edge-01/telemetry');
  t.equal(tp.events, 'feather/v1/dev/edge-01/events');
  t.equal(tp.cmd('container.run'), 'feather/v1/dev/edge-01/cmd/container.run');
  t.equal(tp.reply('r1'), 'feather/v1/dev/edge-01/reply/r1');
  t.equal(tp.cmdFilter, 'feather/v1/dev/edge-01/cmd/+');
  t.equal(tp.replyFilter, 'feather/v1/dev/edge-01/reply/+');
  t.equal(tp.fleetCmd('ping'), 'feather/v1/fleet/cmd/ping');
  t.equal(tp.fleetCmdFilter, 'feather/v1/fleet/cmd/+');
  t.equal(new Topics('acme/feather/', 'x').status, 'acme/feather/dev/x/status', 'a trailing slash is dropped');
});

t.test('parses what it builds, and nothing else', async (t) => {
  const tp = new Topics('a/b', 'd1');
  t.same(tp.parse('a/b/dev/d1/cmd/ping'), { kind: 'cmd', scope: 'device', deviceId: 'd1', verb: 'ping' });
  t.same(tp.parse('a/b/dev/other/cmd/ping'), { kind: 'cmd', scope: 'device', deviceId: 'other', verb: 'ping' });
  t.same(tp.parse('a/b/fleet/cmd/image.pull'), { kind: 'cmd', scope: 'fleet', verb: 'image.pull' });
  t.same(tp.parse('a/b/dev/d1/reply/r9'), { kind: 'reply', deviceId: 'd1', requestId: 'r9' });
  t.same(tp.parse('a/b/dev/d1/desired'), { kind: 'desired', deviceId: 'd1' });
  for (const bad of ['a/b/dev/d1/cmd/', 'a/b/dev/d1/cmd/x/y', 'a/bb/dev/d1/status', 'x/dev/d1/status', 'a/b/dev//status', 'a/b/dev/d1/nope', 'a/b/fleet/cmd']) {
    t.equal(tp.parse(bad), undefined, bad);
  }
});

t.test('refuses ids and prefixes that would make wildcard or foreign topics', async (t) => {
  t.throws(() => new Topics('feather/v1', 'a/b'), { code: 'BAD_REQUEST' });
  t.throws(() => new Topics('feather/v1', 'dev+'), { code: 'BAD_REQUEST' });
  t.throws(() => new Topics('feather/v1', ''), { code: 'BAD_REQUEST' });
  t.throws(() => new Topics('feather/#', 'x'), { code: 'BAD_REQUEST' });
  t.throws(() => new Topics('a//b', 'x'), { code: 'BAD_REQUEST' });
  const tp = new Topics('feather/v1', 'x');
  t.throws(() => tp.reply('a/b'), { code: 'BAD_REQUEST' });
  t.throws(() => tp.cmd('#'), { code: 'BAD_REQUEST' });
  t.ok(isValidRequestId('0f1e-2d3c:r.1_x'));
  for (const bad of ['', 'a b', 'a/b', 'x+', '#', 'x'.repeat(129), 'é', 5, null]) t.notOk(isValidRequestId(bad), String(bad));
  t.ok(isPublishableTopic('clients/ctl-1/replies'));
  t.notOk(isPublishableTopic('clients/+/replies'));
  t.notOk(isPublishableTopic(''));
});
