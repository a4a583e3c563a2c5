// npm run bench -- inference [--model heavy|tiny] [--rate 200] [--duration 5] [--rounds 6]
//                            [--threads 1] [--cpus N] [--pin CORE] [--warmup 50] [--layers 6 --width 512 --batch 32]
// One model's inference latency inside a Feather container (busybox + the onnx module layer,
// the model bind-mounted from the image store, telemetry over the statsd socket) beside the same
// runner, same options, run directly on the host. Both report every latency over a unix datagram
// socket bound by this process with the agent's own code; the figures are computed from those
// lines, so both sides are measured by the same path. Rounds alternate host/container (and which
// goes first) so that drift on the machine falls on both alike. --pin puts both on one core (taskset
// for the host runner, the container's cpuset), so neither side gains from migrations. Needs root.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildRecipe } from '../agent/images/recipes.js';
import { runnerCommand } from '../agent/images/recipes/onnx.js';
import { DataPaths } from '../agent/paths.js';
import { ImageStore } from '../agent/images/store.js';
import { detectCgroups } from '../agent/runtime/cgroups/detect.js';
import { ShimRuntime } from '../agent/runtime/runtime.js';
import { openStatsdSocket } from '../agent/telemetry/statsd-socket.js';
import { configureLogging } from '../shared/logging.js';
import { heavyModel, tinyMlp, writeModel } from '../test/helpers/onnx-models.js';
import { median, percentile } from './stats.js';

const RUNNER = fileURLToPath(new URL('../runner/main.js', import.meta.url));

interface Options {
  model: 'heavy' | 'tiny';
  rate: number;
  duration: number;
  rounds: number;
  threads: number;
  cpus: number;
  warmup: number;
  /** -1: no pinning. */
  pin: number;
  layers: number;
  width: number;
  batch: number;
}

function parseArgs(args: string[]): Options {
  const o: Options = { model: 'heavy', rate: 200, duration: 5, rounds: 6, threads: 1, cpus: cpus().length, warmup: 50, pin: -1, layers: 6, width: 512, batch: 32 };
  for (let i = 0; i < args.length; i++) {
    const key = args[i]?.replace(/^--/, '') ?? '';
    const value = args[++i];
    if (!(key in o) || value === undefined) throw new Error(`unknown or incomplete option ${args[i - 1] ?? ''}; options: ${Object.keys(o).map((k) => `--${k}`).join(' ')}`);
    if (key === 'model') {
      if (value !== 'heavy' && value !== 'tiny') throw new Error('--model is heavy or tiny');
      o.model = value;
    } else {
      const n = Number(value);
      if (!Number.isFinite(n) || n < 0 || (n === 0 && key !== 'pin')) throw new Error(`--${key} takes a positive number`);
      (o as unknown as Record<string, number>)[key] = n;
    }
  }
  return o;
}

interface Run { side: 'host' | 'container'; round: number; latencies: number[]; summary: { count: number; p50Ms: number; p99Ms: number; late: number } }

const LINE = /^inference\.latency:([0-9.]+)\|ms\|#model:/;

/** A statsd socket in `dir` collecting latency values (the agent's socket code). */
function collect(dir: string): { path: string; values: number[]; close(): void } {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const values: number[] = [];
  const sock = openStatsdSocket(join(dir, 'statsd.sock'), (d) => {
    for (const line of d.toString('utf8').split('\n')) {
      const m = LINE.exec(line);
      if (m?.[1] !== undefined) values.push(Number(m[1]));
    }
  });
  return { path: sock.path, values, close: () => sock.close() };
}

function summaryOf(text: string): Run['summary'] {
  const line = text.split('\n').find((l) => l.startsWith('{"event":"load.done"'));
  if (line === undefined) throw new Error(`the runner printed no summary:\n${text.slice(-2000)}`);
  return JSON.parse(line) as Run['summary'];
}

async function drained(values: number[], count: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (values.length < count && Date.now() < deadline) await sleep(10);
  if (values.length !== count) throw new Error(`${values.length} latency lines arrived for ${count} inferences`);
}

function runnerArgs(o: Options, model: string, name: string): string[] {
  return ['--model', model, '--model-name', name, '--rate', String(o.rate), '--duration', String(o.duration),
    '--threads', String(o.threads), '--warmup', String(o.warmup)];
}

async function onHost(o: Options, modelFile: string, dir: string): Promise<Omit<Run, 'round'>> {
  const sock = collect(dir);
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const argv = [process.execPath, RUNNER, ...runnerArgs(o, modelFile, o.model), '--statsd', sock.path];
      if (o.pin >= 0) argv.unshift('taskset', '-c', String(o.pin));
      const child = spawn(argv[0] ?? '', argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
      child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`host runner exited ${String(code)}: ${stderr.slice(-2000)}`))));
    });
    const summary = summaryOf(out);
    await drained(sock.values, summary.count);
    return { side: 'host', latencies: [...sock.values], summary };
  } finally {
    sock.close();
  }
}

