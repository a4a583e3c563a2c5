// Real cgroups on this host (v1 hierarchies, possibly beside a cgroup2 mount: hybrid). Needs root.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configureLogging } from '../../shared/logging.js';
import { detectCgroups } from '../../agent/runtime/cgroups/detect.js';
import { nodeCgroupFs } from '../../agent/runtime/cgroups/fs.js';
import { setMemoryV1 } from '../../agent/runtime/cgroups/v1.js';
import type { CgroupBackend } from '../../agent/runtime/cgroups/types.js';
import type { Limits } from '../../shared/limits.js';

configureLogging({ level: 'error' });

const ROOT = '/sys/fs/cgroup';
const SEED: Limits = { memoryBytes: 128 * 2 ** 20, cpus: 0.5, pids: 10 };
let counter = 0;
const uniqueName = (): string => `t-cg-${process.pid}-${counter++}`;

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root to create cgroups';
  try {
    const cg = detectCgroups(ROOT);
    if (cg.mode === 'v2') return 'this host is cgroup v2 only';
    if (cg.controllers.memory === undefined || !cg.controllers.memory.startsWith(ROOT) || cg.controllers.memory.endsWith('unified')) {
      return 'the memory controller is not on a v1 hierarchy here';
    }
  } catch (e: unknown) {
    return `no usable cgroups: ${String(e)}`;
  }
  return false;
}
const skip = skipReason();

const read = (dir: string, file: string): string => readFileSync(join(dir, file), 'utf8').trim();

/** Every directory named <name> under any hierarchy's feather/ (what must be gone at the end). */
function leftovers(name: string): string[] {
  return readdirSync(ROOT).map((h) => join(ROOT, h, 'feather', name)).filter((d) => existsSync(d));
}

function setup(t: { teardown(fn: () => void): void }): { cg: CgroupBackend; name: string; procs: ChildProcess[] } {
  const cg = detectCgroups(ROOT, { busyRetryMs: 300 });
  const name = uniqueName();
  const procs: ChildProcess[] = [];
  t.teardown(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    // Give the kernel a moment to empty the cgroups of the killed processes.
    detectCgroups(ROOT, { busyRetryMs: 2000 }).remove(name);
  });
  return { cg, name, procs };
}

function exited(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve();
    else p.once('exit', () => resolve());
  });
}

t.test('limits reach the kernel, a real process is counted, remove leaves nothing', { skip }, async (t) => {
  const { cg, name, procs } = setup(t);
  t.match(cg.mode, /^(v1|hybrid)$/);
  const dirs = cg.create(name, SEED);
  t.ok(dirs.length >= 3, `one cgroup per hierarchy: ${dirs.join(' ')}`);
  const mem = join(cg.controllers.memory ?? '', 'feather', name);
  const cpu = join(cg.controllers.cpu ?? '', 'feather', name);
  const pids = join(cg.controllers.pids ?? '', 'feather', name);
  t.ok(dirs.includes(mem) && dirs.includes(cpu) && dirs.includes(pids));
  t.equal(read(mem, 'memory.limit_in_bytes'), String(128 * 2 ** 20));
  if (existsSync(join(mem, 'memory.memsw.limit_in_bytes'))) t.equal(read(mem, 'memory.memsw.limit_in_bytes'), String(128 * 2 ** 20));
  t.equal(read(cpu, 'cpu.cfs_period_us'), '100000');
  t.equal(read(cpu, 'cpu.cfs_quota_us'), '50000');
  t.equal(read(pids, 'pids.max'), '10');

  // Like the shim: join the cgroups first, then run the workload (its memory and CPU are charged
  // here: a short busy loop, then sleep).
  const child = spawn('sh', ['-c', 'read go; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 5'], { stdio: ['pipe', 'ignore', 'ignore'] });
  procs.push(child);
  const pid = child.pid;
  if (pid === undefined) throw new Error('spawn failed');
  for (const dir of dirs) nodeCgroupFs.write(join(dir, 'cgroup.procs'), String(pid));
  child.stdin?.end('go\n');

  let usage = cg.usage(name);
  for (let i = 0; i < 60 && (usage === undefined || usage.memoryBytes === 0 || usage.cpuSeconds === 0); i++) {
    await new Promise((r) => setTimeout(r, 50));
    usage = cg.usage(name);
  }
  t.equal(usage?.pids, 1, 'pids.current = 1');
  t.ok((usage?.memoryBytes ?? 0) > 0, `memory charged: ${usage?.memoryBytes}`);
  t.ok((usage?.memoryPeakBytes ?? 0) >= (usage?.memoryBytes ?? 0));
  t.equal(usage?.memoryLimitBytes, 128 * 2 ** 20);
  t.ok((usage?.cpuSeconds ?? 0) > 0, `cpu charged: ${usage?.cpuSeconds}`);
  t.equal(usage?.oomKills, 0);
  t.ok(cg.list().includes(name));

  t.throws(() => cg.remove(name), { code: 'RUNTIME_ERROR', message: /EBUSY/ }, 'a populated cgroup is not removed');
  t.equal(child.exitCode, null, 'and remove killed nothing');
  child.kill('SIGKILL');
  await exited(child);
  detectCgroups(ROOT, { busyRetryMs: 2000 }).remove(name);
  t.same(leftovers(name), [], 'nothing left under */feather/<name>');
  t.notOk(cg.list().includes(name));
  t.equal(cg.usage(name), undefined);
});

