// feather-agent info (agent/cli/info.ts, agent/devices/info.ts) against fake board trees:
// --json is the published inventory, the table names each accelerator's CDI device.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatInventory, info } from '../../agent/cli/info.js';
import type { CliContext } from '../../agent/cli/context.js';
import { cdiView } from '../../agent/devices/info.js';
import { readInventory } from '../../agent/devices/inventory.js';
import type { Inventory } from '../../shared/protocol/inventory.js';
import { DataPaths } from '../../agent/paths.js';
import { loadAgentConfig } from '../../shared/config/agent.js';
import { configureLogging } from '../../shared/logging.js';
import { buildFakeHost } from '../helpers/fake-host.js';

configureLogging({ level: 'silent' });
const dataDir = mkdtempSync(join(tmpdir(), 'feather-info-'));
t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));

async function run(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const config = loadAgentConfig({ env: { FEATHER_DEVICE_ID: 'pi-7', ...env }, overrides: { dataDir } });
  const ctx: CliContext = { config, paths: new DataPaths(dataDir), out: (l) => out.push(l), err: (l) => out.push(`ERR ${l}`), isTTY: false };
  const code = await info(argv, ctx);
  return { code, out: out.join('\n') };
}

t.test('--json --host-root: the inventory of a Raspberry Pi 5 with a Hailo-8 and a Coral', async (t) => {
  const host = buildFakeHost('arm64', { accelerators: ['hailo', 'coral-pcie'], cgroup: 'v1' });
  t.teardown(host.cleanup);
  const r = await run(['--json', '--host-root', host.root]);
  t.equal(r.code, 0);
  const inv = JSON.parse(r.out) as Inventory;
  t.equal(inv.id, 'pi-7');
  t.equal(inv.arch, 'aarch64');
  t.equal(inv.cgroup, 'v1', 'read from the host root');
  t.equal(inv.cpu.cores, 4);
  t.same(inv.accelerators.map((a) => a.device), ['/dev/apex_0', '/dev/hailo0']);
  t.same(Object.keys(inv).sort(), ['accelerators', 'arch', 'cgroup', 'cpu', 'disk', 'id', 'kernel', 'labels', 'memoryBytes', 'runtimes'], 'the contract\'s fields, nothing else');
});

t.test('the table: facts, accelerators with CDI names, CDI devices and unreadable specs', async (t) => {
  const host = buildFakeHost('arm64', { accelerators: ['hailo', 'coral-pcie', 'coral-usb'] });
  t.teardown(host.cleanup);
  host.write('/etc/cdi/hailo.yaml', 'cdiVersion: 0.6.0\nkind: hailo.ai/hailo\ndevices:\n  - name: "0"\n    containerEdits:\n      deviceNodes: [{ path: /dev/hailo0 }]\n');
  host.write('/etc/cdi/bad.json', '{"cdiVersion": "0.6.0"');
  const r = await run(['--host-root', host.root], { FEATHER_LABELS: '{"site":"lab"}' });
  t.equal(r.code, 0);
  t.match(r.out, /^DEVICE {5}pi-7$/m);
  t.match(r.out, /^CPU {8}Cortex-A76, 4 cores \(neon fp16 dotprod\)$/m);
  t.match(r.out, /^MEMORY {5}7\.9Gi$/m);
  t.match(r.out, /^CGROUP {5}v2 \(device rules: a BPF program per container\)$/m);
  t.match(r.out, /^LABELS {5}site=lab$/m);
  t.match(r.out, /^ACCELERATOR +VENDOR +MODEL +DEVICE +MEMORY +CDI NAME$/m);
  t.match(r.out, /^edgetpu +google +Coral Edge TPU \(PCIe\) +\/dev\/apex_0 +- +google\.com\/edgetpu=apex_0 \(written at daemon start\)$/m);
  t.match(r.out, /^edgetpu +google +Coral Edge TPU \(USB\) +\/dev\/bus\/usb\/002\/003 +- +google\.com\/edgetpu=usb0 \(written at daemon start\)$/m);
  t.match(r.out, /^npu +hailo +Hailo-8 +\/dev\/hailo0 +- +hailo\.ai\/hailo=0$/m, 'the vendor spec\'s name');
  t.match(r.out, new RegExp(`^CDI DEVICES \\(/etc/cdi, /var/run/cdi under ${host.root}\\)\\n  hailo\\.ai/hailo=0$`, 'm'));
  t.match(r.out, /^ {2}unreadable: CDI spec .*bad\.json: not valid JSON/m);
});

t.test('--json: each accelerator\'s CDI names as the daemon publishes them (none yet for a spec the daemon writes at start)', async (t) => {
  const host = buildFakeHost('arm64', { accelerators: ['hailo', 'coral-pcie'] });
  t.teardown(host.cleanup);
  host.write('/etc/cdi/hailo.yaml', 'cdiVersion: 0.6.0\nkind: hailo.ai/hailo\ndevices:\n  - name: "0"\n    containerEdits:\n      deviceNodes: [{ path: /dev/hailo0 }]\n');
  const inv = JSON.parse((await run(['--json', '--host-root', host.root])).out) as Inventory;
  t.same(inv.accelerators.map((a) => [a.device, a.cdi]), [['/dev/apex_0', []], ['/dev/hailo0', ['hailo.ai/hailo=0']]]);
  const table = await run(['--host-root', host.root]);
  t.match(table.out, /^edgetpu .* google\.com\/edgetpu=apex_0 \(written at daemon start\)$/m, 'the table still says what the daemon will write');
});

t.test('a board with nothing', async (t) => {
  const host = buildFakeHost('x86');
  t.teardown(host.cleanup);
  const inv = readInventory({ deviceId: 'x', hostRoot: host.root, dataDir, statfs: () => ({ totalBytes: 1, freeBytes: 1 }) });
  const text = formatInventory(inv, cdiView(inv.accelerators, host.root));
  t.match(text, /^ACCELERATORS {2}none found$/m);
  t.match(text, /^CDI DEVICES {2}none in \/etc\/cdi, \/var\/run\/cdi under /m);
  t.match(text, /^LABELS {5}-$/m);
});

t.test('bad flags are a usage error', async (t) => {
  await t.rejects(run(['--jsn']), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
});
