// Resolving CDI names to container edits, the runtime's view of them (nodes, env, binds, hooks,
// device-cgroup rules), and the specs the agent writes for Coral, Hailo and accel devices found
// in fake host trees. No root: device nodes are regular files and `stat` is a fake.
import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectAccelerators } from '../../agent/devices/accelerators.js';
import { HostFs } from '../../agent/devices/host-fs.js';
import { CdiRegistry } from '../../agent/devices/cdi/registry.js';
import { resolveCdiDevices, type NodeInfo, type StatNode } from '../../agent/devices/cdi/resolve.js';
import { createCdiResolver } from '../../agent/devices/cdi/resolver.js';
import {
  BASELINE_DEVICE_RULES, applyDeviceCgroup, containerDeviceEdits, deviceRules, toDeviceNodes,
} from '../../agent/devices/cdi/container.js';
import { acceleratorSpecs, writeAcceleratorSpecs } from '../../agent/devices/cdi/generate.js';
import { parseCdiSpec } from '../../agent/devices/cdi/spec.js';
import { formatDeviceRule } from '../../agent/runtime/cgroups/devices.js';
import type { CgroupBackend, CgroupManager, DeviceRule } from '../../agent/runtime/cgroups/types.js';
import { configureLogging, createLogger, type Logger } from '../../shared/logging.js';
import { buildFakeHost } from '../helpers/fake-host.js';

configureLogging({ level: 'silent' });

/** A fake host: files under a temp root, and a stat that says which of them are device nodes. */
function fakeRoot(t: { teardown(fn: () => void): void }): { root: string; write(p: string, text: string): void; nodes: Map<string, NodeInfo>; stat: StatNode } {
  const root = mkdtempSync(join(tmpdir(), 'feather-cdi-res-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const nodes = new Map<string, NodeInfo>();
  const write = (p: string, text: string): void => {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), text);
  };
  const stat: StatNode = (p) => nodes.get(p) ?? (p.startsWith(root) && readdirSync(join(p, '..')).includes(p.split('/').pop() ?? '') ? { type: 'other', major: 0, minor: 0 } : undefined);
  return { root, write, nodes, stat };
}

const ACME = {
  cdiVersion: '0.6.0',
  kind: 'acme.com/npu',
  containerEdits: {
    env: ['ACME_RUNTIME=1', 'SHARED=spec'],
    mounts: [{ hostPath: '/usr/lib/acme', containerPath: '/usr/lib/acme', options: ['ro', 'bind'] }],
  },
  devices: [
    {
      name: 'npu0',
      containerEdits: {
        env: ['ACME_VISIBLE=0', 'SHARED=npu0'],
        deviceNodes: [{ path: '/dev/acme0', permissions: 'rw' }, { path: '/dev/acme-ctl' }],
        hooks: [{ hookName: 'poststart', path: '/usr/bin/acme-hook', args: ['acme-hook', 'up'] }],
      },
    },
    {
      name: 'npu1',
      containerEdits: {
        env: ['ACME_VISIBLE=1'],
        deviceNodes: [{ path: '/dev/acme1', hostPath: '/dev/acme/1', type: 'c' }, { path: '/dev/acme-ctl' }],
        hooks: [{ hookName: 'createContainer', path: '/usr/bin/acme-ldcache' }],
      },
    },
  ],
};

function acmeHost(t: { teardown(fn: () => void): void }): ReturnType<typeof fakeRoot> {
  const h = fakeRoot(t);
  h.write('etc/cdi/acme.json', JSON.stringify(ACME));
  h.write('usr/lib/acme/libacme.so', '');
  h.nodes.set(join(h.root, 'dev/acme0'), { type: 'c', major: 240, minor: 0 });
  h.nodes.set(join(h.root, 'dev/acme/1'), { type: 'c', major: 240, minor: 1 });
  h.nodes.set(join(h.root, 'dev/acme-ctl'), { type: 'c', major: 240, minor: 255 });
  return h;
}

