// The controller's state in one SQLite database under its data dir (<dataDir>/controller.db):
// devices, credentials, models, deployments and their revisions, placements, events,
// latency measurements, and the desired state (with its generation) of each device.
// Synchronous, small typed methods; every multi-row change is one transaction, so a
// controller killed at any point restarts with a consistent state.
import type Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Inventory } from '../../shared/protocol/inventory.js';
import type { Reported } from '../../shared/protocol/reported.js';
import { FeatherError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import type { AcceleratorKind, Arch, DeploymentPhase, DeploymentSpec, DesiredImage, DesiredWorkload, Measurement, ModelVariant, Placement, Precision } from '../model/types.js';
import { migrate, openDatabase, type Db } from './db.js';
import type { DeploymentStatus, RolloutStatus } from '../scheduler/index.js';
import type {
  CredentialKind, CredentialRecord, DeploymentRecord, DesiredRecord, DeviceCapacity, DeviceContainer, DeviceRecord,
  DeviceStatus, EventRecord, ModelRecord, RevisionRecord,
} from './types.js';

export const DATABASE_FILE = 'controller.db';

export interface StoreOptions {
  logger?: Logger;
  now?: () => number;
  /** Events kept (older ones pruned); default 10,000. */
  eventsKept?: number;
}

type Row = Record<string, unknown>;
type Statement = Database.Statement<unknown[]>;

const parse = <T>(text: unknown, fallback: T): T => (typeof text === 'string' ? (JSON.parse(text) as T) : fallback);
const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v ?? 0));
const str = (v: unknown): string => (typeof v === 'string' ? v : String(v ?? ''));

