import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { COMPROMISE_EVENT_TYPE } from '../../../shared/core/domain/compromiseEvent.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { HmacEventSigner } from '../../../shared/core/governance/signature.js';
import type { StateStore } from '../../../shared/core/ports/StateStore.js';
import { approve, gateAction, getApproval, listApprovals } from '../../../shared/core/usecases/approvals.js';
import { handleCompromise, handleCompromiseEvent } from '../../../shared/core/usecases/handleCompromise.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import { PostgresStateStore } from '../../../shared/stores/postgres/PostgresStateStore.js';
import { type Dynalite, startDynalite } from '../../support/dynalite.js';
import { type PgCluster, startPostgres } from '../../support/postgres.js';
import { lostDeks, testWorkspace } from '../../support/workspace.js';

/**
 * Incidents, processed events and approvals live in the StateStore's generic records: the same
 * flows on PostgreSQL and on DynamoDB (dynalite), including concurrent approvals and
 * concurrent deliveries of one event, which only the stores' conditional writes keep apart.
 */
const YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
incidents:
  sources: [https://siem.example.com]
  signing: { hmac: { secretEnv: UNUSED } }
approvals:
  approvers: [a1, a2, a3, a4, a5, svc]
  quorum: 5
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full, batchSize: 20 }
    approvals: { require: [import] }
`;

let cluster: PgCluster;
let pool: pg.Pool;
let dyn: Dynalite;
let n = 0;

beforeAll(async () => {
  [cluster, dyn] = await Promise.all([startPostgres(), startDynalite()]);
  pool = new pg.Pool({ connectionString: cluster.url, max: 8 });
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await cluster?.stop();
  await dyn?.stop();
});

const stores: [string, () => Promise<StateStore>][] = [
  ['postgres', async () => PostgresStateStore.open({ pool, schema: `gov_${++n}` })],
  [
    'dynamodb',
    async () => {
      const table = `gov-state-${++n}`;
      await dyn.createStateTable(table);
      return new DynamoStateStore({ table, doc: dyn.client({ maxAttempts: 3 }) });
    },
  ],
];

describe.each(stores)('governance records on %s', (_name, open) => {
  it('five approvers at once all land; the gate then allows the import once', async () => {
    const w = await testWorkspace(YAML);
    const state = await open();
    w.ctx.state = state;
    w.ctx.audit = new AuditLog(state, w.clock);
    w.ctx.actor = 'svc';
    try {
      const spec = {
        action: 'import' as const,
        target: 'local://byok',
        subject: { material: 'sha256:0f3a' },
        reason: 'bring our own key',
        policy: 'default',
      };
      const first = await gateAction(w.ctx, spec);
      expect(first).toMatchObject({ allowed: false });
      const id = first.request!.id;
      await Promise.all(['a1', 'a2', 'a3', 'a4', 'a5'].map((by) => approve(w.ctx, id, { by })));
      const r = await getApproval(w.ctx, id);
      expect(r.status).toBe('approved');
      expect(r.approvals.map((a) => a.by).sort()).toEqual(['a1', 'a2', 'a3', 'a4', 'a5']);
      const allowed = await gateAction(w.ctx, spec);
      expect(allowed).toMatchObject({ allowed: true, approvedBy: expect.arrayContaining(['a1', 'a5']) });
      expect(await listApprovals(w.ctx, { status: 'approved' })).toHaveLength(1);
      expect((await verifyAuditChain(state)).ok).toBe(true);
    } finally {
      await w.close();
      await state.close?.();
    }
  });

  it('one event delivered three times at once contains the version once', async () => {
    const w = await testWorkspace(YAML);
    const state = await open();
    w.ctx.state = state;
    w.ctx.audit = new AuditLog(state, w.clock);
    try {
      const ref = await w.seed('k', 40);
      const signer = new HmacEventSigner(Buffer.alloc(32, 2));
      const event = signer.sign({
        specversion: '1.0',
        type: COMPROMISE_EVENT_TYPE,
        source: 'https://siem.example.com',
        id: 'dup-1',
        time: w.clock.now().toISOString(),
        data: { keyRef: ref, version: '1', reason: 'leak', reportedBy: 'siem' },
      });
      const results = await Promise.allSettled(
        [1, 2, 3].map(() => handleCompromiseEvent(w.ctx, event, { verify: signer })),
      );
      // Whoever lost the race either saw the key busy or found the work done; nothing twice.
      const done = await handleCompromiseEvent(w.ctx, event, { verify: signer });
      expect(done.incident).toMatchObject({ status: 'contained', deksMoved: 40 });
      expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
      expect((await w.local.getKey(parseKeyRef(ref))).versions).toHaveLength(2);
      expect(await w.store.countByVersion(ref)).toEqual({ '2': 40 });
      expect(await lostDeks(w)).toEqual([]);
      const again = await handleCompromise(w.ctx, { keyRef: ref, version: '1', reason: 'leak', actor: 'x' });
      expect(again.id).toBe(done.incident.id);
    } finally {
      await w.close();
      await state.close?.();
    }
  });
});