t.test('one device: spec-level edits, then the device\'s', async (t) => {
  const h = acmeHost(t);
  const { edits, warnings } = resolveCdiDevices(CdiRegistry.load({ root: h.root }), ['acme.com/npu=npu0'], { stat: h.stat });
  t.same(edits.devices, ['acme.com/npu=npu0']);
  t.same(edits.env, { ACME_RUNTIME: '1', SHARED: 'npu0', ACME_VISIBLE: '0' }, 'the device\'s env wins over the spec\'s');
  t.same(edits.nodes, [
    { hostPath: join(h.root, 'dev/acme0'), containerPath: '/dev/acme0', type: 'c', major: 240, minor: 0, access: 'rw', device: 'acme.com/npu=npu0' },
    { hostPath: join(h.root, 'dev/acme-ctl'), containerPath: '/dev/acme-ctl', type: 'c', major: 240, minor: 255, access: 'rwm', device: 'acme.com/npu=npu0' },
  ]);
  t.same(edits.mounts, [{ source: join(h.root, 'usr/lib/acme'), target: '/usr/lib/acme', readonly: true }]);
  t.same(edits.hooks, [{ hookName: 'poststart', path: '/usr/bin/acme-hook', args: ['acme-hook', 'up'], env: [], timeoutS: undefined, device: 'acme.com/npu=npu0' }]);
  t.same(warnings, []);
});

t.test('=all and several names: merged in order, spec-level edits once, shared nodes once', async (t) => {
  const h = acmeHost(t);
  const reg = CdiRegistry.load({ root: h.root });
  const all = resolveCdiDevices(reg, ['acme.com/npu=all'], { stat: h.stat });
  const both = resolveCdiDevices(reg, ['acme.com/npu=npu0', 'acme.com/npu=npu1', 'acme.com/npu=npu0'], { stat: h.stat });
  t.same(all.edits, both.edits);
  t.same(all.edits.devices, ['acme.com/npu=npu0', 'acme.com/npu=npu1']);
  t.same(all.edits.nodes.map((n) => `${n.containerPath} ${n.major}:${n.minor}`), ['/dev/acme0 240:0', '/dev/acme-ctl 240:255', '/dev/acme1 240:1']);
  t.equal(all.edits.env['ACME_VISIBLE'], '1', 'later device wins');
  t.equal(all.edits.mounts.length, 1);
  t.same(all.warnings, [], 'every hook kind is applied: no warning');
  t.same(all.edits.hooks.map((x) => `${x.hookName} ${x.path} ${x.device}`),
    ['poststart /usr/bin/acme-hook acme.com/npu=npu0', 'createContainer /usr/bin/acme-ldcache acme.com/npu=npu1']);
});

t.test('a spec that defines "all" itself is used as it is', async (t) => {
  const h = fakeRoot(t);
  h.write('etc/cdi/nv.yaml', 'cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n  - name: all\n    containerEdits:\n      env: [NVIDIA_VISIBLE_DEVICES=void]\n  - name: "0"\n    containerEdits:\n      env: [ONE=1]\n');
  const { edits } = resolveCdiDevices(CdiRegistry.load({ root: h.root }), ['nvidia.com/gpu=all'], { stat: h.stat });
  t.same(edits.devices, ['nvidia.com/gpu=all']);
  t.same(edits.env, { NVIDIA_VISIBLE_DEVICES: 'void' });
});

