import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { PostgresDekStore } from '../../../shared/stores/postgres/PostgresDekStore.js';
import { PostgresStateStore } from '../../../shared/stores/postgres/PostgresStateStore.js';
import { dekStoreContract } from '../../contracts/dekStore.contract.js';
import { stateStoreContract } from '../../contracts/stateStore.contract.js';
import { type PgCluster, startPostgres } from '../../support/postgres.js';

let cluster: PgCluster;
let pool: pg.Pool;
let n = 0;

beforeAll(async () => {
  cluster = await startPostgres();
  pool = new pg.Pool({ connectionString: cluster.url, max: 8 });
});
afterAll(async () => {
  await pool?.end();
  await cluster?.stop();
});

// A table rekey creates itself (text ids, jsonb context).
dekStoreContract('postgres, table made by ensureTable', async () => {
  const table = `deks_${++n}`;
  const store = new PostgresDekStore({
    id: 'orders',
    pool,
    table,
    columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
  });
  await store.ensureTable();
  return { store, cleanup: async () => void (await pool.query(`DROP TABLE "${table}"`)) };
});

// An application's own table: another schema, its own column names, varchar ids, a text
// context column, extra columns rekey does not know, and the index the docs ask for.
dekStoreContract('postgres, existing application table', async () => {
  const table = `app_keys_${++n}`;
  await pool.query(`CREATE SCHEMA IF NOT EXISTS app;
    CREATE TABLE app.${table} (
      dek_id varchar(200) PRIMARY KEY,
      owner_account text NOT NULL DEFAULT 'acme',
      kms_key text NOT NULL,
      kms_key_version text NOT NULL,
      dek bytea NOT NULL,
      enc_ctx text,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX ${table}_kms ON app.${table} (kms_key, kms_key_version, dek_id);`);
  const store = new PostgresDekStore({
    id: 'legacy',
    pool,
    table: `app.${table}`,
    columns: { id: 'dek_id', key: 'kms_key', version: 'kms_key_version', wrapped: 'dek', context: 'enc_ctx' },
    idType: 'text',
  });
  return { store, cleanup: async () => void (await pool.query(`DROP TABLE app.${table}`)) };
});

stateStoreContract('postgres', async () => {
  const schema = `rekey_state_${++n}`;
  const store = await PostgresStateStore.open({ pool, schema });
  return {
    store,
    cleanup: async () => void (await pool.query(`DROP SCHEMA "${schema}" CASCADE`)),
  };
});
