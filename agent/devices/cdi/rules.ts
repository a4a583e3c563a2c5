// A feather extension to CDI: device-cgroup rules named in a device's annotations.
//
// CDI can give a container device nodes, each allowed by number, but cannot say "the nodes that
// will appear in this directory": a device that re-enumerates (the USB Coral, when its firmware
// loads) comes back as a new node with a new minor. A device whose spec bind-mounts the directory
// can add the numbers its future nodes will have:
//
//   "annotations": {"feather/device-cgroup-rules": "c 189:128-255 rw"}
//
// Rules are separated by "," or ";": TYPE MAJOR:MINOR ACCESS, as in cgroup v1's devices.allow,
// where TYPE is c or b, MAJOR a number, MINOR a number, "*" (any) or a range "A-B" (expanded, at
// most MAX_RULE_MINORS numbers), ACCESS some of r, w, m. Other runtimes ignore the annotation.
import { FeatherError } from '../../../shared/errors.js';

export const DEVICE_RULES_ANNOTATION = 'feather/device-cgroup-rules';
/** A range may name at most this many minors (two USB buses). */
export const MAX_RULE_MINORS = 256;

export interface AnnotatedRule {
  type: 'c' | 'b';
  major: number;
  /** undefined: any. */
  minor: number | undefined;
  access: string;
}

const RULE_RE = /^([cb])\s+(\d+):(\*|\d+|\d+-\d+)\s+([rwm]{1,3})$/;
const ACCESS_RE = /^(?!.*(.).*\1)[rwm]{1,3}$/;
const MAX_NUMBER = 2 ** 32 - 1;

/** The rules in an annotation's value; BAD_REQUEST (saying what is wrong) when it is malformed. */
export function parseDeviceRules(text: string): AnnotatedRule[] {
  const out: AnnotatedRule[] = [];
  for (const part of text.split(/[,;]/).map((p) => p.trim()).filter((p) => p !== '')) {
    const m = RULE_RE.exec(part);
    if (m === null || m[1] === undefined || m[2] === undefined || m[3] === undefined || m[4] === undefined || !ACCESS_RE.test(m[4])) {
      throw new FeatherError('BAD_REQUEST', `rule ${JSON.stringify(part)} is not "TYPE MAJOR:MINOR ACCESS" (e.g. "c 189:128-255 rw"; TYPE c or b, MINOR a number, * or A-B, ACCESS some of r, w, m)`);
    }
    const type = m[1] as 'c' | 'b';
    const major = Number(m[2]);
    const access = m[4];
    const [from, to] = m[3] === '*' ? [undefined, undefined] : m[3].split('-').map(Number) as [number, number | undefined];
    if (major > MAX_NUMBER || (from ?? 0) > MAX_NUMBER || (to ?? 0) > MAX_NUMBER) throw new FeatherError('BAD_REQUEST', `rule ${JSON.stringify(part)}: numbers go up to ${MAX_NUMBER}`);
    if (from === undefined) {
      out.push({ type, major, minor: undefined, access });
      continue;
    }
    const last = to ?? from;
    if (last < from) throw new FeatherError('BAD_REQUEST', `rule ${JSON.stringify(part)}: the range ends before it starts`);
    if (last - from + 1 > MAX_RULE_MINORS) throw new FeatherError('BAD_REQUEST', `rule ${JSON.stringify(part)}: a range may name at most ${MAX_RULE_MINORS} minors; use "*" for every minor`);
    for (let minor = from; minor <= last; minor++) out.push({ type, major, minor, access });
  }
  return out;
}
