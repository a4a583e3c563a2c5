// feather-agent info [--json] [--host-root DIR]: what this board can do, read from sysfs and
// procfs under the host root (no vendor tools). A table for people; --json for scripts.
import { parseArgs } from 'node:util';
import { CdiRegistry } from '../devices/cdi/registry.js';
import { cdiView, type CdiView } from '../devices/info.js';
import { readInventory } from '../devices/inventory.js';
import type { Inventory } from '../../shared/protocol/inventory.js';
import { formatBytes } from '../../shared/limits.js';
import { table } from '../../shared/format.js';
import type { CommandHandler } from './context.js';

export const info: CommandHandler = async (argv, ctx) => {
  const { values } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean' }, 'host-root': { type: 'string' } },
  });
  const hostRoot = values['host-root'] ?? ctx.config.hostRoot;
  // The CDI names as the daemon publishes them (accelerators[].cdi), from the specs on disk now.
  const registry = CdiRegistry.load({ root: hostRoot });
  const inv = readInventory({ deviceId: ctx.config.deviceId, hostRoot, dataDir: ctx.config.dataDir, labels: ctx.config.labels, cdi: registry });
  if (values.json === true) {
    ctx.out(JSON.stringify(inv, null, 2));
    return 0;
  }
  ctx.out(formatInventory(inv, cdiView(inv.accelerators, hostRoot, registry)));
  return 0;
};

/** The inventory for a person: facts, accelerators with their CDI names, CDI devices. */
export function formatInventory(inv: Inventory, cdi: CdiView): string {
  const labels = Object.entries(inv.labels).map(([k, v]) => `${k}=${v}`).join(' ');
  const facts: [string, string][] = [
    ['DEVICE', inv.id],
    ['ARCH', inv.arch],
    ['CPU', `${inv.cpu.model}, ${inv.cpu.cores} core${inv.cpu.cores === 1 ? '' : 's'}${inv.cpu.flags.length > 0 ? ` (${inv.cpu.flags.join(' ')})` : ''}`],
    ['MEMORY', formatBytes(inv.memoryBytes)],
    ['DISK FREE', formatBytes(inv.disk.freeBytes)],
    ['KERNEL', inv.kernel],
    ['CGROUP', inv.cgroup === 'v2' ? 'v2 (device rules: a BPF program per container)' : 'v1'],
    ['RUNTIMES', inv.runtimes.join(' ')],
    ['LABELS', labels === '' ? '-' : labels],
  ];
  const width = Math.max(...facts.map(([k]) => k.length));
  const out = facts.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
  out.push('');
  if (inv.accelerators.length === 0) {
    out.push('ACCELERATORS  none found');
  } else {
    out.push(table(['ACCELERATOR', 'VENDOR', 'MODEL', 'DEVICE', 'MEMORY', 'CDI NAME'], inv.accelerators.map((a) => [
      a.kind, a.vendor, a.model, a.device, a.memoryBytes !== undefined ? formatBytes(a.memoryBytes) : a.unifiedMemory === true ? 'system' : '-', (cdi.names.get(a.device) ?? ['-']).join(', '),
    ])));
  }
  out.push('');
  out.push(cdi.devices.length === 0 ? `CDI DEVICES  none in ${cdi.dirs}` : `CDI DEVICES (${cdi.dirs})`);
  for (const d of cdi.devices) out.push(`  ${d}`);
  for (const e of cdi.errors) out.push(`  unreadable: ${e}`);
  return out.join('\n');
}
