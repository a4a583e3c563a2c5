// Parsing of user-facing resource limits ("128Mi", 0.5 CPUs, "0-1,3").
import { FeatherError } from './errors.js';

export interface Limits {
  memoryBytes: number;
  /** CPU quota in cores (0.5 = half of one core). */
  cpus: number;
  pids: number;
  /** Cores to pin to, cpuset syntax ("0-1,3"); unset = no pinning. */
  cpuset?: string | undefined;
}

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1e3, m: 1e6, g: 1e9, t: 1e12,
  ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
};

/** "128Mi" → 134217728. Accepts a number of bytes too. */
export function parseMemory(value: string | number): number {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && value > 0) return value;
    throw new FeatherError('BAD_REQUEST', `memory limit ${value} must be a positive whole number of bytes`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m?.[2]?.toLowerCase() ?? '';
  const factor = UNITS[unit];
  if (!m || factor === undefined) {
    throw new FeatherError('BAD_REQUEST', `memory limit "${value}" is not a size; use a number with Ki, Mi, Gi (e.g. 128Mi)`);
  }
  const bytes = Math.floor(Number(m[1]) * factor);
  if (bytes < 4 * 2 ** 20) throw new FeatherError('BAD_REQUEST', `memory limit "${value}" is below the 4Mi minimum`);
  if (!Number.isSafeInteger(bytes)) throw new FeatherError('BAD_REQUEST', `memory limit "${value}" is too large`);
  return bytes;
}

export function parseCpus(value: string | number): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n) || n < 0.01 || n > 1024) {
    throw new FeatherError('BAD_REQUEST', `cpu limit "${value}" must be a number of cores between 0.01 and 1024 (e.g. 0.5)`);
  }
  return n;
}

export function parsePids(value: string | number): number {
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new FeatherError('BAD_REQUEST', `pids limit "${value}" must be a whole number of at least 1`);
  return n;
}

export function parseCpuset(value: string): string {
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(value)) {
    throw new FeatherError('BAD_REQUEST', `cpuset "${value}" must list cores like 0-1,3`);
  }
  return value;
}

export function formatBytes(n: number): string {
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${Number.isInteger(v) ? v : v.toFixed(1)}${units[i]}`;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** Container and image names: they become directory names, hostnames and topic parts. */
export function validateName(kind: 'container' | 'image' | 'model', name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new FeatherError('BAD_REQUEST', `${kind} name ${JSON.stringify(name)} is invalid: use 1-63 letters, digits, '_', '.', '-', starting with a letter or digit`);
  }
  return name;
}