/** Stable JSON: object keys sorted, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  });
}

function deviceFromRow(r: Row): DeviceRecord {
  return {
    id: str(r['id']),
    createdAt: num(r['created_at']),
    online: num(r['online']) === 1,
    lastSeen: num(r['last_seen']),
    stateChangedAt: num(r['state_changed_at']),
    status: parse<DeviceStatus | undefined>(r['status_json'], undefined),
    inventory: parse<Inventory | undefined>(r['inventory_json'], undefined),
    inventoryAt: num(r['inventory_at']),
    reported: parse<Reported | undefined>(r['reported_json'], undefined),
    reportedAt: num(r['reported_at']),
    labels: parse<Record<string, string>>(r['labels_json'], {}),
    capacity: parse<DeviceCapacity | undefined>(r['capacity_json'], undefined),
    containers: parse<DeviceContainer[]>(r['containers_json'], []),
    telemetryAt: num(r['telemetry_at']),
  };
}

function credentialFromRow(r: Row): CredentialRecord {
  return {
    id: num(r['id']), identity: str(r['identity']), kind: str(r['kind']) as CredentialKind,
    hash: str(r['hash']), mosquittoHash: str(r['mosquitto_hash']), createdAt: num(r['created_at']),
    revokedAt: r['revoked_at'] === null || r['revoked_at'] === undefined ? undefined : num(r['revoked_at']),
  };
}

function deploymentFromRow(r: Row): DeploymentRecord {
  return {
    name: str(r['name']), revision: num(r['revision']), spec: parse<DeploymentSpec>(r['spec_json'], undefined as never),
    phase: str(r['phase']) as DeploymentPhase, message: str(r['message']),
    status: parse<DeploymentStatus | undefined>(r['status_json'], undefined),
    rollout: parse<RolloutStatus | undefined>(r['rollout_json'], undefined),
    createdAt: num(r['created_at']), updatedAt: num(r['updated_at']),
  };
}

function placementFromRow(r: Row): Placement {
  const p: Placement = {
    deployment: str(r['deployment']), revision: num(r['revision']), replica: num(r['replica']), deviceId: str(r['device_id']),
    accelerator: str(r['accelerator']) as AcceleratorKind, precision: str(r['precision']) as Precision, container: str(r['container']),
  };
  if (typeof r['arch'] === 'string') p.arch = r['arch'] as Arch;
  const avoid = parse<string[] | undefined>(r['avoid_json'], undefined);
  if (avoid !== undefined) p.avoid = avoid;
  return p;
}

function measurementFromRow(r: Row): Measurement {
  return {
    deviceId: str(r['device_id']), model: str(r['model']), precision: str(r['precision']) as Precision,
    boardClass: str(r['board_class']), p95Ms: num(r['p95_ms']), count: num(r['count']), at: num(r['at']),
  };
}

function desiredFromRow(r: Row): DesiredRecord {
  return {
    deviceId: str(r['device_id']), generation: num(r['generation']),
    workloads: parse<DesiredWorkload[]>(r['workloads_json'], []), images: parse<DesiredImage[]>(r['images_json'], []),
    hash: str(r['hash']), revisions: parse<Record<string, number>>(r['revisions_json'], {}),
    previousRevisions: parse<Record<string, number>>(r['prev_revisions_json'], {}),
    cleared: num(r['cleared']) === 1, updatedAt: num(r['updated_at']),
  };
}

const DEPLOYMENT_SELECT = `SELECT d.name, d.revision, d.phase, d.message, d.status_json, d.rollout_json, d.created_at, d.updated_at, r.spec_json
  FROM deployments d JOIN deployment_revisions r ON r.deployment = d.name AND r.revision = d.revision`;

export class Store {
  readonly db: Db;
  readonly file: string;
  readonly schemaVersion: number;
  private readonly now: () => number;
  private readonly eventsKept: number;
  private eventsSincePrune = 0;
  /** Prepared statements by SQL text: preparing costs more than running most of these. */
  private readonly statements = new Map<string, Statement>();
  /**
   * Parsed device rows kept between calls of listDevices. Every write to a device row goes
   * through this class and marks the row dirty; listDevices reads again only the dirty rows.
   * Not used inside a transaction (a rollback would leave rows the database no longer has).
   */
  private deviceCache: Map<string, DeviceRecord> | undefined;
  private deviceIds: string[] = [];
  private readonly dirtyDevices = new Set<string>();

  private constructor(db: Db, file: string, version: number, opts: StoreOptions) {
    this.db = db;
    this.file = file;
    this.schemaVersion = version;
    this.now = opts.now ?? Date.now;
    this.eventsKept = opts.eventsKept ?? 10_000;
  }

  /** Open (creating the dir and database when needed) <dataDir>/controller.db and migrate it. */
  static open(dataDir: string, opts: StoreOptions = {}): Store {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    return Store.openFile(join(dataDir, DATABASE_FILE), opts);
  }

  static openFile(file: string, opts: StoreOptions = {}): Store {
    const db = openDatabase(file);
    try {
      const version = migrate(db, { ...(opts.logger ? { logger: opts.logger } : {}), ...(opts.now ? { now: opts.now } : {}) });
      return new Store(db, file, version, opts);
    } catch (e: unknown) {
      db.close();
      throw e;
    }
  }

  close(): void {
    this.statements.clear();
    this.deviceCache = undefined;
    if (this.db.open) this.db.close();
  }

  /** The prepared statement for `sql`, prepared once. */
  private stmt(sql: string): Statement {
    let s = this.statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** A device row changed (undefined: any number of them). */
  private deviceChanged(id?: string): void {
    if (this.deviceCache === undefined) return;
    if (id === undefined) this.deviceCache = undefined;
    else this.dirtyDevices.add(id);
  }

  /** Run `fn` in one transaction (nested calls join the outer one). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // ---- devices -------------------------------------------------------------------------------

  /** Create the device row if missing; returns the record. */
  ensureDevice(id: string): DeviceRecord {
    this.insertDevice(id);
    return this.getDevice(id) as DeviceRecord;
  }

  /** Create the device row if missing (without reading it back). */
  private insertDevice(id: string): void {
    if (this.stmt('INSERT INTO devices (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING').run(id, this.now()).changes > 0) this.deviceChanged(id);
  }

  getDevice(id: string): DeviceRecord | undefined {
    const r = this.stmt('SELECT * FROM devices WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : deviceFromRow(r);
  }

  /**
   * Every device, ordered by id. The records are shared with later calls until their row
   * changes: do not modify them.
   */
  listDevices(): DeviceRecord[] {
    if (this.db.inTransaction) return (this.stmt('SELECT * FROM devices ORDER BY id').all() as Row[]).map(deviceFromRow);
    let cache = this.deviceCache;
    if (cache === undefined) {
      cache = new Map();
      for (const r of this.stmt('SELECT * FROM devices ORDER BY id').all() as Row[]) {
        const d = deviceFromRow(r);
        cache.set(d.id, d);
      }
      this.deviceCache = cache;
      this.deviceIds = [...cache.keys()];
      this.dirtyDevices.clear();
    } else if (this.dirtyDevices.size > 0) {
      let membership = false;
      for (const id of this.dirtyDevices) {
        const d = this.getDevice(id);
        if (d === undefined) membership = cache.delete(id) || membership;
        else {
          if (!cache.has(id)) membership = true;
          cache.set(id, d);
        }
      }
      this.dirtyDevices.clear();
      if (membership) this.deviceIds = [...cache.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    }
    const out: DeviceRecord[] = new Array<DeviceRecord>(this.deviceIds.length);
    for (let i = 0; i < out.length; i++) out[i] = cache.get(this.deviceIds[i] as string) as DeviceRecord;
    return out;
  }

  /** Forget a device: its row, credentials, measurements, desired state and events. Placements stay (the planner moves them). */
  deleteDevice(id: string): boolean {
    this.deviceChanged(id);
    return this.transaction(() => {
      this.stmt('UPDATE credentials SET revoked_at = ? WHERE identity = ? AND kind = ? AND revoked_at IS NULL').run(this.now(), id, 'device');
      this.stmt('DELETE FROM measurements WHERE device_id = ?').run(id);
      this.stmt('DELETE FROM desired WHERE device_id = ?').run(id);
      this.stmt('DELETE FROM events WHERE device_id = ?').run(id);
      return this.stmt('DELETE FROM devices WHERE id = ?').run(id).changes > 0;
    });
  }

  /** The retained status; `online` changes stamp stateChangedAt. `seenAt` undefined leaves lastSeen alone. */
  setDeviceStatus(id: string, status: DeviceStatus | undefined, online: boolean, seenAt?: number): void {
    this.insertDevice(id);
    this.deviceChanged(id);
    const at = this.now();
    this.stmt(`UPDATE devices SET status_json = ?, state_changed_at = CASE WHEN online = ? THEN state_changed_at ELSE ? END,
      online = ?, last_seen = MAX(last_seen, ?) WHERE id = ?`)
      .run(status === undefined ? null : JSON.stringify(status), online ? 1 : 0, at, online ? 1 : 0, seenAt ?? 0, id);
  }

  /** Mark every device offline (the embedded broker restarted: every connection is gone). Returns the ids that were online. */
  markAllOffline(): string[] {
    this.deviceChanged();
    return this.transaction(() => {
      const ids = (this.stmt('SELECT id FROM devices WHERE online = 1').all() as Row[]).map((r) => str(r['id']));
      this.stmt('UPDATE devices SET online = 0, state_changed_at = ? WHERE online = 1').run(this.now());
      return ids;
    });
  }

  setInventory(id: string, inventory: Inventory | undefined, at: number, seenAt?: number): void {
    this.insertDevice(id);
    this.deviceChanged(id);
    this.stmt('UPDATE devices SET inventory_json = ?, inventory_at = ?, last_seen = MAX(last_seen, ?) WHERE id = ?')
      .run(inventory === undefined ? null : JSON.stringify(inventory), at, seenAt ?? 0, id);
  }

  setReported(id: string, reported: Reported | undefined, at: number, seenAt?: number): void {
    this.insertDevice(id);
    this.deviceChanged(id);
    this.stmt('UPDATE devices SET reported_json = ?, reported_at = ?, last_seen = MAX(last_seen, ?) WHERE id = ?')
      .run(reported === undefined ? null : JSON.stringify(reported), at, seenAt ?? 0, id);
  }

  setTelemetry(id: string, capacity: DeviceCapacity, containers: DeviceContainer[], at: number): void {
    this.insertDevice(id);
    this.deviceChanged(id);
    this.stmt('UPDATE devices SET capacity_json = ?, containers_json = ?, telemetry_at = ?, last_seen = MAX(last_seen, ?) WHERE id = ?')
      .run(JSON.stringify(capacity), JSON.stringify(containers), at, at, id);
  }

  touchDevice(id: string, seenAt: number): void {
    this.deviceChanged(id);
    this.stmt('UPDATE devices SET last_seen = MAX(last_seen, ?) WHERE id = ?').run(seenAt, id);
  }

  setDeviceLabels(id: string, labels: Record<string, string>): void {
    this.insertDevice(id);
    this.deviceChanged(id);
    this.stmt('UPDATE devices SET labels_json = ? WHERE id = ?').run(JSON.stringify(labels), id);
  }

  // ---- credentials ---------------------------------------------------------------------------

  /** Store a new credential; with `replace`, the identity's active ones are revoked in the same transaction. */
  addCredential(c: { identity: string; kind: CredentialKind; hash: string; mosquittoHash: string }, replace = true): CredentialRecord {
    return this.transaction(() => {
      const at = this.now();
      if (replace) this.stmt('UPDATE credentials SET revoked_at = ? WHERE identity = ? AND revoked_at IS NULL').run(at, c.identity);
      const info = this.stmt('INSERT INTO credentials (identity, kind, hash, mosquitto_hash, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(c.identity, c.kind, c.hash, c.mosquittoHash, at);
      return credentialFromRow(this.stmt('SELECT * FROM credentials WHERE id = ?').get(info.lastInsertRowid) as Row);
    });
  }

  /** Credentials not revoked, of one identity or of all. */
  activeCredentials(identity?: string): CredentialRecord[] {
    const rows = identity === undefined
      ? this.stmt('SELECT * FROM credentials WHERE revoked_at IS NULL ORDER BY identity, id').all()
      : this.stmt('SELECT * FROM credentials WHERE revoked_at IS NULL AND identity = ? ORDER BY id').all(identity);
    return (rows as Row[]).map(credentialFromRow);
  }

  /** Revoke every active credential of an identity; returns how many. */
  revokeCredentials(identity: string): number {
    return this.stmt('UPDATE credentials SET revoked_at = ? WHERE identity = ? AND revoked_at IS NULL').run(this.now(), identity).changes;
  }

  // ---- models --------------------------------------------------------------------------------

  putModel(name: string, variants: ModelVariant[]): ModelRecord {
    const at = this.now();
    this.stmt(`INSERT INTO models (name, variants_json, created_at, updated_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET variants_json = excluded.variants_json, updated_at = excluded.updated_at`)
      .run(name, JSON.stringify(variants), at, at);
    return this.getModel(name) as ModelRecord;
  }

  getModel(name: string): ModelRecord | undefined {
    const r = this.stmt('SELECT * FROM models WHERE name = ?').get(name) as Row | undefined;
    return r === undefined ? undefined : { name: str(r['name']), variants: parse<ModelVariant[]>(r['variants_json'], []), createdAt: num(r['created_at']), updatedAt: num(r['updated_at']) };
  }

  listModels(): ModelRecord[] {
    return (this.stmt('SELECT name FROM models ORDER BY name').all() as Row[]).map((r) => this.getModel(str(r['name'])) as ModelRecord);
  }

  deleteModel(name: string): boolean {
    return this.stmt('DELETE FROM models WHERE name = ?').run(name).changes > 0;
  }

  // ---- deployments and revisions -------------------------------------------------------------

  /**
   * Record a deployment spec: a new deployment starts at revision 1; a spec that differs from
   * the one in force becomes the next revision; an identical spec changes nothing.
   */
  applyDeployment(spec: DeploymentSpec): { deployment: DeploymentRecord; created: boolean; changed: boolean } {
    return this.transaction(() => {
      const at = this.now();
      const json = canonicalJson(spec);
      const current = this.getDeployment(spec.name);
      if (current !== undefined && canonicalJson(current.spec) === json) return { deployment: current, created: false, changed: false };
      const last = this.stmt('SELECT MAX(revision) AS r FROM deployment_revisions WHERE deployment = ?').get(spec.name) as Row;
      const revision = num(last['r']) + 1;
      if (current === undefined) {
        this.stmt('INSERT INTO deployments (name, revision, created_at, updated_at) VALUES (?, ?, ?, ?)').run(spec.name, revision, at, at);
      }
      this.stmt('INSERT INTO deployment_revisions (deployment, revision, spec_json, created_at) VALUES (?, ?, ?, ?)').run(spec.name, revision, json, at);
      this.stmt("UPDATE deployments SET revision = ?, phase = 'Progressing', message = '', updated_at = ? WHERE name = ?").run(revision, at, spec.name);
      return { deployment: this.getDeployment(spec.name) as DeploymentRecord, created: current === undefined, changed: true };
    });
  }

  getDeployment(name: string): DeploymentRecord | undefined {
    const r = this.stmt(`${DEPLOYMENT_SELECT} WHERE d.name = ?`).get(name) as Row | undefined;
    return r === undefined ? undefined : deploymentFromRow(r);
  }

  listDeployments(): DeploymentRecord[] {
    return (this.stmt(`${DEPLOYMENT_SELECT} ORDER BY d.name`).all() as Row[]).map(deploymentFromRow);
  }

  listRevisions(name: string): RevisionRecord[] {
    return (this.stmt('SELECT * FROM deployment_revisions WHERE deployment = ? ORDER BY revision').all(name) as Row[])
      .map((r) => ({ deployment: str(r['deployment']), revision: num(r['revision']), spec: parse<DeploymentSpec>(r['spec_json'], undefined as never), createdAt: num(r['created_at']) }));
  }

  setDeploymentPhase(name: string, phase: DeploymentPhase, message = ''): void {
    this.stmt('UPDATE deployments SET phase = ?, message = ?, updated_at = ? WHERE name = ? AND (phase != ? OR message != ?)')
      .run(phase, message, this.now(), name, phase, message);
  }

  /** What the scheduler said of a deployment after a pass (status) and the rollout state it keeps between passes. */
  setDeploymentStatus(name: string, s: { phase: DeploymentPhase; message: string; status?: DeploymentStatus | undefined; rollout?: RolloutStatus | undefined }): void {
    this.setDeploymentPhase(name, s.phase, s.message);
    this.stmt('UPDATE deployments SET status_json = ?, rollout_json = ? WHERE name = ?')
      .run(s.status === undefined ? null : JSON.stringify(s.status), s.rollout === undefined ? null : JSON.stringify(s.rollout), name);
  }

  /** Delete a deployment with its revisions and placements. */
  deleteDeployment(name: string): boolean {
    return this.stmt('DELETE FROM deployments WHERE name = ?').run(name).changes > 0;
  }

  // ---- placements ----------------------------------------------------------------------------

  listPlacements(filter: { deployment?: string; deviceId?: string } = {}): Placement[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.deployment !== undefined) { where.push('deployment = ?'); args.push(filter.deployment); }
    if (filter.deviceId !== undefined) { where.push('device_id = ?'); args.push(filter.deviceId); }
    const sql = `SELECT * FROM placements ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY deployment, revision, replica`;
    return (this.stmt(sql).all(...args) as Row[]).map(placementFromRow);
  }

  /** Replace every placement of the deployments named in `deployments` by `placements`, in one transaction. */
  replacePlacements(deployments: readonly string[], placements: readonly Placement[]): void {
    this.transaction(() => {
      const at = this.now();
      const del = this.stmt('DELETE FROM placements WHERE deployment = ?');
      for (const d of deployments) del.run(d);
      const ins = this.stmt('INSERT INTO placements (deployment, revision, replica, device_id, accelerator, precision, container, arch, avoid_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
      for (const p of placements) {
        ins.run(p.deployment, p.revision, p.replica, p.deviceId, p.accelerator, p.precision, p.container, p.arch ?? null, p.avoid === undefined ? null : JSON.stringify(p.avoid), at);
      }
    });
  }

  // ---- events --------------------------------------------------------------------------------

  addEvent(e: { ts: number; deviceId?: string | undefined; type: string; body: Record<string, unknown> }): number {
    const info = this.stmt('INSERT INTO events (ts, device_id, type, body_json) VALUES (?, ?, ?, ?)').run(e.ts, e.deviceId ?? null, e.type, JSON.stringify(e.body));
    if (++this.eventsSincePrune >= 100) this.pruneEvents();
    return Number(info.lastInsertRowid);
  }

  /** Newest first. */
  listEvents(filter: { deviceId?: string; type?: string; limit?: number; beforeId?: number } = {}): EventRecord[] {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (filter.deviceId !== undefined) { where.push('device_id = ?'); args.push(filter.deviceId); }
    if (filter.type !== undefined) { where.push('type = ?'); args.push(filter.type); }
    if (filter.beforeId !== undefined) { where.push('id < ?'); args.push(filter.beforeId); }
    const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (this.stmt(sql).all(...args, filter.limit ?? 100) as Row[]).map((r) => ({
      id: num(r['id']), ts: num(r['ts']), deviceId: r['device_id'] === null ? undefined : str(r['device_id']), type: str(r['type']), body: parse<Record<string, unknown>>(r['body_json'], {}),
    }));
  }

  /** Keep the newest `eventsKept` events. */
  pruneEvents(): number {
    this.eventsSincePrune = 0;
    return this.stmt('DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?').run(this.eventsKept).changes;
  }

  // ---- measurements --------------------------------------------------------------------------

  putMeasurement(m: Measurement): void {
    this.stmt(`INSERT INTO measurements (device_id, model, precision, board_class, p95_ms, count, at) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (device_id, model, precision) DO UPDATE SET board_class = excluded.board_class, p95_ms = excluded.p95_ms, count = excluded.count, at = excluded.at`)
      .run(m.deviceId, m.model, m.precision, m.boardClass, m.p95Ms, m.count, m.at);
  }

  listMeasurements(filter: { model?: string; deviceId?: string } = {}): Measurement[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.model !== undefined) { where.push('model = ?'); args.push(filter.model); }
    if (filter.deviceId !== undefined) { where.push('device_id = ?'); args.push(filter.deviceId); }
    const sql = `SELECT * FROM measurements ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY device_id, model, precision`;
    return (this.stmt(sql).all(...args) as Row[]).map(measurementFromRow);
  }

  // ---- desired state -------------------------------------------------------------------------

  getDesired(deviceId: string): DesiredRecord | undefined {
    const r = this.stmt('SELECT * FROM desired WHERE device_id = ?').get(deviceId) as Row | undefined;
    return r === undefined ? undefined : desiredFromRow(r);
  }

  /** Desired states the controller owns (cleared ones included when asked). */
  listDesired(opts: { includeCleared?: boolean } = {}): DesiredRecord[] {
    const sql = opts.includeCleared ? 'SELECT * FROM desired ORDER BY device_id' : 'SELECT * FROM desired WHERE cleared = 0 ORDER BY device_id';
    return (this.stmt(sql).all() as Row[]).map(desiredFromRow);
  }

  /**
   * Store a device's desired state. `revisions` (container -> deployment revision) is kept with it,
   * and the previous generation's map moves to previousRevisions: what runs until the device
   * has applied the new one.
   */
  putDesired(d: { deviceId: string; generation: number; workloads: DesiredWorkload[]; images: DesiredImage[]; hash: string; revisions?: Record<string, number>; cleared?: boolean }): DesiredRecord {
    this.stmt(`INSERT INTO desired (device_id, generation, workloads_json, images_json, hash, revisions_json, cleared, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (device_id) DO UPDATE SET generation = excluded.generation, workloads_json = excluded.workloads_json,
      images_json = excluded.images_json, hash = excluded.hash, prev_revisions_json = desired.revisions_json,
      revisions_json = excluded.revisions_json, cleared = excluded.cleared, updated_at = excluded.updated_at`)
      .run(d.deviceId, d.generation, JSON.stringify(d.workloads), JSON.stringify(d.images), d.hash, JSON.stringify(d.revisions ?? {}), d.cleared ? 1 : 0, this.now());
    return this.getDesired(d.deviceId) as DesiredRecord;
  }
}
