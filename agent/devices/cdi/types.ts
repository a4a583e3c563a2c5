// Container Device Interface (CDI) shapes: a spec file as read and validated (spec.ts), and the
// edits a set of requested devices makes to a container (resolve.ts). Field names follow the CDI
// specification (github.com/cncf-tags/container-device-interface, SPEC.md), versions 0.5.0 to 1.x.

export type CdiHookName = 'prestart' | 'createRuntime' | 'createContainer' | 'startContainer' | 'poststart' | 'poststop';
export const CDI_HOOK_NAMES: readonly CdiHookName[] = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'];

export interface CdiDeviceNodeSpec {
  /** Path in the container (absolute). */
  path: string;
  /** Path on the host; default `path`. */
  hostPath?: string | undefined;
  /** b (block), c or u (character), p (fifo); default: what the host node is. */
  type?: 'b' | 'c' | 'u' | 'p' | undefined;
  major?: number | undefined;
  minor?: number | undefined;
  fileMode?: number | undefined;
  /** Device-cgroup access: some of r, w, m; default rwm. */
  permissions?: string | undefined;
  uid?: number | undefined;
  gid?: number | undefined;
}

export interface CdiMountSpec {
  hostPath: string;
  containerPath: string;
  options?: string[] | undefined;
  type?: string | undefined;
}

export interface CdiHookSpec {
  hookName: CdiHookName;
  path: string;
  args?: string[] | undefined;
  env?: string[] | undefined;
  /** Seconds; > 0. */
  timeout?: number | undefined;
}

export interface CdiNetDeviceSpec {
  hostInterfaceName: string;
  name: string;
}

export interface CdiContainerEdits {
  env?: string[] | undefined;
  deviceNodes?: CdiDeviceNodeSpec[] | undefined;
  mounts?: CdiMountSpec[] | undefined;
  hooks?: CdiHookSpec[] | undefined;
  /** Read and validated; feather cannot apply these (a device that needs them is refused). */
  additionalGids?: number[] | undefined;
  intelRdt?: Record<string, unknown> | undefined;
  netDevices?: CdiNetDeviceSpec[] | undefined;
}

export interface CdiDeviceSpec {
  name: string;
  annotations?: Record<string, string> | undefined;
  containerEdits: CdiContainerEdits;
}

export interface CdiSpec {
  cdiVersion: string;
  /** "vendor.com/class" */
  kind: string;
  annotations?: Record<string, string> | undefined;
  devices: CdiDeviceSpec[];
  containerEdits?: CdiContainerEdits | undefined;
}

/** A spec file as loaded: where it came from and how it ranks against the others. */
export interface CdiSpecFile {
  /** Absolute path of the file (under the CDI root). */
  file: string;
  /** Index of its directory in the search order; a higher one wins over a lower one. */
  priority: number;
  spec: CdiSpec;
}

/** A device node as it goes into the container, with what the device cgroup needs to allow it. */
export interface ResolvedDeviceNode {
  /** Host path the shim binds (under the CDI root). */
  hostPath: string;
  containerPath: string;
  /** 'c' or 'b' (a fifo gets no rule). */
  type: 'c' | 'b' | 'p';
  major: number;
  minor: number;
  /** Some of r, w, m. */
  access: string;
  /** The CDI device this node came from ("vendor.com/class=name"). */
  device: string;
}

export interface ResolvedMount {
  source: string;
  target: string;
  readonly: boolean;
}

export interface ResolvedHook {
  hookName: CdiHookName;
  path: string;
  args: string[];
  env: string[];
  timeoutS: number | undefined;
  /** "vendor.com/class=name" of the device (or spec) whose edits named it. */
  device: string;
}

/**
 * A device-cgroup allow rule from a device's `feather/device-cgroup-rules` annotation (resolve.ts):
 * access to device numbers without a node, for nodes that appear later in a bind-mounted directory.
 */
export interface ResolvedDeviceRule {
  type: 'c' | 'b';
  major: number;
  /** undefined: any minor. */
  minor: number | undefined;
  /** Some of r, w, m. */
  access: string;
  /** "vendor.com/class=name" of the device whose annotation named it. */
  device: string;
}

/** Everything a set of requested CDI devices changes in a container, merged in request order. */
export interface ResolvedEdits {
  /** Fully qualified names, "=all" expanded, in order. */
  devices: string[];
  nodes: ResolvedDeviceNode[];
  /** Device-cgroup rules beyond the nodes' own (feather extension, an annotation). */
  rules: ResolvedDeviceRule[];
  mounts: ResolvedMount[];
  /** KEY=VALUE, later wins. */
  env: Record<string, string>;
  hooks: ResolvedHook[];
}
