// npm run bench -- scheduler [--devices N] [--deployments D] [--replicas R] [--runs K] [--shared]
// The whole plan for D x R replicas (default 100 x 100 = 10,000) over N heterogeneous devices
// (default 10,000): placements per second, beside an in-process anchor (a naive first-fit over
// the same input, run here) and beside published figures of other schedulers (not run here).
// Inputs come from a seeded generator: every run plans the same fleet. Replicas hold Edge TPUs and
// NPUs and share GPUs (the defaults); --shared makes every deployment share every accelerator
// (resources.accelerators: 0), the plan the scheduler made before it counted devices.
import type { Inventory } from '../shared/protocol/inventory.js';
import { parseMemory } from '../shared/limits.js';
import type { AcceleratorKind, Arch, DeviceView, Measurement, Placement } from '../controller/model/types.js';
import { validateDeployment, withDefaults } from '../controller/deployments/spec.js';
import { POOL_OF, needsOf, poolCapacity, poolFits } from '../controller/scheduler/accelerators.js';
import { choose, deviceKinds, type Choice } from '../controller/scheduler/choice.js';
import { LatencyIndex, latencyBucket } from '../controller/scheduler/latency.js';
import { schedule, type DeploymentInput, type ScheduleInput, type ScheduleResult } from '../controller/scheduler/index.js';
import { median, ms, percentile, printTable, type Row } from './stats.js';

const NOW = 1_700_000_000_000;
const GiB = 2 ** 30;

/** Published figures, not runs: placements (pods, allocations) per second. */
const PUBLISHED = [
  { name: 'kube-scheduler, 500-5,000 nodes (published, low)', perSecond: 300 },
  { name: 'kube-scheduler, 500-5,000 nodes (published, high)', perSecond: 900 },
  { name: 'Nomad C2M, 2M containers (published)', perSecond: 1500 },
];

