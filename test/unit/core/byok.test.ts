/**
 * The provider-neutral side of BYOK and per-key capabilities: policy validation, what plans
 * say about imported keys, and the importKey use case's own checks (a fake target stands in
 * for a provider; the real ones are driven in test/integration/byok).
 */
import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../../shared/core/audit/auditLog.js';
import type { ManagedKey } from '../../../shared/core/domain/key.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { evaluate } from '../../../shared/core/plan/evaluate.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import type {
  KeyMaterialSource,
  KeyProvider,
  ProviderCapabilities,
} from '../../../shared/core/ports/KeyProvider.js';
import { expiryFrom, importKey, materialLabel } from '../../../shared/core/usecases/byok.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import { BASE, issuesOf, yaml } from '../policy/helpers.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const DAY = 86_400_000;
const ago = (d: number) => new Date(NOW.getTime() - d * DAY).toISOString();
const ahead = (d: number) => new Date(NOW.getTime() + d * DAY).toISOString();
const CAPS: ProviderCapabilities = {
  autoRotation: { minDays: 90, maxDays: 2560 },
  serverSideRewrap: true,
  choosePrimary: false,
  destroyDelayDays: { min: 7, max: 30 },
  lastUsed: true,
  versionControl: { disable: false, destroy: false },
  import: { algorithms: ['rsa-aes-kwp-sha1', 'rsa-oaep-sha1'] },
};
const { autoRotation: _native, ...IMPORTED_CAPS } = CAPS;

function key(extra: Partial<ManagedKey> = {}): ManagedKey {
  return {
    ref: 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/0b6d4ba4-4bb5-4c1a-9d3b-9d7f1f3c5a11',
    providerType: 'aws-kms',
    providerId: 'aws-prod',
    name: 'orders',
    tags: {},
    protection: 'hsm',
    algorithm: 'AES_256',
    enabled: true,
    primaryVersion: 'm1',
    versions: [{ id: 'm1', state: 'enabled', createdAt: ago(100) }],
    createdAt: ago(100),
    ...extra,
  };
}

const config = (policy: string) =>
  loadConfig(yaml(...BASE, '  - name: imported', '    match: {}', policy), 'p.yaml');

function plan(k: ManagedKey, policy: string, keyCaps?: ProviderCapabilities) {
  return evaluate({
    keys: [k],
    config: config(policy),
    now: NOW,
    census: new Map(),
    capabilities: { 'aws-prod': CAPS },
    ...(keyCaps ? { keyCapabilities: { [k.ref]: keyCaps } } : {}),
    inventoryId: 'inv',
  });
}

describe('policy: byok', () => {
  it('takes a pkcs11 source, a scheme, an expiry and a warning period', () => {
    const c = config(
      '    byok: { source: hsm, algorithm: rsa-oaep-sha1, expiresAfter: P180D, warnBefore: P14D }',
    );
    expect(c.policies[0]!.byok).toMatchObject({
      source: 'hsm',
      algorithm: 'rsa-oaep-sha1',
      expiresAfter: { text: 'P180D' },
      warnBefore: { text: 'P14D' },
    });
    expect(config('    byok: { source: hsm }').policies[0]!.byok!.warnBefore.text).toBe('P30D');
  });

  it('names the field when the source is unknown, not an HSM, or the scheme is wrong', () => {
    const at = (policy: string) => issuesOf(yaml(...BASE, '  - name: p', '    match: {}', policy), 'p.yaml');
    expect(at('    byok: { source: nope }')).toEqual([
      expect.objectContaining({
        path: 'policies[0].byok.source',
        message: expect.stringMatching(/unknown provider "nope"/),
      }),
    ]);
    expect(at('    byok: { source: aws-prod }')).toEqual([
      expect.objectContaining({
        path: 'policies[0].byok.source',
        message: expect.stringMatching(/a BYOK source is a pkcs11 provider/),
      }),
    ]);
    expect(at('    byok: { source: hsm, algorithm: rsa-pkcs1 }')[0]).toMatchObject({
      path: 'policies[0].byok.algorithm',
    });
  });
});

