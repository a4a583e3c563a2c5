// Validation of what devices publish (the registry's boundary). Devices are authenticated,
// not trusted: a payload that does not have the contract's shape is refused with a
// BAD_REQUEST naming the field, and the registry keeps what it had.
import type { Inventory } from '../../shared/protocol/inventory.js';
import type { Reported, ReportedWorkload } from '../../shared/protocol/reported.js';
import { FeatherError } from '../../shared/errors.js';
import { isPlainObject, type JsonObject } from '../../shared/protocol/fields.js';
import { EVENT_TYPE_RE } from '../../shared/protocol/types.js';
import { CDI_RE } from '../../shared/protocol/commands.js';
import type { DeviceStatus } from '../store/types.js';

const MAX_JSON_BYTES = 1024 * 1024;
const ARCHES = new Set(['x86_64', 'aarch64', 'riscv64']);
const PHASES = new Set(['pulling', 'starting', 'running', 'failed', 'stopped']);

const bad = (what: string, message: string): FeatherError => new FeatherError('BAD_REQUEST', `${what}: ${message}`);

/** True for an empty (cleared retained) payload: zero bytes or blanks. */
export function isEmptyPayload(payload: Buffer): boolean {
  return payload.toString('latin1').trim() === '';
}

export function parseJsonObject(payload: Buffer, what: string): JsonObject {
  if (payload.length > MAX_JSON_BYTES) throw bad(what, `payload of ${payload.length} bytes exceeds ${MAX_JSON_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch (e: unknown) {
    throw bad(what, `not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!isPlainObject(value)) throw bad(what, 'must be a JSON object');
  return value;
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

export function parseStatus(payload: Buffer): DeviceStatus {
  const o = parseJsonObject(payload, 'status');
  if (typeof o['online'] !== 'boolean') throw bad('status', 'online must be true or false');
  if (!isNum(o['ts'])) throw bad('status', 'ts must be a number (ms since the epoch)');
  const s: DeviceStatus = { online: o['online'], ts: o['ts'] };
  if (isStr(o['agentVersion'])) s.agentVersion = o['agentVersion'];
  if (isStr(o['reason'])) s.reason = o['reason'];
  return s;
}

function strings(v: unknown, path: string, what: string): string[] {
  if (!Array.isArray(v) || !v.every(isStr)) throw bad(what, `${path} must be an array of strings`);
  return v;
}

function stringMap(v: unknown, path: string, what: string): Record<string, string> {
  if (!isPlainObject(v) || !Object.values(v).every(isStr)) throw bad(what, `${path} must be an object of strings`);
  return v as Record<string, string>;
}

/** The inventory (shared/DESIGN.md, "Inventory"). Unknown fields are kept: newer agents may add some. */
export function parseInventory(payload: Buffer): Inventory {
  const o = parseJsonObject(payload, 'inventory');
  const w = 'inventory';
  if (!isStr(o['id'])) throw bad(w, 'id must be a string');
  if (!isStr(o['arch']) || !ARCHES.has(o['arch'])) throw bad(w, `arch must be one of ${[...ARCHES].join(', ')}`);
  const cpu = o['cpu'];
  if (!isPlainObject(cpu) || !isStr(cpu['model']) || !isNum(cpu['cores'])) throw bad(w, 'cpu must be {model, cores, flags}');
  strings(cpu['flags'] ?? [], 'cpu.flags', w);
  if (!isNum(o['memoryBytes'])) throw bad(w, 'memoryBytes must be a number');
  const disk = o['disk'];
  if (!isPlainObject(disk) || !isNum(disk['freeBytes'])) throw bad(w, 'disk must be {freeBytes}');
  const acc = o['accelerators'] ?? [];
  if (!Array.isArray(acc) || !acc.every((a) => isPlainObject(a) && isStr(a['kind']) && isStr(a['model']))) throw bad(w, 'accelerators must be an array of {kind, vendor, model, device}');
  // CDI names travel into desired workloads, where the agent refuses anything else.
  for (const [i, a] of (acc as JsonObject[]).entries()) {
    const cdi = a['cdi'];
    if (cdi !== undefined && (!Array.isArray(cdi) || !cdi.every((n) => isStr(n) && n.length <= 255 && CDI_RE.test(n)))) {
      throw bad(w, `accelerators[${i}].cdi must be an array of CDI names (vendor.com/class=name)`);
    }
  }
  stringMap(o['labels'] ?? {}, 'labels', w);
  strings(o['runtimes'] ?? [], 'runtimes', w);
  return { ...o, accelerators: acc, labels: o['labels'] ?? {}, runtimes: o['runtimes'] ?? [] } as unknown as Inventory;
}

export function parseReported(payload: Buffer): Reported {
  const o = parseJsonObject(payload, 'reported');
  const w = 'reported';
  if (!isNum(o['generation']) || !Number.isInteger(o['generation']) || o['generation'] < 0) throw bad(w, 'generation must be a whole number >= 0');
  const list = o['workloads'];
  if (!Array.isArray(list)) throw bad(w, 'workloads must be an array');
  const workloads: ReportedWorkload[] = list.map((x: unknown, i) => {
    if (!isPlainObject(x) || !isStr(x['name'])) throw bad(w, `workloads[${i}].name must be a string`);
    if (!isStr(x['phase']) || !PHASES.has(x['phase'])) throw bad(w, `workloads[${i}].phase must be one of ${[...PHASES].join(', ')}`);
    const r: ReportedWorkload = { name: x['name'], phase: x['phase'] as ReportedWorkload['phase'], restarts: isNum(x['restarts']) ? x['restarts'] : 0 };
    if (isStr(x['reason'])) r.reason = x['reason'];
    if (isNum(x['exitCode'])) r.exitCode = x['exitCode'];
    return r;
  });
  const rep: Reported = { generation: o['generation'], workloads };
  if (isStr(o['reason'])) rep.reason = o['reason'];
  return rep;
}

export interface DeviceEventPayload {
  type: string;
  ts: number;
  body: Record<string, unknown>;
}

export function parseEvent(payload: Buffer): DeviceEventPayload {
  const o = parseJsonObject(payload, 'event');
  if (!isStr(o['type']) || !EVENT_TYPE_RE.test(o['type'])) throw bad('event', 'type must be a dotted lower-case name (container.exited)');
  const { type, ts, deviceId: _deviceId, ...body } = o;
  return { type: type as string, ts: isNum(ts) ? ts : Date.now(), body };
}

/** "arch/cpu model/accelerator models": devices of one class share latency measurements. */
export function boardClassOf(inv: Inventory | undefined): string {
  if (inv === undefined) return 'unknown';
  const acc = inv.accelerators.map((a) => a.model).sort().join('+');
  return `${inv.arch}/${inv.cpu.model}/${acc === '' ? 'none' : acc}`;
}
