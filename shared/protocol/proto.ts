// The feather.v1 protobuf messages, loaded at run time from feather.proto with protobufjs.
// The .proto is looked up next to this module (source tree, or dist/ when the build copies it)
// and then in the package's shared/protocol/ (dist/shared/protocol/ -> ../../../shared/protocol/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { ERROR_CODES, FeatherError, messageOf, type ErrorCode } from '../errors.js';
import type { Reply, Verb } from './types.js';
import { isVerb } from './types.js';
import { isPlainObject, type JsonObject } from './fields.js';

/** Absolute path of a .proto file shipped in shared/protocol/, from the source tree or from dist/. */
export function locateProto(file: string): string {
  const tried: string[] = [];
  for (const rel of [`./${file}`, `../../../shared/protocol/${file}`]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
    tried.push(p);
  }
  throw new FeatherError('INTERNAL', `cannot find ${file} (looked at ${tried.join(', ')}); reinstall feather-fleet`);
}

interface FeatherTypes {
  Command: protobuf.Type;
  Reply: protobuf.Type;
}

let types: FeatherTypes | undefined;

/** The Command and Reply types, loaded once. */
export function featherTypes(): FeatherTypes {
  if (types === undefined) {
    const root = protobuf.loadSync(locateProto('feather.proto'));
    types = { Command: root.lookupType('feather.v1.Command'), Reply: root.lookupType('feather.v1.Reply') };
  }
  return types;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, bytes: String, defaults: false, oneofs: true };

/** "container.run" -> "containerRun": the oneof field of a verb in Command.body and Reply.result. */
export function verbField(verb: string): string {
  return verb.replace(/\.([a-z])/g, (_, c: string) => c.toUpperCase());
}

function fieldVerb(field: string): Verb | undefined {
  const verb = field.replace(/[A-Z]/g, (c) => `.${c.toLowerCase()}`);
  return isVerb(verb) ? verb : undefined;
}

// Lists are JSON arrays in a JSON reply, and a message with one repeated field in protobuf.
const LIST_FIELD: Partial<Record<Verb, string>> = { 'image.list': 'images', 'container.list': 'containers' };

export interface DecodedProtoCommand {
  requestId: string | undefined;
  /** The verb named by the body oneof, when one is set. */
  bodyVerb: Verb | undefined;
  body: JsonObject;
}

/** Decode a feather.v1.Command; throws BAD_REQUEST when the bytes are not one. */
export function decodeCommandProto(payload: Uint8Array): DecodedProtoCommand {
  const { Command } = featherTypes();
  let obj: JsonObject;
  try {
    obj = Command.toObject(Command.decode(payload), TO_OBJECT);
  } catch (e: unknown) {
    throw new FeatherError('BAD_REQUEST', `payload is neither JSON (a JSON command starts with '{') nor a feather.v1.Command protobuf: ${messageOf(e)}`);
  }
  const which = typeof obj['body'] === 'string' ? obj['body'] : undefined;
  const requestId = typeof obj['requestId'] === 'string' && obj['requestId'] !== '' ? obj['requestId'] : undefined;
  const inner = which === undefined ? undefined : obj[which];
  return { requestId, bodyVerb: which === undefined ? undefined : fieldVerb(which), body: isPlainObject(inner) ? inner : {} };
}

/** Encode a command (the controller's and the tests' side). Throws when the body does not fit the message. */
export function encodeCommandProto(verb: Verb, requestId: string, body: JsonObject = {}): Buffer {
  const { Command } = featherTypes();
  const msg = Command.fromObject({ requestId, [verbField(verb)]: body });
  return Buffer.from(Command.encode(msg).finish());
}

/** Encode a reply for `verb` (undefined when the verb was unknown: then only the error travels). */
export function encodeReplyProto(verb: string | undefined, reply: Reply): Buffer {
  const { Reply: ReplyType } = featherTypes();
  const obj: JsonObject = { requestId: reply.requestId ?? '', ok: reply.ok };
  if (!reply.ok) {
    obj['error'] = reply.error;
  } else if (verb !== undefined && isVerb(verb)) {
    const list = LIST_FIELD[verb];
    obj[verbField(verb)] = list !== undefined ? { [list]: reply.result } : reply.result;
  }
  return Buffer.from(ReplyType.encode(ReplyType.fromObject(obj)).finish());
}

/** Decode a feather.v1.Reply back into the JSON reply shape. */
export function decodeReplyProto(payload: Uint8Array): Reply {
  const { Reply: ReplyType } = featherTypes();
  const obj = ReplyType.toObject(ReplyType.decode(payload), TO_OBJECT);
  const requestId = typeof obj['requestId'] === 'string' && obj['requestId'] !== '' ? obj['requestId'] : null;
  if (obj['ok'] !== true) {
    const err = isPlainObject(obj['error']) ? obj['error'] : {};
    const code = (ERROR_CODES as readonly unknown[]).includes(err['code']) ? (err['code'] as ErrorCode) : 'INTERNAL';
    return { requestId, ok: false, error: { code, message: String(err['message'] ?? '') } };
  }
  const which = typeof obj['result'] === 'string' ? obj['result'] : undefined;
  const verb = which === undefined ? undefined : fieldVerb(which);
  let result: unknown = which === undefined ? {} : obj[which];
  const list = verb === undefined ? undefined : LIST_FIELD[verb];
  if (list !== undefined) result = isPlainObject(result) && Array.isArray(result[list]) ? result[list] : [];
  return { requestId, ok: true, result };
}
