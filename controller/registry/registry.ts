// The device registry: follows every device's retained status, inventory and reported state,
// its telemetry (protobuf or JSON) and its events over the controller's MQTT connection, keeps
// them in the store (online/offline with last seen, capacity, what runs there, p95 latency per
// model), and emits typed events on the bus.
//
// After a restart the view is rebuilt from the store, then corrected by what the broker says:
// the retained messages come again on subscribe (external broker), or the agents reconnect and
// publish them again (the embedded broker restarted with the controller, so every device is
// first marked offline).
import type { Inventory } from '../../shared/protocol/inventory.js';
import type { Reported } from '../../shared/protocol/reported.js';
import { decodeTelemetry, type TelemetrySample } from '../../shared/protocol/telemetry.js';
import { messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { Topics } from '../../shared/protocol/topics.js';
import type { MqttLink, MqttMessage } from '../broker/client.js';
import type { EventBus } from '../core/bus.js';
import type { ControllerEvents } from '../core/events.js';
import type { DeviceView, Measurement, Precision } from '../model/types.js';
import { canonicalJson, type Store } from '../store/store.js';
import type { DeviceCapacity, DeviceContainer, DeviceRecord, DeviceStatus } from '../store/types.js';
import { boardClassOf, isEmptyPayload, parseEvent, parseInventory, parseReported, parseStatus } from './parse.js';

export interface RegistryOptions {
  store: Store;
  bus: EventBus<ControllerEvents>;
  mqtt: MqttLink;
  logger: Logger;
  topicPrefix: string;
  /** Embedded broker: it restarted with us, so every device starts offline. */
  brokerRestarted: boolean;
  now?: () => number;
}

interface Known {
  online: boolean;
  status: DeviceStatus | undefined;
  inventory: Inventory | undefined;
  inventoryJson: string;
  reported: Reported | undefined;
  reportedJson: string;
  boardClass: string;
}

const LEAVES = ['status', 'inventory', 'reported', 'telemetry', 'events'] as const;

export class DeviceRegistry {
  readonly name = 'registry';
  private readonly known = new Map<string, Known>();
  private readonly topics: Topics;
  private readonly now: () => number;
  private readonly warned = new Map<string, number>();
  private startedAt = 0;

  constructor(private readonly opts: RegistryOptions) {
    this.topics = new Topics(opts.topicPrefix, 'controller');
    this.now = opts.now ?? Date.now;
  }

  start(): void {
    this.startedAt = this.now();
    for (const d of this.opts.store.listDevices()) this.known.set(d.id, this.fromRecord(d));
    if (this.opts.brokerRestarted) {
      const at = this.now();
      for (const id of this.opts.store.markAllOffline()) {
        const k = this.known.get(id);
        if (k !== undefined) k.online = false;
        this.opts.bus.emit('device.offline', { deviceId: id, status: k?.status, reason: 'controller restarted (embedded broker)', at });
      }
    }
    for (const leaf of LEAVES) this.opts.mqtt.subscribe(`${this.topics.prefix}/dev/+/${leaf}`, (m) => this.ingest(m));
  }

  stop(): void {
    // Nothing to release: the MQTT connection is its own extension.
  }

  // ---- views ---------------------------------------------------------------------------------

  device(id: string): DeviceRecord | undefined {
    return this.opts.store.getDevice(id);
  }

  /**
   * Every device. The store keeps the parsed rows between calls and reads again only those
   * written since (this registry writes every change it follows), so devices() and views()
   * in one deployments pass cost one read of the changed rows, not two of the whole table.
   * The records are shared: do not modify them.
   */
  devices(): DeviceRecord[] {
    return this.opts.store.listDevices();
  }

  counts(): { online: number; offline: number } {
    let online = 0;
    for (const k of this.known.values()) if (k.online) online++;
    return { online, offline: this.known.size - online };
  }

  /**
   * What the scheduler sees. The scheduler's grace period counts from lastSeen; for a device
   * that is offline, that is never earlier than when this registry started: a controller that
   * was down for a while must not take the fleet for gone before it had a chance to reconnect.
   */
  views(): DeviceView[] {
    return this.devices().map((d) => ({
      id: d.id,
      online: d.online,
      lastSeen: d.online ? d.lastSeen : Math.max(d.lastSeen, this.startedAt),
      inventory: d.inventory,
      labels: { ...(d.inventory?.labels ?? {}), ...d.labels },
      boardClass: boardClassOf(d.inventory),
    }));
  }

  // ---- ingest --------------------------------------------------------------------------------

  /** Handle one message from a device topic (public for tests). */
  ingest(msg: MqttMessage): void {
    const parsed = this.topics.parse(msg.topic);
    if (parsed === undefined || parsed.kind === 'cmd' || parsed.kind === 'reply' || parsed.kind === 'desired') return;
    const id = parsed.deviceId;
    const seenAt = msg.retain ? undefined : this.now();
    try {
      switch (parsed.kind) {
        case 'status': return this.onStatus(id, msg.payload, seenAt);
        case 'inventory': return this.onInventory(id, msg.payload, seenAt);
        case 'reported': return this.onReported(id, msg.payload, seenAt);
        case 'telemetry': return this.onTelemetry(id, msg.payload);
        case 'events': return this.onEvent(id, msg.payload, seenAt);
      }
    } catch (e: unknown) {
      this.warnOnce(`${id}/${parsed.kind}`, 'registry.payload_refused', { deviceId: id, topic: msg.topic, error: messageOf(e) });
    }
  }

  private entry(id: string): Known {
    let k = this.known.get(id);
    if (k === undefined) {
      this.opts.store.ensureDevice(id);
      k = { online: false, status: undefined, inventory: undefined, inventoryJson: '', reported: undefined, reportedJson: '', boardClass: 'unknown' };
      this.known.set(id, k);
    }
    return k;
  }

  private onStatus(id: string, payload: Buffer, seenAt: number | undefined): void {
    const status = isEmptyPayload(payload) ? undefined : parseStatus(payload);
    const k = this.entry(id);
    const online = status?.online ?? false;
    const was = k.online;
    this.opts.store.setDeviceStatus(id, status, online, seenAt);
    k.online = online;
    k.status = status;
    const at = this.now();
    if (online && !was) {
      this.opts.logger.info('device.online', { deviceId: id, agentVersion: status?.agentVersion });
      this.opts.bus.emit('device.online', { deviceId: id, status, at });
    } else if (!online && was) {
      const reason = status?.reason ?? (status === undefined ? 'status cleared' : 'offline');
      this.opts.logger.info('device.offline', { deviceId: id, reason });
      this.opts.bus.emit('device.offline', { deviceId: id, status, reason, at });
    }
  }

  private onInventory(id: string, payload: Buffer, seenAt: number | undefined): void {
    const inventory = isEmptyPayload(payload) ? undefined : parseInventory(payload);
    const k = this.entry(id);
    const json = inventory === undefined ? '' : canonicalJson(inventory);
    if (inventory !== undefined && inventory.id !== id) this.warnOnce(`${id}/inventory-id`, 'registry.inventory_id_mismatch', { deviceId: id, inventoryId: inventory.id });
    this.opts.store.setInventory(id, inventory, this.now(), seenAt);
    if (json === k.inventoryJson) return;
    const previous = k.inventory;
    k.inventory = inventory;
    k.inventoryJson = json;
    k.boardClass = boardClassOf(inventory);
    this.opts.bus.emit('device.inventory', { deviceId: id, inventory, previous });
  }

  private onReported(id: string, payload: Buffer, seenAt: number | undefined): void {
    const reported = isEmptyPayload(payload) ? undefined : parseReported(payload);
    const k = this.entry(id);
    const json = reported === undefined ? '' : canonicalJson(reported);
    this.opts.store.setReported(id, reported, this.now(), seenAt);
    if (json === k.reportedJson) return;
    const previous = k.reported;
    k.reported = reported;
    k.reportedJson = json;
    this.opts.bus.emit('device.reported', { deviceId: id, reported, previous });
  }

  private onTelemetry(id: string, payload: Buffer): void {
    const sample = decodeTelemetry(payload);
    const k = this.entry(id);
    const at = this.now();
    this.opts.store.setTelemetry(id, capacityOf(sample), containersOf(sample), at);
    const withLatency = sample.containers.filter((c) => c.latency.some((l) => l.windowCount > 0));
    if (withLatency.length === 0) return;
    const precisionByContainer = new Map(this.opts.store.listPlacements({ deviceId: id }).map((p) => [p.container, p.precision]));
    for (const c of withLatency) {
      for (const l of c.latency) {
        if (l.windowCount <= 0 || !Number.isFinite(l.p95Ms)) continue;
        const measurement: Measurement = {
          deviceId: id, boardClass: k.boardClass, model: l.model,
          precision: precisionByContainer.get(c.name) ?? ('fp32' satisfies Precision),
          p95Ms: l.p95Ms, count: l.count, at: sample.tsMs > 0 ? sample.tsMs : at,
        };
        this.opts.store.putMeasurement(measurement);
        this.opts.bus.emit('device.measurement', { measurement });
      }
    }
  }

  private onEvent(id: string, payload: Buffer, seenAt: number | undefined): void {
    const e = parseEvent(payload);
    this.entry(id);
    const eventId = this.opts.store.addEvent({ ts: e.ts, deviceId: id, type: e.type, body: e.body });
    if (seenAt !== undefined) this.opts.store.touchDevice(id, seenAt);
    this.opts.bus.emit('device.event', { deviceId: id, id: eventId, type: e.type, ts: e.ts, body: e.body });
  }

  private fromRecord(d: DeviceRecord): Known {
    return {
      online: d.online, status: d.status,
      inventory: d.inventory, inventoryJson: d.inventory === undefined ? '' : canonicalJson(d.inventory),
      reported: d.reported, reportedJson: d.reported === undefined ? '' : canonicalJson(d.reported),
      boardClass: boardClassOf(d.inventory),
    };
  }

  /** One warning per device and topic per minute: a misbehaving device must not flood the log. */
  private warnOnce(key: string, event: string, fields: Record<string, unknown>): void {
    const now = this.now();
    if ((this.warned.get(key) ?? 0) > now - 60_000) return;
    this.warned.set(key, now);
    this.opts.logger.warn(event, fields);
  }
}

function capacityOf(s: TelemetrySample): DeviceCapacity {
  const d = s.device;
  return {
    cpuPercent: d.cpuPercent, cpuCores: d.cpuCores, load1: d.load1,
    memoryTotalBytes: d.memoryTotalBytes, memoryAvailableBytes: d.memoryAvailableBytes,
    diskTotalBytes: d.diskTotalBytes, diskFreeBytes: d.diskFreeBytes,
  };
}

function containersOf(s: TelemetrySample): DeviceContainer[] {
  return s.containers.map((c) => ({
    name: c.name, running: c.running, cpuPercent: c.cpuPercent, memoryBytes: c.memoryBytes,
    ...(c.memoryLimitBytes !== undefined && c.memoryLimitBytes !== null ? { memoryLimitBytes: c.memoryLimitBytes } : {}),
    restarts: c.restarts,
  }));
}
