// The control plane's JSON shapes (../shared/DESIGN.md, "Commands"), as TypeScript. The inventory
// is inventory.ts's; the desired and reported documents are desired.ts's and reported.ts's.
import type { ErrorCode } from '../errors.js';
import type { Limits } from '../limits.js';

export const VERBS = [
  'ping',
  'inventory',
  'image.pull',
  'image.list',
  'image.rm',
  'container.run',
  'container.stop',
  'container.rm',
  'container.list',
  'container.logs',
] as const;

export type Verb = (typeof VERBS)[number];

export function isVerb(s: string): s is Verb {
  return (VERBS as readonly string[]).includes(s);
}

export interface ReplyError {
  code: ErrorCode;
  message: string;
}

/** What the agent publishes on reply/{requestId}. requestId is null only when none could be read (MQTT 5 response topic). */
export type Reply =
  | { requestId: string | null; ok: true; result: unknown }
  | { requestId: string | null; ok: false; error: ReplyError };

export type RestartPolicy = 'no' | 'on-failure' | 'always';
export type NetworkMode = 'none' | 'host';

/** The fields container.run (and a desired workload) shares with the runtime's RunRequest (agent/runtime/types.ts). */
export interface ContainerRunFields {
  name: string;
  image: string;
  /** Command and arguments; empty = the image's default shell (/bin/sh). */
  args?: string[] | undefined;
  env?: Record<string, string> | undefined;
  limits?: Partial<Limits> | undefined;
  network?: NetworkMode | undefined;
  restart?: RestartPolicy | undefined;
}

export type Encoding = 'json' | 'protobuf';

export const CONTENT_TYPE_JSON = 'application/json';
export const CONTENT_TYPE_PROTOBUF = 'application/x-protobuf';

/** The retained status message; the will carries online:false. */
export interface Status {
  online: boolean;
  ts: number;
  agentVersion?: string;
  reason?: string;
}

/** The events the control plane itself publishes; other parts add theirs (container.restarted, desired.rejected…). */
export const EVENT_TYPES = ['container.exited', 'container.oom', 'image.pulled', 'pull.failed', 'command.rejected'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** Event type names: dotted lower-case words ("container.exited"). */
export const EVENT_TYPE_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;

/** One message on the events topic. */
export interface FeatherEvent {
  type: string;
  ts: number;
  deviceId: string;
  [field: string]: unknown;
}