t.test('errors say which name, file and field', async (t) => {
  const h = acmeHost(t);
  h.write('etc/cdi/broken.yaml', 'cdiVersion: 0.6.0\nkind: acme.com/npu\ndevices:\n  - name: npu7\n    containerEdits:\n      deviceNodes: [{ path: dev/acme7 }]\n');
  h.write('etc/cdi/tmpfs.json', JSON.stringify({ cdiVersion: '0.6.0', kind: 'odd.com/x', devices: [
    { name: 'tmp', containerEdits: { mounts: [{ hostPath: 'tmpfs', containerPath: '/scratch', type: 'tmpfs' }] } },
    { name: 'gone', containerEdits: { deviceNodes: [{ path: '/dev/gone0' }] } },
    { name: 'file', containerEdits: { deviceNodes: [{ path: '/dev/notanode' }] } },
    { name: 'blk', containerEdits: { deviceNodes: [{ path: '/dev/acme0', type: 'b' }] } },
    { name: 'nolib', containerEdits: { mounts: [{ hostPath: '/usr/lib/missing', containerPath: '/usr/lib/missing' }] } },
  ] }));
  h.write('dev/notanode', '');
  const reg = CdiRegistry.load({ root: h.root });
  const resolve = (name: string): unknown => resolveCdiDevices(reg, [name], { stat: h.stat });
  t.throws(() => resolve('acme'), { code: 'BAD_REQUEST', message: 'device "acme" is not a CDI name: use vendor.com/class=name (e.g. google.com/edgetpu=apex_0)' });
  t.throws(() => resolve('acme.com/npu=npu7'), {
    code: 'NOT_FOUND',
    message: new RegExp(`CDI device "acme\\.com/npu=npu7" is not defined: acme\\.com/npu has npu0, npu1 \\(in ${h.root}/etc/cdi/acme\\.json\\); spec files that could not be read: CDI spec ${h.root}/etc/cdi/broken\\.yaml: field devices\\[0\\]\\.containerEdits\\.deviceNodes\\[0\\]\\.path the string "dev/acme7" must be an absolute path`),
  });
  t.throws(() => resolve('google.com/edgetpu=apex_0'), { code: 'NOT_FOUND', message: new RegExp(`no spec file defines the kind "google\\.com/edgetpu" \\(searched /etc/cdi, /var/run/cdi under ${h.root}\\); known kinds: acme\\.com/npu, odd\\.com/x`) });
  t.throws(() => resolve('odd.com/x=tmp'), { code: 'BAD_REQUEST', message: new RegExp(`^CDI spec ${h.root}/etc/cdi/tmpfs\\.json: field devices\\[0\\]\\.containerEdits\\.mounts\\[0\\]\\.type: only bind mounts are supported, not "tmpfs"`) });
  t.throws(() => resolve('odd.com/x=gone'), { code: 'NOT_FOUND', message: new RegExp(`field devices\\[1\\]\\.containerEdits\\.deviceNodes\\[0\\]\\.path: the device node ${h.root}/dev/gone0 does not exist on this host \\(is the driver loaded\\?\\); odd\\.com/x=gone cannot be used`) });
  t.throws(() => resolve('odd.com/x=file'), { code: 'BAD_REQUEST', message: /field devices\[2\]\.containerEdits\.deviceNodes\[0\]: .*\/dev\/notanode is not a device node/ });
  t.throws(() => resolve('odd.com/x=blk'), { code: 'BAD_REQUEST', message: /deviceNodes\[0\]\.type: the spec says "b" but .*\/dev\/acme0 is a character device/ });
  t.throws(() => resolve('odd.com/x=nolib'), { code: 'NOT_FOUND', message: /field devices\[4\]\.containerEdits\.mounts\[0\]\.hostPath: .*\/usr\/lib\/missing does not exist on this host/ });
  t.throws(() => resolveCdiDevices(reg, ['acme.com/npu=npu0', 'nope.com/x=1'], { stat: h.stat }), { code: 'NOT_FOUND' }, 'one bad name fails the whole request');
});

