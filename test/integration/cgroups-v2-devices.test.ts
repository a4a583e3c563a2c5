// The cgroup v2 device path end to end, as root, on the real kernel: V2Cgroups turns the device
// rules into an allow-list, the runtime writes devcgroup=/devrule= into the shim spec, and the shim
// attaches the BPF program before the workload runs. On a v2 host this is the host's own backend;
// on a hybrid host (this CI host) it is a V2Cgroups over the cgroup2 mount at
// /sys/fs/cgroup/unified, which holds no controllers: only the device filter matters here.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataPaths } from '../../agent/paths.js';
import { ImageStore } from '../../agent/images/store.js';
import { buildRecipe } from '../../agent/images/recipes.js';
import { detectCgroups } from '../../agent/runtime/cgroups/detect.js';
import { V2Cgroups } from '../../agent/runtime/cgroups/v2.js';
import type { CgroupBackend } from '../../agent/runtime/cgroups/types.js';
import { ShimRuntime } from '../../agent/runtime/runtime.js';
import { configureLogging } from '../../shared/logging.js';
import { hostMountsUnder, isRoot } from '../helpers/runtime-fixture.js';

function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left?.split(' ')[4];
  }
  return undefined;
}

const mount = isRoot() ? cgroup2Mount() : undefined;
if (!isRoot()) {
  t.pass('skipped: needs root');
} else if (mount === undefined) {
  t.pass('skipped: no cgroup2 mount');
} else {
  configureLogging({ level: 'error' });
  const root = mkdtempSync(join(tmpdir(), 'feather-v2dev-'));
  const detected = detectCgroups();
  const cgroups: CgroupBackend = detected.mode === 'v2' ? detected : new V2Cgroups({ mount, controllers: [] });
  const paths = new DataPaths(join(root, 'data'));
  const images = new ImageStore(paths);
  const runtime = new ShimRuntime({
    paths, images, cgroups, defaults: { memory: '128Mi', cpus: 0.5, pids: 10 }, logMaxBytes: 64 * 1024, runDir: join(root, 'run'),
  });
  const name = `v2dev-${process.pid}`;
  const dir = join(mount, 'feather', name);
  t.teardown(async () => {
    await runtime.remove(name, { force: true }).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });

  const exited = async (): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (runtime.inspect(name).status !== 'exited') {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${name}`);
      await sleep(25);
    }
  };

  t.test('the baseline and a device node are all a container can open', async (t) => {
    await buildRecipe(images, 'busybox', { name: 'busybox' });
    // Major 60 is for local experimental use: no driver has it, so an allowed open fails ENXIO and
    // a refused one EPERM. c 60:0 is the container's device; c 61:0 is made inside and in no rule.
    const node = join(root, 'exp0');
    execFileSync('mknod', ['-m', '0666', node, 'c', '60', '0']);
    const script = [
      'echo x > /dev/null && echo null-ok',
      'head -c 2 /dev/zero | wc -c',
      'cat /dev/exp0 2>&1 | head -1',
      'mknod /tmp/other c 61 0 && echo mknod-ok',
      'cat /tmp/other 2>&1 | head -1',
      'mknod /tmp/zero c 1 5 && head -c 2 /tmp/zero | wc -c',
    ].join('; ');
    await runtime.run({ name, image: 'busybox', args: ['sh', '-c', script], devices: [{ hostPath: node, containerPath: '/dev/exp0' }] });
    t.ok(existsSync(dir), `the container's cgroup is ${dir}`);
    await exited();
    const lines = await runtime.logs(name);
    t.equal(lines[0], 'null-ok', '/dev/null');
    t.equal(lines[1], '2', '/dev/zero');
    t.match(lines[2] ?? '', /No such device or address/, 'the container\'s device node passes the filter (ENXIO comes from the missing driver)');
    t.equal(lines[3], 'mknod-ok', 'mknod is allowed, as in Docker');
    t.match(lines[4] ?? '', /Operation not permitted/, 'a node no rule allows cannot be opened');
    t.equal(lines[5], '2', 'a made node with allowed numbers works wherever it is');
    t.equal(runtime.inspect(name).exitCode, 0);
    t.notOk(existsSync(dir), 'the cgroup is removed at exit');
  });

  t.test('a restart attaches the filter again', async (t) => {
    await runtime.start(name);
    await exited();
    const lines = await runtime.logs(name);
    t.equal(lines.filter((l) => /Operation not permitted/.test(l)).length, 2, 'both runs refused the stray node');
    t.notOk(existsSync(dir));
    await runtime.remove(name);
    t.same(hostMountsUnder(paths.container(name).dir), []);
  });
}
