// /proc/cpuinfo for x86_64, aarch64 and riscv64: CPU model, core count, architecture hint, and
// the instruction-set flags that matter for inference, under one vocabulary.
import type { Arch } from '../../shared/protocol/inventory.js';

export interface CpuInfo {
  model: string;
  cores: number;
  flags: string[];
  /** What the file looks like it came from; undefined when it says too little. */
  arch: Arch | undefined;
}

/** x86 flags reported as they are. */
const X86_FLAGS = new Set([
  'sse4_1', 'sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512dq', 'avx512bw', 'avx512vl',
  'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'avx_vnni', 'amx_tile', 'amx_int8', 'amx_bf16',
]);
/** arm "Features" renamed to what people search for ("neon", "dotprod", "fp16"). */
const ARM_FLAGS: Readonly<Record<string, string>> = {
  neon: 'neon', asimd: 'neon', asimdhp: 'fp16', asimddp: 'dotprod', i8mm: 'i8mm', bf16: 'bf16',
  sve: 'sve', sve2: 'sve2', sme: 'sme', svei8mm: 'sve_i8mm', svebf16: 'sve_bf16',
};
/** RISC-V ISA extensions: the vector and half-float ones. */
const RISCV_EXTENSIONS: Readonly<Record<string, string>> = { v: 'rvv', zfh: 'zfh', zfhmin: 'zfhmin', zvfh: 'zvfh', zvfhmin: 'zvfhmin' };

/** ARM main-id parts (implementer 0x41) seen on edge boards and servers. */
const ARM_PARTS: Readonly<Record<string, string>> = {
  '0xd03': 'Cortex-A53', '0xd04': 'Cortex-A35', '0xd05': 'Cortex-A55', '0xd07': 'Cortex-A57', '0xd08': 'Cortex-A72',
  '0xd09': 'Cortex-A73', '0xd0a': 'Cortex-A75', '0xd0b': 'Cortex-A76', '0xd0c': 'Neoverse-N1', '0xd0d': 'Cortex-A77',
  '0xd40': 'Neoverse-V1', '0xd41': 'Cortex-A78', '0xd42': 'Cortex-A78AE', '0xd44': 'Cortex-X1', '0xd46': 'Cortex-A510',
  '0xd47': 'Cortex-A710', '0xd48': 'Cortex-X2', '0xd49': 'Neoverse-N2', '0xd4b': 'Cortex-A78C', '0xd4d': 'Cortex-A715',
  '0xd4f': 'Neoverse-V2', '0xd80': 'Cortex-A520', '0xd81': 'Cortex-A720', '0xd82': 'Cortex-X4',
};

/** "key\t: value" records, one block per processor. */
function records(text: string): Array<Map<string, string>> {
  const blocks: Array<Map<string, string>> = [];
  let cur = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (cur.size > 0) blocks.push(cur);
      cur = new Map();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    cur.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  if (cur.size > 0) blocks.push(cur);
  return blocks;
}

function first(blocks: Array<Map<string, string>>, key: string): string | undefined {
  for (const b of blocks) {
    const v = b.get(key);
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

function riscvFlags(isa: string): string[] {
  const m = /^rv(?:32|64|128)([a-z]*)((?:_[a-z0-9]+)*)$/.exec(isa.toLowerCase());
  if (m === null) return [];
  const out = new Set<string>();
  for (const letter of m[1] ?? '') {
    const name = RISCV_EXTENSIONS[letter];
    if (name !== undefined) out.add(name);
  }
  for (const ext of (m[2] ?? '').split('_')) {
    const name = RISCV_EXTENSIONS[ext];
    if (name !== undefined) out.add(name);
  }
  return [...out];
}

/**
 * Parse /proc/cpuinfo. `boardModel` (device tree) names arm and riscv CPUs whose cpuinfo has
 * no model line. cores = the number of "processor" entries.
 */
export function parseCpuinfo(text: string, boardModel?: string): CpuInfo {
  const blocks = records(text);
  const cores = blocks.filter((b) => b.has('processor') && /^\d+$/.test(b.get('processor') ?? '')).length;

  const x86Flags = first(blocks, 'flags');
  if (x86Flags !== undefined || first(blocks, 'vendor_id') !== undefined) {
    const have = new Set((x86Flags ?? '').split(/\s+/));
    return {
      model: first(blocks, 'model name') ?? 'x86_64',
      cores,
      flags: [...X86_FLAGS].filter((f) => have.has(f)),
      arch: 'x86_64',
    };
  }

  const isa = first(blocks, 'isa');
  if (isa !== undefined) {
    return {
      model: first(blocks, 'uarch') ?? boardModel ?? 'RISC-V',
      cores,
      flags: riscvFlags(isa),
      arch: isa.toLowerCase().startsWith('rv64') ? 'riscv64' : undefined,
    };
  }

  const features = first(blocks, 'features');
  if (features !== undefined || first(blocks, 'cpu implementer') !== undefined) {
    const flags = new Set<string>();
    for (const f of (features ?? '').split(/\s+/)) {
      const name = ARM_FLAGS[f];
      if (name !== undefined) flags.add(name);
    }
    // Distinct core types in order (big.LITTLE boards have two or three).
    const parts: string[] = [];
    for (const b of blocks) {
      const impl = b.get('cpu implementer');
      const part = b.get('cpu part');
      if (part === undefined) continue;
      const name = impl === '0x41' ? ARM_PARTS[part] ?? `ARM part ${part}` : `implementer ${impl ?? '?'} part ${part}`;
      if (!parts.includes(name)) parts.push(name);
    }
    const model = first(blocks, 'model name') ?? (parts.length > 0 ? parts.join(' + ') : undefined) ?? first(blocks, 'hardware') ?? boardModel ?? 'ARM';
    // 64-bit kernels report asimd; 32-bit ones "neon" and "CPU architecture: 7".
    const arch: Arch | undefined = (features ?? '').split(/\s+/).includes('asimd') || first(blocks, 'cpu architecture') === '8' ? 'aarch64' : undefined;
    return { model, cores, flags: [...flags], arch };
  }

  return { model: first(blocks, 'model name') ?? boardModel ?? 'unknown', cores, flags: [], arch: undefined };
}
