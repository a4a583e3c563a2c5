// Prometheus HTTP service discovery (GET /sd/prometheus and /api/v1/sd/prometheus): one target
// group per device, so one `http_sd_configs` entry scrapes the whole fleet
// (https://prometheus.io/docs/prometheus/latest/http_sd/).
//
// Where an agent's metrics are (first that applies):
//   1. the inventory's `metricsAddress` ("host:port"), when an agent reports one;
//   2. the inventory's `address` (a host) with the default port 9464;
//   3. the label `feather/metrics-address` ("host:port"; set on the device with
//      FEATHER_LABELS='{"feather/metrics-address":"10.0.0.7:9464"}') -- works with every agent today
//      (a '/' rather than a '.': the agent's config refuses dotted label keys);
//   4. the device id as the host name, port 9464 (devices named by their DNS names).
import type { DeviceRecord } from '../store/types.js';

export const DEFAULT_METRICS_PORT = 9464;
export const METRICS_ADDRESS_LABEL = 'feather/metrics-address';

export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

const HOST_PORT_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/;
const HOST_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)$/;

function hostPort(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const m = HOST_PORT_RE.exec(v.trim());
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) return undefined;
  return v.trim();
}

function withPort(host: string): string {
  // A bare IPv6 address gets its brackets.
  if (host.includes(':') && !host.startsWith('[')) return `[${host}]:${DEFAULT_METRICS_PORT}`;
  return `${host}:${DEFAULT_METRICS_PORT}`;
}

/** The device's labels: the inventory's, then the operator's on top. */
export function deviceLabels(d: DeviceRecord): Record<string, string> {
  return { ...(d.inventory?.labels ?? {}), ...d.labels };
}

/** "host:port" of the device's /metrics, and where it came from. */
export function metricsTarget(d: DeviceRecord): { target: string; source: 'inventory' | 'label' | 'device-id' } {
  const inv = d.inventory as unknown as Record<string, unknown> | undefined;
  const fromInventory = hostPort(inv?.['metricsAddress']);
  if (fromInventory !== undefined) return { target: fromInventory, source: 'inventory' };
  const address = inv?.['address'];
  if (typeof address === 'string' && HOST_RE.test(address.trim())) return { target: withPort(address.trim()), source: 'inventory' };
  if (typeof address === 'string' && address.includes(':') && /^[0-9A-Fa-f:.]+$/.test(address.trim())) return { target: withPort(address.trim()), source: 'inventory' };
  const fromLabel = hostPort(deviceLabels(d)[METRICS_ADDRESS_LABEL]);
  if (fromLabel !== undefined) return { target: fromLabel, source: 'label' };
  return { target: withPort(d.id), source: 'device-id' };
}

/** A Prometheus label name from a free-form key ("feather.io/tier" -> "feather_io_tier"). */
export function labelName(key: string): string {
  const s = key.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9]/.test(s) ? `_${s}` : s;
}

/**
 * One group per device. Kept on the series: `device`. For relabelling (dropped after it):
 * __meta_feather_online, _arch, _agent_version, _accelerators (comma-separated kinds),
 * _target_source and _label_<name> for each device label.
 */
export function prometheusTargets(devices: readonly DeviceRecord[], opts: { onlineOnly?: boolean } = {}): TargetGroup[] {
  const out: TargetGroup[] = [];
  for (const d of devices) {
    if (opts.onlineOnly === true && !d.online) continue;
    const { target, source } = metricsTarget(d);
    const labels: Record<string, string> = {
      device: d.id,
      __meta_feather_device_id: d.id,
      __meta_feather_online: String(d.online),
      __meta_feather_target_source: source,
    };
    if (d.inventory !== undefined) {
      labels['__meta_feather_arch'] = d.inventory.arch;
      labels['__meta_feather_accelerators'] = [...new Set(d.inventory.accelerators.map((a) => a.kind))].sort().join(',');
    }
    if (d.status?.agentVersion !== undefined) labels['__meta_feather_agent_version'] = d.status.agentVersion;
    for (const [k, v] of Object.entries(deviceLabels(d))) labels[`__meta_feather_label_${labelName(k)}`] = v;
    out.push({ targets: [target], labels });
  }
  return out;
}