t.test('the runtime\'s view: DeviceNodes that survive config.json, split back at start', async (t) => {
  const h = acmeHost(t);
  const resolver = createCdiResolver({ root: h.root, stat: h.stat, logger: createLogger('test') });
  const devices = await resolver(['acme.com/npu=npu0']);
  const saved = JSON.parse(JSON.stringify(devices)) as typeof devices; // as config.json keeps them
  const back = containerDeviceEdits(saved);
  t.same(back.nodes.map((n) => [n.hostPath, n.containerPath]), [[join(h.root, 'dev/acme0'), '/dev/acme0'], [join(h.root, 'dev/acme-ctl'), '/dev/acme-ctl']]);
  t.same(back.env, { ACME_RUNTIME: '1', SHARED: 'npu0', ACME_VISIBLE: '0' });
  t.same(back.binds, [{ source: join(h.root, 'usr/lib/acme'), target: '/usr/lib/acme', readonly: true }]);
  t.same(back.hooks.map((x) => x.path), ['/usr/bin/acme-hook']);
  t.same(back.cdiDevices, ['acme.com/npu=npu0']);
  t.notOk(back.nodes.some((n) => n.hostPath === ''), 'the carrier entry is never a device');

  const rules = deviceRules(saved).map(formatDeviceRule);
  t.same(rules, [...BASELINE_DEVICE_RULES.map(formatDeviceRule), 'c 240:0 rw', 'c 240:255 rwm']);
  t.same(BASELINE_DEVICE_RULES.map(formatDeviceRule), ['a', 'c *:* m', 'b *:* m', 'c 1:3 rwm', 'c 1:5 rwm', 'c 1:7 rwm', 'c 1:8 rwm', 'c 1:9 rwm', 'c 5:0 rwm', 'c 5:2 rwm', 'c 136:* rwm']);
  t.equal(BASELINE_DEVICE_RULES[0]?.allow, false, 'the first rule denies all');

  const plain = [{ hostPath: '/dev/plain', containerPath: '/dev/plain' }];
  t.same(deviceRules(plain, () => ({ type: 'b', major: 8, minor: 0 })).map(formatDeviceRule).slice(-1), ['b 8:0 rwm'], 'a plain node is looked up on the host');
  t.same(containerDeviceEdits(plain).nodes, plain);
});

t.test('applyDeviceCgroup: rules go to a backend that has them; v2 passes a filter on; no controller logs the gap', async (t) => {
  const calls: [string, string[]][] = [];
  const base: CgroupManager = { mode: 'v1', create: () => [], usage: () => undefined, remove: () => undefined, list: () => [] };
  const v1: CgroupManager & Pick<CgroupBackend, 'setDevices'> = {
    ...base,
    setDevices: (name: string, rules: readonly DeviceRule[]) => { calls.push([name, rules.map(formatDeviceRule)]); return { supported: true as const, dirs: [`/cg/devices/feather/${name}`] }; },
  };
  const warned: string[] = [];
  const log: Logger = { ...createLogger('test'), warn: (event: string) => { warned.push(event); } };
  const nodes = [{ hostPath: '/x', containerPath: '/dev/x', cdi: { device: 'a.com/b=c', type: 'c' as const, major: 240, minor: 3, access: 'rw' } }];
  t.same(applyDeviceCgroup(v1, 'web', nodes, log), { dirs: ['/cg/devices/feather/web'] });
  t.equal(calls[0]?.[0], 'web');
  t.equal(calls[0]?.[1].at(-1), 'c 240:3 rw');
  const filter = { cgroup: '/cg/feather/web', rules: [{ type: 'c' as const, major: 1, minor: 3, access: 'rwm' }] };
  const v2: CgroupManager & Pick<CgroupBackend, 'setDevices'> = { ...base, mode: 'v2', setDevices: () => ({ supported: true as const, dirs: [], filter }) };
  t.same(applyDeviceCgroup(v2, 'web', nodes, log), { dirs: [], filter }, 'v2: the filter for the shim, no extra dir');
  const none: CgroupManager & Pick<CgroupBackend, 'setDevices'> = { ...base, setDevices: () => ({ supported: false as const, reason: 'no devices controller' }) };
  t.same(applyDeviceCgroup(none, 'web', [], log), { dirs: [] });
  t.same(warned, [], 'no warning without nodes');
  t.same(applyDeviceCgroup(none, 'web', nodes, log), { dirs: [] });
  t.same(warned, ['cgroup.devices_unsupported']);
  t.same(applyDeviceCgroup(base, 'web', nodes, log), { dirs: [] }, 'a manager without setDevices is left alone');
});

t.test('toDeviceNodes: nothing requested, nothing but the carrier', async (t) => {
  const d = toDeviceNodes({ devices: [], nodes: [], rules: [], mounts: [], env: {}, hooks: [] });
  t.equal(d.length, 1);
  t.same(containerDeviceEdits(d), { nodes: [], binds: [], env: {}, hooks: [], rules: [], cdiDevices: [] });
});

