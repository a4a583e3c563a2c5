// What featherctl prints: tables for people, JSON or YAML for scripts (the API's objects as
// they are). Pure functions of the data and the time, so tests can pin them.
import { stringify } from 'yaml';
import { relativeTime, table } from '../../shared/format.js';
import type { EventRecord } from '../store/types.js';
import type { BlobView } from '../api/fleet.js';
import type { DeploymentDetail, DeploymentSummary, DeviceDetail, DeviceSummary, ModelView } from '../api/views.js';
import { acceleratorNeed } from '../model/accelerators.js';
import type { OutputFormat } from './args.js';

/** JSON (2-space indent) or YAML of `data`; undefined for table output. */
export function serialize(data: unknown, format: OutputFormat): string | undefined {
  if (format === 'json') return JSON.stringify(data, null, 2);
  if (format === 'yaml') return stringify(data, { lineWidth: 0 }).trimEnd();
  return undefined;
}

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  if (i === 0) return `${n}B`;
  return `${v >= 100 ? Math.round(v) : Math.round(v * 10) / 10}${units[i] ?? ''}`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  return ms >= 100 ? `${Math.round(ms)}ms` : `${Math.round(ms * 10) / 10}ms`;
}

export function ago(ms: number | null | undefined, now: number): string {
  return ms === null || ms === undefined || ms <= 0 ? 'never' : relativeTime(ms, now);
}

