// Schema migrations, applied in order inside one transaction each and recorded in
// schema_migrations. Never edit a released migration: add the next version.
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
      CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        online INTEGER NOT NULL DEFAULT 0,
        last_seen INTEGER NOT NULL DEFAULT 0,
        state_changed_at INTEGER NOT NULL DEFAULT 0,
        status_json TEXT,
        inventory_json TEXT,
        inventory_at INTEGER NOT NULL DEFAULT 0,
        reported_json TEXT,
        reported_at INTEGER NOT NULL DEFAULT 0,
        labels_json TEXT NOT NULL DEFAULT '{}',
        capacity_json TEXT,
        containers_json TEXT NOT NULL DEFAULT '[]',
        telemetry_at INTEGER NOT NULL DEFAULT 0
      ) STRICT;

      CREATE TABLE credentials (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        identity TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('admin', 'device')),
        hash TEXT NOT NULL,
        mosquitto_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      ) STRICT;
      CREATE INDEX credentials_identity ON credentials (identity) WHERE revoked_at IS NULL;

      CREATE TABLE models (
        name TEXT PRIMARY KEY,
        variants_json TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE deployments (
        name TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        phase TEXT NOT NULL DEFAULT 'Progressing',
        message TEXT NOT NULL DEFAULT '',
        status_json TEXT,
        rollout_json TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE deployment_revisions (
        deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
        revision INTEGER NOT NULL,
        spec_json TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (deployment, revision)
      ) STRICT;

      CREATE TABLE placements (
        deployment TEXT NOT NULL REFERENCES deployments (name) ON DELETE CASCADE,
        revision INTEGER NOT NULL,
        replica INTEGER NOT NULL,
        device_id TEXT NOT NULL,
        accelerator TEXT NOT NULL,
        precision TEXT NOT NULL,
        container TEXT NOT NULL,
        arch TEXT,
        avoid_json TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (deployment, revision, replica)
      ) STRICT;
      CREATE INDEX placements_device ON placements (device_id);

      CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        device_id TEXT,
        type TEXT NOT NULL,
        body_json TEXT NOT NULL
      ) STRICT;
      CREATE INDEX events_device ON events (device_id, id);

      CREATE TABLE measurements (
        device_id TEXT NOT NULL,
        model TEXT NOT NULL,
        precision TEXT NOT NULL,
        board_class TEXT NOT NULL,
        p95_ms REAL NOT NULL,
        count INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (device_id, model, precision)
      ) STRICT;

      CREATE TABLE desired (
        device_id TEXT PRIMARY KEY,
        generation INTEGER NOT NULL,
        workloads_json TEXT NOT NULL,
        images_json TEXT NOT NULL,
        hash TEXT NOT NULL,
        revisions_json TEXT NOT NULL DEFAULT '{}',
        prev_revisions_json TEXT NOT NULL DEFAULT '{}',
        cleared INTEGER NOT NULL DEFAULT 0,
        updated_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
];
