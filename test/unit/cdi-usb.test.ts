// The USB Coral's generated CDI spec, before and after its firmware loads (it re-enumerates with a
// new device number), the feather/device-cgroup-rules annotation it relies on (parsed, resolved,
// carried through config.json, turned into v1 and v2 rules), and the regeneration the daemon's
// resolver does before each resolution. Fake host trees; no root.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectAccelerators } from '../../agent/devices/accelerators.js';
import { HostFs } from '../../agent/devices/host-fs.js';
import { cdiView } from '../../agent/devices/info.js';
import { BASELINE_DEVICE_RULES, containerDeviceEdits, deviceRules, toDeviceNodes } from '../../agent/devices/cdi/container.js';
import { acceleratorSpecs, usbBusRule, writeAcceleratorSpecs } from '../../agent/devices/cdi/generate.js';
import { startCdi } from '../../agent/devices/cdi/index.js';
import { CdiRegistry } from '../../agent/devices/cdi/registry.js';
import { resolveCdiDevices } from '../../agent/devices/cdi/resolve.js';
import { parseDeviceRules } from '../../agent/devices/cdi/rules.js';
import { parseCdiSpec } from '../../agent/devices/cdi/spec.js';
import { formatDeviceRule, toDeviceFilterRules } from '../../agent/runtime/cgroups/devices.js';
import type { DeviceNode } from '../../agent/runtime/types.js';
import { configureLogging } from '../../shared/logging.js';
import { buildFakeHost, CORAL_RUNNING, type FakeHost } from '../helpers/fake-host.js';

configureLogging({ level: 'silent' });

const SPEC_FILE = 'var/run/cdi/feather-google.com-edgetpu.json';

function pi(t: { teardown(fn: () => void): void }): FakeHost {
  const h = buildFakeHost('arm64', { accelerators: ['coral-usb-bootloader'] });
  t.teardown(h.cleanup);
  return h;
}

const generate = (h: FakeHost): ReturnType<typeof writeAcceleratorSpecs> => writeAcceleratorSpecs(detectAccelerators(new HostFs(h.root)), { root: h.root });

t.test('the spec of a USB Coral before its firmware is loaded, and the same spec after', async (t) => {
  const h = pi(t);
  const before = generate(h);
  t.same(before.devices, ['google.com/edgetpu=usb0']);
  const text = readFileSync(join(h.root, SPEC_FILE), 'utf8');
  t.same(JSON.parse(text), {
    cdiVersion: '0.6.0',
    kind: 'google.com/edgetpu',
    annotations: { 'feather/generated-by': 'feather-agent' },
    devices: [{
      name: 'usb0',
      annotations: { 'feather/model': 'google Coral Edge TPU (USB)', 'feather/usb-bus': '2', 'feather/device-cgroup-rules': 'c 189:128-255 rw' },
      containerEdits: { mounts: [{ hostPath: '/dev/bus/usb/002', containerPath: '/dev/bus/usb/002', options: ['ro', 'nosuid', 'noexec', 'bind'] }] },
    }],
  }, 'the bus directory, read-only, and the device numbers of bus 2 (devnum 1-128)');
  t.ok(parseCdiSpec(text, join(h.root, SPEC_FILE)), 'it passes our CDI parser');

  // libedgetpu loads the firmware: the device leaves and comes back as 18d1:9302, devnum 2 -> 3.
  h.usb({ port: '2-1', ...CORAL_RUNNING, devnum: 3 });
  const after = generate(h);
  t.same(after.devices, ['google.com/edgetpu=usb0'], 'the same name');
  t.same([after.written, after.unchanged], [[], [join(h.root, SPEC_FILE)]], 'the same content: not rewritten');
  t.equal(readFileSync(join(h.root, SPEC_FILE), 'utf8'), text);
});

t.test('resolving it: a read-only bind of the bus, no node, the bus minors as device-cgroup rules (v1 and v2)', async (t) => {
  const h = pi(t);
  generate(h);
  const { edits, warnings } = resolveCdiDevices(CdiRegistry.load({ root: h.root }), ['google.com/edgetpu=usb0']);
  t.same(warnings, []);
  t.same(edits.nodes, []);
  t.same(edits.mounts, [{ source: join(h.root, '/dev/bus/usb/002'), target: '/dev/bus/usb/002', readonly: true }]);
  t.equal(edits.rules.length, 128);
  t.same(edits.rules[0], { type: 'c', major: 189, minor: 128, access: 'rw', device: 'google.com/edgetpu=usb0' });
  t.same(edits.rules.at(-1), { type: 'c', major: 189, minor: 255, access: 'rw', device: 'google.com/edgetpu=usb0' });

  // Saved in config.json as JSON and read back at (re)start, without the specs.
  const saved = JSON.parse(JSON.stringify(toDeviceNodes(edits))) as DeviceNode[];
  const back = containerDeviceEdits(saved);
  t.same(back.nodes, [], 'no device= record for the shim');
  t.same(back.binds, edits.mounts);
  const rules = deviceRules(saved);
  t.same(rules.slice(0, BASELINE_DEVICE_RULES.length), BASELINE_DEVICE_RULES, 'the baseline first');
  const added = rules.slice(BASELINE_DEVICE_RULES.length).map(formatDeviceRule);
  t.same([added.length, added[0], added[1], added.at(-1)], [128, 'c 189:128 rw', 'c 189:129 rw', 'c 189:255 rw'], 'v1 devices.allow lines');
  const filter = toDeviceFilterRules(rules);
  t.ok(filter.some((r) => r.type === 'c' && r.major === 189 && r.minor === 130 && r.access === 'rw'), 'v2 allow-list: 2-1 after re-enumeration (devnum 3)');
  t.notOk(filter.some((r) => r.type === 'c' && r.major === 189 && (r.minor === undefined || r.minor < 128 || r.minor > 255)), 'nothing of another bus');

  // Asked twice (=all and by name, or two Corals on one bus): each rule once.
  const twice = resolveCdiDevices(CdiRegistry.load({ root: h.root }), ['google.com/edgetpu=usb0', 'google.com/edgetpu=all']);
  t.equal(twice.edits.rules.length, 128);
});