t.test('the kernel keeps memsw >= limit: setMemoryV1 orders its writes for it', { skip }, async (t) => {
  const { cg, name } = setup(t);
  cg.create(name, SEED);
  const mem = join(cg.controllers.memory ?? '', 'feather', name);
  if (!existsSync(join(mem, 'memory.memsw.limit_in_bytes'))) {
    t.pass('no swap accounting on this kernel: only the limit is written');
    return;
  }
  t.throws(() => nodeCgroupFs.write(join(mem, 'memory.limit_in_bytes'), String(256 * 2 ** 20)), { code: 'EINVAL' }, 'raising the limit above memsw fails');
  setMemoryV1(nodeCgroupFs, mem, 256 * 2 ** 20);
  t.equal(read(mem, 'memory.limit_in_bytes'), String(256 * 2 ** 20));
  t.equal(read(mem, 'memory.memsw.limit_in_bytes'), String(256 * 2 ** 20));
  setMemoryV1(nodeCgroupFs, mem, 64 * 2 ** 20);
  t.equal(read(mem, 'memory.limit_in_bytes'), String(64 * 2 ** 20));
  t.equal(read(mem, 'memory.memsw.limit_in_bytes'), String(64 * 2 ** 20));
  cg.remove(name);
  t.same(leftovers(name), []);
});

t.test('cpuset pinning: feather/ is given cpus and mems, the container its core', { skip }, async (t) => {
  const { cg, name } = setup(t);
  if (cg.controllers.cpuset === undefined) {
    t.pass('no cpuset hierarchy');
    return;
  }
  const dirs = cg.create(name, { ...SEED, cpuset: '0' });
  const dir = join(cg.controllers.cpuset, 'feather', name);
  t.ok(dirs.includes(dir));
  t.equal(read(dir, 'cpuset.cpus'), '0');
  t.equal(read(dir, 'cpuset.mems'), read(join(cg.controllers.cpuset, 'feather'), 'cpuset.mems'));
  t.not(read(dir, 'cpuset.mems'), '');
  cg.remove(name);
  t.same(leftovers(name), []);
});

t.test('a value the kernel refuses rolls everything back and says why', { skip }, async (t) => {
  const { cg, name } = setup(t);
  if (cg.controllers.cpuset === undefined) {
    t.pass('no cpuset hierarchy');
    return;
  }
  t.throws(() => cg.create(name, { ...SEED, cpuset: '1000' }), { code: 'RUNTIME_ERROR', message: /cpuset\.cpus.*ERANGE.*no such cores/ });
  t.same(leftovers(name), [], 'no leaked cgroup');
});

t.test('CONFLICT on an existing cgroup', { skip }, async (t) => {
  const { cg, name } = setup(t);
  cg.create(name, SEED);
  t.throws(() => cg.create(name, SEED), { code: 'CONFLICT' });
  t.ok(existsSync(join(cg.controllers.memory ?? '', 'feather', name)), 'the first one is untouched');
  cg.remove(name);
  t.same(leftovers(name), []);
});

t.test('device rules land in devices.list', { skip }, async (t) => {
  const { cg, name } = setup(t);
  const r = cg.setDevices(name, [
    { allow: false, type: 'a', access: 'rwm' },
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
  ]);
  if (!r.supported) {
    t.pass(`not supported here: ${r.reason}`);
    return;
  }
  const dir = r.dirs[0] ?? '';
  t.equal(read(dir, 'devices.list'), 'c 1:3 rwm');
  cg.remove(name);
  t.same(leftovers(name), []);
});
