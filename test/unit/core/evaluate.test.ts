import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ManagedKey } from '../../../shared/core/domain/key.js';
import { type DekCensus, evaluate } from '../../../shared/core/plan/evaluate.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import type { ProviderCapabilities } from '../../../shared/core/ports/KeyProvider.js';
import { loadCatalog } from '../../../shared/cost/catalogFile.js';

const NOW = new Date('2026-11-28T12:00:00Z'); // a Saturday
const DAY = 86_400_000;
const ago = (d: number) => new Date(NOW.getTime() - d * DAY).toISOString();
const CAPS: ProviderCapabilities = {
  autoRotation: { minDays: 90, maxDays: 2560 },
  serverSideRewrap: true,
  choosePrimary: false,
  destroyDelayDays: { min: 7, max: 30 },
  lastUsed: false,
};

function key(name: string, versionAges: number[], extra: Partial<ManagedKey> = {}): ManagedKey {
  const versions = versionAges.map((a, i) => ({
    id: String(i + 1),
    state: 'enabled' as const,
    createdAt: ago(a),
  }));
  return {
    ref: `local://${name}`,
    providerType: 'local',
    providerId: 'p',
    name,
    tags: { 'data-class': 'pci' },
    protection: 'software',
    algorithm: 'AES_256',
    enabled: true,
    primaryVersion: versions[versions.length - 1]!.id,
    versions,
    createdAt: versions[0]!.createdAt,
    ...extra,
  };
}

function config(policyBody: string) {
  return loadConfig(
    `version: 1
providers:
  p: { type: local }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
${policyBody}`,
    'test.yaml',
  );
}

const BASIC = `  - name: pci
    match: { provider: [p], tags: { data-class: pci } }
    rotate: { every: P90D }
    rewrap: { stores: [app] }
    retire: { disableAfter: P30D, destroyAfter: P90D, approvals: 2 }
`;

const run = (keys: ManagedKey[], body = BASIC, census: DekCensus = new Map()) =>
  evaluate({ keys, config: config(body), now: NOW, census, capabilities: { p: CAPS }, inventoryId: 'inv' });

