// feather-shim against the real kernel: containers from a busybox rootfs, spec files written
// here (docs/shim-spec.md), the binary run directly. Needs root (namespaces, mounts, cgroups).
import t, { type Test } from 'tap';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync, existsSync, lchownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync,
  rmdirSync, statSync, symlinkSync, writeFileSync, copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const NATIVE = resolve(import.meta.dirname, '../../native');
const SHIM = join(NATIVE, 'build/feather-shim');
const BUSYBOX = '/bin/busybox';
const DOCKER_CAPS = '00000000a80425fb';
const TAB = '\t';

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  if (!existsSync(BUSYBOX)) return 'needs busybox-static at /bin/busybox';
  return false;
}
const skip = skipReason();

if (!skip && !existsSync(SHIM)) execFileSync('make', ['-s', '-C', NATIVE], { stdio: 'inherit' });

// One busybox image for the whole file; each container gets its own upper/work/rootfs.
const base = mkdtempSync(join(tmpdir(), 'feather-shim-test-'));
chmodSync(base, 0o755); // a user-namespaced root (uid 100000) must be able to walk in
t.teardown(() => {
  rmSync(base, { recursive: true, force: true });
});

function makeImage(dir: string): void {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(BUSYBOX, join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(dir, 'etc/not-a-program'), 'just text\n');
}
const lower = join(base, 'lower');
if (!skip) makeImage(lower);

interface Box {
  dir: string;
  rootfs: string;
  upper: string;
  work: string;
  state: string;
  log: string;
  records: string[];
}

let boxes = 0;
function box(name: string, extra: string[] = [], image = lower): Box {
  const dir = join(base, `c${boxes++}`);
  const b: Box = {
    dir,
    rootfs: join(dir, 'rootfs'),
    upper: join(dir, 'upper'),
    work: join(dir, 'work'),
    state: join(dir, 'state.json'),
    log: join(dir, 'log'),
    records: [],
  };
  for (const d of [b.rootfs, b.upper, b.work]) mkdirSync(d, { recursive: true });
  b.records = [
    'version=1', `name=${name}`, `rootfs=${b.rootfs}`, `lower=${image}`, `upper=${b.upper}`, `work=${b.work}`,
    'env=PATH=/bin', ...extra,
  ];
  return b;
}

function writeSpec(b: Box, records: string[] = b.records): string {
  const path = join(b.dir, 'spec');
  writeFileSync(path, records.map((r) => `${r}\0`).join(''));
  return path;
}

const sh = (script: string): string[] => ['arg=sh', 'arg=-c', `arg=${script}`];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(b: Box, input?: string): Result {
  const r = spawnSync(SHIM, ['run', writeSpec(b)], { input: input ?? '', encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Run a script in a fresh container and return its stdout (asserting it exited 0). */
function inside(t: Test, script: string, extra: string[] = []): string {
  const r = run(box('probe', [...extra, ...sh(script)]));
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.trim()})`);
  return r.stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, f: () => T | undefined, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function exited(p: ChildProcess): Promise<number | null> {
  return new Promise((res) => {
    if (p.exitCode !== null) res(p.exitCode);
    else p.once('exit', (code) => res(code));
  });
}

/** The container's host pid: the shim's only child. */
function childOf(pid: number): number | undefined {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return kids ? Number(kids.split(' ')[0]) : undefined;
  } catch {
    return undefined;
  }
}

/** Gone, or a zombie nobody reaped yet: not running either way. */
function dead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

function hostMountsUnder(path: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(path));
}

interface State {
  version: number;
  status: string;
  pid: number;
  shimPid: number;
  startedAt: number;
  finishedAt?: number;
  exitCode?: number;
  signal?: number;
  oomKills?: number;
}
const readState = (b: Box): State | undefined => {
  try {
    return JSON.parse(readFileSync(b.state, 'utf8')) as State;
  } catch {
    return undefined;
  }
};
const exitedState = (b: Box): State | undefined => {
  const s = readState(b);
  return s?.status === 'exited' ? s : undefined;
};

function startDetached(b: Box): { pid: number; shimPid: number; stdout: string } {
  const r = run(b);
  if (r.code !== 0) throw new Error(`detached start failed (${r.code}): ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { pid: number; shimPid: number };
  return { ...j, stdout: r.stdout };
}

const procs: ChildProcess[] = [];
const pids: number[] = [];
const cgroups: string[] = [];
t.teardown(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const dir of cgroups) {
    for (let i = 0; i < 50 && existsSync(dir); i++) {
      try {
        rmdirSync(dir);
      } catch {
        execFileSync('sleep', ['0.05']);
      }
    }
  }
});