/** A small deterministic PRNG (mulberry32): the same fleet on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Board { arch: Arch; accels: Exclude<AcceleratorKind, 'cpu'>[]; name: string; weight: number; memGi: number[]; cores: number[] }

const BOARDS: Board[] = [
  { name: 'jetson-orin', arch: 'aarch64', accels: ['cuda', 'tensorrt'], weight: 12, memGi: [8, 16, 32], cores: [6, 8, 12] },
  { name: 'x86-rtx', arch: 'x86_64', accels: ['cuda'], weight: 8, memGi: [16, 32], cores: [8, 16] },
  { name: 'pi-coral', arch: 'aarch64', accels: ['edgetpu'], weight: 15, memGi: [2, 4, 8], cores: [4] },
  { name: 'x86-coral', arch: 'x86_64', accels: ['edgetpu'], weight: 5, memGi: [8, 16], cores: [4, 8] },
  { name: 'rk3588', arch: 'aarch64', accels: ['npu'], weight: 10, memGi: [4, 8, 16], cores: [8] },
  { name: 'nuc-igpu', arch: 'x86_64', accels: ['gpu'], weight: 5, memGi: [8, 16], cores: [4, 8] },
  { name: 'x86-cpu', arch: 'x86_64', accels: [], weight: 25, memGi: [4, 8, 16, 32], cores: [2, 4, 8, 16] },
  { name: 'pi4', arch: 'aarch64', accels: [], weight: 15, memGi: [2, 4, 8], cores: [4] },
  { name: 'visionfive', arch: 'riscv64', accels: [], weight: 5, memGi: [4, 8], cores: [4] },
];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T;
}

export function makeDevices(n: number, seed = 1): DeviceView[] {
  const r = rng(seed);
  const total = BOARDS.reduce((s, b) => s + b.weight, 0);
  const out: DeviceView[] = [];
  for (let i = 0; i < n; i++) {
    let x = r() * total;
    const board = BOARDS.find((b) => (x -= b.weight) < 0) ?? (BOARDS[0] as Board);
    const memGi = pick(r, board.memGi);
    const id = `dev-${String(i).padStart(5, '0')}`;
    const labels = { site: `site-${i % 20}`, tier: i % 10 === 0 ? 'gateway' : 'edge' };
    const inventory: Inventory = {
      id, arch: board.arch, cpu: { model: board.name, cores: pick(r, board.cores), flags: [] }, memoryBytes: memGi * GiB,
      disk: { freeBytes: 64 * GiB }, kernel: '6.6', cgroup: 'v2',
      accelerators: board.accels.map((kind) => ({ kind, vendor: 'v', model: board.name, device: `/dev/${kind}0` })),
      labels, runtimes: ['shim'],
    };
    out.push({ id, online: r() > 0.02, lastSeen: NOW - Math.floor(r() * 30_000), inventory, labels, boardClass: `${board.arch}/${board.name}/${memGi}G` });
  }
  return out;
}

const SHA = (i: number, salt: string): string => (salt + String(i)).padEnd(64, '0').replace(/[^0-9a-f]/g, 'a').slice(0, 64);
const PREFS: AcceleratorKind[][] = [
  ['tensorrt', 'cuda', 'edgetpu', 'npu', 'cpu'], ['edgetpu', 'npu', 'cpu'], ['cuda', 'gpu', 'cpu'], ['npu', 'edgetpu', 'tensorrt', 'cpu'], ['cpu'],
];

export function makeDeployments(count: number, replicas: number): DeploymentInput[] {
  const out: DeploymentInput[] = [];
  for (let i = 0; i < count; i++) {
    const prefs = PREFS[i % PREFS.length] as AcceleratorKind[];
    const variants = prefs.flatMap((a) => {
      const precisions = a === 'edgetpu' || a === 'npu' ? ['int8'] : a === 'cpu' ? ['fp32', 'int8'] : ['fp16', 'fp32'];
      return precisions.map((p) => ({ accelerator: a, precision: p, url: `https://models.example/m${i % 10}-${a}-${p}.bin`, sha256: SHA(i, `${a}${p}`) }));
    });
    const archs: Arch[] = i % 7 === 0 ? ['aarch64'] : ['x86_64', 'aarch64'];
    const spec = validateDeployment({
      name: `dep-${String(i).padStart(3, '0')}`,
      model: { name: `model-${i % 10}`, variants },
      runtime: { variants: archs.map((arch) => ({ arch, image: `rt-${i % 10}`, url: `https://images.example/rt-${i % 10}-${arch}.tar.gz`, sha256: SHA(i, arch) })) },
      replicas,
      resources: { memory: `${128 * (1 + (i % 4))}Mi`, cpus: [0.1, 0.25, 0.5, 1][i % 4] },
      accelerators: prefs,
      strategy: i % 3 === 0 ? 'binpack' : 'spread',
      ...(i % 2 === 0 ? { p95LatencyMs: 20 + (i % 5) * 10 } : {}),
    });
    out.push({ spec, revision: 1 });
  }
  return out;
}

/** Latency of each model on a few devices of each board class. */
export function makeMeasurements(devices: readonly DeviceView[], models: number, seed = 2): Measurement[] {
  const r = rng(seed);
  const out: Measurement[] = [];
  for (const [i, d] of devices.entries()) {
    if (i % 25 !== 0) continue;
    for (let m = 0; m < models; m++) {
      for (const precision of ['fp32', 'fp16', 'int8'] as const) {
        out.push({ deviceId: d.id, boardClass: d.boardClass, model: `model-${m}`, precision, p95Ms: 5 + r() * 60, count: 500, at: NOW - Math.floor(r() * 200_000) });
      }
    }
  }
  return out;
}

/**
 * Accelerator devices of the anchors, counted the plain way: per device and pool, devices nobody
 * holds and replicas sharing (controller/scheduler/accelerators.ts defines pools and the rule).
 */
class Pools {
  private readonly free: number[][];
  private readonly sharing: number[][];

  constructor(sorted: readonly DeviceView[], private readonly kinds: readonly Set<AcceleratorKind>[]) {
    this.free = sorted.map((d) => poolCapacity(d.inventory?.accelerators ?? []));
    this.sharing = sorted.map(() => [0, 0, 0, 0]);
  }

