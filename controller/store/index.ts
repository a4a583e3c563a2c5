export { Store, DATABASE_FILE, canonicalJson, type StoreOptions } from './store.js';
export { appliedMigrations, migrate, openDatabase, type AppliedMigration, type Db } from './db.js';
export { MIGRATIONS, type Migration } from './migrations.js';
export type * from './types.js';
