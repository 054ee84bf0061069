import { randomBytes } from 'node:crypto';
import { AuditLog } from '../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import { loadConfig } from '../../shared/core/policy/load.js';
import { ManualClock } from '../../shared/core/ports/Clock.js';
import type { DekRecord, DekStore } from '../../shared/core/ports/DekStore.js';
import type { KeyProvider } from '../../shared/core/ports/KeyProvider.js';
import type { RekeyContext } from '../../shared/core/usecases/context.js';
import { LocalKmsProvider } from '../../shared/providers/local/LocalKmsProvider.js';
import { SqliteDekStore } from '../../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../../shared/stores/sqlite/SqliteStateStore.js';

export const DAY = 86_400_000;
export const NOW = new Date('2026-11-28T12:00:00.000Z');

export const POLICY_YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full, batchSize: 50 }
    retire: { disableAfter: P0D }
`;

export interface TestWorkspace {
  ctx: RekeyContext;
  clock: ManualClock;
  local: LocalKmsProvider;
  store: SqliteDekStore;
  state: SqliteStateStore;
  /** Plaintexts by DEK id, to check nothing was lost. */
  plaintexts: Map<string, Buffer>;
  seed(keyName: string, n: number, opts?: { ageDays?: number; prefix?: string }): Promise<string>;
  close(): Promise<void>;
}

/** The embedded default, in memory: a real local KMS and real SQLite stores. */
export async function testWorkspace(
  yaml = POLICY_YAML,
  wrapProvider?: (p: KeyProvider) => KeyProvider,
  wrapStore?: (s: DekStore) => DekStore,
): Promise<TestWorkspace> {
  const clock = new ManualClock(NOW);
  const local = new LocalKmsProvider({
    id: 'local',
    keystorePath: ':memory:',
    masterKey: randomBytes(32),
    clock,
    refreshIntervalMs: 0,
  });
  const store = SqliteDekStore.open({
    id: 'app',
    path: ':memory:',
    table: 'data_keys',
    columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
    create: true,
  });
  const state = SqliteStateStore.open(':memory:');
  const config = loadConfig(yaml, 'test.yaml');
  const provider = wrapProvider ? wrapProvider(local) : local;
  const ctx: RekeyContext = {
    config,
    providers: new Map([['local', provider]]),
    stores: new Map([['app', wrapStore ? wrapStore(store) : store]]),
    state,
    audit: new AuditLog(state, clock),
    clock,
    actor: 'test',
    instanceId: 'test-1',
  };
  const plaintexts = new Map<string, Buffer>();
  return {
    ctx,
    clock,
    local,
    store,
    state,
    plaintexts,
    async seed(keyName, n, opts = {}) {
      const at = clock.now();
      clock.set(new Date(NOW.getTime() - (opts.ageDays ?? 0) * DAY));
      let key = (await local.listKeys({}, null)).items.find((k) => k.name === keyName);
      if (!key) key = await local.createKey({ name: keyName, tags: { team: 'test' } });
      const ref = parseKeyRef(key.ref);
      const recs: DekRecord[] = [];
      for (let i = 0; i < n; i++) {
        const id = `${opts.prefix ?? keyName}-${String(plaintexts.size).padStart(6, '0')}`;
        const pt = randomBytes(32);
        plaintexts.set(id, Buffer.from(pt));
        const w = await local.wrap(ref, pt, { id });
        recs.push({ id, keyRef: key.ref, version: w.version, wrapped: w.ciphertext, context: { id } });
      }
      await store.insertMany(recs);
      clock.set(at);
      return key.ref;
    },
    async close() {
      await local.close();
      await store.close?.();
      await state.close?.();
    },
  };
}

/** Every DEK still unwraps to the plaintext it was created with. Returns the mismatches. */
export async function lostDeks(w: TestWorkspace): Promise<string[]> {
  const bad: string[] = [];
  for (const [id, pt] of w.plaintexts) {
    const d = await w.store.get(id);
    if (!d) {
      bad.push(`${id}: missing`);
      continue;
    }
    try {
      const got = await w.local.unwrap(
        parseKeyRef(d.keyRef),
        { version: d.version, ciphertext: d.wrapped },
        d.context,
      );
      if (!Buffer.from(got).equals(pt)) bad.push(`${id}: different plaintext`);
    } catch (e) {
      bad.push(`${id}: ${(e as Error).message}`);
    }
  }
  return bad;
}
