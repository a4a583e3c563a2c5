// A real runtime over a temp data dir holding a busybox image (built by the offline recipe).
import { mkdtempSync, rmSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { DataPaths } from '../../agent/paths.js';
import { ImageStore } from '../../agent/images/store.js';
import { buildRecipe } from '../../agent/images/recipes.js';
import { detectCgroups } from '../../agent/runtime/cgroups/detect.js';
import type { CgroupBackend } from '../../agent/runtime/cgroups/types.js';
import { ShimRuntime } from '../../agent/runtime/runtime.js';
import { configureLogging } from '../../shared/logging.js';

export interface RuntimeFixture {
  root: string;
  paths: DataPaths;
  images: ImageStore;
  cgroups: CgroupBackend;
  runtime: ShimRuntime;
  /** The CLI entry point, run by tsx-free node against the compiled dist/ when present. */
  cleanup(): Promise<void>;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export async function runtimeFixture(opts: { cgroupRoot?: string } = {}): Promise<RuntimeFixture> {
  configureLogging({ level: 'error' });
  const root = mkdtempSync(join(tmpdir(), 'feather-it-'));
  const paths = new DataPaths(join(root, 'data'));
  const images = new ImageStore(paths);
  await buildRecipe(images, 'busybox', { name: 'busybox' });
  const cgroups = detectCgroups(opts.cgroupRoot);
  const runtime = new ShimRuntime({
    paths, images, cgroups, defaults: { memory: '128Mi', cpus: 0.5, pids: 10 }, logMaxBytes: 64 * 1024, runDir: join(root, 'run'),
  });
  return {
    root, paths, images, cgroups, runtime,
    async cleanup() {
      for (const c of runtime.list({ all: true })) {
        await runtime.remove(c.name, { force: true }).catch(() => undefined);
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Mount points on the host that mention a path (a leaked overlay would show here). */
export function hostMountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(path));
}

/** Cgroup directories left for a container name, over every v1 hierarchy and the v2 mount. */
export function cgroupLeftovers(name: string, root = '/sys/fs/cgroup'): string[] {
  const found: string[] = [];
  const candidates = [join(root, 'feather', name)];
  for (const entry of existsSync(root) ? readdirSync(root) : []) candidates.push(join(root, entry, 'feather', name));
  for (const c of candidates) if (existsSync(c)) found.push(c);
  return found;
}

export function sh(cmd: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
