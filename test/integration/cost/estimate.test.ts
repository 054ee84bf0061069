import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { explainKeyCost } from '../../../shared/core/cost/model.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { loadCatalog } from '../../../shared/cost/catalogFile.js';
import { parseCsv } from '../../../shared/cost/csv.js';
import { estimateFromFiles } from '../../../shared/cost/estimate.js';
import {
  FOCUS_COLUMNS,
  FOCUS_MANDATORY,
  type FocusRow,
  focusCsv,
  focusJsonl,
  focusRowProblems,
  focusRows,
  writeChunks,
} from '../../../shared/cost/focus.js';
import { importAwsCur, importCloudTrail } from '../../../shared/cost/importers/index.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const fixture = (name: string) => readFileSync(resolve(ROOT, 'test/fixtures/cost', name), 'utf8');
const tmp = mkdtempSync(join(tmpdir(), 'rekey-cost-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const A = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const B = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321';
const M = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/5555aaaa-55aa-55aa-55aa-5555aaaa5555';
const C = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/6666bbbb-66bb-66bb-66bb-6666bbbb6666';
const P = 'pkcs11:token=payments;object=pin-kek';
const G = 'gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/payments/cryptoKeys/orders-kek';
const Z = 'azure-kv://contoso-prod.vault.azure.net/keys/tls-signing';

describe('offline estimate from exported files (November 2026, 720 h)', () => {
  const catalog = loadCatalog();
  const report = estimateFromFiles({
    inventoryJson: fixture('inventory.json'),
    usageJson: fixture('usage.json'),
    period: '2026-11',
    catalog,
  });
  const total = (ref: string) => report.keys.find((k) => k.ref === ref)!.total!;

  it('prices every key as computed by hand', () => {
    // Account 1111 symmetric requests: A 1,250,000 + M 30,000 = 1,280,000, 20,000 free shared
    // pro rata: A gets 19,531.25 free and pays 1,230,468.75 / 10,000 x $0.03 = $3.69140625.
    const aRequests = ((1_250_000 - (20_000 * 1_250_000) / 1_280_000) / 10_000) * 0.03;
    const mRequests = ((30_000 - (20_000 * 30_000) / 1_280_000) / 10_000) * 0.03;
    expect(aRequests + mRequests).toBeCloseTo(((1_280_000 - 20_000) / 10_000) * 0.03, 12);
    // A: $1 key + rotation #1 (all month) $1 + rotation #2 from Nov 16: 360/720 h; 120 GDKP RSA at $12/10k.
    expect(total(A)).toBeCloseTo(1 + 1 + 360 / 720 + aRequests + (120 / 10_000) * 12, 10);
    // B: $1 + 40,000 RSA 2048 requests at $0.03/10k (not in the free tier).
    expect(total(B)).toBeCloseTo(1 + 0.12, 12);
    // M: AWS-managed, requests only.
    expect(total(M)).toBeCloseTo(mRequests, 12);
    // CloudHSM cluster: 2 HSMs x 720 h x $1.60 = $2,304 over 2 keys; C also pays its $1 KMS key.
    expect(total(C)).toBeCloseTo(1 + 1152, 9);
    expect(total(P)).toBeCloseTo(1152, 9);
    // G: v1 destroyed before November; v2 destroy-scheduled (still billed) until Nov 11: 240 h;
    // v3 720 h. (240 + 720) / 720 x $1.00 + 500,000 ops = 50 x $0.03.
    expect(total(G)).toBeCloseTo(960 / 720 + 1.5, 12);
    // Z: RSA 3072 HSM versions (720 + 240) / 720 at the first tier $5.00, one rotation $1,
    // 30,000 advanced operations = 3 x $0.15.
    expect(total(Z)).toBeCloseTo((960 / 720) * 5 + 1 + 0.45, 12);
    expect(report.total).toBeCloseTo(
      [A, B, M, C, P, G, Z].reduce((s, r) => s + total(r), 0),
      9,
    );
    expect(Math.round(report.total! * 100) / 100).toBe(2323.49);
    expect(report.catalogVersion).toBe('2026.11.1');
    expect(report.overrideDigest).toBe('none');
  });

  it('explains each key line by line', () => {
    const lines = explainKeyCost(report.keys.find((k) => k.ref === A)!);
    expect(lines).toHaveLength(6);
    expect(lines[3]).toContain('rotation version m3');
    expect(lines[3]).toContain('billed 360 of 720 h');
  });

  it('writes FOCUS 1.2 rows that validate: mandatory columns, types, ListCost = ListUnitPrice x PricingQuantity', async () => {
    const unknown: string[] = [];
    const rows = [...focusRows(report.keys, { onUnknown: (k) => unknown.push(k.ref) })];
    expect(unknown).toEqual([]);
    expect(rows.length).toBe(report.keys.reduce((s, k) => s + k.parts.length, 0));
    for (const r of rows) expect(focusRowProblems(r), JSON.stringify(r)).toEqual([]);
    const billed = rows.reduce((s, r) => s + (r.BilledCost as number), 0);
    expect(billed).toBeCloseTo(report.total!, 9);
    // Per key and per version where a version bills.
    const g = rows.filter(
      (r) => r.ResourceId === G.slice('gcp-kms://'.length) && r.x_CostPart === 'key_version',
    );
    expect(g.map((r) => r.x_KeyVersion)).toEqual(['2', '3']);
    expect(g[0]!.x_BillableKeyVersions).toBe(2);
    const z = rows.find((r) => r.ResourceId === 'https://contoso-prod.vault.azure.net/keys/tls-signing')!;
    expect(z).toMatchObject({ ProviderName: 'Microsoft', ServiceName: 'Key Vault', x_RotationCount: 1 });
    const pool = rows.find((r) => r.ResourceId === P)!;
    expect(pool).toMatchObject({ ServiceName: 'AWS CloudHSM', PricingUnit: 'Hours', PricingQuantity: 720 });

    // CSV: RFC 4180, header = the column list, explanations with commas survive a round trip.
    const csvPath = join(tmp, 'focus.csv');
    const out = createWriteStream(csvPath);
    await writeChunks(focusCsv(rows), out);
    await new Promise<void>((r) => out.end(r));
    const parsed = [...parseCsv(readFileSync(csvPath, 'utf8'), csvPath)];
    expect(parsed[0]!.fields).toEqual([...FOCUS_COLUMNS]);
    expect(parsed).toHaveLength(rows.length + 1);
    const desc = FOCUS_COLUMNS.indexOf('ChargeDescription');
    expect(parsed.slice(1).map((p) => p.fields[desc])).toEqual(rows.map((r) => r.ChargeDescription));
    for (const p of parsed.slice(1)) {
      const row = Object.fromEntries(FOCUS_COLUMNS.map((c, i) => [c, p.fields[i]]));
      for (const c of FOCUS_MANDATORY) if (c !== 'ChargeClass') expect(row[c], c).not.toBe('');
      const list = Number(row.ListCost);
      expect(list).toBeCloseTo(Number(row.ListUnitPrice) * Number(row.PricingQuantity), 9);
    }

    // JSONL: one object per line, same rows.
    const jsonl = [...focusJsonl(rows)].join('');
    writeFileSync(join(tmp, 'focus.jsonl'), jsonl);
    const back = jsonl
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as FocusRow);
    expect(back).toEqual(rows);
  });

  it('the validator catches a row that breaks the rules (so the test above can fail)', () => {
    const row = [...focusRows(report.keys)][0]!;
    expect(focusRowProblems({ ...row, ListCost: (row.ListCost as number) + 0.01 })[0]).toMatch(/^ListCost /);
    const { ServiceName: _, ...missing } = row;
    expect(focusRowProblems(missing)).toEqual(['ServiceName is missing']);
    expect(focusRowProblems({ ...row, BilledCost: 'x' })).toEqual(['BilledCost is not a decimal']);
    expect(focusRowProblems({ ...row, ChargePeriodStart: '2026-11-01' })).toEqual([
      'ChargePeriodStart is not a UTC date-time',
    ]);
  });

  it('unknown prices are reported, not written as zero', () => {
    const inv = JSON.parse(fixture('inventory.json')) as { keys: { pool?: string }[]; pools: unknown[] };
    inv.pools = [];
    const r = estimateFromFiles({ inventoryJson: JSON.stringify(inv), period: '2026-11', catalog });
    expect(r.total).toBeNull();
    const unknown: string[] = [];
    const rows = [...focusRows(r.keys, { onUnknown: (k, p) => unknown.push(`${k.ref} ${p.explanation}`) })];
    expect(unknown).toHaveLength(2);
    expect(unknown[0]).toContain('HSM pool "cluster-1a2b3c4d5e6" is not in the inventory');
    expect(rows.every((x) => focusRowProblems(x).length === 0)).toBe(true);
  });

  it('malformed inventory files name the line, column and field', () => {
    const bad = fixture('inventory.json').replace(
      '"createdAt": "2026-02-01T00:00:00Z"',
      '"createdAt": "Feb 1st"',
    );
    expect(() =>
      estimateFromFiles({ inventoryJson: bad, period: '2026-11', catalog, inventoryName: 'inv.json' }),
    ).toThrow(ValidationError);
    expect(() =>
      estimateFromFiles({ inventoryJson: bad, period: '2026-11', catalog, inventoryName: 'inv.json' }),
    ).toThrow(/^inv\.json: line 32, column 20: keys\[1\]\.createdAt: expected an ISO-8601 date-time/);
    const badUsage = fixture('usage.json').replace('"class": "gdkp_rsa"', '"class": "gdkp"');
    expect(() =>
      estimateFromFiles({
        inventoryJson: fixture('inventory.json'),
        usageJson: badUsage,
        usageName: 'u.json',
        period: '2026-11',
        catalog,
      }),
    ).toThrow(/^u\.json: line \d+, column \d+: usage\[1\]\.class: /);
    expect(() => estimateFromFiles({ inventoryJson: '{}', period: '2026-11', catalog })).toThrow(/format/);
    expect(() =>
      estimateFromFiles({ inventoryJson: fixture('inventory.json'), period: '2026-13', catalog }),
    ).toThrow('period "2026-13" is not a month as YYYY-MM');
  });

  it('prices imported CUR and CloudTrail usage with the same inventory', () => {
    const usage = [
      ...importAwsCur(fixture('aws-cur.csv')).usage,
      ...importCloudTrail(fixture('cloudtrail.json')).usage,
    ];
    const r = estimateFromFiles({
      inventoryJson: fixture('inventory.json'),
      usage,
      period: '2026-11',
      catalog,
    });
    const a = r.keys.find((k) => k.ref === A)!;
    const sym = a.parts.find((p) => p.requestClass === 'symmetric')!;
    // CUR 1,250,000 + CloudTrail 3 symmetric requests; DescribeKey (management) is a plain request
    // too, so the account's 20,000 free requests are shared 1,250,003 : 1 between the two lines.
    expect(sym.quantity).toBeCloseTo((1_250_003 - (20_000 * 1_250_003) / 1_250_004) / 10_000, 12);
    expect(a.parts.find((p) => p.requestClass === 'gdkp_ecc')!.cost).toBeCloseTo(0.1 / 10_000, 15);
    expect(r.keys.find((k) => k.ref === B)!.parts.find((p) => p.kind === 'requests')!.requestClass).toBe(
      'rsa_2048',
    );
  });

  it('overrides change the numbers and show in the output', () => {
    const ovPath = join(tmp, 'overrides.yaml');
    writeFileSync(ovPath, 'name: acme EDP\nrules:\n  - sku: aws-cloudhsm/*\n    multiply: 0.5\n');
    const c = loadCatalog({ overridesPath: ovPath });
    const r = estimateFromFiles({ inventoryJson: fixture('inventory.json'), period: '2026-11', catalog: c });
    expect(r.keys.find((k) => k.ref === P)!.total).toBeCloseTo(576, 9);
    const row = [...focusRows(r.keys)].find((x) => x.ResourceId === P)!;
    expect(row.ListUnitPrice).toBe(1.6);
    expect(row.ContractedUnitPrice).toBe(0.8);
    expect(row.x_OverrideDigest).toBe(c.overrideDigest);
    writeFileSync(ovPath, 'rules:\n  - sku: aws-cloudhsm/hsm3\n    multiply: 0.5\n');
    expect(() => loadCatalog({ overridesPath: ovPath })).toThrow(
      /overrides\.yaml: price overrides: rules\[0\]\.sku/,
    );
  });
});
