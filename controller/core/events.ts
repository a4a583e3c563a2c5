// The controller's typed events (core/bus.ts carries them). Listeners are isolated: one that
// throws is logged and the others still run.
import type { Inventory } from '../../shared/protocol/inventory.js';
import type { Reported } from '../../shared/protocol/reported.js';
import type { Measurement } from '../model/types.js';
import type { DeviceStatus } from '../store/types.js';

export interface ControllerEvents {
  /** The device's status says online (a live message, or a retained one replayed at connect). */
  'device.online': { deviceId: string; status: DeviceStatus | undefined; at: number };
  /** The device went away (its will, a clean shutdown, or the embedded broker restarted). */
  'device.offline': { deviceId: string; status: DeviceStatus | undefined; reason: string; at: number };
  /** A new or changed inventory (undefined: cleared). */
  'device.inventory': { deviceId: string; inventory: Inventory | undefined; previous: Inventory | undefined };
  /** A new or changed reported document (undefined: cleared). */
  'device.reported': { deviceId: string; reported: Reported | undefined; previous: Reported | undefined };
  /** A model's p95 latency on a device, from telemetry (windows with requests only). */
  'device.measurement': { measurement: Measurement };
  /** A lifecycle event the device published (container.exited, pull.failed, …). */
  'device.event': { deviceId: string; id: number; type: string; ts: number; body: Record<string, unknown> };
  /** A desired state was written (changed: new generation) and published. */
  'desired.published': { deviceId: string; generation: number; changed: boolean };
  /** The deployment planner ran. */
  'deployments.planned': { reason: string; placements: number; durationS: number };
}
