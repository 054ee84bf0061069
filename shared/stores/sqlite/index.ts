export { BUSY_TIMEOUT_MS, openDatabase, type SqliteDatabase } from './connection.js';
export { IDENTIFIER, quoteIdent } from './identifiers.js';
export { appliedMigrations, MIGRATIONS, type Migration, migrate } from './migrations.js';
export { SqliteDekStore, type SqliteDekStoreOptions } from './SqliteDekStore.js';
export { SqliteStateStore } from './SqliteStateStore.js';
