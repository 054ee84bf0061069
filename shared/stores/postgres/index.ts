export { createPool, type PgPool, type PgPoolOptions, redactUrl, translatePgError } from './connection.js';
export type { PgDekColumns } from './identifiers.js';
export {
  type AppliedPgMigration,
  appliedPgMigrations,
  migratePg,
  PG_MIGRATIONS,
  type PgMigration,
} from './migrations.js';
export { PostgresDekStore, type PostgresDekStoreOptions } from './PostgresDekStore.js';
export { PostgresStateStore, type PostgresStateStoreOptions } from './PostgresStateStore.js';
