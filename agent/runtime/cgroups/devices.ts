// Device-cgroup rules. v1 has a file interface (devices.allow/deny), written here. v2 has none: the
// rules become an allow-list that the shim compiles into a BPF_CGROUP_DEVICE program and attaches
// to the container's cgroup (native/lib/devfilter.c); Node cannot load BPF itself.
import { join } from 'node:path';
import { badRequest } from '../../../shared/errors.js';
import type { DeviceCgroupResult, DeviceFilterRule, DeviceRule } from './types.js';
import { createWithRollback, type ResolvedOptions } from './common.js';
import { ensureDir, writeFile } from './fs.js';

/** "c 195:* rwm", "a". Refuses what the kernel would misread. */
export function formatDeviceRule(rule: DeviceRule): string {
  if (rule.type === 'a') return 'a';
  if (rule.type !== 'b' && rule.type !== 'c') throw badRequest(`device rule type ${JSON.stringify(rule.type)} must be a, b or c`);
  if (!/^(?!.*(.).*\1)[rwm]{1,3}$/.test(rule.access)) {
    throw badRequest(`device rule access ${JSON.stringify(rule.access)} must be some of r, w, m (e.g. rwm)`);
  }
  const num = (n: number | undefined, what: string): string => {
    if (n === undefined) return '*';
    if (!Number.isSafeInteger(n) || n < 0) throw badRequest(`device ${what} number ${n} must be a whole number of at least 0`);
    return String(n);
  };
  return `${rule.type} ${num(rule.major, 'major')}:${num(rule.minor, 'minor')} ${rule.access}`;
}

/**
 * v1: apply the rules in order to devices/feather/<name>, making it (and feather/) when needed.
 * A directory made here is removed again when a rule fails.
 */
export function applyV1DeviceRules(o: ResolvedOptions, mount: string, name: string, rules: readonly DeviceRule[]): DeviceCgroupResult {
  const fs = o.fs;
  const lines = rules.map(formatDeviceRule);
  const parent = join(mount, 'feather');
  const dir = join(parent, name);
  return createWithRollback(o, (made) => {
    ensureDir(fs, parent);
    if (ensureDir(fs, dir)) made.push(dir);
    for (const [i, line] of lines.entries()) {
      writeFile(fs, dir, rules[i]?.allow === true ? 'devices.allow' : 'devices.deny', line);
    }
    return { supported: true, dirs: [dir] };
  });
}

/**
 * v2: the v1 rule list as the allow-list the shim's BPF program takes, by v1's own semantics (the
 * kernel's devcgroup): "a" deny empties the list and makes denial the default; an allow adds an
 * entry (or widens the entry with the same type and numbers); a deny takes its access bits away from
 * the entry with the same type and numbers. "a" allow makes allowing the default: with nothing
 * denied after it that is one rule matching everything. A deny-list (denies under an allowing
 * default) cannot be an allow-list and is refused.
 */
export function toDeviceFilterRules(rules: readonly DeviceRule[]): DeviceFilterRule[] {
  for (const r of rules) formatDeviceRule(r);
  let allowByDefault = true;
  let entries: DeviceFilterRule[] = [];
  const same = (e: DeviceFilterRule, r: DeviceRule): boolean => e.type === r.type && e.major === r.major && e.minor === r.minor;
  for (const r of rules) {
    if (r.type === 'a') {
      allowByDefault = r.allow;
      entries = [];
      continue;
    }
    // Under a denying default the entries are allows; under an allowing one they are denies.
    const adds = r.allow !== allowByDefault;
    const i = entries.findIndex((e) => same(e, r));
    const e = entries[i];
    if (adds) {
      if (e === undefined) entries.push({ type: r.type, major: r.major, minor: r.minor, access: r.access });
      else e.access = mergeAccess(e.access, r.access);
    } else if (e !== undefined) {
      const left = [...e.access].filter((c) => !r.access.includes(c)).join('');
      if (left === '') entries.splice(i, 1);
      else e.access = left;
    }
  }
  if (!allowByDefault) return entries;
  if (entries.length > 0) {
    throw badRequest(`device rules that deny ${entries.map(formatDeviceFilterRule).join(', ')} under an allowing default cannot be a cgroup v2 allow-list: start them with "a" deny`);
  }
  return [{ type: 'a', access: 'rwm' }];
}

function mergeAccess(a: string, b: string): string {
  return ['r', 'w', 'm'].filter((c) => a.includes(c) || b.includes(c)).join('');
}

/** The shim's devrule= syntax: "c 1 3 rwm", "c 136 * rw", "a * * rwm". */
export function formatDeviceFilterRule(rule: DeviceFilterRule): string {
  const num = (n: number | undefined): string => (n === undefined ? '*' : String(n));
  if (rule.type === 'a') return `a * * ${rule.access}`;
  return `${rule.type} ${num(rule.major)} ${num(rule.minor)} ${rule.access}`;
}
