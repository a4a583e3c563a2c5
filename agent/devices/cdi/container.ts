// The runtime's side of CDI. The control plane and the reconciler hand the runtime a RunRequest
// whose `devices` (DeviceNode[]) come from the resolver (resolver.ts): the device nodes, each
// carrying what the device cgroup needs, plus one entry with empty paths that carries the rest of
// the edits (env, bind mounts, hooks, annotated device-cgroup rules). They are saved in the
// container's config.json as they are, so a restart applies the same edits without reading the
// specs again. Here the runtime turns them back into shim records, device-cgroup rules and hooks.
import type { Logger } from '../../../shared/logging.js';
import { isPlainObject } from '../../../shared/protocol/fields.js';
import type { CgroupBackend, CgroupManager, DeviceFilter, DeviceRule } from '../../runtime/cgroups/types.js';
import type { BindMount, DeviceNode } from '../../runtime/types.js';
import { statNode, type StatNode } from './resolve.js';
import { CDI_HOOK_NAMES, type ResolvedEdits, type ResolvedHook } from './types.js';

/** A device node from CDI: what the shim binds, and how the device cgroup allows it. */
export interface CdiDeviceNode extends DeviceNode {
  cdi: { device: string; type: 'c' | 'b' | 'p'; major: number; minor: number; access: string };
}

/** The entry that carries a CDI request's other edits; its paths are empty and it is no device. */
export interface CdiEditsEntry extends DeviceNode {
  hostPath: '';
  containerPath: '';
  cdiEdits: { devices: string[]; env: Record<string, string>; mounts: BindMount[]; hooks: ResolvedHook[]; rules?: CarriedRule[] };
}

/** A device-cgroup rule from a device's annotation (rules.ts), as saved; minor absent means any. */
export interface CarriedRule { type: 'c' | 'b'; major: number; minor?: number; access: string }

/** What a container's `devices` amount to at start. */
export interface ContainerDeviceEdits {
  /** Real device nodes for the shim's `device=` records. */
  nodes: DeviceNode[];
  /** Bind mounts from CDI specs. */
  binds: BindMount[];
  /** Environment from CDI specs (the workload's own env wins over it). */
  env: Record<string, string>;
  hooks: ResolvedHook[];
  /** Device-cgroup allow rules beyond the nodes' own (a device's feather/device-cgroup-rules). */
  rules: DeviceRule[];
  /** CDI names applied. */
  cdiDevices: string[];
}

/** The resolver's edits as RunRequest.devices. */
export function toDeviceNodes(edits: ResolvedEdits): DeviceNode[] {
  const out: DeviceNode[] = edits.nodes.map((n): CdiDeviceNode => ({
    hostPath: n.hostPath, containerPath: n.containerPath,
    cdi: { device: n.device, type: n.type, major: n.major, minor: n.minor, access: n.access },
  }));
  const carrier: CdiEditsEntry = {
    hostPath: '', containerPath: '',
    cdiEdits: { devices: [...edits.devices], env: { ...edits.env }, mounts: edits.mounts.map((m) => ({ ...m })), hooks: edits.hooks.map((h) => ({ ...h })) },
  };
  if (edits.rules.length > 0) {
    carrier.cdiEdits.rules = edits.rules.map((r): CarriedRule => (r.minor === undefined ? { type: r.type, major: r.major, access: r.access } : { type: r.type, major: r.major, minor: r.minor, access: r.access }));
  }
  out.push(carrier);
  return out;
}

function isCdiInfo(v: unknown): v is CdiDeviceNode['cdi'] {
  return isPlainObject(v) && typeof v['major'] === 'number' && typeof v['minor'] === 'number'
    && (v['type'] === 'c' || v['type'] === 'b' || v['type'] === 'p') && typeof v['access'] === 'string';
}

export function isCdiDeviceNode(d: DeviceNode): d is CdiDeviceNode {
  return isCdiInfo((d as { cdi?: unknown }).cdi);
}

function isCarrier(d: DeviceNode): d is CdiEditsEntry {
  return d.hostPath === '' && isPlainObject((d as { cdiEdits?: unknown }).cdiEdits);
}

function isHook(v: unknown): v is ResolvedHook {
  return isPlainObject(v) && typeof v['path'] === 'string' && typeof v['hookName'] === 'string'
    && (CDI_HOOK_NAMES as readonly string[]).includes(v['hookName']) && Array.isArray(v['args']) && Array.isArray(v['env']);
}

function isCarriedRule(v: unknown): v is CarriedRule {
  return isPlainObject(v) && (v['type'] === 'c' || v['type'] === 'b') && Number.isSafeInteger(v['major'])
    && (v['minor'] === undefined || Number.isSafeInteger(v['minor'])) && typeof v['access'] === 'string' && /^(?!.*(.).*\1)[rwm]{1,3}$/.test(v['access']);
}

function isBind(v: unknown): v is BindMount {
  return isPlainObject(v) && typeof v['source'] === 'string' && typeof v['target'] === 'string' && typeof v['readonly'] === 'boolean';
}

