// The device inventory (../shared/DESIGN.md, "Inventory"), published retained on
// feather/v1/dev/{id}/inventory and returned by the `inventory` command:
//   {id, arch, cpu:{model,cores,flags}, memoryBytes, disk:{freeBytes}, kernel, cgroup,
//    accelerators:[…], labels, runtimes}
// Additions to the contract's accelerator fields: unifiedMemory and cdi (docs/telemetry.md, "Inventory").
// The agent reads it from the board (agent/devices/inventory.ts); the controller schedules on it.

export type Arch = 'x86_64' | 'aarch64' | 'riscv64';

export type AcceleratorKind = 'cuda' | 'tensorrt' | 'edgetpu' | 'npu' | 'gpu';

export interface Accelerator {
  kind: AcceleratorKind;
  vendor: string;
  model: string;
  /** Device node to pass into a container (or the main one, for devices with several). */
  device: string;
  /** The accelerator's own memory (VRAM), where it can be read without vendor tools (agent/devices/gpu-memory.ts). */
  memoryBytes?: number;
  /**
   * true: the accelerator has no memory of its own and uses system memory (the inventory's
   * memoryBytes), as Jetson and SoC GPUs do. memoryBytes is then left out, so nothing is counted twice.
   */
  unifiedMemory?: boolean;
  /**
   * The fully qualified CDI names ("vendor.com/class=name") whose device nodes, or /dev bind
   * mounts, give this accelerator's `device` to a container: what the controller puts in a
   * desired workload's `devices`. Names that give fewer of the board's accelerators come first
   * (`nvidia.com/gpu=0` before `nvidia.com/gpu=all`). [] when no CDI spec on the board gives it;
   * absent from an agent that does not say (older than the field).
   */
  cdi?: string[];
}

export interface Inventory {
  id: string;
  arch: Arch;
  cpu: { model: string; cores: number; flags: string[] };
  memoryBytes: number;
  disk: { freeBytes: number };
  kernel: string;
  cgroup: 'v1' | 'v2';
  accelerators: Accelerator[];
  labels: Record<string, string>;
  runtimes: string[];
}
