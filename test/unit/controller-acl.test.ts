// The broker's authorization rules (controller/broker/acl.ts): a topic ACL matrix for admin,
// a device on its own topics and on another device's, wildcard filters, and client ids.
import t from 'tap';
import { ADMIN, Acl, filterCovers, isValidDeviceId, isValidFilter, topicMatches, type Identity } from '../../controller/broker/acl.js';

const acl = new Acl('feather/v1');
const A: Identity = { kind: 'device', deviceId: 'A' };
const P = 'feather/v1/dev';

t.test('publish matrix: a device publishes only its own status, inventory, reported, telemetry, events, reply/#', async (t) => {
  const rows: Array<[string, boolean]> = [
    [`${P}/A/status`, true], [`${P}/A/inventory`, true], [`${P}/A/reported`, true], [`${P}/A/telemetry`, true],
    [`${P}/A/events`, true], [`${P}/A/reply/r1`, true], [`${P}/A/reply/x/y`, true],
    [`${P}/A/desired`, false], [`${P}/A/cmd/ping`, false], [`${P}/A/other`, false], [`${P}/A/status/x`, false],
    [`${P}/B/status`, false], [`${P}/B/reply/r1`, false], [`${P}/B/cmd/ping`, false], [`${P}/AB/status`, false],
    ['feather/v1/fleet/cmd/ping', false], ['feather/v2/dev/A/status', false], ['other/topic', false], ['$SYS/x', false],
  ];
  for (const [topic, allowed] of rows) {
    t.equal(acl.canPublish(A, topic), allowed, `A publish ${topic}`);
    t.equal(acl.canPublish(ADMIN, topic), true, `admin publish ${topic}`);
  }
});

t.test('subscribe matrix: own cmd/#, desired and fleet/cmd/#, or narrower; nothing of others', async (t) => {
  const rows: Array<[string, boolean]> = [
    [`${P}/A/cmd/#`, true], [`${P}/A/cmd/+`, true], [`${P}/A/cmd/ping`, true], [`${P}/A/cmd`, true],
    [`${P}/A/desired`, true], ['feather/v1/fleet/cmd/#', true], ['feather/v1/fleet/cmd/+', true], ['feather/v1/fleet/cmd/ping', true],
    [`${P}/A/#`, false], [`${P}/A/+`, false], [`${P}/A/status`, false], [`${P}/A/reply/#`, false], [`${P}/A/cmd/+/x`, true],
    [`${P}/B/cmd/#`, false], [`${P}/B/desired`, false], [`${P}/+/cmd/#`, false], [`${P}/+/desired`, false],
    ['#', false], ['feather/#', false], ['feather/v1/fleet/#', false], ['feather/v1/fleet/+/+', false], ['$SYS/#', false], ['+/v1/dev/A/desired', false],
  ];
  for (const [filter, allowed] of rows) t.equal(acl.canSubscribe(A, filter), allowed, `A subscribe ${filter}`);
  t.equal(acl.canSubscribe(ADMIN, '#'), true);
  t.equal(acl.canSubscribe(ADMIN, 'a/#/b'), false, 'a malformed filter is refused even for admin');
});

t.test('client ids: a device cannot take over another client session', async (t) => {
  t.ok(acl.clientIdAllowed(A, 'feather-agent-A', false));
  t.ok(acl.clientIdAllowed(A, 'A/sub1', true));
  t.ok(acl.clientIdAllowed(A, '', true), 'empty id: the broker picks a random one');
  t.notOk(acl.clientIdAllowed(A, '', false), 'empty id needs a clean session');
  t.notOk(acl.clientIdAllowed(A, 'feather-agent-B', false));
  t.notOk(acl.clientIdAllowed(A, 'B/sub', true));
  t.notOk(acl.clientIdAllowed(A, 'A/', true));
  t.notOk(acl.clientIdAllowed(A, 'A', true));
  t.notOk(acl.clientIdAllowed(A, 'feather-controller', true));
  t.notOk(acl.clientIdAllowed({ kind: 'device', deviceId: 'feather-agent-B' }, 'feather-agent-B', true), 'a device named like an agent client id gets no bare id');
  t.ok(acl.clientIdAllowed(ADMIN, 'feather-controller', false));
});

t.test('MQTT matching and filter coverage', async (t) => {
  t.ok(topicMatches('a/#', 'a'));
  t.ok(topicMatches('a/#', 'a/b/c'));
  t.ok(topicMatches('a/+/c', 'a/b/c'));
  t.notOk(topicMatches('a/+', 'a/b/c'));
  t.notOk(topicMatches('#', '$SYS/x'));
  t.notOk(topicMatches('a/b', 'a/+'), 'a topic name with a wildcard is no topic');
  t.ok(filterCovers('a/#', 'a/+/c'));
  t.ok(filterCovers('a/+', 'a/b'));
  t.notOk(filterCovers('a/+', 'a/#'));
  t.notOk(filterCovers('a/b', 'a/+'));
  t.notOk(filterCovers('a/+/c', 'a/+/+'));
  t.ok(isValidFilter('a/+/#'));
  for (const bad of ['a/b#', 'a/#/b', 'a+/b', '']) t.notOk(isValidFilter(bad), bad);
  t.notOk(isValidDeviceId('admin'));
  t.notOk(isValidDeviceId('a/b'));
  t.ok(isValidDeviceId('edge-01'));
});
