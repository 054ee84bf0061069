import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ManagedKey } from '../../../shared/core/domain/key.js';
import { ValidationError } from '../../../shared/core/errors.js';
import type { DekCensus } from '../../../shared/core/plan/evaluate.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import type { AuditRecord } from '../../../shared/core/ports/StateStore.js';
import { buildComplianceReport, toJson } from '../../../shared/core/report/compliance.js';
import { escapeHtml, toHtml } from '../../../shared/core/report/html.js';

const END = '2026-11-28T12:00:00.000Z'; // a Saturday
const DAY = 86_400_000;
const ago = (d: number) => new Date(Date.parse(END) - d * DAY).toISOString();
const PERIOD = { from: ago(30), to: END };

const config = loadConfig(
  `version: 1
providers:
  p: { type: local }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
  - name: pci
    match: { tags: { data-class: pci } }
    rotate: { every: P90D, window: "Sat 02:00-06:00 UTC" }
    require: { protection: hsm, algorithms: [AES_256] }
    rewrap: { stores: [app], within: P7D }
    retire: { disableAfter: P30D, destroyAfter: P90D, approvals: 2 }
  - name: general
    match: { tags: { data-class: general } }
    rotate: { every: P1Y }
`,
  'rekey.yaml',
);

function key(
  name: string,
  versions: [string, number, ManagedKey['versions'][number]['state']?][],
  extra: Partial<ManagedKey> = {},
): ManagedKey {
  return {
    ref: `local://${name}`,
    providerType: 'local',
    providerId: 'p',
    name,
    tags: { 'data-class': 'pci' },
    protection: 'hsm',
    algorithm: 'AES_256',
    enabled: true,
    primaryVersion: versions[versions.length - 1]![0],
    versions: versions.map(([id, age, state]) => ({ id, createdAt: ago(age), state: state ?? 'enabled' })),
    createdAt: ago(versions[0]![1]),
    ...extra,
  };
}

let seq = 0;
function rec(action: string, target: string, ts: string, details: Record<string, unknown> = {}): AuditRecord {
  seq++;
  return {
    seq,
    ts,
    actor: 'svc-rotator',
    action,
    target,
    details,
    prevHash: '0'.repeat(64),
    hash: 'f'.repeat(64),
  };
}

function census(entries: Record<string, Record<string, number>>): DekCensus {
  return new Map(Object.entries(entries).map(([ref, byVersion]) => [ref, { app: byVersion }]));
}

