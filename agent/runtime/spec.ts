// Encodes the feather-shim spec, format version 1 (docs/shim-spec.md): NUL-terminated
// `key=value` records, so that no argument ever needs quoting.
import { FeatherError } from '../../shared/errors.js';
import { formatDeviceFilterRule } from './cgroups/devices.js';
import type { DeviceFilter } from './cgroups/types.js';
import type { BindMount, DeviceNode } from './types.js';
import type { NetworkMode } from '../../shared/protocol/types.js';

export const SPEC_VERSION = 1;

/** An OCI hook the shim runs while it builds the container (docs/shim-spec.md). */
export interface ShimHook {
  kind: 'createRuntime' | 'createContainer' | 'startContainer';
  path: string;
  /** argv, the first being argv[0]. */
  args: string[];
  env: string[];
  timeoutS: number;
}

export interface ShimSpec {
  name: string;
  rootfs: string;
  /** Topmost first. */
  lowers: string[];
  upper: string;
  work: string;
  args: string[];
  env: string[];
  cwd?: string | undefined;
  network: NetworkMode;
  cgroups: string[];
  userns?: { uid: number; gid: number; size: number } | undefined;
  /** With userns: shift the lower layers by idmapped mounts instead of chowned copies. */
  idmap?: boolean | undefined;
  tty: boolean;
  detach: boolean;
  init: boolean;
  statePath?: string | undefined;
  logPath?: string | undefined;
  logMaxBytes?: number | undefined;
  binds: BindMount[];
  devices: DeviceNode[];
  hooks?: ShimHook[] | undefined;
  /** The OCI bundle directory named in the hooks' state. */
  bundle?: string | undefined;
  /** cgroup v2: the BPF device filter the shim attaches to `deviceFilter.cgroup`, one of `cgroups`. */
  deviceFilter?: DeviceFilter | undefined;
}

export function encodeSpec(spec: ShimSpec): Buffer {
  const records: string[] = [];
  const add = (key: string, value: string | number): void => {
    const v = String(value);
    if (v.includes('\0')) throw new FeatherError('BAD_REQUEST', `${key} must not contain a NUL byte`);
    records.push(`${key}=${v}`);
  };
  add('version', SPEC_VERSION);
  add('name', spec.name);
  add('rootfs', spec.rootfs);
  for (const lower of spec.lowers) add('lower', lower);
  add('upper', spec.upper);
  add('work', spec.work);
  if (spec.args.length === 0) throw new FeatherError('BAD_REQUEST', 'a container needs a command to run');
  for (const arg of spec.args) add('arg', arg);
  for (const e of spec.env) add('env', e);
  if (spec.cwd) add('cwd', spec.cwd);
  add('network', spec.network);
  for (const dir of spec.cgroups) add('cgroup', dir);
  if (spec.userns) add('userns', `${spec.userns.uid}:${spec.userns.gid}:${spec.userns.size}`);
  if (spec.userns && spec.idmap) add('idmap', 1);
  if (spec.tty) add('tty', 1);
  if (spec.detach) add('detach', 1);
  if (spec.init) add('init', 1);
  if (spec.statePath) add('state', spec.statePath);
  if (spec.logPath) add('log', spec.logPath);
  if (spec.logMaxBytes) add('log_max', spec.logMaxBytes);
  for (const b of spec.binds) add('bind', `${b.source}\t${b.target}\t${b.readonly ? 'ro' : 'rw'}`);
  for (const d of spec.devices) add('device', `${d.hostPath}\t${d.containerPath}`);
  if (spec.bundle) add('bundle', spec.bundle);
  if (spec.deviceFilter) {
    // The filter applies to the tasks in its directory, so the shim must join it (it checks too).
    if (!spec.cgroups.includes(spec.deviceFilter.cgroup)) {
      throw new FeatherError('BAD_REQUEST', `the device filter's cgroup ${spec.deviceFilter.cgroup} is not one the container joins`);
    }
    add('devcgroup', spec.deviceFilter.cgroup);
    for (const r of spec.deviceFilter.rules) add('devrule', formatDeviceFilterRule(r));
  }
  for (const h of spec.hooks ?? []) {
    if (h.path.includes('\t')) throw new FeatherError('BAD_REQUEST', `hook path ${JSON.stringify(h.path)} must not contain a tab`);
    add('hook', `${h.kind}\t${h.timeoutS}\t${h.path}`);
    for (const a of h.args) add('hook_arg', a);
    for (const e of h.env) add('hook_env', e);
  }
  return Buffer.from(records.map((r) => r + '\0').join(''), 'utf8');
}