/** "2026-12-04 16:42:15" (UTC). */
export function timestamp(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

const dash = (s: string | null | undefined): string => (s === null || s === undefined || s === '' ? '-' : s);

function deviceStatus(d: DeviceSummary): string {
  return d.token ? d.state : `${d.state},no-token`;
}

export function devicesTable(items: readonly DeviceSummary[], now: number): string {
  return table(['NAME', 'STATUS', 'LAST SEEN', 'ARCH', 'ACCELERATORS', 'WORKLOADS', 'AGENT', 'METRICS'], items.map((d) => [
    d.id, deviceStatus(d), ago(d.lastSeen, now), dash(d.arch), d.accelerators.length > 0 ? d.accelerators.join(',') : '-',
    `${d.workloads.running}/${d.workloads.desired}`, dash(d.agentVersion), d.metricsTarget,
  ]));
}

export function deploymentsTable(items: readonly DeploymentSummary[], now: number): string {
  return table(['NAME', 'REVISION', 'PHASE', 'READY', 'UPDATED', 'P95', 'OBJECTIVE', 'ROLLOUT', 'AGE'], items.map((d) => [
    d.name, String(d.revision), d.phase, `${d.running}/${d.desired}`, `${d.updated}/${d.placed}`, formatMs(d.p95Ms), formatMs(d.objectiveMs),
    d.rollout?.phase ?? '-', ago(d.createdAt, now).replace(/ ago$/, ''),
  ]));
}

export function modelsTable(items: readonly ModelView[]): string {
  return table(['NAME', 'VARIANTS', 'DEPLOYMENTS', 'P95'], items.map((m) => {
    const p95 = m.measurements.map((x) => x.p95Ms);
    const range = p95.length === 0 ? '-' : Math.min(...p95) === Math.max(...p95) ? formatMs(p95[0]) : `${formatMs(Math.min(...p95))}..${formatMs(Math.max(...p95))}`;
    return [m.name, m.variants.map((v) => `${v.accelerator}/${v.precision}`).join(',') || '-', m.deployments.join(',') || '-', range];
  }));
}

/** The event body as `k=v` pairs (strings unquoted, the rest as JSON). */
export function eventDetails(body: Record<string, unknown>): string {
  return Object.entries(body).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
}

export function eventsTable(items: readonly EventRecord[]): string {
  return table(['TIME', 'DEVICE', 'TYPE', 'DETAILS'], items.map((e) => [timestamp(e.ts), dash(e.deviceId), e.type, eventDetails(e.body)]));
}

export function blobsTable(items: readonly BlobView[], now: number): string {
  return table(['SHA256', 'SIZE', 'NAMES', 'AGE'], items.map((b) => [b.digest.slice(0, 12), formatBytes(b.size), b.names.join(',') || '-', ago(b.createdAt, now).replace(/ ago$/, '')]));
}

function block(pairs: Array<[string, string]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 2;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`).join('\n');
}

function labelsText(labels: Record<string, string>): string {
  const list = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return list.length === 0 ? '-' : list.join(', ');
}

export function describeDevice(d: DeviceDetail, now: number): string {
  const inv = d.inventory;
  const pairs: Array<[string, string]> = [
    ['Name', d.id],
    ['Status', `${d.state}${d.stateChangedAt !== null ? ` since ${ago(d.stateChangedAt, now)}` : ''}, last seen ${ago(d.lastSeen, now)}`],
    ['Token', d.token ? 'active' : 'none (featherctl device add to issue one)'],
    ['Agent', dash(d.agentVersion)],
  ];
  if (inv !== null) {
    pairs.push(['Hardware', `${inv.arch}, ${inv.cpu.model} (${inv.cpu.cores} cores), ${formatBytes(inv.memoryBytes)} memory, kernel ${inv.kernel}, cgroup ${inv.cgroup}`]);
    pairs.push(['Accelerators', inv.accelerators.length === 0 ? 'none' : inv.accelerators.map((a) => `${a.kind} ${a.vendor} ${a.model}${a.device ? ` (${a.device})` : ''}`).join('; ')]);
    pairs.push(['Runtimes', inv.runtimes.join(', ') || '-']);
  } else {
    pairs.push(['Hardware', 'no inventory yet']);
  }
  pairs.push(['Labels', labelsText(d.labels)]);
  pairs.push(['Metrics', d.metricsTarget]);
  const c = d.capacity;
  if (c !== null) {
    pairs.push(['Capacity', `cpu ${Math.round(c.cpuPercent)}% of ${c.cpuCores} cores (load ${c.load1}), memory ${formatBytes(c.memoryAvailableBytes)} free of ${formatBytes(c.memoryTotalBytes)}, disk ${formatBytes(c.diskFreeBytes)} free of ${formatBytes(c.diskTotalBytes)} (${ago(d.telemetryAt, now)})`]);
  }
  pairs.push(['Generation', `desired ${d.generation.desired ?? '-'}, reported ${d.generation.reported ?? '-'}${d.reported?.reason ? ` (${d.reported.reason})` : ''}`]);
  const parts = [block(pairs)];
  parts.push('', 'Containers:');
  parts.push(d.containers.length === 0 ? '  none' : indent(table(['NAME', 'DEPLOYMENT', 'REV', 'DESIRED', 'PHASE', 'RESTARTS', 'CPU', 'MEMORY', 'P95', 'REASON'], d.containers.map((x) => [
    x.name, x.deployment === null ? '-' : `${x.deployment}/${x.replica ?? '?'}`, x.revision === null ? '-' : String(x.revision), x.desired ? 'yes' : 'no',
    x.phase ?? (x.running === true ? 'running' : x.running === false ? 'exited' : '-'), x.restarts === null ? '-' : String(x.restarts),
    x.cpuPercent === null ? '-' : `${Math.round(x.cpuPercent)}%`, x.memoryBytes === null ? '-' : `${formatBytes(x.memoryBytes)}${x.memoryLimitBytes ? `/${formatBytes(x.memoryLimitBytes)}` : ''}`,
    formatMs(x.p95Ms), dash(x.reason),
  ]))));
  parts.push('', 'Latency:');
  parts.push(d.measurements.length === 0 ? '  no measurements' : indent(table(['MODEL', 'PRECISION', 'P95', 'SAMPLES', 'MEASURED'], d.measurements.map((m) => [
    m.model, m.precision, formatMs(m.p95Ms), String(m.count), ago(m.at, now),
  ]))));
  parts.push('', 'Events:');
  parts.push(d.events.length === 0 ? '  none' : indent(table(['TIME', 'TYPE', 'DETAILS'], d.events.map((e) => [timestamp(e.ts), e.type, eventDetails(e.body)]))));
  return parts.join('\n');
}

export function describeDeployment(d: DeploymentDetail, now: number): string {
  const s = d.spec;
  const pairs: Array<[string, string]> = [
    ['Name', d.name],
    ['Revision', `${d.revision} (revisions ${d.revisions.map((r) => r.revision).join(', ')})`],
    ['Phase', d.phase],
    ['Message', dash(d.message)],
    ['Created', `${ago(d.createdAt, now)}, updated ${ago(d.updatedAt, now)}`],
    ['Model', `${s.model.name} (${s.model.variants.map((v) => `${v.accelerator}/${v.precision}`).join(', ')})`],
    ['Runtime', s.runtime.variants.map((v) => `${v.arch} ${v.image} sha256:${v.sha256.slice(0, 12)}`).join('; ')],
    ['Replicas', s.selector !== undefined ? `one per device matching ${labelsText(s.selector)}` : `${s.replicas ?? 0} (strategy ${s.strategy ?? 'spread'})`],
    ['Resources', `memory ${s.resources.memory}, cpus ${s.resources.cpus}${s.resources.pids !== undefined ? `, pids ${s.resources.pids}` : ''}${acceleratorDevices(s)}`],
    ['Accelerators', s.accelerators.join(', ')],
    ['Latency', `p95 ${formatMs(d.p95Ms)} (worst replica), objective ${d.objectiveMs === null ? 'none' : formatMs(d.objectiveMs)}`],
    ['Ready', `${d.running}/${d.desired} running, ${d.updated}/${d.placed} at revision ${d.revision}`],
  ];
  const r = d.rolloutStatus;
  pairs.push(['Rollout', r === null ? '-' : `${r.phase}: ${r.message}${r.failureCount > 0 ? ` (${r.failureCount} failures)` : ''}`]);
  const parts = [block(pairs), '', 'Replicas:'];
  parts.push(d.replicas.length === 0 ? '  none' : indent(table(['REPLICA', 'DEVICE', 'STATE', 'REV', 'ACCELERATOR', 'PRECISION', 'RESTARTS', 'P95', 'REASON'], d.replicas.map((x) => [
    String(x.replica), dash(x.deviceId), `${x.state}${x.slow === true ? ',slow' : ''}`, x.revision === undefined ? '-' : String(x.revision),
    dash(x.accelerator), dash(x.precision), String(x.restarts), formatMs(x.p95Ms), dash(x.reason),
  ]))));
  if (d.unschedulable !== null && d.unschedulable.replicas > 0) {
    parts.push('', `Unschedulable: ${d.unschedulable.replicas} replica(s)`);
    for (const reason of d.unschedulable.reasons) parts.push(`  ${reason.devices} device(s): ${reason.reason}`);
  }
  return parts.join('\n');
}

/** ", accelerator devices per replica: edgetpu 1, cuda shared" for the kinds on the preference list (docs/scheduling.md). */
function acceleratorDevices(s: DeploymentDetail['spec']): string {
  const kinds = s.accelerators.filter((k) => k !== 'cpu');
  if (kinds.length === 0) return '';
  return `, accelerator devices per replica: ${kinds.map((k) => { const n = acceleratorNeed(s.resources.accelerators, k); return `${k} ${n > 0 ? n : 'shared'}`; }).join(', ')}`;
}

function indent(text: string): string {
  return text.split('\n').map((l) => `  ${l}`).join('\n');
}

/** One progress line of a deployment being waited for. */
export function progressLine(d: Pick<DeploymentSummary, 'name' | 'revision' | 'phase' | 'running' | 'desired' | 'updated' | 'placed' | 'message' | 'rollout'>): string {
  const rollout = d.rollout !== null && d.rollout.phase !== 'Complete' ? `; rollout ${d.rollout.phase}: ${d.rollout.message}` : '';
  return `${d.name}: revision ${d.revision} ${d.phase}, ${d.running}/${d.desired} running, ${d.updated}/${d.placed} updated${rollout}${d.message ? ` (${d.message})` : ''}`;
}
