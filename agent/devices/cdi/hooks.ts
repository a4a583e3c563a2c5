// CDI hooks (OCI lifecycle hooks named by CDI specs). The shim runs the ones that must happen while
// the container is being built (createRuntime — and prestart, its deprecated twin —, createContainer,
// startContainer: docs/shim-spec.md); the agent runs poststart (once the workload runs) and poststop
// (when the container is removed) itself, on the host. Every hook gets the OCI state on stdin, and
// its `bundle` is a directory holding an OCI-shaped config.json, because vendor hooks (nvidia-ctk's
// update-ldcache, create-symlinks) read the container's root path from there.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../../shared/logging.js';
import type { ShimHook } from '../../runtime/spec.js';
import type { ResolvedHook } from './types.js';

export const DEFAULT_HOOK_TIMEOUT_S = 30;

/** The hooks the shim runs, in the order the specs gave them. */
export function shimHooks(hooks: readonly ResolvedHook[]): ShimHook[] {
  const out: ShimHook[] = [];
  for (const h of hooks) {
    const kind = h.hookName === 'prestart' ? 'createRuntime' : h.hookName;
    if (kind !== 'createRuntime' && kind !== 'createContainer' && kind !== 'startContainer') continue;
    out.push({ kind, path: h.path, args: h.args.length > 0 ? h.args : [h.path], env: h.env, timeoutS: timeoutOf(h) });
  }
  return out;
}

function timeoutOf(h: ResolvedHook): number {
  return h.timeoutS !== undefined && h.timeoutS > 0 ? Math.ceil(h.timeoutS) : DEFAULT_HOOK_TIMEOUT_S;
}

/** What the bundle's config.json says of the container. */
export interface HookBundleContainer {
  name: string;
  /** Where the container's root is mounted (in its own mount namespace). */
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
}

/** Write `<dir>/config.json` in the OCI runtime-spec shape (the fields hooks read) and return dir. */
export function writeHookBundle(dir: string, c: HookBundleContainer): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const config = {
    ociVersion: '1.0.2',
    root: { path: c.rootfs, readonly: false },
    hostname: c.name,
    process: { args: c.args, env: c.env, cwd: c.cwd },
    annotations: { 'org.feather.container': c.name },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n', { mode: 0o644 });
  return dir;
}

export interface HostHookState {
  id: string;
  /** The workload's pid as the host sees it; 0 once it is gone. */
  pid: number;
  bundle: string;
}

/**
 * Run the container's hooks of one kind on the host, one after another, each with the OCI state on
 * stdin. A failing hook is logged and the rest still run: the OCI runtime spec makes poststart and
 * poststop failures warnings. Resolves when all are done.
 */
export async function runHostHooks(hooks: readonly ResolvedHook[], hookName: 'poststart' | 'poststop', state: HostHookState, log: Logger): Promise<void> {
  const status = hookName === 'poststart' ? 'running' : 'stopped';
  for (const h of hooks) {
    if (h.hookName !== hookName) continue;
    const stdin = JSON.stringify({ ociVersion: '1.0.2', id: state.id, status, pid: state.pid, bundle: state.bundle, annotations: {} });
    try {
      await runOne(h, stdin);
      log.info('cdi.hook_ran', { name: state.id, hook: hookName, path: h.path, device: h.device });
    } catch (e: unknown) {
      log.warn('cdi.hook_failed', { name: state.id, hook: hookName, path: h.path, device: h.device, error: e instanceof Error ? e.message : String(e) });
    }
  }
}

function runOne(h: ResolvedHook, stdin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const [argv0, ...args] = h.args.length > 0 ? h.args : [h.path];
    const env = Object.fromEntries(h.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    const child = spawn(h.path, args, { argv0, env, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutOf(h) * 1000);
    child.stderr.on('data', (b: Buffer) => { if (stderr.length < 2048) stderr += b.toString('utf8'); });
    child.stdin.on('error', () => undefined); // a hook that does not read its stdin
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${h.path} ${signal !== null ? `was killed by ${signal}${signal === 'SIGKILL' ? ' (timeout?)' : ''}` : `exited with ${code}`}${stderr ? `: ${stderr.trim()}` : ''}`));
    });
    child.stdin.end(stdin);
  });
}