describe('evaluate', () => {
  it('rotates an overdue key and explains why', () => {
    const plan = run([key('a', [120])]);
    const rotate = plan.actions.find((a) => a.type === 'rotate');
    expect(rotate).toMatchObject({ keyRef: 'local://a', expectPrimary: '1', policy: 'pci' });
    expect(rotate?.reason).toContain('120 days old');
  });

  it('does not rotate a key that is not due', () => {
    expect(run([key('a', [30])]).actions.filter((a) => a.type === 'rotate')).toEqual([]);
  });

  it('sets the native schedule when the provider can express the period, after any rotation', () => {
    const plan = run([key('a', [120])]);
    expect(plan.actions.map((a) => a.type)).toEqual(['rotate', 'set_auto_rotation']);
    expect(plan.actions[1]).toMatchObject({ periodDays: 90 });
  });

  it('rotates on demand and says so when the period is outside the native range', () => {
    const plan = run([key('a', [40])], BASIC.replace('P90D }', 'P30D }'));
    expect(plan.actions.map((a) => a.type)).toEqual(['rotate']);
    expect(plan.actions[0]!.reason).toContain("outside the provider's native range 90-2560 days");
  });

  it('waits for the maintenance window', () => {
    const body = BASIC.replace('every: P90D }', 'every: P90D, window: "Sun 02:00-04:00 UTC" }');
    const plan = run([key('a', [120])], body);
    expect(plan.actions.filter((a) => a.type === 'rotate')).toEqual([]);
    expect(plan.findings.find((f) => f.kind === 'outside_window')?.message).toContain(
      'next opening 2026-11-29T02:00:00.000Z',
    );
    const inside = body.replace('Sun 02:00-04:00', 'Sat 11:00-13:00');
    expect(run([key('a', [120])], inside).actions.some((a) => a.type === 'rotate')).toBe(true);
  });

  it('re-wraps DEKs under old versions and retires only versions past their delays', () => {
    const census: DekCensus = new Map([['local://a', { app: { '1': 5, '2': 7, '3': 1 } }]]);
    const plan = run([key('a', [300, 150, 20])], BASIC, census);
    expect(plan.actions.map((a) => `${a.type}${'version' in a ? ` ${a.version}` : ''}`)).toEqual([
      'set_auto_rotation',
      'rewrap',
      'disable_version 1',
      'schedule_destroy 1',
    ]);
    expect(plan.actions[1]).toMatchObject({ estimatedDeks: 12 });
    expect(plan.actions[3]).toMatchObject({ approvalsRequired: 2, delayDays: 30 });
  });

  it('retires the primary this plan replaces when disableAfter is zero', () => {
    const body = BASIC.replace('disableAfter: P30D', 'disableAfter: P0D');
    const plan = run([key('a', [100])], body, new Map([['local://a', { app: { '1': 3 } }]]));
    expect(plan.actions.map((a) => a.type)).toEqual([
      'rotate',
      'set_auto_rotation',
      'rewrap',
      'disable_version',
    ]);
    expect(plan.actions[3]).toMatchObject({ version: 'previous-primary' });
  });

  it('never plans to disable a version whose DEKs live outside the re-wrap stores', () => {
    const census: DekCensus = new Map([['local://a', { other: { '1': 4 } }]]);
    const plan = run([key('a', [300, 100])], BASIC, census);
    expect(plan.actions.some((a) => a.type === 'disable_version')).toBe(false);
    expect(plan.findings.find((f) => f.kind === 'version_retirable')?.message).toContain('4 DEK(s) outside');
  });

  it('plans no per-version retirement on a provider that acts on whole keys, and says so', () => {
    const census: DekCensus = new Map([['local://a', { app: { '1': 5 } }]]);
    const plan = evaluate({
      keys: [key('a', [300, 150])],
      config: config(BASIC),
      now: NOW,
      census,
      capabilities: { p: { ...CAPS, versionControl: { disable: false, destroy: false } } },
      inventoryId: 'inv',
    });
    expect(plan.actions.map((a) => a.type)).toEqual(['rotate', 'set_auto_rotation', 'rewrap']);
    expect(plan.findings.find((f) => f.kind === 'version_retirable')?.message).toContain(
      'cannot disable or destroy a single version',
    );
  });

  it('prices every action from the catalog: a GCP rotation adds a billed version, a destruction saves one', () => {
    const catalog = loadCatalog();
    const gcpKey: ManagedKey = {
      ...key('g', [300, 150]),
      ref: 'gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/r/cryptoKeys/g',
      providerType: 'gcp-kms',
      protection: 'hsm',
    };
    const census: DekCensus = new Map([[gcpKey.ref, { app: { '2': 3 } }]]);
    const plan = evaluate({
      keys: [gcpKey],
      config: config(BASIC),
      now: NOW,
      census,
      capabilities: { p: CAPS },
      inventoryId: 'inv',
      catalog,
    });
    const by = (t: string) => plan.actions.find((a) => a.type === t)?.costDelta;
    expect(by('rotate')).toMatchObject({ monthly: 1, currency: 'USD', catalogVersion: catalog.version });
    expect(by('schedule_destroy')).toMatchObject({ monthly: -1 });
    expect(by('disable_version')).toMatchObject({ monthly: 0 });
  });

  it('tracks version limits: warns near the limit, never rotates past it', () => {
    const caps = { ...CAPS, maxVersions: 10 };
    const near = evaluate({
      keys: [key('a', [900, 800, 700, 600, 500, 400, 300, 200, 120])],
      config: config(BASIC),
      now: NOW,
      census: new Map(),
      capabilities: { p: caps },
      inventoryId: 'i',
    });
    expect(near.findings.find((f) => f.kind === 'version_limit')).toMatchObject({ severity: 'warning' });
    expect(near.actions.some((a) => a.type === 'rotate')).toBe(true);
    const full = evaluate({
      keys: [key('a', [1000, 900, 800, 700, 600, 500, 400, 300, 200, 120])],
      config: config(BASIC),
      now: NOW,
      census: new Map(),
      capabilities: { p: caps },
      inventoryId: 'i',
    });
    expect(full.findings.find((f) => f.kind === 'version_limit')).toMatchObject({ severity: 'critical' });
    expect(full.actions.some((a) => a.type === 'rotate')).toBe(false);
  });

  it('reports unmanaged keys, shadowed policies and requirement mismatches', () => {
    const body = `${BASIC}  - name: all
    match: { provider: [p] }
    require: { protection: hsm }
`;
    const plan = run([key('a', [10]), key('b', [10], { tags: {} })], body);
    expect(plan.findings.filter((f) => f.kind === 'shadowed_policy').map((f) => f.keyRef)).toEqual([
      'local://a',
    ]);
    expect(plan.findings.find((f) => f.kind === 'protection_mismatch')?.keyRef).toBe('local://b');
    const none = run([key('b', [10], { tags: {} })]);
    expect(none.findings.map((f) => f.kind)).toEqual(['unmanaged_key']);
  });

  it('is deterministic: same inputs, same plan and id', () => {
    const keys = [key('a', [300, 120]), key('b', [95])];
    expect(run(keys)).toEqual(run([...keys].reverse()));
  });

  it('property: per key, actions run rotate -> schedule -> re-wrap -> disable -> destroy, and the current primary is only retired as previous-primary', () => {
    const order = { rotate: 0, set_auto_rotation: 1, rewrap: 2, disable_version: 3, schedule_destroy: 4 };
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            ages: fc.array(fc.integer({ min: 0, max: 900 }), { minLength: 1, maxLength: 5 }),
            deks: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 5, maxLength: 5 }),
            disableAfter: fc.integer({ min: 0, max: 100 }),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        (specs) => {
          const keys = specs.map((s, i) =>
            key(
              `k${i}`,
              [...s.ages].sort((a, b) => b - a),
            ),
          );
          const census: DekCensus = new Map(
            keys.map((k, i) => [
              k.ref,
              { app: Object.fromEntries(k.versions.map((v, j) => [v.id, specs[i]!.deks[j]!])) },
            ]),
          );
          const body = BASIC.replace(
            'disableAfter: P30D, destroyAfter: P90D',
            `disableAfter: P${specs[0]!.disableAfter}D, destroyAfter: P${specs[0]!.disableAfter + 30}D`,
          );
          const plan = run(keys, body, census);
          for (const k of keys) {
            const acts = plan.actions.filter((a) => a.keyRef === k.ref);
            const ranks = acts.map((a) => order[a.type]);
            expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
            for (const a of acts) {
              if (a.type !== 'disable_version' && a.type !== 'schedule_destroy') continue;
              expect(a.version).not.toBe(k.primaryVersion);
              if (a.version === 'previous-primary') expect(acts.some((x) => x.type === 'rotate')).toBe(true);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