  /** The kinds device i offers a replica with these needs now: an accelerator whose devices are held is as good as absent. */
  available(i: number, needs: Readonly<Record<AcceleratorKind, number>>): Set<AcceleratorKind> {
    const kinds = this.kinds[i] as Set<AcceleratorKind>;
    const out = new Set<AcceleratorKind>();
    for (const k of kinds) {
      const p = POOL_OF[k];
      if (p < 0 || poolFits(this.free[i]?.[p] as number, this.sharing[i]?.[p] as number, needs[k])) out.add(k);
    }
    return out;
  }

  take(i: number, kind: AcceleratorKind, need: number): void {
    const p = POOL_OF[kind];
    if (p < 0) return;
    if (need > 0) (this.free[i] as number[])[p] = (this.free[i]?.[p] as number) - need;
    else (this.sharing[i] as number[])[p] = (this.sharing[i]?.[p] as number) + 1;
  }
}

/**
 * The anchor: first-fit as one writes it first. For each replica, scan the devices in id order
 * and take the first that is online, has an image for its arch, an accelerator with a variant
 * and a free device of it, and room; no scores. Same filters, same input.
 */
export function firstFit(devices: readonly DeviceView[], deployments: readonly DeploymentInput[]): Placement[] {
  const sorted = [...devices].sort((a, b) => (a.id < b.id ? -1 : 1));
  const mem = sorted.map((d) => d.inventory?.memoryBytes ?? 0);
  const cpu = sorted.map((d) => Math.round((d.inventory?.cpu.cores ?? 0) * 1000));
  const kinds = sorted.map((d) => deviceKinds(d.inventory?.accelerators ?? []));
  const pools = new Pools(sorted, kinds);
  const out: Placement[] = [];
  for (const { spec, revision } of [...deployments].sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1))) {
    const need = parseMemory(spec.resources.memory);
    const needCpu = Math.round(spec.resources.cpus * 1000);
    const needs = needsOf(spec.resources.accelerators);
    for (let r = 0; r < (spec.replicas ?? 0); r++) {
      for (let i = 0; i < sorted.length; i++) {
        const d = sorted[i] as DeviceView;
        if (!d.online || !d.inventory || (mem[i] as number) < need || (cpu[i] as number) < needCpu) continue;
        const c = choose(spec, d.inventory.arch, (kinds[i] as Set<AcceleratorKind>).size > 1 ? pools.available(i, needs) : kinds[i] as Set<AcceleratorKind>);
        if (!c.ok) continue;
        mem[i] = (mem[i] as number) - need;
        cpu[i] = (cpu[i] as number) - needCpu;
        pools.take(i, c.accelerator, needs[c.accelerator]);
        out.push({ deployment: spec.name, revision, replica: r, deviceId: d.id, accelerator: c.accelerator, precision: c.precision, container: `${spec.name}-${r}`, arch: d.inventory.arch });
        break;
      }
    }
  }
  return out;
}

/**
 * The second anchor: the same scores without indexes or heap. For each replica, every device is
 * filtered and scored and the best one taken: what schedule() computes, the slow way. What a
 * device offers (its accelerators with free devices) and the estimate for it are looked up once
 * per deployment and device, and again for the device just placed on, so the loop itself is plain.
 */