describe('compliance report', () => {
  const good = key('good', [
    ['1', 100, 'disabled'],
    ['2', 20],
  ]);
  const overdue = key('overdue', [['1', 120]]);
  const weak = key('weak', [['1', 10]], { protection: 'software', algorithm: 'AES_128' });
  const stale = key('stale', [
    ['1', 60],
    ['2', 20],
  ]);
  const retired = key('retired', [
    ['1', 60, 'disabled'],
    ['2', 20],
  ]);
  const compromised = key('compromised', [
    ['1', 60],
    ['2', 5],
  ]);
  compromised.versions[0]!.compromised = true;
  const other = key('other', [['1', 10]], { tags: {} });
  const records = [
    rec('key.rotated', good.ref, '2026-11-07T03:00:00.000Z', { primary: '2', previousPrimary: '1' }), // Sat 03:00
    rec('key.rotated', stale.ref, '2026-11-09T15:00:00.000Z', { primary: '2', onDemand: true }), // Mon
    rec('version.destroy_awaiting_approval', good.ref, ago(2), { version: '1', approvalsRequired: 2 }),
    rec('key.rotated', good.ref, ago(200), { primary: '1' }), // before the period
    rec('plan.created', 'plan-1', ago(3)),
  ];
  const report = buildComplianceReport({
    keys: [good, overdue, weak, stale, retired, compromised, other],
    config,
    records,
    census: census({
      [good.ref]: { '2': 10 },
      [stale.ref]: { '1': 4, '2': 6 },
      [retired.ref]: { '1': 3, '2': 1 },
      [compromised.ref]: { '1': 2 },
    }),
    period: PERIOD,
    auditIntegrity: { ok: true, records: 5, checkpoints: 1, problems: [] },
  });
  const byName = (n: string) => report.keys.find((k) => k.name === n)!;
  const kinds = (n: string) =>
    byName(n)
      .violations.map((v) => v.kind)
      .sort();

  it('a key that meets its policy is compliant, with its history in the period', () => {
    const k = byName('good');
    expect(k).toMatchObject({
      policy: 'pci',
      rotation: 'ok',
      ageDays: 20,
      maxAgeDays: 90,
      compliant: true,
      rewrap: { status: 'complete', total: 10, onPrimary: 10, pending: 0 },
    });
    expect(k.versions).toEqual([
      { id: '1', state: 'disabled', createdAt: ago(100), primary: false, compromised: false, deks: 0 },
      { id: '2', state: 'enabled', createdAt: ago(20), primary: true, compromised: false, deks: 10 },
    ]);
    expect(k.rotationsInPeriod).toEqual([
      { at: '2026-11-07T03:00:00.000Z', actor: 'svc-rotator', version: '2', onDemand: false, inWindow: true },
    ]);
    expect(k.approvals).toEqual([
      {
        at: ago(2),
        actor: 'svc-rotator',
        action: 'version.destroy_awaiting_approval',
        version: '1',
        approvalsRequired: 2,
      },
    ]);
  });

  it('names an overdue rotation with the cryptoperiod references', () => {
    const [v] = byName('overdue').violations;
    expect(v).toMatchObject({ kind: 'rotation_overdue', severity: 'critical', version: '1' });
    expect(v!.message).toContain('120 days old; policy pci rotates every P90D');
    expect(v!.references.map((r) => `${r.standard} ${r.ref}`)).toEqual([
      'PCI DSS v4.0 3.7.4 (v3.2.1 3.6.4)',
      'NIST SP 800-57 Part 1 Rev. 5, 5.3',
    ]);
  });

  it('names protection and algorithm mismatches', () => {
    expect(kinds('weak')).toEqual(['algorithm_mismatch', 'protection_mismatch']);
    expect(byName('weak').violations.find((v) => v.kind === 'protection_mismatch')!.message).toBe(
      'policy pci requires hsm protection; the key is software',
    );
  });

  it('a re-wrap past its deadline and a rotation outside the window', () => {
    expect(kinds('stale')).toEqual(['rewrap_overdue', 'rotation_outside_window']);
    expect(byName('stale').rewrap).toEqual({ status: 'overdue', total: 10, onPrimary: 6, pending: 4 });
    expect(byName('stale').violations.find((v) => v.kind === 'rotation_outside_window')!.message).toContain(
      'on-demand rotation to 2 by svc-rotator at 2026-11-09T15:00:00.000Z was outside the window "Sat 02:00-06:00 UTC"',
    );
  });

  it('a retired version still referenced by DEKs, and a compromised version in use, are critical', () => {
    expect(kinds('retired')).toEqual(['retired_but_referenced', 'rewrap_overdue']);
    expect(kinds('compromised')).toEqual(['compromised_version_in_use']);
    expect(byName('compromised').violations[0]!.message).toBe(
      'version 1 is marked compromised but is still enabled and still wraps 2 DEK(s)',
    );
  });

  it('summarises per policy and overall, and lists each reference once', () => {
    expect(byName('other')).toMatchObject({ policy: null, rotation: 'unmanaged', compliant: true });
    expect(report.summary).toMatchObject({ keys: 7, managed: 6, compliant: 1, rotationsInPeriod: 2 });
    expect(report.summary.byKind.rotation_overdue).toBe(1);
    expect(report.policies.find((p) => p.name === 'pci')).toMatchObject({ keys: 6, compliant: 1 });
    expect(report.audit).toMatchObject({
      recordsInPeriod: 4,
      actions: { 'key.rotated': 2, 'plan.created': 1 },
    });
    const refs = report.references.map((r) => r.ref);
    expect(new Set(refs).size).toBe(refs.length);
    expect(JSON.parse(toJson(report))).toEqual(report);
  });

  it('the period filter decides which audit events count', () => {
    const narrow = buildComplianceReport({
      keys: [good],
      config,
      records,
      census: new Map(),
      period: { from: ago(5), to: END },
    });
    expect(narrow.keys[0]!.rotationsInPeriod).toEqual([]);
    expect(narrow.keys[0]!.approvals).toHaveLength(1);
    expect(() =>
      buildComplianceReport({
        keys: [],
        config,
        records,
        census: new Map(),
        period: { from: END, to: ago(1) },
      }),
    ).toThrow(ValidationError);
  });

  it('a key is compliant exactly when it has no violation, and overdue exactly past its period (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 }), fc.boolean(), (age, hsm) => {
        const k = key('k', [['1', age]], { protection: hsm ? 'hsm' : 'software' });
        const r = buildComplianceReport({
          keys: [k],
          config,
          records: [],
          census: new Map(),
          period: PERIOD,
        });
        const kr = r.keys[0]!;
        expect(kr.rotation === 'overdue').toBe(age > 90);
        expect(kr.compliant).toBe(age <= 90 && hsm);
        expect(kr.compliant).toBe(kr.violations.length === 0);
      }),
    );
  });
});

describe('HTML report', () => {
  const evil = key('<script>alert(1)</script>', [['1', 200]], {
    ref: 'local://evil',
    tags: { 'data-class': 'pci' },
  });
  const report = buildComplianceReport({
    keys: [evil],
    config,
    records: [rec('key.rotated', 'local://evil', ago(1), { primary: '"><img src=x onerror=alert(1)>' })],
    census: new Map(),
    period: PERIOD,
  });
  const html = toHtml(report);

  it('escapes key names and audit values', () => {
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).not.toContain('<img');
    expect(escapeHtml(`<a href='x'>&"`)).toBe('&lt;a href=&#39;x&#39;&gt;&amp;&quot;');
  });

  it('is self-contained: no scripts, no external URLs, nothing to load', () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/https?:\/\/|\/\/[a-z0-9.-]+\.[a-z]{2,}/i);
    // Real tags only (escaped text has no raw '<'): none may load anything.
    const tags = html.match(/<[^>]*>/g) ?? [];
    expect(tags.length).toBeGreaterThan(20);
    for (const t of tags)
      expect(t).not.toMatch(/^<\/?(script|link|img|iframe|object|embed|base|form)\b|\s(src|href|action)=/i);
    expect(html).not.toMatch(/url\(|@import/i);
    expect(html).toContain(`default-src 'none'`);
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('rotation_overdue');
    expect(html).toContain('PCI DSS v4.0 3.7.4 (v3.2.1 3.6.4)');
  });
});
