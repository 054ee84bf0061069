import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compose } from '../../shared/compose.js';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import type { KeyCreator, KeyProvider } from '../../shared/core/ports/KeyProvider.js';
import { applyPlan } from '../../shared/core/usecases/applyPlan.js';
import { makePlan } from '../../shared/core/usecases/planCycle.js';
import { createMasterKeyFile } from '../../shared/providers/local/masterKey.js';
import { type AwsEmulator, startAwsEmulator } from '../emulators/aws/index.js';

/** A cycle composed from a config with `events: eventbridge` publishes rekey's events there. */
let emu: AwsEmulator;
let dir: string;
beforeAll(async () => {
  emu = await startAwsEmulator();
  dir = mkdtempSync(join(tmpdir(), 'rekey-events-'));
  process.env.AWS_ACCESS_KEY_ID = 'test';
  process.env.AWS_SECRET_ACCESS_KEY = 'test';
});
afterAll(async () => {
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('rekey events on EventBridge', () => {
  it('publishes KeyRotated, RewrapCompleted and VersionRetired with stable ids', async () => {
    createMasterKeyFile(join(dir, 'master.key'));
    const cfg = join(dir, 'rekey.yaml');
    writeFileSync(
      cfg,
      `version: 1
providers:
  local: { type: local }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
events: { type: eventbridge, bus: security, region: us-east-1, endpoint: ${emu.endpoint} }
policies:
  - name: all
    match: { provider: [local] }
    rotate: { every: P30D, mode: rekey }
    rewrap: { stores: [app] }
    retire: { disableAfter: P0D }
`,
    );
    const ctx = await compose({ configPath: cfg, actor: 'test', createStores: true });
    try {
      const local = ctx.providers.get('local') as KeyProvider & KeyCreator;
      const key = await local.createKey({ name: 'k', createdAt: '2026-01-01T00:00:00.000Z' });
      const ref = parseKeyRef(key.ref);
      const w = await local.wrap(ref, Buffer.alloc(32, 1), {});
      await ctx.stores
        .get('app')!
        .insertMany([{ id: 'd1', keyRef: key.ref, version: w.version, wrapped: w.ciphertext, context: {} }]);
      const { plan } = await makePlan(ctx);
      const report = await applyPlan(ctx, plan);
      expect(report.status).toBe('completed');
      const got = emu.events.events({ source: 'rekey' });
      expect(got.map((e) => e['detail-type'])).toEqual(['KeyRotated', 'RewrapCompleted', 'VersionRetired']);
      const rotated = got[0]!.detail as { keyRef: string; previousVersion: string; newVersion: string };
      expect(rotated).toMatchObject({ keyRef: key.ref, previousVersion: '1', newVersion: '2' });
      expect(got[1]!.detail).toMatchObject({ rewrapped: 1, failed: 0, toVersion: '2' });
      expect(got[2]!.detail).toMatchObject({ version: '1', state: 'disabled' });
      expect(emu.events.events({ source: 'rekey', eventBusName: 'security' })).toHaveLength(3);
      // Ids are stable per plan action: a retried publish can be de-duplicated.
      expect((got[0]!.detail as { planId: string }).planId).toBe(plan.id);
    } finally {
      await ctx.close();
    }
  });
});