export function scoreAll(devices: readonly DeviceView[], deployments: readonly DeploymentInput[], measurements: readonly Measurement[]): Placement[] {
  const sorted = [...devices].sort((a, b) => (a.id < b.id ? -1 : 1));
  const n = sorted.length;
  const memTotal = sorted.map((d) => d.inventory?.memoryBytes ?? 0);
  const cpuTotal = sorted.map((d) => Math.round((d.inventory?.cpu.cores ?? 0) * 1000));
  const mem = [...memTotal];
  const cpu = [...cpuTotal];
  const kinds = sorted.map((d) => deviceKinds(d.inventory?.accelerators ?? []));
  const pools = new Pools(sorted, kinds);
  const latency = new LatencyIndex(measurements);
  const out: Placement[] = [];
  for (const { spec: raw, revision } of [...deployments].sort((a, b) => (a.spec.name < b.spec.name ? -1 : 1))) {
    const spec = withDefaults(raw);
    const need = parseMemory(spec.resources.memory);
    const needCpu = Math.round(spec.resources.cpus * 1000);
    const needs = needsOf(spec.resources.accelerators);
    const objective = spec.p95LatencyMs ?? Infinity;
    const counts = new Int32Array(n);
    // What each device offers now, and the expected p95 of that; again for a device after a placement on it.
    const choiceAt = (i: number): ReturnType<typeof choose> | undefined => {
      const d = sorted[i] as DeviceView;
      return d.online && d.inventory ? choose(spec, d.inventory.arch, pools.available(i, needs)) : undefined;
    };
    const estAt = (i: number): number | undefined => {
      const c = choice[i];
      const d = sorted[i] as DeviceView;
      return c?.ok ? latency.estimate(spec.model.name, c.precision, d.id, d.boardClass) : undefined;
    };
    const choice = sorted.map((_, i) => choiceAt(i));
    const est = sorted.map((_, i) => estAt(i));
    const room = (i: number): number => Math.min(((mem[i] as number) - need) / (memTotal[i] as number), ((cpu[i] as number) - needCpu) / (cpuTotal[i] as number));
    for (let r = 0; r < (spec.replicas ?? 0); r++) {
      let best = -1;
      let bk: number[] = [];
      for (let i = 0; i < n; i++) {
        const c = choice[i];
        if (!c?.ok || (mem[i] as number) < need || (cpu[i] as number) < needCpu) continue;
        const e = est[i];
        const k0 = (e !== undefined && e > objective ? 64 : 0) + c.rank;
        const k = spec.strategy === 'binpack' ? [k0, latencyBucket(e), room(i)] : [k0, counts[i] as number, latencyBucket(e), -room(i)];
        let better = best < 0;
        for (let j = 0; !better && j < k.length; j++) {
          if ((k[j] as number) !== (bk[j] as number)) { better = (k[j] as number) < (bk[j] as number); break; }
        }
        if (better) { best = i; bk = k; }
      }
      if (best < 0) continue;
      const d = sorted[best] as DeviceView;
      const c = choice[best] as Choice;
      mem[best] = (mem[best] as number) - need;
      cpu[best] = (cpu[best] as number) - needCpu;
      counts[best] = (counts[best] as number) + 1;
      pools.take(best, c.accelerator, needs[c.accelerator]);
      choice[best] = choiceAt(best);
      est[best] = estAt(best);
      out.push({ deployment: spec.name, revision, replica: r, deviceId: d.id, accelerator: c.accelerator, precision: c.precision, container: `${spec.name}-${r}`, arch: c.runtime.arch });
    }
  }
  return out;
}

function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

function time<T>(runs: number, fn: () => T, warmUp = true): { xs: number[]; last: T } {
  let last: T | undefined = warmUp ? fn() : undefined; // warm-up (JIT)
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    last = fn();
    xs.push(ms(process.hrtime.bigint() - t0));
  }
  return { xs, last: last as T };
}

const row = (name: string, xs: number[], note?: string): Row => ({ name, medianMs: median(xs), p90Ms: percentile(xs, 90), n: xs.length, ...(note ? { note } : {}) });

