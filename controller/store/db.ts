// Opening the SQLite database (better-sqlite3): WAL journal, foreign keys on, a busy timeout
// so featherctl on the same machine can read while the controller writes, and the schema
// migrations recorded in schema_migrations (version, name, applied_at).
import Database from 'better-sqlite3';
import { FeatherError, messageOf } from '../../shared/errors.js';
import type { Logger } from '../../shared/logging.js';
import { MIGRATIONS, type Migration } from './migrations.js';

export type Db = Database.Database;

export interface AppliedMigration {
  version: number;
  name: string;
  appliedAt: number;
}

export function openDatabase(file: string): Db {
  let db: Db;
  try {
    db = new Database(file);
  } catch (e: unknown) {
    throw new FeatherError('INTERNAL', `cannot open the controller database ${file}: ${messageOf(e)}; check that the data dir exists and is writable`, undefined, { cause: e });
  }
  db.pragma('journal_mode = WAL');
  // NORMAL is durable across process crashes in WAL mode; a power cut may lose the last
  // transactions but never corrupts the database.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  return db;
}

/** Versions applied so far, oldest first. */
export function appliedMigrations(db: Db): AppliedMigration[] {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT');
  const rows = db.prepare('SELECT version, name, applied_at AS appliedAt FROM schema_migrations ORDER BY version').all() as AppliedMigration[];
  return rows;
}

/**
 * Apply the migrations not applied yet, each in its own transaction. Refuses a database whose
 * schema is newer than this code knows (a downgraded controller would misread it).
 */
export function migrate(db: Db, opts: { migrations?: readonly Migration[]; logger?: Logger; now?: () => number } = {}): number {
  const migrations = [...(opts.migrations ?? MIGRATIONS)].sort((a, b) => a.version - b.version);
  const now = opts.now ?? Date.now;
  const applied = appliedMigrations(db);
  const current = applied.at(-1)?.version ?? 0;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new FeatherError('INTERNAL', `the controller database has schema version ${current}, newer than this feather-controller knows (${latest}); run the newer feather-controller or restore a backup`);
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    const apply = db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, now());
    });
    try {
      apply();
    } catch (e: unknown) {
      throw new FeatherError('INTERNAL', `schema migration ${m.version} (${m.name}) failed: ${messageOf(e)}; the database is left at version ${appliedMigrations(db).at(-1)?.version ?? 0}`, undefined, { cause: e });
    }
    opts.logger?.info('store.migrated', { version: m.version, name: m.name });
  }
  return appliedMigrations(db).at(-1)?.version ?? 0;
}
