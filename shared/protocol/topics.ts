// MQTT topic names (../shared/DESIGN.md, "MQTT topics"), built and parsed in one place.
// Every level we put into a topic is checked: a '+', '#' or '/' inside a device id, verb or
// requestId would turn a publish into an illegal wildcard publish (the broker then drops the
// connection, MQTT-3.3.2-2) or make it land on another device's topic.
import { FeatherError } from '../errors.js';

export const DEFAULT_TOPIC_PREFIX = 'feather/v1';

/** Longest requestId we accept; it becomes one topic level of the reply topic. */
export const MAX_REQUEST_ID_LENGTH = 128;

// Printable ASCII without space, '/', '+', '#'. Device ids and verbs are short names.
const LEVEL_RE = /^[!-~]+$/;

/** True when `s` can be one topic level: non-empty, printable, no '/', '+', '#'. */
export function isTopicLevel(s: string, maxLength = 128): boolean {
  return s.length > 0 && s.length <= maxLength && LEVEL_RE.test(s) && !/[/+#]/.test(s);
}

export function isValidRequestId(id: unknown): id is string {
  return typeof id === 'string' && isTopicLevel(id, MAX_REQUEST_ID_LENGTH);
}

/** A topic we may publish to: non-empty, no wildcards, no NUL, at most 65535 bytes (MQTT-4.7.3). */
export function isPublishableTopic(topic: string): boolean {
  return topic.length > 0 && !/[+#\u0000]/.test(topic) && Buffer.byteLength(topic) <= 65535;
}

export type ParsedTopic =
  | { kind: 'cmd'; scope: 'device'; deviceId: string; verb: string }
  | { kind: 'cmd'; scope: 'fleet'; verb: string }
  | { kind: 'reply'; deviceId: string; requestId: string }
  | { kind: 'status' | 'inventory' | 'desired' | 'reported' | 'telemetry' | 'events'; deviceId: string };

const DEVICE_LEAVES = new Set(['status', 'inventory', 'desired', 'reported', 'telemetry', 'events']);

export class Topics {
  readonly prefix: string;
  readonly deviceId: string;

  constructor(prefix: string, deviceId: string) {
    const p = prefix.replace(/\/+$/, '');
    if (p === '' || !isPublishableTopic(p) || p.split('/').some((l) => l === '')) {
      throw new FeatherError('BAD_REQUEST', `topic prefix "${prefix}" is invalid: use levels separated by '/', without '+', '#' or empty levels (e.g. feather/v1)`);
    }
    if (!isTopicLevel(deviceId)) {
      throw new FeatherError('BAD_REQUEST', `device id "${deviceId}" cannot be an MQTT topic level: use 1-128 printable characters without spaces, '/', '+' or '#'`);
    }
    this.prefix = p;
    this.deviceId = deviceId;
  }

  private dev(leaf: string): string { return `${this.prefix}/dev/${this.deviceId}/${leaf}`; }

  get status(): string { return this.dev('status'); }
  get inventory(): string { return this.dev('inventory'); }
  get desired(): string { return this.dev('desired'); }
  get reported(): string { return this.dev('reported'); }
  get telemetry(): string { return this.dev('telemetry'); }
  get events(): string { return this.dev('events'); }
  /** Subscription filter for this device's commands. */
  get cmdFilter(): string { return this.dev('cmd/+'); }
  /** Subscription filter for this device's replies (what a controller or a person listens to). */
  get replyFilter(): string { return this.dev('reply/+'); }
  /** Subscription filter for commands to every agent. */
  get fleetCmdFilter(): string { return `${this.prefix}/fleet/cmd/+`; }

  cmd(verb: string): string { return this.dev(`cmd/${checkLevel('verb', verb)}`); }
  fleetCmd(verb: string): string { return `${this.prefix}/fleet/cmd/${checkLevel('verb', verb)}`; }
  reply(requestId: string): string {
    if (!isValidRequestId(requestId)) throw new FeatherError('BAD_REQUEST', `requestId ${JSON.stringify(requestId)} cannot be a topic level: use 1-${MAX_REQUEST_ID_LENGTH} printable characters without spaces, '/', '+' or '#'`);
    return this.dev(`reply/${requestId}`);
  }

  /** Topics of another device (the controller's view). */
  forDevice(deviceId: string): Topics { return new Topics(this.prefix, deviceId); }

  /** Parse a topic under this prefix; undefined when it is not one of ours. */
  parse(topic: string): ParsedTopic | undefined {
    if (!topic.startsWith(this.prefix + '/')) return undefined;
    const rest = topic.slice(this.prefix.length + 1).split('/');
    if (rest[0] === 'fleet' && rest[1] === 'cmd' && rest.length === 3 && rest[2] !== '') {
      return { kind: 'cmd', scope: 'fleet', verb: rest[2] as string };
    }
    if (rest[0] !== 'dev' || rest.length < 3) return undefined;
    const deviceId = rest[1] as string;
    const leaf = rest[2] as string;
    if (deviceId === '') return undefined;
    if (rest.length === 4 && leaf === 'cmd' && rest[3] !== '') return { kind: 'cmd', scope: 'device', deviceId, verb: rest[3] as string };
    if (rest.length === 4 && leaf === 'reply' && rest[3] !== '') return { kind: 'reply', deviceId, requestId: rest[3] as string };
    if (rest.length === 3 && DEVICE_LEAVES.has(leaf)) return { kind: leaf as 'status', deviceId };
    return undefined;
  }
}

function checkLevel(what: string, value: string): string {
  if (!isTopicLevel(value)) throw new FeatherError('BAD_REQUEST', `${what} "${value}" cannot be an MQTT topic level`);
  return value;
}
