// Starting feather-shim: locating the binary, detached starts and attached (foreground) runs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FeatherError } from '../../shared/errors.js';

/** Exit codes of feather-shim (docs/shim-spec.md). */
export const SHIM_FAILED = 125;
export const CANNOT_EXECUTE = 126;
export const NOT_FOUND_EXIT = 127;

/** The configured binary, else the one `make -C native` built in this package (from src or dist). */
export function locateShim(configured: string): string {
  if (configured) {
    if (!existsSync(configured)) throw new FeatherError('RUNTIME_ERROR', `feather-shim not found at ${configured} (config shimPath / FEATHER_SHIM)`);
    return configured;
  }
  for (const rel of ['../../native/build/feather-shim', '../../../native/build/feather-shim']) {
    const candidate = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(candidate)) return candidate;
  }
  throw new FeatherError('RUNTIME_ERROR', 'feather-shim is not built; run `npm run build` (needs make and a C compiler)');
}

export interface DetachedStart {
  pid: number;
  shimPid: number;
}

function describeFailure(code: number | null, signal: NodeJS.Signals | null, stderr: string): string {
  const detail = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
  if (code === NOT_FOUND_EXIT) return detail || 'the container command was not found in the image';
  if (code === CANNOT_EXECUTE) return detail || 'the container command cannot be executed';
  if (signal) return `feather-shim was killed by ${signal}`;
  return detail || `feather-shim exited with ${code}`;
}

/** Runs `feather-shim run SPEC` for a spec with detach=1; resolves once the workload runs. */
export function startDetached(shim: string, specPath: string): Promise<DetachedStart> {
  return new Promise((resolve, reject) => {
    const child = spawn(shim, ['run', specPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.on('error', (e) => reject(new FeatherError('RUNTIME_ERROR', `cannot start feather-shim: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code !== 0) {
        reject(new FeatherError('RUNTIME_ERROR', describeFailure(code, signal, stderr), { exitCode: code }));
        return;
      }
      try {
        const parsed = JSON.parse(stdout.trim().split('\n').pop() ?? '') as Partial<DetachedStart>;
        if (typeof parsed.pid !== 'number' || typeof parsed.shimPid !== 'number') throw new Error('missing pid');
        resolve({ pid: parsed.pid, shimPid: parsed.shimPid });
      } catch {
        reject(new FeatherError('RUNTIME_ERROR', `feather-shim printed an unexpected start line: ${JSON.stringify(stdout)}`));
      }
    });
  });
}

/** Runs a foreground container with the caller's stdio; resolves with the container's exit code. */
export function runAttached(shim: string, specPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(shim, ['run', specPath], { stdio: 'inherit' });
    // The shim forwards signals to the container; the CLI must not die of them first.
    const forward = (sig: NodeJS.Signals): void => { child.kill(sig); };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const s of signals) process.on(s, forward);
    const done = (): void => { for (const s of signals) process.off(s, forward); };
    child.on('error', (e) => { done(); reject(new FeatherError('RUNTIME_ERROR', `cannot start feather-shim: ${e.message}`)); });
    child.on('close', (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
    });
  });
}

const SIGNALS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };
function signalNumber(signal: NodeJS.Signals): number {
  return SIGNALS[signal] ?? 0;
}

export interface ShimFeatures {
  spec: number[];
  /** Idmapped mounts: --userns without chowned copies of the image layers. */
  idmap: boolean;
  userns: boolean;
}

/** What this shim build and kernel support (`feather-shim features`); asked once per process. */
export function shimFeatures(shim: string): ShimFeatures {
  const r = spawnSync(shim, ['features'], { encoding: 'utf8' });
  try {
    const f = JSON.parse(r.stdout) as Partial<ShimFeatures>;
    return { spec: f.spec ?? [1], idmap: f.idmap === true, userns: f.userns === true };
  } catch {
    return { spec: [1], idmap: false, userns: false };
  }
}
