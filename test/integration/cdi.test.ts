// CDI end to end, as root, with real containers on this host's cgroups (v1 here): a spec for a
// fake vendor device (a character node with the numbers of /dev/null, under a temp CDI root),
// resolved by the agent's resolver, applied by the runtime: node, env, mount, hooks of every kind,
// device-cgroup rules that refuse any other device; and the spec the agent generates for a USB
// Coral, followed across the device's re-enumeration in a running container. Everything is
// removed at the end.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { detectAccelerators } from '../../agent/devices/accelerators.js';
import { writeAcceleratorSpecs } from '../../agent/devices/cdi/generate.js';
import { createCdiResolver } from '../../agent/devices/cdi/resolver.js';
import { HostFs } from '../../agent/devices/host-fs.js';
import { EXECUTORS, type ExecutorContext } from '../../agent/control/executors.js';
import { EventPublisher } from '../../agent/control/events.js';
import { Topics } from '../../shared/protocol/topics.js';
import { createLogger } from '../../shared/logging.js';
import { buildFakeHost, CORAL_BOOTLOADER } from '../helpers/fake-host.js';
import { cgroupLeftovers, hostMountsUnder, isRoot, runtimeFixture, type RuntimeFixture } from '../helpers/runtime-fixture.js';

if (!isRoot()) {
  t.pass('skipped: CDI container tests need root');
} else {
  let fx: RuntimeFixture;
  let cdiRoot: string;
  let v1Devices: string | undefined;

  t.before(async () => {
    fx = await runtimeFixture();
    v1Devices = fx.cgroups.mode === 'v2' ? undefined : fx.cgroups.controllers.devices;
    cdiRoot = mkdtempSync(join(tmpdir(), 'feather-cdi-it-'));
    mkdirSync(join(cdiRoot, 'dev'), { recursive: true });
    // The vendor's node: the numbers of /dev/null, so it can be written to harmlessly.
    execFileSync('mknod', ['-m', '0666', join(cdiRoot, 'dev/acme-acc0'), 'c', '1', '3']);
    // A library directory the spec mounts, holding a node that no rule allows. Major 60 is reserved
    // for local experimental use: no driver has it, so an allowed open fails ENXIO, a refused one EPERM.
    mkdirSync(join(cdiRoot, 'opt/acme/lib'), { recursive: true });
    writeFileSync(join(cdiRoot, 'opt/acme/lib/libacme.so.1'), 'not really a library\n');
    execFileSync('mknod', ['-m', '0666', join(cdiRoot, 'opt/acme/lib/stray'), 'c', '60', '0']);
    mkdirSync(join(cdiRoot, 'etc/cdi'), { recursive: true });
    writeFileSync(join(cdiRoot, 'etc/cdi/acme.yaml'), [
      'cdiVersion: "0.6.0"',
      'kind: acme.com/accel',
      'containerEdits:',
      '  env: ["ACME_RUNTIME=1"]',
      '  mounts:',
      `    - hostPath: /opt/acme/lib`,
      '      containerPath: /usr/lib/acme',
      '      options: [ro, nosuid, nodev, bind]',
      'devices:',
      '  - name: acc0',
      '    containerEdits:',
      '      env: ["ACME_VISIBLE_DEVICES=0"]',
      '      deviceNodes:',
      '        - path: /dev/acme-acc0',
      '          permissions: rw',
      '      hooks:',
      '        - hookName: poststart',
      '          path: /bin/sh',
      `          args: [sh, -c, "cat > ${join(cdiRoot, 'hook-state.json')}"]`,
      '',
    ].join('\n'));
  });
  t.teardown(async () => {
    await fx.cleanup();
    rmSync(cdiRoot, { recursive: true, force: true });
  });

  async function exited(name: string): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (fx.runtime.inspect(name).status !== 'exited') {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${name}`);
      await sleep(25);
    }
  }

  async function waitForFile(path: string): Promise<string> {
    const deadline = Date.now() + 10_000;
    while (!existsSync(path)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
      await sleep(25);
    }
    return readFileSync(path, 'utf8');
  }

  const resolver = (): ReturnType<typeof createCdiResolver> => createCdiResolver({ root: cdiRoot, logger: createLogger('test:cdi') });

  t.test('a CDI device: node at its path, env, read-only mount, poststart hook, allowed by the device cgroup', async (t) => {
    const devices = await resolver()(['acme.com/accel=acc0']);
    const script = [
      'stat -c "%F %t:%T" /dev/acme-acc0',
      'echo data > /dev/acme-acc0 && echo write-ok',
      'echo "env $ACME_VISIBLE_DEVICES $ACME_RUNTIME"',
      'cat /usr/lib/acme/libacme.so.1',
      'touch /usr/lib/acme/x 2>/dev/null && echo mount-rw || echo mount-ro',
      'cat /usr/lib/acme/stray 2>&1 | head -1',
      'mknod /tmp/exp c 61 0 && echo mknod-ok; cat /tmp/exp 2>&1 | head -1',
      'echo null-ok > /dev/null && echo baseline-ok',
      'sleep 2',
    ].join('; ');
    const r = await fx.runtime.run({ name: 'cdi1', image: 'busybox', args: ['sh', '-c', script], devices });
    if (v1Devices !== undefined) {
      const list = readFileSync(join(v1Devices, 'feather', 'cdi1', 'devices.list'), 'utf8');
      t.match(list, /^c 1:3 rw/m, 'the node is allowed with the spec permissions');
      t.match(list, /^c 136:\* rwm$/m, 'devpts is allowed');
      t.notMatch(list, /^a \*:\* rwm$/m, 'not everything is allowed');
    }
    const state = JSON.parse(await waitForFile(join(cdiRoot, 'hook-state.json'))) as { id: string; pid: number; status: string; bundle: string };
    t.same({ id: state.id, pid: state.pid, status: state.status, bundle: state.bundle },
      { id: 'cdi1', pid: r.pid, status: 'running', bundle: fx.paths.container('cdi1').bundle }, 'the poststart hook got the OCI state');
    await exited('cdi1');
    const lines = await fx.runtime.logs('cdi1');
    t.equal(lines[0], 'character special file 1:3');
    t.equal(lines[1], 'write-ok');
    t.equal(lines[2], 'env 0 1', 'device and spec-level env');
    t.equal(lines[3], 'not really a library');
    t.equal(lines[4], 'mount-ro');
    if (v1Devices !== undefined) {
      t.match(lines[5] ?? '', /can't open .*Operation not permitted/, 'a node no rule allows cannot be opened');
      t.equal(lines[6], 'mknod-ok', 'mknod is allowed, as in Docker');
      t.match(lines[7] ?? '', /can't open .*Operation not permitted/, 'but the made node cannot be opened');
    } else {
      t.comment('no v1 devices controller here (on cgroup v2 the shim attaches a BPF filter: shim.test.ts checks it)');
    }
    t.equal(lines.at(-1), 'baseline-ok');
    t.equal(fx.runtime.inspect('cdi1').exitCode, 0);
    t.same(cgroupLeftovers('cdi1'), [], 'no cgroup left, the devices one included');
    await fx.runtime.remove('cdi1');
    t.same(hostMountsUnder(fx.paths.container('cdi1').dir), []);
  });

  t.test('a container without devices gets the baseline only', async (t) => {
    await fx.runtime.run({ name: 'cdi-none', image: 'busybox', args: ['sh', '-c', 'echo x > /dev/null && echo ok; mknod /tmp/n c 1 3 && echo x > /tmp/n && echo null-twin-ok; mknod /tmp/m c 60 1 && cat /tmp/m 2>&1 | head -1'] });
    await exited('cdi-none');
    const lines = await fx.runtime.logs('cdi-none');
    t.equal(lines[0], 'ok');
    t.equal(lines[1], 'null-twin-ok', 'a node with allowed numbers works wherever it is');
    if (v1Devices !== undefined) t.match(lines[2] ?? '', /can't open .*Operation not permitted/, 'other numbers are refused');
    await fx.runtime.remove('cdi-none');
    t.same(cgroupLeftovers('cdi-none'), []);
  });

  t.test('control: without device rules the same open reaches the (missing) driver', async (t) => {
    if (v1Devices === undefined) {
      t.comment('no v1 devices controller here');
      return;
    }
    const { ShimRuntime } = await import('../../agent/runtime/runtime.js');
    const { cgroups } = fx;
    // The same backend minus setDevices: what the runtime did before device rules existed.
    const noRules = { mode: cgroups.mode, create: cgroups.create.bind(cgroups), usage: cgroups.usage.bind(cgroups), remove: cgroups.remove.bind(cgroups), list: cgroups.list.bind(cgroups) };
    const rt = new ShimRuntime({ paths: fx.paths, images: fx.images, cgroups: noRules, defaults: { memory: '128Mi', cpus: 0.5, pids: 10 }, logMaxBytes: 65536 });
    await rt.run({ name: 'cdi-ctl', image: 'busybox', args: ['sh', '-c', 'mknod /tmp/exp c 61 0; cat /tmp/exp 2>&1 | head -1'] });
    await exited('cdi-ctl');
    t.match((await rt.logs('cdi-ctl'))[0] ?? '', /No such device or address/, 'ENXIO, not EPERM: the EPERM above is the device cgroup');
    await rt.remove('cdi-ctl');
  });

  t.test('restart applies the same edits from config.json, without the specs', async (t) => {
    const devices = await resolver()(['acme.com/accel=all']);
    await fx.runtime.run({ name: 'cdi2', image: 'busybox', args: ['sh', '-c', 'echo $ACME_VISIBLE_DEVICES; ls /dev/acme-acc0'], devices });
    await exited('cdi2');
    rmSync(join(cdiRoot, 'hook-state.json'), { force: true });
    const moved = join(cdiRoot, 'etc/cdi/acme.yaml.off');
    execFileSync('mv', [join(cdiRoot, 'etc/cdi/acme.yaml'), moved]);
    t.teardown(() => execFileSync('mv', [moved, join(cdiRoot, 'etc/cdi/acme.yaml')]));
    await fx.runtime.start('cdi2');
    await exited('cdi2');
    t.same(await fx.runtime.logs('cdi2'), ['0', '/dev/acme-acc0', '0', '/dev/acme-acc0']);
    await fx.runtime.remove('cdi2');
  });

  // Every OCI hook kind a CDI spec can name, at its point of the container's life. The
  // createContainer hook does what nvidia-ctk's update-ldcache does: it reads the state on stdin,
  // the root path from the bundle's config.json, and writes into the container's root before pivot_root.
  t.test('CDI hooks of every kind run where and when the OCI runtime spec says', async (t) => {
    const out = mkdtempSync(join(tmpdir(), 'feather-cdi-hooks-'));
    t.teardown(() => rmSync(out, { recursive: true, force: true }));
    const ldcache = join(out, 'ldcache.py');
    writeFileSync(ldcache, [
      'import json, os, sys',
      'state = json.load(sys.stdin)',
      "config = json.load(open(os.path.join(state['bundle'], 'config.json')))",
      "root = config['root']['path']",
      "os.makedirs(os.path.join(root, 'etc/ld.so.conf.d'), exist_ok=True)",
      "open(os.path.join(root, 'etc/ld.so.conf.d/acme.conf'), 'w').write('/usr/lib/acme\\n')",
      `open(${JSON.stringify(join(out, 'createContainer.json'))}, 'w').write(json.dumps(dict(state, mnt=os.readlink('/proc/self/ns/mnt'), hostname=os.uname().nodename)))`,
      '',
    ].join('\n'));
    const record = (kind: string): string => `{ cat; echo; readlink /proc/self/ns/mnt; } > ${join(out, `${kind}.json`)}`;
    writeFileSync(join(cdiRoot, 'etc/cdi/hooked.yaml'), [
      'cdiVersion: "0.6.0"',
      'kind: acme.com/hooked',
      'devices:',
      '  - name: h0',
      '    containerEdits:',
      '      hooks:',
      `        - { hookName: prestart, path: /bin/sh, args: [sh, -c, "${record('prestart')}"] }`,
      `        - { hookName: createRuntime, path: /bin/sh, args: [sh, -c, "${record('createRuntime')}"] }`,
      `        - { hookName: createContainer, path: /usr/bin/python3, args: [python3, ${ldcache}], env: [PATH=/usr/bin:/bin] }`,
      '        - { hookName: startContainer, path: /bin/sh, args: [sh, -c, "{ cat; echo; echo $HOOK_MARK; } > /tmp/start.json"], env: [HOOK_MARK=mark-1] }',
      `        - { hookName: poststart, path: /bin/sh, args: [sh, -c, "${record('poststart')}"] }`,
      `        - { hookName: poststop, path: /bin/sh, args: [sh, -c, "${record('poststop')}"] }`,
      '',
    ].join('\n'));
    t.teardown(() => rmSync(join(cdiRoot, 'etc/cdi/hooked.yaml'), { force: true }));
    const hostMnt = execFileSync('readlink', ['/proc/self/ns/mnt'], { encoding: 'utf8' }).trim();
    const devices = await resolver()(['acme.com/hooked=h0']);
    const r = await fx.runtime.run({ name: 'cdi-hooks', image: 'busybox', args: ['sh', '-c', 'cat /etc/ld.so.conf.d/acme.conf; cat /tmp/start.json'], devices });
    await exited('cdi-hooks');
    const bundle = fx.paths.container('cdi-hooks').bundle;
    const hostSide = (kind: string): { state: Record<string, unknown>; mnt: string } => {
      const [json, mnt] = readFileSync(join(out, `${kind}.json`), 'utf8').trim().split('\n');
      return { state: JSON.parse(json ?? '') as Record<string, unknown>, mnt: mnt ?? '' };
    };
    for (const kind of ['prestart', 'createRuntime']) {
      const { state, mnt } = hostSide(kind);
      t.same(state, { ociVersion: '1.0.2', id: 'cdi-hooks', status: 'creating', pid: r.pid, bundle, annotations: {} }, `${kind}: the OCI state, pid as the host sees it`);
      t.equal(mnt, hostMnt, `${kind} runs in the runtime's (host's) mount namespace`);
    }
    const cc = JSON.parse(readFileSync(join(out, 'createContainer.json'), 'utf8')) as Record<string, unknown>;
    t.match(cc, { id: 'cdi-hooks', status: 'creating', pid: r.pid, bundle }, 'createContainer: the OCI state');
    t.not(cc['mnt'], hostMnt, "createContainer runs in the container's mount namespace");
    t.equal(cc['hostname'], 'cdi-hooks', "and its UTS namespace");
    const lines = await fx.runtime.logs('cdi-hooks');
    t.equal(lines[0], '/usr/lib/acme', 'what createContainer wrote into the root through the bundle is in the container');
    const start = JSON.parse(lines[1] ?? '') as Record<string, unknown>;
    t.same(start, { ociVersion: '1.0.2', id: 'cdi-hooks', status: 'created', pid: r.pid, bundle, annotations: {} },
      'startContainer ran inside the container (its path and output resolved there) before the workload');
    t.equal(lines[2], 'mark-1', "the hook's own env");
    t.equal(hostSide('poststart').state['status'], 'running');
    t.notOk(existsSync(join(out, 'poststop.json')), 'poststop waits for the removal');
    const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { root: { path: string }; process: { args: string[] } };
    t.equal(config.root.path, fx.paths.container('cdi-hooks').rootfs, 'the bundle names the root');
    await fx.runtime.remove('cdi-hooks');
    t.match(hostSide('poststop').state, { id: 'cdi-hooks', status: 'stopped' }, 'poststop ran as the container was removed');
    t.same(cgroupLeftovers('cdi-hooks'), []);
  });

  t.test('a failing or hanging creation hook fails the start with its reason and leaves nothing', async (t) => {
    writeFileSync(join(cdiRoot, 'etc/cdi/badhooks.yaml'), [
      'cdiVersion: "0.6.0"',
      'kind: acme.com/badhook',
      'devices:',
      '  - name: fails',
      '    containerEdits:',
      '      hooks:',
      '        - { hookName: createContainer, path: /bin/sh, args: [sh, -c, "echo cannot find libacme.so >&2; exit 4"] }',
      '  - name: hangs',
      '    containerEdits:',
      '      hooks:',
      '        - { hookName: createRuntime, path: /bin/sleep, args: [sleep, "60"], timeout: 1 }',
      '  - name: missing',
      '    containerEdits:',
      '      hooks:',
      '        - { hookName: startContainer, path: /usr/bin/not-in-the-image }',
      '',
    ].join('\n'));
    t.teardown(() => rmSync(join(cdiRoot, 'etc/cdi/badhooks.yaml'), { force: true }));
    const cases: Array<[string, RegExp]> = [
      ['fails', /createContainer hook \/bin\/sh: exited with status 4: cannot find libacme\.so/],
      ['hangs', /createRuntime hook \/bin\/sleep: killed after its timeout of 1s/],
      ['missing', /startContainer hook \/usr\/bin\/not-in-the-image: exited with status 127/],
    ];
    for (const [name, message] of cases) {
      const devices = await resolver()([`acme.com/badhook=${name}`]);
      const started = Date.now();
      await t.rejects(fx.runtime.run({ name: `cdi-bad-${name}`, image: 'busybox', args: ['true'], devices }), { message }, `${name}: the start fails and says why`);
      t.ok(Date.now() - started < 20_000, `${name}: no wait past the hook's timeout`);
      t.throws(() => fx.runtime.inspect(`cdi-bad-${name}`), { code: 'NOT_FOUND' }, `${name}: no container is left`);
      t.same(cgroupLeftovers(`cdi-bad-${name}`), [], `${name}: no cgroup is left`);
      t.same(hostMountsUnder(fx.paths.container(`cdi-bad-${name}`).dir), [], `${name}: no mount is left`);
    }
  });

  t.test('unknown devices and kinds: clear errors, no container', async (t) => {
    await t.rejects(resolver()(['acme.com/accel=acc9']), { code: 'NOT_FOUND', message: /"acme\.com\/accel=acc9" is not defined: acme\.com\/accel has acc0 \(in .*acme\.yaml\)/ });
    await t.rejects(resolver()(['nvidia.com/gpu=0']), { code: 'NOT_FOUND', message: /no spec file defines the kind "nvidia\.com\/gpu".*known kinds: acme\.com\/accel/ });
    await t.rejects(resolver()(['not-a-cdi-name']), { code: 'BAD_REQUEST' });
  });

  t.test('through the container.run executor (the control plane path)', async (t) => {
    const events = new EventPublisher(new Topics('feather/v1', 'it'), async () => undefined, createLogger('test:events'));
    const ctx: ExecutorContext = {
      runtime: fx.runtime, images: fx.images, inventory: () => ({}), events, devices: resolver(),
      logger: createLogger('test:exec'), signal: new AbortController().signal,
    };
    const result = await EXECUTORS['container.run'].run({ name: 'cdi3', image: 'busybox', args: ['sh', '-c', 'echo $ACME_VISIBLE_DEVICES'], devices: ['acme.com/accel=acc0'] }, ctx) as { name: string };
    t.equal(result.name, 'cdi3');
    await exited('cdi3');
    t.same(await fx.runtime.logs('cdi3'), ['0']);
    await fx.runtime.remove('cdi3');
    await t.rejects(EXECUTORS['container.run'].run({ name: 'cdi4', image: 'busybox', devices: ['acme.com/accel=nope'] }, ctx), { code: 'NOT_FOUND' });
    t.throws(() => fx.runtime.inspect('cdi4'), { code: 'NOT_FOUND' }, 'nothing was created');
  });

  // A USB Coral on bus 63 (which no machine here has, so major 189 with its minors reaches no real
  // device: an allowed open fails ENXIO, or ENODEV where usbcore is loaded; a refused one EPERM).
  // The spec is generated from a fake sysfs tree; the nodes are real character nodes.
  t.test('USB Coral: the generated spec follows the device across re-enumeration in a running container, and a restart', async (t) => {
    const h = buildFakeHost('arm64');
    t.teardown(h.cleanup);
    h.usb({ port: '63-1', ...CORAL_BOOTLOADER, devnum: 2 });
    const bus = join(h.root, 'dev/bus/usb/063');
    const mknod = (name: string, minor: number): void => {
      rmSync(join(bus, name), { force: true });
      execFileSync('mknod', ['-m', '0664', join(bus, name), 'c', '189', String(minor)]);
    };
    mknod('001', 62 * 128); // the root hub, devnum 1
    mknod('002', 62 * 128 + 1); // the Coral before its firmware is loaded, devnum 2
    mknod('stray', 63 * 128); // a number of bus 64: no rule gives it
    const generated = writeAcceleratorSpecs(detectAccelerators(new HostFs(h.root)), { root: h.root });
    t.same(generated.devices, ['google.com/edgetpu=usb0']);
    const devices = await createCdiResolver({ root: h.root, logger: createLogger('test:cdi') })(['google.com/edgetpu=usb0']);
    const script = [
      'echo start',
      'cat /dev/bus/usb/063/002 2>&1 | head -1',
      'i=0; while [ ! -e /dev/bus/usb/063/003 ] && [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done',
      'echo $(ls /dev/bus/usb/063)',
      'cat /dev/bus/usb/063/003 2>&1 | head -1',
      'cat /dev/bus/usb/063/stray 2>&1 | head -1',
      'mknod /dev/bus/usb/063/050 c 1 3 2>&1 | head -1',
      'echo done',
    ].join('; ');
    await fx.runtime.run({ name: 'cdi-usb', image: 'busybox', args: ['sh', '-c', script], devices });
    t.teardown(async () => { await fx.runtime.remove('cdi-usb').catch(() => undefined); });
    if (v1Devices !== undefined) {
      const list = readFileSync(join(v1Devices, 'feather', 'cdi-usb', 'devices.list'), 'utf8');
      t.match(list, /^c 189:7936 rw$/m, 'the bus\'s first minor');
      t.match(list, /^c 189:8063 rw$/m, 'and its last');
      t.notMatch(list, /^c 189:(8064|\*) /m, 'nothing beyond the bus');
    }
    // The container has opened the Coral; now its firmware "loads": devnum 2 leaves, devnum 3 comes.
    const deadline = Date.now() + 20_000;
    while ((await fx.runtime.logs('cdi-usb')).length < 2) {
      if (Date.now() > deadline) throw new Error('the container did not start its script');
      await sleep(25);
    }
    rmSync(join(bus, '002'));
    execFileSync('mknod', ['-m', '0664', join(bus, '.003'), 'c', '189', String(62 * 128 + 2)]);
    renameSync(join(bus, '.003'), join(bus, '003'));
    await exited('cdi-usb');
    const lines = await fx.runtime.logs('cdi-usb');
    t.equal(lines[0], 'start');
    t.match(lines[1] ?? '', /can't open .*No such device/, 'the Coral as plugged in: allowed (no driver behind this minor here)');
    t.equal(lines[2], '001 003 stray', 'the bus directory is live: the new node is there, the old one gone');
    t.match(lines[3] ?? '', /can't open .*No such device/, 'the node that appeared after start, with a new minor: allowed');
    if (v1Devices !== undefined) t.match(lines[4] ?? '', /can't open .*Operation not permitted/, 'a number outside the bus is refused');
    t.match(lines[5] ?? '', /Read-only file system/, 'the container cannot make nodes in the host\'s /dev');
    t.equal(lines[6], 'done');
    t.notOk(existsSync(join(bus, '050')));

    // A restart uses config.json: the bind names the bus, not the node that went away.
    await fx.runtime.start('cdi-usb');
    await exited('cdi-usb');
    const again = (await fx.runtime.logs('cdi-usb')).slice(7);
    t.equal(again[0], 'start');
    t.match(again[1] ?? '', /can't open .*No such file or directory/, 'devnum 2 is gone');
    t.equal(again[2], '001 003 stray');
    t.match(again[3] ?? '', /can't open .*No such device/, 'the Coral after its firmware: allowed');
    t.equal(fx.runtime.inspect('cdi-usb').exitCode, 0);
    await fx.runtime.remove('cdi-usb');
    t.same(cgroupLeftovers('cdi-usb'), []);
    t.same(hostMountsUnder(fx.paths.container('cdi-usb').dir), []);
  });
}