t.test('two Corals on two buses: usb0 and usb1 in port order, each with its own bus', async (t) => {
  const h = pi(t);
  h.usb({ port: '4-1', ...CORAL_RUNNING, devnum: 2 });
  const specs = acceleratorSpecs(detectAccelerators(new HostFs(h.root)), { root: h.root });
  t.same(specs[0]?.devices.map((d) => [d.name, d.annotations?.['feather/device-cgroup-rules'], d.containerEdits.mounts?.[0]?.hostPath]), [
    ['usb0', 'c 189:128-255 rw', '/dev/bus/usb/002'],
    ['usb1', 'c 189:384-511 rw', '/dev/bus/usb/004'],
  ]);
  t.equal(usbBusRule(1), 'c 189:0-127 rw');
});

t.test('a spec of the user\'s that mounts /dev/bus/usb already gives the Coral: no second name', async (t) => {
  const h = pi(t);
  h.write('/etc/cdi/coral-usb.yaml', 'cdiVersion: 0.6.0\nkind: coral.ai/usb\ndevices:\n  - name: all-usb\n    containerEdits:\n      mounts: [{hostPath: /dev/bus/usb, containerPath: /dev/bus/usb, options: [bind]}]\n');
  t.same(generate(h).devices, []);
  t.same(cdiView(detectAccelerators(new HostFs(h.root)), h.root).names.get('/dev/bus/usb/002/002'), ['coral.ai/usb=all-usb'], 'info names the user\'s device');
});

t.test('info: the name before the daemon has written the spec, and after', async (t) => {
  const h = pi(t);
  const accelerators = detectAccelerators(new HostFs(h.root));
  t.same(cdiView(accelerators, h.root).names.get('/dev/bus/usb/002/002'), ['google.com/edgetpu=usb0 (written at daemon start)']);
  generate(h);
  t.same(cdiView(accelerators, h.root).names.get('/dev/bus/usb/002/002'), ['google.com/edgetpu=usb0']);
});

t.test('the daemon\'s resolver writes the specs again first: a Coral plugged in after start counts, one unplugged goes', async (t) => {
  const h = buildFakeHost('arm64');
  t.teardown(h.cleanup);
  const { resolver, generated } = startCdi({ root: h.root });
  t.same(generated?.devices, []);
  await t.rejects(resolver(['google.com/edgetpu=usb0']), { code: 'NOT_FOUND' });
  h.usb({ port: '2-1', vendor: '1a6e', product: '089a', devnum: 5 });
  const devices = await resolver(['google.com/edgetpu=usb0']);
  t.same(containerDeviceEdits(devices).binds, [{ source: join(h.root, '/dev/bus/usb/002'), target: '/dev/bus/usb/002', readonly: true }]);
  t.equal(containerDeviceEdits(devices).rules.length, 128);
});

t.test('feather/device-cgroup-rules: the syntax, and errors that name the file and the field', async (t) => {
  t.same(parseDeviceRules('c 189:* rwm'), [{ type: 'c', major: 189, minor: undefined, access: 'rwm' }]);
  t.same(parseDeviceRules(' c 189:0-1 rw ; b 8:16 r,'), [
    { type: 'c', major: 189, minor: 0, access: 'rw' }, { type: 'c', major: 189, minor: 1, access: 'rw' }, { type: 'b', major: 8, minor: 16, access: 'r' },
  ]);
  for (const bad of ['a *:* rwm', 'c *:1 rw', 'c 189:1 rwx', 'c 189:1 rrw', 'c 189:5-1 rw', 'c 189:0-256 rw', 'c 189 rw']) {
    t.throws(() => parseDeviceRules(bad), { code: 'BAD_REQUEST' }, bad);
  }
  const h = pi(t);
  h.write('/etc/cdi/bad.json', JSON.stringify({ cdiVersion: '0.6.0', kind: 'acme.com/usb', devices: [{ name: 'x', annotations: { 'feather/device-cgroup-rules': 'c 189:0-999 rw' }, containerEdits: { env: ['A=1'] } }] }));
  t.throws(() => resolveCdiDevices(CdiRegistry.load({ root: h.root }), ['acme.com/usb=x']), {
    code: 'BAD_REQUEST',
    message: /CDI spec .*bad\.json: field devices\[0\]\.annotations\["feather\/device-cgroup-rules"\]: rule "c 189:0-999 rw": a range may name at most 256 minors.*acme\.com\/usb=x cannot be used/,
  });
});
