import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import type { RekeyContext } from '../../../shared/core/usecases/context.js';
import { handleCompromise } from '../../../shared/core/usecases/handleCompromise.js';
import { Pkcs11Provider } from '../../../shared/providers/pkcs11/Pkcs11Provider.js';
import { SqliteDekStore } from '../../../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import { type SoftHsm, startSoftHsm } from '../../support/softhsm.js';

/**
 * Compromise response on a real HSM (SoftHSM2): the compromised version's DEKs are re-wrapped
 * and verified through PKCS#11, the version is disabled on the token, and every DEK still
 * unwraps to its original plaintext.
 */
const N = 300;
let hsm: SoftHsm;
let provider: Pkcs11Provider;
let store: SqliteDekStore;
let state: SqliteStateStore;
let ctx: RekeyContext;
const plaintexts = new Map<string, Buffer>();

beforeAll(async () => {
  hsm = await startSoftHsm({ label: 'gov-incident', pin: '864213' });
  const clock = new ManualClock('2026-11-28T12:00:00Z');
  provider = await Pkcs11Provider.open({
    id: 'hsm',
    module: hsm.module,
    token: hsm.label,
    pin: Buffer.from(hsm.pin),
    clock,
  });
  store = SqliteDekStore.open({
    id: 'app',
    path: ':memory:',
    table: 'data_keys',
    columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
    create: true,
  });
  state = SqliteStateStore.open(':memory:');
  const config = loadConfig(
    `version: 1
providers:
  hsm: { type: pkcs11, module: ${hsm.module}, token: ${hsm.label}, pin: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db }
policies:
  - name: hsm
    match: { provider: [hsm] }
    rotate: { every: P30D }
    rewrap: { stores: [app], verify: none, rate: 10/s, batchSize: 64 }
`,
    'hsm.yaml',
  );
  ctx = {
    config,
    providers: new Map([['hsm', provider]]),
    stores: new Map([['app', store]]),
    state,
    audit: new AuditLog(state, clock),
    clock,
    actor: 'sec-oncall',
    instanceId: 'gov-hsm-1',
  };
}, 60_000);

afterAll(async () => {
  await provider?.close();
  await store?.close?.();
  await state?.close?.();
  await hsm?.cleanup();
});

describe('compromise response on SoftHSM2', () => {
  it(`re-wraps and verifies ${N} DEKs in the HSM, then disables the version on the token`, async () => {
    const key = await provider.createKey({ name: 'payments-kek' });
    const ref = parseKeyRef(key.ref);
    const recs: DekRecord[] = [];
    for (let i = 0; i < N; i++) {
      const id = `dek-${String(i).padStart(4, '0')}`;
      const pt = randomBytes(32);
      plaintexts.set(id, pt);
      const w = await provider.wrap(ref, pt, { row: id });
      recs.push({ id, keyRef: key.ref, version: w.version, wrapped: w.ciphertext, context: { row: id } });
    }
    await store.insertMany(recs);
    const report = await handleCompromise(ctx, {
      keyRef: key.ref,
      reason: 'HSM partition exported',
      actor: 'sec-oncall',
    });
    expect(report.failures).toEqual([]);
    expect(report).toMatchObject({
      status: 'contained',
      rotation: { how: 'rotated', from: key.primaryVersion },
      stores: { app: { rewrapped: N, verified: N, failed: 0 } },
    });
    const after = await provider.getKey(ref);
    expect(after.versions.find((v) => v.id === key.primaryVersion)!.state).toBe('disabled');
    expect(after.primaryVersion).toBe(report.newVersion);
    let bad = 0;
    for (const [id, pt] of plaintexts) {
      const d = (await store.get(id))!;
      expect(d.version).toBe(report.newVersion);
      const got = await provider.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context);
      if (!Buffer.from(got).equals(pt)) bad++;
      got.fill(0);
    }
    expect(bad).toBe(0);
    // The disabled version no longer unwraps what it wrapped.
    await expect(
      provider.unwrap(
        ref,
        { version: key.primaryVersion, ciphertext: recs[0]!.wrapped },
        { row: recs[0]!.id },
      ),
    ).rejects.toThrow();
    expect((await verifyAuditChain(state)).ok).toBe(true);
  }, 120_000);
});