function makeCgroup(controller: string, files: Record<string, string> = {}): string | undefined {
  const root = `/sys/fs/cgroup/${controller}`;
  if (!existsSync(join(root, 'cgroup.procs'))) return undefined;
  const dir = join(root, `feather-test-${process.pid}-${cgroups.length}`);
  mkdirSync(dir);
  cgroups.push(dir);
  for (const [f, v] of Object.entries(files)) writeFileSync(join(dir, f), v);
  return dir;
}

const noV1 = ['pids', 'memory'].some((c) => !existsSync(`/sys/fs/cgroup/${c}/cgroup.procs`))
  ? 'needs v1 pids and memory hierarchies'
  : false;

/** The first cgroup2 mount point (/sys/fs/cgroup on v2, /sys/fs/cgroup/unified on a hybrid host). */
function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left?.split(' ')[4];
  }
  return undefined;
}
const cg2 = cgroup2Mount();

/** A fresh directory under the cgroup2 mount, removed at teardown if the shim did not. */
function makeCgroup2(): string {
  if (cg2 === undefined) throw new Error('no cgroup2 mount');
  const dir = join(cg2, `feather-test-${process.pid}-${cgroups.length}`);
  mkdirSync(dir);
  cgroups.push(dir);
  return dir;
}

t.test('feather-shim', { skip }, async (t) => {
  t.test('version and features', async (t) => {
    t.match(execFileSync(SHIM, ['version'], { encoding: 'utf8' }), /^feather-shim \S+ spec 1\n$/);
    const f = JSON.parse(execFileSync(SHIM, ['features'], { encoding: 'utf8' })) as Record<string, unknown>;
    t.same(f.spec, [1]);
    t.equal(typeof f.idmap, 'boolean');
    t.equal(f.cgroupns, true);
  });

  t.test('the workload is PID 1 in its own PID, UTS, network and mount namespaces', async (t) => {
    const b = box('web-1', sh('echo pid=$$; hostname; ls /sys/class/net; cat /sys/class/net/lo/flags; ls -d /proc/[0-9]*; cat /proc/self/mountinfo'));
    const r = run(b);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    t.equal(lines[0], 'pid=1');
    t.equal(lines[1], 'web-1', 'hostname is the name');
    t.equal(lines[2], 'lo', 'only lo in /sys/class/net');
    t.equal(Number(lines[3]) & 1, 1, 'lo is UP');
    const procPids = lines.filter((l) => /^\/proc\/\d+$/.test(l));
    t.ok(procPids.includes('/proc/1') && procPids.length <= 3, `host processes invisible: ${procPids.join(' ')}`);
    const mounts = lines.filter((l) => / - /.test(l)).map((l) => l.split(' ')[4] ?? '');
    t.equal(mounts[0], '/', 'the overlay is the root');
    t.ok(mounts.every((m) => /^\/(proc|sys|dev)?(\/|$)/.test(m)), `only the container's mounts: ${mounts.join(' ')}`);
    t.notOk(mounts.some((m) => m.startsWith(base) || m === '/work' || m.startsWith('/mnt')), 'no host mount points');
    t.match(lines.find((l) => l.split(' ')[4] === '/') ?? '', / - overlay overlay /);
    t.same(hostMountsUnder(b.rootfs), [], 'nothing is mounted on the host');
  });

  t.test('capabilities are Docker\'s default set and no_new_privs is set', async (t) => {
    const out = inside(t, 'grep -E "^(Cap|NoNewPrivs)" /proc/self/status');
    const status = Object.fromEntries(out.trim().split('\n').map((l) => l.split(/:\s+/)));
    t.equal(status.CapEff, DOCKER_CAPS);
    t.equal(status.CapPrm, DOCKER_CAPS);
    t.equal(status.CapBnd, DOCKER_CAPS);
    t.equal(status.CapInh, '0000000000000000');
    t.equal(status.CapAmb, '0000000000000000');
    t.equal(status.NoNewPrivs, '1');
  });

  t.test('kernel paths are masked and read-only', async (t) => {
    const out = inside(t, [
      'for f in /proc/keys /proc/timer_list /proc/kcore /proc/sched_debug; do [ -e $f ] && echo "$f $(wc -c < $f)"; done',
      'echo firmware=$(ls -A /sys/firmware | wc -l)',
      'touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro',
      'echo x > /proc/sys/kernel/hostname 2>/dev/null && echo procsys-writable || echo procsys-ro',
      'grep -E " /proc/(sys|irq|bus) " /proc/self/mountinfo | cut -d" " -f5,6',
      'ls /dev | tr "\\n" " "',
    ].join('; '));
    for (const l of out.split('\n').filter((l) => l.startsWith('/proc/'))) {
      if (/^\/proc\/\w+ \d+$/.test(l)) t.match(l, / 0$/, `${l.split(' ')[0]} reads empty`);
    }
    t.match(out, /^\/proc\/keys 0$/m, '/proc/keys is masked');
    t.match(out, /^firmware=0$/m, '/sys/firmware is empty');
    t.match(out, /^sys-ro$/m, '/sys is read-only');
    t.match(out, /^procsys-ro$/m, '/proc/sys is read-only');
    t.match(out, /^\/proc\/sys ro,/m);
    for (const d of ['null', 'zero', 'full', 'random', 'urandom', 'tty', 'ptmx', 'pts', 'shm', 'fd', 'stdin', 'stdout', 'stderr']) {
      t.match(out, new RegExp(`(^| )${d} `, 'm'), `/dev/${d}`);
    }
  });

  t.test('writes land in upper, the lower layer is untouched', async (t) => {
    const b = box('w', sh('echo hello > /etc/new && rm /etc/not-a-program && ls /etc'));
    const r = run(b);
    t.equal(r.code, 0, r.stderr);
    t.notMatch(r.stdout, /not-a-program/);
    t.equal(readFileSync(join(b.upper, 'etc/new'), 'utf8'), 'hello\n');
    t.ok(existsSync(join(lower, 'etc/not-a-program')), 'lower keeps the deleted file');
    t.notOk(existsSync(join(lower, 'etc/new')), 'lower has no new file');
    t.ok(statSync(join(b.upper, 'etc/not-a-program')).isCharacterDevice(), 'a whiteout in upper');
  });

  t.test('exit codes', async (t) => {
    t.equal(run(box('x', ['arg=true'])).code, 0);
    t.equal(run(box('x', sh('exit 3'))).code, 3);
    const missing = run(box('x', ['arg=no-such-program']));
    t.equal(missing.code, 127, 'not found');
    t.match(missing.stderr, /^feather-shim: exec no-such-program: execve: No such file or directory \(errno 2\)$/m);
    t.equal(run(box('x', ['arg=/no/such'])).code, 127, 'not found by path');
    const noexec = run(box('x', ['arg=/etc/not-a-program']));
    t.equal(noexec.code, 126, 'cannot execute');
    t.match(noexec.stderr, /execve: Permission denied \(errno 13\)/);
    t.equal(run(box('x', ['init=1', 'arg=no-such-program'])).code, 127, 'not found under init');
  });

  t.test('env is exactly the spec\'s and cwd is made', async (t) => {
    // The program is exec'd directly (no shell that adds variables) and found in the spec's PATH.
    const b = box('e', ['env=FOO=bar baz', 'env=PATH=/usr/bin:/bin', 'cwd=/srv/app', 'arg=cat', 'arg=/proc/self/environ']);
    b.records = b.records.filter((r) => r !== 'env=PATH=/bin');
    const r = run(b);
    t.equal(r.code, 0, r.stderr);
    t.same(r.stdout.split('\0'), ['FOO=bar baz', 'PATH=/usr/bin:/bin', '']);
    const cwd = run(box('e', ['cwd=/srv/app', 'arg=readlink', 'arg=/proc/self/cwd']));
    t.equal(cwd.stdout, '/srv/app\n', 'cwd created and entered');
  });

  t.test('SIGKILL of the container gives 137', async (t) => {
    const p = spawn(SHIM, ['run', writeSpec(box('k', ['arg=sleep', 'arg=30']))], { stdio: 'ignore' });
    procs.push(p);
    const pid = await until('the container', () => childOf(p.pid ?? 0));
    await sleep(100);
    process.kill(pid, 'SIGKILL');
    t.equal(await exited(p), 137);
  });

  t.test('init=1: PID 1 is the init, SIGTERM is forwarded, 143', async (t) => {
    const r = run(box('i', ['init=1', ...sh('echo $$; tr "\\0" " " < /proc/1/cmdline; echo; ls /proc/1/fd')]));
    t.equal(r.code, 0, r.stderr);
    const [pid, cmdline, ...fds] = r.stdout.trim().split('\n');
    t.equal(pid, '2', 'the workload is PID 2');
    t.equal(cmdline?.trim(), 'feather-init', 'PID 1 is the init, without the host\'s spec path');
    t.same(fds, ['0', '1', '2'], 'the init holds only stdio');
    const p = spawn(SHIM, ['run', writeSpec(box('i', ['init=1', 'arg=sleep', 'arg=30']))], { stdio: 'ignore' });
    procs.push(p);
    await until('the container', () => childOf(p.pid ?? 0));
    await sleep(150);
    p.kill('SIGTERM');
    t.equal(await exited(p), 143);
  });

  t.test('tty=1: the workload gets a terminal', async (t) => {
    const r = run(box('tty', ['tty=1', 'arg=sh']), 'tty; test -t 0 && echo is-a-tty; exit 5\n');
    t.equal(r.code, 5, r.stderr);
    t.match(r.stdout, /\/dev\/pts\/0/);
    t.match(r.stdout, /is-a-tty/);
  });

  t.test('bind and device entries', async (t) => {
    const src = join(base, 'bindsrc');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'model.bin'), 'weights');
    const records = [
      `bind=${src}${TAB}/models${TAB}ro`,
      `bind=${src}${TAB}/deep/rw${TAB}rw`,
      `device=/dev/zero${TAB}/dev/accel0`,
      ...sh('cat /models/model.bin; echo; touch /models/x 2>/dev/null || echo ro-ok; touch /deep/rw/y && echo rw-ok; head -c 3 /dev/accel0 | od -An -tx1'),
    ];
    const r = run(box('b', records));
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^weights\nro-ok\nrw-ok\n\s*00 00 00\n$/);
    t.ok(existsSync(join(src, 'y')), 'the rw bind writes through');
  });

  t.test('network=host shares the host interfaces', async (t) => {
    const out = inside(t, 'ls /sys/class/net', ['network=host']);
    t.same(out.trim().split('\n').sort(), readdirSync('/sys/class/net').sort());
  });

  t.test('detach: pid JSON, state running then exited, log', async (t) => {
    const b = box('d', ['detach=1']);
    b.records.push(`state=${b.state}`, `log=${b.log}`, ...sh('echo out; echo err >&2; sleep 0.6; exit 4'));
    const started = startDetached(b);
    pids.push(started.pid);
    t.match(started.stdout, /^\{"pid":\d+,"shimPid":\d+\}\n$/, 'exact start line');
    const running = readState(b);
    t.equal(running?.status, 'running', 'state is running once the start line is out');
    t.equal(running?.pid, started.pid);
    t.equal(running?.shimPid, started.shimPid);
    t.ok(Math.abs((running?.startedAt ?? 0) - Date.now()) < 10_000, 'startedAt is Unix ms');
    const done = await until('exited state', () => exitedState(b));
    t.equal(done.exitCode, 4);
    t.equal(done.signal, 0);
    t.equal(done.oomKills, 0);
    t.ok((done.finishedAt ?? 0) >= done.startedAt);
    t.equal(readFileSync(b.log, 'utf8').split('\n').sort().join(' '), ' err out');
    t.notOk(existsSync(`${b.state}.tmp`), 'no temp state file left');
  });

  t.test('detach: a failed start reports the error and its code', async (t) => {
    const b = box('d', ['detach=1', 'arg=no-such-program']);
    const r = run(b);
    t.equal(r.code, 127);
    t.equal(r.stdout, '');
    t.match(r.stderr, /^feather-shim: exec no-such-program: execve: No such file or directory \(errno 2\)$/m);
  });

  t.test('detach: the log rotates at log_max', async (t) => {
    const b = box('r', ['detach=1']);
    b.records.push(`state=${b.state}`, `log=${b.log}`, 'log_max=100', ...sh('i=0; while [ $i -lt 30 ]; do echo line-$i; i=$((i+1)); done'));
    const started = startDetached(b);
    pids.push(started.pid);
    const done = await until('exited state', () => exitedState(b));
    t.equal(done.exitCode, 0);
    const expected = Array.from({ length: 30 }, (_, i) => `line-${i}\n`).join('');
    const log1 = readFileSync(`${b.log}.1`, 'utf8');
    const log = readFileSync(b.log, 'utf8');
    t.equal(log1.length, 100, 'log.1 is full');
    t.ok(log.length <= 100, 'log within the cap');
    t.ok(expected.endsWith(log1 + log), 'the newest output is kept, in order');
  });

  t.test('cgroups: joined before the workload runs, OOM counted, removed at exit', { skip: noV1 }, async (t) => {
    const pidsCg = makeCgroup('pids', { 'pids.max': '20' });
    const memCg = makeCgroup('memory', { 'memory.limit_in_bytes': String(16 * 2 ** 20) });
    if (!pidsCg || !memCg) throw new Error('v1 cgroups vanished');
    const b = box('cg', ['detach=1', `cgroup=${memCg}`, `cgroup=${pidsCg}`]);
    // The workload sleeps a moment so the host can see it in both cgroups, then fills memory.
    b.records.push(`state=${b.state}`, `log=${b.log}`, ...sh('sleep 0.3; head -c 64m /dev/zero > /dev/shm/fill; echo survived'));
    const started = startDetached(b);
    pids.push(started.pid);
    const inPids = readFileSync(join(pidsCg, 'cgroup.procs'), 'utf8').split('\n');
    const inMem = readFileSync(join(memCg, 'cgroup.procs'), 'utf8').split('\n');
    t.ok(inPids.includes(String(started.pid)), 'in the pids cgroup');
    t.ok(inMem.includes(String(started.pid)), 'in the memory cgroup');
    const done = await until('exited state', () => exitedState(b));
    t.ok((done.oomKills ?? 0) >= 1, `OOM kills counted: ${done.oomKills}`);
    t.equal(done.exitCode, 137);
    t.equal(done.signal, 9);
    t.notOk(existsSync(pidsCg), 'pids cgroup removed');
    t.notOk(existsSync(memCg), 'memory cgroup removed');
  });

  t.test('the cgroup namespace hides the host hierarchy', { skip: noV1 }, async (t) => {
    const pidsCg = makeCgroup('pids');
    if (!pidsCg) throw new Error('v1 cgroups vanished');
    const out = inside(t, 'grep pids /proc/self/cgroup', [`cgroup=${pidsCg}`]);
    t.match(out, /^\d+:pids:\/$/m);
    t.notOk(existsSync(pidsCg), 'foreground mode removes the cgroup too');
  });

  t.test('devcgroup: the BPF device filter denies every device no devrule allows', { skip: cg2 === undefined && 'no cgroup2 mount' }, async (t) => {
    // Each line says what one open gave; 2>&1 puts busybox's "Operation not permitted" on stdout.
    const script = [
      'echo x > /dev/null && echo null-ok',
      'head -c 1 /dev/urandom | wc -c',
      'mknod /tmp/zero c 1 5 && echo mknod-ok',
      'head -c 1 /tmp/zero 2>&1 >/dev/null',
      'head -c 1 /dev/zero 2>&1 >/dev/null',
      'echo end',
    ].join('; ');
    // The shim's /dev basics (the agent's baseline) without /dev/zero.
    const rules = ['c * * m', 'b * * m', 'c 1 3 rwm', 'c 1 7 rwm', 'c 1 8 rwm', 'c 1 9 rwm', 'c 5 0 rwm', 'c 5 2 rwm', 'c 136 * rwm'];
    const dir = makeCgroup2();
    const out = inside(t, script, [`cgroup=${dir}`, `devcgroup=${dir}`, ...rules.map((r) => `devrule=${r}`)]).split('\n');
    t.equal(out[0], 'null-ok', '/dev/null is allowed');
    t.equal(out[1], '1', '/dev/urandom is allowed');
    t.equal(out[2], 'mknod-ok', 'mknod is allowed (c * * m), as in Docker');
    t.match(out[3], /\/tmp\/zero: Operation not permitted/, 'opening the made c 1:5 fails with EPERM');
    t.match(out[4], /\/dev\/zero: Operation not permitted/, 'and so does the bind-mounted host /dev/zero');
    t.equal(out[5], 'end');
    t.notOk(existsSync(dir), 'the cgroup (and its program with it) is removed at exit');

    // Control: the same container without the filter reads the made node.
    const plain = inside(t, 'mknod /tmp/zero c 1 5 && head -c 3 /tmp/zero | wc -c').trim();
    t.equal(plain, '3', 'without devcgroup the same node opens: the EPERM above is the filter');
  });

  t.test('devcgroup: the agent\'s v2 rules (the baseline plus a device) through the shim', { skip: cg2 === undefined && 'no cgroup2 mount' }, async (t) => {
    const { BASELINE_DEVICE_RULES } = await import('../../agent/devices/cdi/container.js');
    const { formatDeviceFilterRule, toDeviceFilterRules } = await import('../../agent/runtime/cgroups/devices.js');
    // /dev/full (c 1:7) is in the baseline; allow c 1:11 (kmsg) read-only as a "device" of this container.
    const rules = toDeviceFilterRules([...BASELINE_DEVICE_RULES, { allow: true, type: 'c', major: 1, minor: 11, access: 'r' }]);
    const dir = makeCgroup2();
    const script = [
      'head -c 1 /dev/zero | wc -c',
      'mknod /tmp/kmsg c 1 11 && mknod /tmp/mem c 1 1 && echo mknod-ok',
      'echo x 2>&1 > /tmp/kmsg | grep -c "Operation not permitted"',
      'head -c 1 /tmp/mem 2>&1 >/dev/null | grep -c "Operation not permitted"',
    ].join('; ');
    const out = inside(t, script, [`cgroup=${dir}`, `devcgroup=${dir}`, ...rules.map((r) => `devrule=${formatDeviceFilterRule(r)}`)]).split('\n');
    t.equal(out[0], '1', 'the baseline allows /dev/zero');
    t.equal(out[1], 'mknod-ok');
    t.equal(out[2], '1', 'c 1:11 is allowed for reading only: writing is EPERM');
    t.equal(out[3], '1', 'c 1:1 (/dev/mem) is in no rule: EPERM');
  });

  t.test('devcgroup: a directory that is no cgroup2 fails before the workload runs', async (t) => {
    const notCg = mkdtempSync(join(base, 'not-a-cgroup-'));
    const r = run(box('devbad', [`cgroup=${notCg}`, `devcgroup=${notCg}`, 'devrule=c 1 3 rwm', 'arg=true']));
    t.equal(r.code, 125);
    t.match(r.stderr, /^feather-shim: device filters attached to .*not-a-cgroup-\S+ \(not a cgroup2 directory\): bpf\(BPF_PROG_QUERY\): Bad file descriptor \(errno 9\)$/m);
    const spec = run(box('devbad', ['devrule=c 1 3 rwm', 'arg=true']));
    t.equal(spec.code, 125);
    t.match(spec.stderr, /devrule needs devcgroup/);
  });

  function userBox(name: string, extra: string[]): Box {
    const image = join(base, 'lower-100000');
    if (!existsSync(image)) {
      execFileSync('cp', ['-a', lower, image]);
      execFileSync('chown', ['-hR', '100000:100000', image]);
    }
    const b = box(name, extra, image);
    for (const d of [b.rootfs, b.upper, b.work]) lchownSync(d, 100000, 100000);
    chmodSync(b.dir, 0o755);
    return b;
  }

  for (const userns of [false, true]) {
    t.test(`kill -9 of the supervisor kills the container and leaves no mount${userns ? ' (userns)' : ''}`, async (t) => {
      const extra = ['detach=1', ...(userns ? ['userns=100000:100000:65536'] : [])];
      const b = userns ? userBox('pd', extra) : box('pd', extra);
      b.records.push(`state=${b.state}`, 'arg=sleep', 'arg=30');
      const started = startDetached(b);
      pids.push(started.pid);
      t.notOk(dead(started.pid), 'running');
      t.same(hostMountsUnder(b.rootfs), [], 'the overlay is not visible on the host while it runs');
      process.kill(started.shimPid, 'SIGKILL');
      await until('the container to die', () => (dead(started.pid) ? true : undefined), 5000);
      t.ok(dead(started.pid), 'the container died with its supervisor');
      t.same(hostMountsUnder(b.rootfs), [], 'no mount left on the host');
      t.equal(readState(b)?.status, 'running', 'the state still says running (gc records the exit)');
    });
  }

  t.test('the detached supervisor forwards SIGTERM', async (t) => {
    const b = box('term', ['detach=1', 'init=1']);
    b.records.push(`state=${b.state}`, 'arg=sleep', 'arg=30');
    const started = startDetached(b);
    pids.push(started.pid);
    process.kill(started.shimPid, 'SIGTERM');
    const done = await until('exited state', () => exitedState(b));
    t.equal(done.exitCode, 143);
    await until('the supervisor to exit', () => (dead(started.shimPid) ? true : undefined), 5000);
    t.pass('the supervisor exits after the container');
  });

  t.test('userns with network=host: /sys is the host\'s, read-only, without its cgroups', async (t) => {
    const b = userBox('uh', ['network=host', ...sh('ls /sys/class/net; echo cg=$(ls -A /sys/fs/cgroup | wc -l); touch /sys/x 2>/dev/null || echo sys-ro')]);
    const r = run(b);
    t.equal(r.code, 0, r.stderr);
    for (const nic of readdirSync('/sys/class/net')) t.match(r.stdout, new RegExp(`^${nic}$`, 'm'), nic);
    t.match(r.stdout, /^cg=0$/m, 'the host cgroup hierarchies are covered');
    t.match(r.stdout, /^sys-ro$/m);
  });

  t.test('userns: container root is an unprivileged host range', async (t) => {
    const b = userBox('u', []);
    b.records.push('userns=100000:100000:65536', ...sh('cat /proc/self/uid_map /proc/self/gid_map; id -u; hostname; echo hi > /root/f; ls /sys/class/net'));
    const r = run(b);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
    t.equal(lines[0], '0 100000 65536', 'uid_map');
    t.equal(lines[1], '0 100000 65536', 'gid_map');
    t.equal(lines[2], '0', 'root inside');
    t.equal(lines[3], 'u');
    t.equal(lines[4], 'lo');
    t.equal(statSync(join(b.upper, 'root/f')).uid, 100000, 'files belong to the mapped host uid');
  });

  const idmap = (JSON.parse(execFileSync(SHIM, ['features'], { encoding: 'utf8' })) as { idmap: boolean }).idmap;
  t.test('userns with idmap=1: the image stays owned by root, an idmapped mount shifts it', { skip: !idmap && 'no idmapped mounts here' }, async (t) => {
    const script = 'ls -ln /bin/busybox | awk \'{print $3, $4}\'; echo more >> /etc/passwd && echo appended; echo hi > /root/f';
    const b = box('m', ['userns=100000:100000:65536', 'idmap=1', ...sh(script)]);
    for (const d of [b.rootfs, b.upper, b.work]) lchownSync(d, 100000, 100000);
    chmodSync(b.dir, 0o755);
    const r = run(b);
    t.equal(r.code, 0, r.stderr);
    t.same(r.stdout.trim().split('\n'), ['0 0', 'appended'], 'root-owned inside, copy-up works');
    t.equal(statSync(join(b.upper, 'etc/passwd')).uid, 100000, 'the copied-up file belongs to the range');
    t.equal(statSync(join(lower, 'etc/passwd')).uid, 0, 'the shared layer is untouched');
    t.notMatch(readFileSync(join(lower, 'etc/passwd'), 'utf8'), /more/);
    // The same image without idmap shows the unmapped owner: this is what idmap=1 fixes.
    const plain = box('m', ['userns=100000:100000:65536', ...sh('ls -ln /bin/busybox | awk \'{print $3}\'')]);
    for (const d of [plain.rootfs, plain.upper, plain.work]) lchownSync(d, 100000, 100000);
    chmodSync(plain.dir, 0o755);
    t.equal(run(plain).stdout.trim(), '65534', 'unmapped without idmap');
  });

  t.test('spec and setup errors exit 125 naming the failure', async (t) => {
    const b = box('bad', ['arg=true', 'color=red']);
    const r = run(b);
    t.equal(r.code, 125);
    t.match(r.stderr, /^feather-shim: .*spec: record \d+: unknown key "color"$/m);
    const missing = box('bad', ['arg=true']);
    missing.records = missing.records.map((rec) => (rec.startsWith('lower=') ? `lower=${join(base, 'nope')}` : rec));
    const m = run(missing);
    t.equal(m.code, 125);
    t.match(m.stderr, /^feather-shim: overlay at .*: mount: No such file or directory \(errno 2\)$/m);
    const usage = spawnSync(SHIM, ['frobnicate'], { encoding: 'utf8' });
    t.equal(usage.status, 125);
  });
});
