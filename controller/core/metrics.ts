// The controller's Prometheus metrics, on the one Registry of the process (served on
// http.port /metrics): feather_fleet_devices{state}, feather_scheduler_placements_total,
// feather_scheduler_duration_seconds, feather_mqtt_connected, and prom-client's process metrics.
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';

export interface ControllerMetrics {
  placementsTotal: Counter;
  schedulerDuration: Histogram;
}

export interface MetricSources {
  deviceCounts: () => { online: number; offline: number };
  mqttConnected: () => boolean;
}

export function controllerMetrics(registry: Registry, sources: MetricSources): ControllerMetrics {
  const registers = [registry];
  new Gauge({
    name: 'feather_fleet_devices',
    help: 'Devices known to the controller, by state',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const c = sources.deviceCounts();
      this.set({ state: 'online' }, c.online);
      this.set({ state: 'offline' }, c.offline);
    },
  });
  new Gauge({
    name: 'feather_mqtt_connected',
    help: '1 while the controller is connected to the MQTT broker',
    registers,
    collect() { this.set(sources.mqttConnected() ? 1 : 0); },
  });
  const placementsTotal = new Counter({
    name: 'feather_scheduler_placements_total',
    help: 'Replicas placed on a device by the scheduler (new placements only)',
    registers,
  });
  const schedulerDuration = new Histogram({
    name: 'feather_scheduler_duration_seconds',
    help: 'Time one scheduling pass took',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  // prom-client's process and Node.js metrics, minus the gauges it names *_total
  // (nodejs_active_handles_total, …): `promtool check metrics` rejects a non-counter with that
  // suffix, and each is the sum of a labelled gauge that stays (nodejs_active_handles{type}).
  const before = new Set(registry.getMetricsAsArray().map((m) => m.name));
  collectDefaultMetrics({ register: registry });
  for (const m of registry.getMetricsAsArray()) {
    if (!before.has(m.name) && m.name.endsWith('_total') && String(m.type) !== 'counter') registry.removeSingleMetric(m.name);
  }
  return { placementsTotal, schedulerDuration };
}
