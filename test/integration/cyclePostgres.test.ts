import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pgLib from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compose } from '../../shared/compose.js';
import { verifyAuditChain } from '../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import type { DekRecord } from '../../shared/core/ports/DekStore.js';
import type { KeyCreator, KeyProvider } from '../../shared/core/ports/KeyProvider.js';
import { applyPlan } from '../../shared/core/usecases/applyPlan.js';
import { makePlan } from '../../shared/core/usecases/planCycle.js';
import { createMasterKeyFile } from '../../shared/providers/local/masterKey.js';
import { type PgCluster, startPostgres } from '../support/postgres.js';

/**
 * The whole cycle with rekey's state and the application's DEKs in PostgreSQL, composed from a
 * config file exactly as the CLI does: an existing application table with its own column names.
 */
let pg: PgCluster & { query<T>(sql: string): Promise<T[]> };
let client: pgLib.Client;
let dir: string;
beforeAll(async () => {
  const cluster = await startPostgres();
  client = new pgLib.Client({ connectionString: cluster.url });
  await client.connect();
  pg = Object.assign(cluster, { query: async <T>(sql: string) => (await client.query(sql)).rows as T[] });
  dir = mkdtempSync(join(tmpdir(), 'rekey-pgcycle-'));
}, 120_000);
afterAll(async () => {
  await client?.end();
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('cycle on PostgreSQL', () => {
  it('plans, rotates, re-wraps and retires with state and DEKs in PostgreSQL', async () => {
    await pg.query(
      'CREATE TABLE app_keys (key_id uuid PRIMARY KEY, kek text NOT NULL, kek_ver text NOT NULL, blob bytea NOT NULL, meta jsonb NOT NULL)',
    );
    await pg.query('CREATE INDEX app_keys_rekey ON app_keys (kek, kek_ver, key_id)');
    createMasterKeyFile(join(dir, 'master.key'));
    process.env.REKEY_TEST_PG_URL = pg.url;
    const cfg = join(dir, 'rekey.yaml');
    writeFileSync(
      cfg,
      `version: 1
providers:
  local: { type: local }
stores:
  orders:
    type: postgres
    url: env:REKEY_TEST_PG_URL
    table: app_keys
    columns: { id: key_id, key: kek, version: kek_ver, wrapped: blob, context: meta }
state: { type: postgres, url: env:REKEY_TEST_PG_URL, schema: rekey_state }
policies:
  - name: all
    match: { provider: [local] }
    rotate: { every: P30D }
    rewrap: { stores: [orders], verify: full, batchSize: 100 }
    retire: { disableAfter: P0D }
`,
    );
    const ctx = await compose({ configPath: cfg, actor: 'test' });
    try {
      const local = ctx.providers.get('local') as KeyProvider & KeyCreator;
      const key = await local.createKey({ name: 'orders-kek' });
      const ref = parseKeyRef(key.ref);
      const secret = randomBytes(32);
      const recs: DekRecord[] = [];
      for (let i = 0; i < 500; i++) {
        const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
        const w = await local.wrap(ref, createHmac('sha256', secret).update(id).digest(), {
          order: String(i),
        });
        recs.push({
          id,
          keyRef: key.ref,
          version: w.version,
          wrapped: w.ciphertext,
          context: { order: String(i) },
        });
      }
      await ctx.stores.get('orders')!.insertMany(recs);
      await local.rotate(ref);
      // The new primary: DEKs under version 1 are now due for re-wrap, and version 1 for retirement.
      const { plan } = await makePlan(ctx);
      expect(plan.actions.map((a) => a.type)).toEqual(['set_auto_rotation', 'rewrap', 'disable_version']);
      const report = await applyPlan(ctx, plan);
      expect(report.status).toBe('completed');
      expect(report.totals).toMatchObject({ rewrapped: 500, verified: 500, failed: 0, retired: 1 });
      expect(await ctx.stores.get('orders')!.countByVersion(key.ref)).toEqual({ '2': 500 });
      const rows = await pg.query<{ n: string }>('SELECT count(*) AS n FROM rekey_state.audit');
      expect(Number(rows[0]!.n)).toBeGreaterThan(3);
      expect((await verifyAuditChain(ctx.state)).ok).toBe(true);
      for (const r of recs.slice(0, 50)) {
        const d = (await ctx.stores.get('orders')!.get(r.id))!;
        const pt = await local.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context);
        expect(Buffer.from(pt).equals(createHmac('sha256', secret).update(r.id).digest())).toBe(true);
      }
    } finally {
      await ctx.close();
    }
  }, 120_000);
});