export async function benchScheduler(args: string[]): Promise<void> {
  const nDevices = arg(args, 'devices', 10_000);
  const nDeployments = arg(args, 'deployments', 100);
  const nReplicas = arg(args, 'replicas', 100);
  const runs = arg(args, 'runs', 5);
  if (args.includes('--help')) {
    console.log('npm run bench -- scheduler [--devices 10000] [--deployments 100] [--replicas 100] [--runs 5] [--shared]');
    return;
  }
  const shared = args.includes('--shared');
  const devices = makeDevices(nDevices);
  const deployments = makeDeployments(nDeployments, nReplicas).map((d) => (shared ? { ...d, spec: { ...d.spec, resources: { ...d.spec.resources, accelerators: 0 } } } : d));
  const measurements = makeMeasurements(devices, 10);
  const total = nDeployments * nReplicas;
  const base: ScheduleInput = { devices, deployments, placements: [], measurements, now: NOW, graceMs: 300_000 };
  console.log(`scheduler: ${total} replicas (${nDeployments} deployments x ${nReplicas}) over ${nDevices} devices (${BOARDS.length} board types, ~2% offline), ${measurements.length} latency measurements; ` +
    `${shared ? 'every accelerator shared (--shared)' : 'Edge TPUs and NPUs held, one replica each; GPUs shared'}; node ${process.version}`);

  const fresh = time(runs, () => schedule(base));
  const placed = fresh.last.placements.length;
  const steady = time(runs, () => schedule({ ...base, placements: fresh.last.placements }));
  // 1% of the devices holding replicas drop offline past the grace period.
  const hosts = [...new Set(fresh.last.placements.map((p) => p.deviceId))].sort();
  const lost = new Set(hosts.filter((_, i) => i % 100 === 0));
  const offline = devices.map((d) => (lost.has(d.id) ? { ...d, online: false, lastSeen: NOW - 3_600_000 } : d));
  const replan = time(runs, () => schedule({ ...base, devices: offline, placements: fresh.last.placements }));
  const anchor = time(Math.min(runs, 3), () => firstFit(devices, deployments));
  // Seconds per run: once, without a warm-up.
  const naive = time(1, () => scoreAll(devices, deployments, measurements), false);
  const same = JSON.stringify(naive.last) === JSON.stringify(fresh.last.placements);

  check(fresh.last, total);
  printTable(`whole plan, ${total} replicas over ${nDevices} devices (in-process anchors: a first-fit without scores, and the same scores computed against every device)`, [
    row('first-fit (anchor)', anchor.xs, `${anchor.last.length} placed, no scores`),
    row('score every device per replica (anchor 2)', naive.xs, `same placements as schedule(): ${same ? 'yes' : 'NO'}`),
    row('schedule(), from nothing', fresh.xs, `${placed} placed`),
    row('schedule(), nothing changed', steady.xs, `${steady.last.moves.length} moves, ${steady.last.affectedDevices.length} devices affected`),
    row(`schedule(), ${lost.size} devices offline past grace`, replan.xs, `${replan.last.moves.length} moves`),
  ], 'first-fit (anchor)');

  const ours = placed / (median(fresh.xs) / 1000);
  const theirs = anchor.last.length / (median(anchor.xs) / 1000);
  const slow = naive.last.length / (median(naive.xs) / 1000);
  console.log(`\nplacements per second (schedule() from nothing: ${Math.round(ours)}/s)`);
  console.log('| against | their placements/s | ours / theirs |');
  console.log('| --- | --- | --- |');
  console.log(`| first-fit (anchor, run here) | ${Math.round(theirs)} | ${(ours / theirs).toFixed(2)} |`);
  console.log(`| score every device per replica (anchor 2, run here) | ${Math.round(slow)} | ${(ours / slow).toFixed(1)} |`);
  for (const p of PUBLISHED) console.log(`| ${p.name} | ${p.perSecond} | ${(ours / p.perSecond).toFixed(0)} |`);
  console.log('(published figures were measured elsewhere, on other hardware and with other work per placement: API writes, binding, preemption; they are not runs of this benchmark)');
}

/** The plan is judged too: everything that can be placed is, and spread deployments spread. */
function check(r: ScheduleResult, total: number): void {
  const unsched = r.status.reduce((n, s) => n + s.unschedulable.replicas, 0);
  const perDevice = new Map<string, number>();
  for (const p of r.placements) perDevice.set(p.deviceId, (perDevice.get(p.deviceId) ?? 0) + 1);
  const byAccel = new Map<string, number>();
  for (const p of r.placements) byAccel.set(`${p.accelerator}/${p.precision}`, (byAccel.get(`${p.accelerator}/${p.precision}`) ?? 0) + 1);
  console.log(`plan: ${r.placements.length}/${total} placed, ${unsched} unschedulable, on ${perDevice.size} devices (max ${Math.max(...perDevice.values())} replicas on one); ` +
    `${[...byAccel].sort().map(([k, v]) => `${k} ${v}`).join(', ')}`);
}
