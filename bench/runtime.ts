// npm run bench -- runtime [N]: N containers running /bin/true from one busybox image with the
// full setup (namespaces incl. network, overlay, cgroup limits, cleanup), timed the way the
// agent runs them (inside this Node process, from the shim's spawn to the container's exit and
// removal), beside runc and crun on an equivalent OCI bundle and the `unshare ... chroot` floor.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, cpSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configureLogging } from '../shared/logging.js';
import { DataPaths } from '../agent/paths.js';
import { ImageStore } from '../agent/images/store.js';
import { buildRecipe } from '../agent/images/recipes.js';
import { detectCgroups } from '../agent/runtime/cgroups/detect.js';
import { ShimRuntime } from '../agent/runtime/runtime.js';
import { median, percentile, ms, printTable, type Row } from './stats.js';

const LIMITS = { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 };

function spawnWait(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? -1));
  });
}

async function time(n: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(5, n); i++) await fn(-1 - i); // warm-up
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    out.push(ms(process.hrtime.bigint() - t0));
  }
  return out;
}

function row(name: string, xs: number[], note?: string): Row {
  return { name, medianMs: median(xs), p90Ms: percentile(xs, 90), n: xs.length, ...(note ? { note } : {}) };
}

function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** An OCI bundle equivalent to what feather-shim sets up: same rootfs, namespaces, limits. */
function ociBundle(dir: string, rootfs: string): void {
  mkdirSync(dir, { recursive: true });
  cpSync(rootfs, join(dir, 'rootfs'), { recursive: true, verbatimSymlinks: true });
  const spec = spawnSync('runc', ['spec'], { cwd: dir });
  if (spec.status !== 0) throw new Error(`runc spec failed: ${spec.stderr.toString()}`);
  const config = JSON.parse(spawnSync('cat', [join(dir, 'config.json')]).stdout.toString()) as {
    process: { args: string[]; terminal: boolean };
    root: { readonly: boolean };
    linux: { resources?: Record<string, unknown> };
  };
  config.process.args = ['/bin/true'];
  config.process.terminal = false;
  config.root.readonly = false;
  config.linux.resources = {
    ...(config.linux.resources ?? {}),
    memory: { limit: LIMITS.memoryBytes, swap: LIMITS.memoryBytes },
    cpu: { quota: LIMITS.cpus * 100000, period: 100000 },
    pids: { limit: LIMITS.pids },
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
}

/**
 * crun refuses hybrid cgroup hosts; run the whole benchmark (every contender alike) in a
 * private mount namespace where the unified mount is hidden under an empty tmpfs.
 */
function reexecWithUnifiedHidden(args: string[]): boolean {
  if (process.env['FEATHER_BENCH_NS'] === '1' || !existsSync('/sys/fs/cgroup/unified/cgroup.controllers')) return false;
  const self = fileURLToPath(new URL('./main.js', import.meta.url));
  const script = 'mount -t tmpfs none /sys/fs/cgroup/unified && exec "$@"';
  const r = spawnSync('unshare', ['-m', 'sh', '-c', script, 'sh', process.execPath, self, 'runtime', ...args], {
    stdio: 'inherit', env: { ...process.env, FEATHER_BENCH_NS: '1' },
  });
  process.exitCode = r.status ?? 1;
  return true;
}

export async function benchRuntime(args: string[]): Promise<void> {
  if (reexecWithUnifiedHidden(args)) return;
  const n = Number(args[0] ?? 100);
  configureLogging({ level: 'warn' });
  const root = mkdtempSync(join(tmpdir(), 'feather-bench-'));
  try {
    const paths = new DataPaths(join(root, 'data'));
    const images = new ImageStore(paths);
    await buildRecipe(images, 'busybox', { name: 'busybox' });
    const rootfs = await images.ensureExtracted('busybox');
    const runtime = new ShimRuntime({
      paths, images, cgroups: detectCgroups(), defaults: { memory: '128Mi', cpus: 0.5, pids: 10 }, logMaxBytes: 1 << 20,
    });
    const rows: Row[] = [];
    console.log(`runtime benchmark: ${n} containers running /bin/true (cgroup mode ${detectCgroups().mode}${process.env['FEATHER_BENCH_NS'] ? ', unified mount hidden for crun' : ''})`);

    rows.push(row('feather (agent path)', await time(n, (i) =>
      runtime.runAttached({ name: `bench-${i < 0 ? `w${-i}` : i}`, image: 'busybox', args: ['/bin/true'], limits: LIMITS }, { remove: true }))));

    rows.push(row('floor: unshare+chroot', await time(n, () =>
      spawnWait('unshare', ['--pid', '--fork', '--mount', '--uts', '--ipc', '--net', 'chroot', rootfs, '/bin/true']))));

    const bundle = join(root, 'bundle');
    for (const rt of ['crun', 'runc']) {
      if (!which(rt)) { console.log(`${rt}: not installed, skipped`); continue; }
      if (!existsSync(bundle)) ociBundle(bundle, rootfs);
      const codes: number[] = [];
      const xs = await time(n, async (i) => { codes.push(await spawnWait(rt, ['run', '--bundle', bundle, `feather-bench-${rt}-${process.pid}-${i}`])); });
      if (codes.some((c) => c !== 0)) console.log(`${rt}: ${codes.filter((c) => c !== 0).length} runs failed`);
      rows.push(row(rt, xs));
    }

    const cli = fileURLToPath(new URL('../agent/cli/main.js', import.meta.url));
    const cliN = Math.max(5, Math.floor(n / 5));
    rows.push(row('feather-agent run CLI (whole process)', await time(cliN, (i) =>
      spawnWait(process.execPath, [cli, 'run', '--data-dir', paths.root, '--image', 'busybox', '--rm', '--name', `cli-${i < 0 ? `w${-i}` : i}`, '--', '/bin/true']))));

    printTable('Container start+run+cleanup of /bin/true', rows, 'floor: unshare+chroot');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