describe('plans for imported keys', () => {
  it('rotation of imported material needs a byok source; without one it is a finding, not an action', () => {
    const k = key({ imported: true });
    const none = plan(k, '    rotate: { every: P90D }', IMPORTED_CAPS);
    expect(none.actions).toEqual([]);
    expect(none.findings.map((f) => f.kind)).toEqual(['rotation_due', 'byok_source_missing']);

    const withSource = plan(
      k,
      '    rotate: { every: P90D }\n    byok: { source: hsm, expiresAfter: P1Y }',
      IMPORTED_CAPS,
    );
    expect(withSource.actions).toEqual([
      expect.objectContaining({
        type: 'rotate',
        expectPrimary: 'm1',
        byok: { source: 'hsm', algorithm: 'rsa-aes-kwp-sha1', expiresAfter: 'P1Y' },
        reason: expect.stringMatching(/new material from hsm/),
      }),
    ]);
    // No native schedule is planned for imported material (the key's capabilities have none).
    expect(withSource.actions.some((a) => a.type === 'set_auto_rotation')).toBe(false);
  });

  it('reports material expiring within the warning period, and expired material even on a disabled key', () => {
    const soon = key({
      imported: true,
      versions: [{ id: 'm1', state: 'enabled', createdAt: ago(10), expiresAt: ahead(12) }],
    });
    const p = plan(soon, '    byok: { source: hsm, warnBefore: P14D }', IMPORTED_CAPS);
    expect(p.findings).toEqual([
      expect.objectContaining({ kind: 'material_expiring', severity: 'warning', version: 'm1' }),
    ]);
    expect(plan(soon, '    byok: { source: hsm, warnBefore: P7D }', IMPORTED_CAPS).findings).toEqual([]);

    const expired = key({
      imported: true,
      enabled: false,
      versions: [{ id: 'm1', state: 'enabled', createdAt: ago(40), expiresAt: ago(1) }],
    });
    expect(
      plan(expired, '    rotate: { every: P90D }', IMPORTED_CAPS).findings.map((f) => [f.kind, f.severity]),
    ).toEqual([
      ['material_expiring', 'critical'],
      ['key_disabled', 'info'],
    ]);
  });

  it('per-key capabilities decide retirement: an alias chain disables the old key', () => {
    const chain = key({
      versions: [
        { id: 'k1', state: 'enabled', createdAt: ago(200) },
        { id: 'k2', state: 'enabled', createdAt: ago(100) },
      ],
      primaryVersion: 'k2',
    });
    const retire = '    retire: { disableAfter: P30D }';
    expect(plan(chain, retire).actions).toEqual([]);
    const perKey = plan(chain, retire, {
      ...IMPORTED_CAPS,
      versionControl: { disable: true, destroy: true },
    });
    expect(perKey.actions).toEqual([expect.objectContaining({ type: 'disable_version', version: 'k1' })]);
  });
});

describe('importKey checks before calling anyone', () => {
  const clock = new ManualClock(NOW);
  const calls: string[] = [];
  const target = (caps: Partial<ProviderCapabilities>): KeyProvider =>
    ({
      id: 'fake',
      type: 'aws-kms',
      capabilities: () => ({ ...CAPS, ...caps }),
      prepareImport: async () => {
        calls.push('prepareImport');
        throw new Error('not reached');
      },
      importMaterial: async () => {
        calls.push('importMaterial');
        throw new Error('not reached');
      },
    }) as unknown as KeyProvider;
  const source: KeyMaterialSource = {
    exportWrapped: async () => {
      calls.push('exportWrapped');
      return new Uint8Array(1);
    },
  };
  const req = (t: KeyProvider, extra: Record<string, unknown> = {}) => ({
    source,
    sourceRef: parseKeyRef('pkcs11:token=prod;object=byok-1'),
    target: t,
    targetRef: parseKeyRef(key().ref),
    ...extra,
  });

  it('refuses a target without import, a scheme it does not accept, and an expiry in the past', async () => {
    const state = SqliteStateStore.open(':memory:');
    const ctx = { actor: 'test', audit: new AuditLog(state, clock), clock };
    const { import: _i, ...noImport } = CAPS;
    await expect(importKey(ctx, req(target({ ...noImport, import: undefined })))).rejects.toThrow(
      /cannot import/,
    );
    await expect(
      importKey(
        ctx,
        req(target({ import: { algorithms: ['rsa-oaep-sha1'] } }), { algorithm: 'rsa-aes-kwp-sha1' }),
      ),
    ).rejects.toThrow(/does not accept the rsa-aes-kwp-sha1 wrapping scheme \(it accepts rsa-oaep-sha1\)/);
    await expect(importKey(ctx, req(target({}), { expiresAt: ago(1) }))).rejects.toBeInstanceOf(
      ValidationError,
    );
    await expect(importKey(ctx, req(target({}), { expiresAt: 'next tuesday' }))).rejects.toThrow(
      /not an ISO-8601/,
    );
    expect(calls).toEqual([]);
    await state.close?.();
  });

  it('expiry from a duration or a date; material labels stay in token-safe characters', () => {
    expect(expiryFrom(clock, 'P90D')).toBe(ahead(90));
    expect(expiryFrom(clock, '2027-01-01')).toBe('2027-01-01T00:00:00.000Z');
    expect(() => expiryFrom(clock, '2020-01-01')).toThrow(/not in the future/);
    expect(materialLabel('pci/orders key', NOW)).toBe('pci-orders-key-20261128T120000Z');
    expect(materialLabel('x'.repeat(200), NOW)).toHaveLength(100);
  });
});