t.test('specs for Coral PCIe and USB, Hailo and accel from a fake board', async (t) => {
  const host = buildFakeHost('arm64', { accelerators: ['coral-pcie', 'hailo', 'intel-npu', 'coral-usb', 'nvidia'] });
  t.teardown(host.cleanup);
  host.write('/dev/apex_1', '');
  const accelerators = detectAccelerators(new HostFs(host.root));
  // The fake nodes are regular files; say apex_0 is the real thing to see its numbers written.
  const stat: StatNode = (p) => (p === join(host.root, '/dev/apex_0') ? { type: 'c', major: 120, minor: 0 } : p.startsWith(host.root) && new HostFs('/').exists(p) ? { type: 'other', major: 0, minor: 0 } : undefined);
  const specs = acceleratorSpecs(accelerators, { root: host.root, stat });
  t.same(specs.map((s) => [s.kind, s.devices.map((d) => d.name)]), [
    ['google.com/edgetpu', ['apex_0', 'apex_1', 'usb0']],
    ['hailo.ai/hailo', ['hailo0']],
    ['kernel.org/accel', ['accel0']],
  ], 'one kind per family (the USB Coral in the PCIe one\'s); NVIDIA gets none');
  t.same(specs[0]?.devices[0]?.containerEdits.deviceNodes, [{ path: '/dev/apex_0', permissions: 'rw', type: 'c', major: 120, minor: 0 }]);
  t.same(specs[0]?.devices[1]?.containerEdits.deviceNodes, [{ path: '/dev/apex_1', permissions: 'rw' }], 'no numbers for a node that is not one');
  t.same(specs[1]?.devices[0]?.annotations, { 'feather/model': 'hailo Hailo-8' });

  const result = writeAcceleratorSpecs(accelerators, { root: host.root, stat });
  t.same(result.devices, ['google.com/edgetpu=apex_0', 'google.com/edgetpu=apex_1', 'google.com/edgetpu=usb0', 'hailo.ai/hailo=hailo0', 'kernel.org/accel=accel0']);
  t.same(readdirSync(join(host.root, 'var/run/cdi')).sort(), ['feather-google.com-edgetpu.json', 'feather-hailo.ai-hailo.json', 'feather-kernel.org-accel.json']);
  for (const f of result.written) t.ok(parseCdiSpec(readFileSync(f, 'utf8'), f), `${f} reads back as a valid spec`);
  const reg = CdiRegistry.load({ root: host.root });
  t.same(reg.deviceNames(), result.devices);

  // The Hailo goes away and a vendor spec for the Coral appears: our hailo file goes, apex_0 is not named twice.
  host.write('/etc/cdi/coral.yaml', 'cdiVersion: 0.6.0\nkind: coral.ai/tpu\ndevices:\n  - name: "0"\n    containerEdits:\n      deviceNodes: [{ path: /dev/apex_0 }]\n');
  writeFileSync(join(host.root, 'var/run/cdi/vendor-other.json'), '{}');
  const again = writeAcceleratorSpecs(accelerators.filter((a) => a.vendor !== 'hailo'), { root: host.root, stat });
  t.same(again.devices, ['google.com/edgetpu=apex_1', 'google.com/edgetpu=usb0', 'kernel.org/accel=accel0']);
  t.same(again.removed, [join(host.root, 'var/run/cdi/feather-hailo.ai-hailo.json')]);
  t.ok(readdirSync(join(host.root, 'var/run/cdi')).includes('vendor-other.json'), 'files that are not ours are left alone');
  const none = writeAcceleratorSpecs([], { root: host.root, stat });
  t.same(none.written, []);
  t.equal(none.removed.length, 2);
});

t.test('no accelerators: no directory is made', async (t) => {
  const host = buildFakeHost('x86');
  t.teardown(host.cleanup);
  const r = writeAcceleratorSpecs(detectAccelerators(new HostFs(host.root)), { root: host.root });
  t.same(r, { written: [], unchanged: [], removed: [], devices: [] });
  t.notOk(new HostFs(host.root).exists('/var/run/cdi'));
});
