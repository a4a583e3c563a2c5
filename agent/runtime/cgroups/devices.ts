// The device-cgroup hook (for CDI devices later). v1 has a file interface (devices.allow/deny);
// v2 has none: it needs a BPF_CGROUP_DEVICE program, which we do not load yet, and we say so.
import { join } from 'node:path';
import { badRequest } from '../../../shared/errors.js';
import type { DeviceCgroupResult, DeviceRule } from './types.js';
import { createWithRollback, type ResolvedOptions } from './common.js';
import { ensureDir, writeFile } from './fs.js';

export const V2_DEVICES_UNSUPPORTED =
  'device access control on cgroup v2 needs a BPF program (BPF_CGROUP_DEVICE), which feather does not load yet: ' +
  'no device rules were applied; the container can use exactly the device nodes that are bound into it';

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
