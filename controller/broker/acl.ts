// Who may do what on the broker (deny by default). Pure functions over topic strings, used by
// the embedded broker's aedes hooks and, as filter lists, to write Mosquitto's ACL file, so both
// modes enforce the same rules:
//   admin   (username "admin", the admin token): everything;
//   device  (username = its id, a token from `featherctl device add ID`):
//           publish   <prefix>/dev/<id>/{status,inventory,reported,telemetry,events} and reply/#
//           subscribe <prefix>/dev/<id>/cmd/#, <prefix>/dev/<id>/desired, <prefix>/fleet/cmd/#
//           (or any narrower filter, e.g. cmd/+), and nothing else: not another device's topics,
//           not the fleet's status, not $SYS.
import { isTopicLevel } from '../../shared/protocol/topics.js';

export const ADMIN_USERNAME = 'admin';

export type Identity = { kind: 'admin' } | { kind: 'device'; deviceId: string };

export const ADMIN: Identity = { kind: 'admin' };

export interface Grants {
  publish: string[];
  subscribe: string[];
}

export const DEVICE_PUBLISH_LEAVES = ['status', 'inventory', 'reported', 'telemetry', 'events', 'reply/#'] as const;
export const DEVICE_SUBSCRIBE_LEAVES = ['cmd/#', 'desired'] as const;

/** The filters a device may publish to and subscribe with. */
export function deviceGrants(prefix: string, deviceId: string): Grants {
  const dev = `${prefix}/dev/${deviceId}`;
  return {
    publish: DEVICE_PUBLISH_LEAVES.map((l) => `${dev}/${l}`),
    subscribe: [...DEVICE_SUBSCRIBE_LEAVES.map((l) => `${dev}/${l}`), `${prefix}/fleet/cmd/#`],
  };
}

/** A device id the broker accepts as a username: one topic level, and not the admin's name. */
export function isValidDeviceId(id: string): boolean {
  return isTopicLevel(id) && id !== ADMIN_USERNAME;
}

/** A well-formed filter: '#' only as the whole last level, '+' only as a whole level. */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((l, i) => (l.includes('#') ? l === '#' && i === levels.length - 1 : !l.includes('+') || l === '+'));
}

/** MQTT matching of a topic name by a filter (MQTT-4.7), including the '$' rule. */
export function topicMatches(filter: string, topic: string): boolean {
  if (!isValidFilter(filter) || topic.length === 0 || /[+#]/.test(topic)) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true; // also matches the parent level (MQTT-4.7.1-2)
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** True when every topic `filter` matches is also matched by `allowed`. */
export function filterCovers(allowed: string, filter: string): boolean {
  if (!isValidFilter(allowed) || !isValidFilter(filter)) return false;
  const a = allowed.split('/');
  const f = filter.split('/');
  for (let i = 0; i < a.length; i++) {
    const al = a[i];
    if (al === '#') return true;
    const fl = f[i];
    if (fl === undefined) return false;
    if (fl === '#') return false; // filter reaches deeper than `allowed` allows
    if (al === '+') continue;
    if (fl === '+' || fl !== al) return false;
  }
  return f.length === a.length;
}

export class Acl {
  constructor(readonly prefix: string) {}

  grants(identity: Identity): Grants | 'all' {
    return identity.kind === 'admin' ? 'all' : deviceGrants(this.prefix, identity.deviceId);
  }

  canPublish(identity: Identity, topic: string): boolean {
    const g = this.grants(identity);
    if (g === 'all') return true;
    return g.publish.some((f) => topicMatches(f, topic));
  }

  canSubscribe(identity: Identity, filter: string): boolean {
    const g = this.grants(identity);
    if (g === 'all') return isValidFilter(filter);
    return g.subscribe.some((a) => filterCovers(a, filter));
  }

  /**
   * Client ids a device may use, so it can neither take over another client's session nor
   * disconnect it: `feather-agent-<id>` (the agent's), `<id>/<anything>` (tools run for that
   * device; ids cannot contain '/', so this cannot collide), or none at all (the broker picks
   * a random one; only with a clean session). Admins may use any.
   */
  clientIdAllowed(identity: Identity, clientId: string, clean: boolean): boolean {
    if (identity.kind === 'admin') return true;
    const id = identity.deviceId;
    if (clientId === '') return clean;
    return clientId === `feather-agent-${id}` || (clientId.startsWith(`${id}/`) && clientId.length > id.length + 1);
  }
}