async function inContainer(o: Options, rt: ShimRuntime, layer: string, modelDir: string, name: string): Promise<Omit<Run, 'round'>> {
  // The runtime bind-mounts the container's run directory at /run/feather, as the agent's does.
  const sock = collect(rt.containerRunDir(name));
  try {
    await rt.run({
      name, image: 'busybox', extraLayers: [layer],
      args: runnerCommand(runnerArgs(o, `/models/${o.model}`, o.model)),
      limits: { memoryBytes: 512 * 2 ** 20, cpus: o.cpus, pids: 64, cpuset: o.pin >= 0 ? String(o.pin) : undefined },
      binds: [{ source: modelDir, target: `/models/${o.model}`, readonly: true }],
    });
    for (;;) {
      const info = rt.inspect(name);
      if (info.status === 'exited') {
        if (info.exitCode !== 0) throw new Error(`container runner exited ${String(info.exitCode)}: ${(await rt.logs(name, 30)).join('\n')}`);
        break;
      }
      await sleep(50);
    }
    const summary = summaryOf((await rt.logs(name)).join('\n'));
    await drained(sock.values, summary.count);
    return { side: 'container', latencies: [...sock.values], summary };
  } finally {
    sock.close();
    await rt.remove(name, { force: true }).catch(() => undefined);
  }
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toFixed(3) : 'n/a';
}

export async function benchInference(args: string[]): Promise<void> {
  const o = parseArgs(args);
  if (process.getuid?.() !== 0) throw new Error('the inference benchmark runs containers: run it as root');
  configureLogging({ level: 'warn' });
  const root = mkdtempSync(join(tmpdir(), 'feather-bench-inference-'));
  try {
    const paths = new DataPaths(join(root, 'data'));
    const images = new ImageStore(paths);
    await buildRecipe(images, 'busybox', { name: 'busybox' });
    const t0 = performance.now();
    const mod = await buildRecipe(images, 'onnx', { name: 'onnx' });
    const buildS = (performance.now() - t0) / 1000;
    const layer = await images.ensureExtracted('onnx');

    const built = o.model === 'tiny' ? tinyMlp() : heavyModel({ layers: o.layers, width: o.width, batch: o.batch });
    const src = writeModel(join(root, 'src'), o.model, built.bytes);
    const modelDir = await images.ensureModel(pathToFileURL(src.file).href, src.sha256);
    const runtime = new ShimRuntime({
      paths, images, cgroups: detectCgroups(), defaults: { memory: '128Mi', cpus: 0.5, pids: 10 }, logMaxBytes: 1 << 20, runDir: join(root, 'run'),
    });

    const shape = o.model === 'tiny' ? '4->8->3' : `${o.layers} x MatMul ${o.batch}x${o.width}·${o.width}x${o.width}`;
    console.log(`inference benchmark: model ${o.model} (${shape}, ${(built.bytes.length / 2 ** 20).toFixed(1)} MiB), ${o.rate}/s for ${o.duration} s x ${o.rounds} rounds per side, ` +
      `${o.threads} intra-op thread(s), container cpus ${o.cpus} of ${cpus().length}, memory 512Mi, pids 64${o.pin >= 0 ? `, both pinned to core ${o.pin}` : ''}`);
    console.log(`onnx module: ${(mod.size / 2 ** 20).toFixed(1)} MiB gzipped, built in ${buildS.toFixed(1)} s; load average before ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);

    const runs: Run[] = [];
    for (let round = 1; round <= o.rounds; round++) {
      const order: Run['side'][] = round % 2 === 1 ? ['host', 'container'] : ['container', 'host'];
      for (const side of order) {
        const r = side === 'host'
          ? await onHost(o, src.file, join(root, 'host-run', String(round)))
          : await inContainer(o, runtime, layer, modelDir, `bench-inference-${round}`);
        runs.push({ ...r, round });
        console.log(`  round ${round} ${side.padEnd(9)} n=${r.latencies.length} p50 ${fmt(percentile(r.latencies, 50))} ms  p99 ${fmt(percentile(r.latencies, 99))} ms  late ${r.summary.late}`);
      }
    }

    const pooled = (side: Run['side']): number[] => runs.filter((r) => r.side === side).flatMap((r) => r.latencies);
    const roundMedian = (side: Run['side'], p: number): number => median(runs.filter((r) => r.side === side).map((r) => percentile(r.latencies, p)));
    const host = pooled('host');
    const ctr = pooled('container');
    const rows = [
      { name: 'host (runner on the host)', xs: host, p50r: roundMedian('host', 50), p99r: roundMedian('host', 99) },
      { name: 'feather container', xs: ctr, p50r: roundMedian('container', 50), p99r: roundMedian('container', 99) },
    ];
    const h50 = percentile(host, 50);
    const h99 = percentile(host, 99);
    console.log(`\nInference latency, ${o.model}, from the statsd lines (pooled over rounds; median of the per-round figures in brackets)`);
    console.log('| run | n | p50 ms | p99 ms | p50 ratio to host | p99 ratio to host |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const r of rows) {
      const p50 = percentile(r.xs, 50);
      const p99 = percentile(r.xs, 99);
      console.log(`| ${r.name} | ${r.xs.length} | ${fmt(p50)} (${fmt(r.p50r)}) | ${fmt(p99)} (${fmt(r.p99r)}) | ${(p50 / h50).toFixed(3)} | ${(p99 / h99).toFixed(3)} |`);
    }
    const p50Ratio = percentile(ctr, 50) / h50;
    const p99Ratio = percentile(ctr, 99) / h99;
    const within = (r: number): string => (Math.abs(r - 1) <= 0.03 ? 'within 3%' : 'OUTSIDE 3%');
    console.log(`\ncontainer/host: p50 ${p50Ratio.toFixed(3)} (${within(p50Ratio)}), p99 ${p99Ratio.toFixed(3)} (${within(p99Ratio)}); load average after ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