/** Split a container's saved `devices` into nodes and the other edits. Tolerates plain DeviceNodes. */
export function containerDeviceEdits(devices: readonly DeviceNode[]): ContainerDeviceEdits {
  const out: ContainerDeviceEdits = { nodes: [], binds: [], env: {}, hooks: [], rules: [], cdiDevices: [] };
  for (const d of devices) {
    if (!isCarrier(d)) {
      out.nodes.push(d);
      continue;
    }
    const e = d.cdiEdits;
    if (Array.isArray(e.devices)) out.cdiDevices.push(...e.devices.filter((x): x is string => typeof x === 'string'));
    if (isPlainObject(e.env)) {
      for (const [k, v] of Object.entries(e.env)) if (typeof v === 'string') out.env[k] = v;
    }
    if (Array.isArray(e.mounts)) out.binds.push(...e.mounts.filter(isBind));
    if (Array.isArray(e.hooks)) out.hooks.push(...e.hooks.filter(isHook));
    if (Array.isArray(e.rules)) out.rules.push(...e.rules.filter(isCarriedRule).map((r) => rule(r.type, r.major, r.minor, r.access)));
  }
  return out;
}

// ---- the device cgroup ----

const rule = (type: 'a' | 'b' | 'c', major: number | undefined, minor: number | undefined, access: string, allow = true): DeviceRule =>
  ({ allow, type, major, minor, access });

/**
 * Docker's default, for the /dev the shim makes: deny everything, allow mknod (not use) of any
 * node, then null, zero, full, random, urandom, tty, ptmx and the container's own devpts. v1 writes
 * them to devices.deny/allow; on v2 they become the shim's BPF device filter.
 */
export const BASELINE_DEVICE_RULES: readonly DeviceRule[] = [
  rule('a', undefined, undefined, 'rwm', false),
  rule('c', undefined, undefined, 'm'),
  rule('b', undefined, undefined, 'm'),
  rule('c', 1, 3, 'rwm'), // null
  rule('c', 1, 5, 'rwm'), // zero
  rule('c', 1, 7, 'rwm'), // full
  rule('c', 1, 8, 'rwm'), // random
  rule('c', 1, 9, 'rwm'), // urandom
  rule('c', 5, 0, 'rwm'), // tty
  rule('c', 5, 2, 'rwm'), // ptmx
  rule('c', 136, undefined, 'rwm'), // pts/*
];

/**
 * The rules for a container: the baseline, then one allow rule per device node (CDI nodes carry
 * their numbers and permissions; a plain node is looked up on the host and gets rwm), then the
 * rules of devices' feather/device-cgroup-rules annotations.
 */
export function deviceRules(devices: readonly DeviceNode[], stat: StatNode = statNode): DeviceRule[] {
  const rules = [...BASELINE_DEVICE_RULES];
  const edits = containerDeviceEdits(devices);
  for (const d of edits.nodes) {
    let type: 'c' | 'b' | 'p' | 'other' | undefined;
    let major = 0;
    let minor = 0;
    let access = 'rwm';
    if (isCdiDeviceNode(d)) {
      ({ type, major, minor, access } = d.cdi);
    } else {
      const info = stat(d.hostPath);
      if (info !== undefined) ({ type, major, minor } = info);
    }
    if (type === 'c' || type === 'b') rules.push(rule(type, major, minor, access));
  }
  rules.push(...edits.rules);
  return rules;
}

function hasDeviceRules(c: CgroupManager): c is CgroupManager & Pick<CgroupBackend, 'setDevices'> {
  return typeof (c as Partial<CgroupBackend>).setDevices === 'function';
}

/** What the shim must do for the device cgroup: join `dirs`; on v2 also attach `filter`. */
export interface AppliedDeviceCgroup {
  dirs: string[];
  filter?: DeviceFilter | undefined;
}

/**
 * Put the container's device rules in place (before its workload runs): v1 writes them; v2 returns
 * them as the `filter` the shim attaches as a BPF program. Where the backend cannot (no devices
 * controller) nothing is applied: a warning is logged when the container has device nodes.
 * Throws (RUNTIME_ERROR naming the file) when the kernel refuses a rule.
 */
export function applyDeviceCgroup(cgroups: CgroupManager, name: string, devices: readonly DeviceNode[], log: Logger): AppliedDeviceCgroup {
  if (!hasDeviceRules(cgroups)) return { dirs: [] };
  const result = cgroups.setDevices(name, deviceRules(devices));
  if (result.supported) return result.filter === undefined ? { dirs: result.dirs } : { dirs: result.dirs, filter: result.filter };
  const { nodes, rules } = containerDeviceEdits(devices);
  if (nodes.length > 0 || rules.length > 0) log.warn('cgroup.devices_unsupported', { name, reason: result.reason, nodes: nodes.map((n) => n.containerPath), rules: rules.length });
  return { dirs: [] };
}
