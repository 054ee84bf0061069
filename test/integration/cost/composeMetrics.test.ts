import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compose } from '../../../shared/compose.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import { rewrapKey } from '../../../shared/core/usecases/rewrap.js';
import { rotateKey } from '../../../shared/core/usecases/rotateKey.js';
import type { LocalKmsProvider } from '../../../shared/providers/local/LocalKmsProvider.js';
import type { SqliteDekStore } from '../../../shared/stores/sqlite/SqliteDekStore.js';

/**
 * The `metrics:` section, end to end through compose: a real local KMS and SQLite store, a
 * re-wrap, and the EMF lines the engine's metrics became.
 */
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'rekey-compose-metrics-'));
  writeFileSync(join(dir, 'master.key'), randomBytes(32), { mode: 0o600 });
  writeFileSync(
    join(dir, 'rekey.yaml'),
    `version: 1
providers:
  local: { type: local, keystore: kms.db, masterKey: file:master.key }
stores:
  app: { type: sqlite, path: app.db }
metrics: { type: emf, namespace: rekey-it, output: metrics.jsonl, rollups: [[provider]] }
`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('metrics through compose', () => {
  it('re-wrap metrics land in the configured EMF file, with store and provider as dimensions only', async () => {
    const ctx = await compose({ configPath: join(dir, 'rekey.yaml'), createStores: true });
    try {
      expect(ctx.metrics).toBeDefined();
      const local = ctx.providers.get('local') as LocalKmsProvider;
      const key = await local.createKey({ name: 'orders', tags: {} });
      const ref = parseKeyRef(key.ref);
      const recs: DekRecord[] = [];
      for (let i = 0; i < 25; i++) {
        const pt = randomBytes(32);
        const w = await local.wrap(ref, pt, { id: `d${i}` });
        pt.fill(0);
        recs.push({
          id: `d${i}`,
          keyRef: key.ref,
          version: w.version,
          wrapped: w.ciphertext,
          context: { id: `d${i}` },
        });
      }
      await (ctx.stores.get('app') as SqliteDekStore).insertMany(recs);
      await rotateKey(ctx, key.ref);
      const jobs = await rewrapKey(ctx, { keyRef: key.ref, verify: 'full', batchSize: 10 });
      expect(jobs[0]!.counts.rewrapped).toBe(25);
    } finally {
      await ctx.close();
    }
    const docs = readFileSync(join(dir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as Record<string, unknown> & {
            _aws: { CloudWatchMetrics: { Dimensions: string[][] }[] };
          },
      );
    expect(docs.length).toBeGreaterThan(0);
    const moved = docs.reduce((s, d) => {
      const v = d['rekey.rewrap.rewrapped'];
      return s + (Array.isArray(v) ? v.reduce((a: number, b: number) => a + b, 0) : ((v as number) ?? 0));
    }, 0);
    expect(moved).toBe(25);
    for (const d of docs) {
      expect(d._aws.CloudWatchMetrics[0]!.Dimensions).toEqual([
        ['service', 'store', 'provider'],
        ['service', 'provider'],
      ]);
      expect(d.store).toBe('app');
      expect(d.provider).toBe('local');
      expect(d.keyRef).toBe('local://orders');
    }
  });
});
