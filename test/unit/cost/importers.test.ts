import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { UsageCounter } from '../../../shared/core/cost/types.js';
import { ValidationError } from '../../../shared/core/errors.js';
import { parseCsv } from '../../../shared/cost/csv.js';
import {
  importAwsCur,
  importAzureAudit,
  importAzureCost,
  importCloudTrail,
  importGcpAudit,
  importGcpBilling,
} from '../../../shared/cost/importers/index.js';
import { ROOT } from './helpers.js';

const fixture = (name: string) => readFileSync(resolve(ROOT, 'test/fixtures/cost', name), 'utf8');
const A = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const B = 'aws-kms://arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321';
const G = 'gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/payments/cryptoKeys/orders-kek';
const Z = 'azure-kv://contoso-prod.vault.azure.net/keys/tls-signing';

/** Counters as sorted [ref, version, class, count] for exact comparison. */
const rows = (u: UsageCounter[]) =>
  u
    .map((x) => [x.ref, x.version ?? '', x.class, x.count, x.period])
    .sort((a, b) => String(a).localeCompare(String(b)));

describe('CSV', () => {
  it('parses RFC 4180 quoting: commas, doubled quotes and line breaks inside quotes, CRLF', () => {
    const recs = [...parseCsv('a,b,c\r\n"x, y","say ""hi""","two\nlines"\r\n\r\nlast,,\n', 't')];
    expect(recs).toEqual([
      { line: 1, fields: ['a', 'b', 'c'] },
      { line: 2, fields: ['x, y', 'say "hi"', 'two\nlines'] },
      { line: 5, fields: ['last', '', ''] },
    ]);
  });
  it('names line and column of malformed quoting', () => {
    expect(() => [...parseCsv('a,b\n1,"open\n', 'f.csv')]).toThrow(
      'f.csv: line 2, column 2: unterminated quoted field',
    );
    expect(() => [...parseCsv('a,b\n1,x"y\n', 'f.csv')]).toThrow(/f\.csv: line 2, column 2: a quote inside/);
  });
});

describe('AWS CUR 2.0', () => {
  it('reads request lines per key ARN and class, skipping storage, other services and tax', () => {
    const r = importAwsCur(fixture('aws-cur.csv'));
    expect(rows(r.usage)).toEqual([
      [B, '', 'asymmetric', 40_000, '2026-11'],
      [A, '', 'gdkp_rsa', 120, '2026-11'],
      [A, '', 'symmetric', 1_250_000, '2026-11'],
    ]);
    expect(r.skipped).toBe(3);
  });
  it('a malformed amount names line, column and header', () => {
    const bad = fixture('aws-cur.csv').replace(',250000,', ',25O000,');
    expect(() => importAwsCur(bad, 'cur.csv')).toThrow(
      'cur.csv: line 4, column 10 (line_item_usage_amount): "25O000" is not a non-negative number',
    );
  });
  it('a missing column and an unknown usage type are errors', () => {
    expect(() =>
      importAwsCur('line_item_product_code,line_item_usage_type\nawskms,KMS-Requests\n', 'c'),
    ).toThrow('c: line 1: missing column line_item_usage_amount');
    const bad = fixture('aws-cur.csv').replace('KMS-Requests-Asymmetric', 'KMS-Widgets');
    expect(() => importAwsCur(bad, 'c')).toThrow(
      /line 5, column 5 \(line_item_usage_type\): unknown KMS usage type/,
    );
  });
});

describe('CloudTrail', () => {
  it('counts kms events per key by class; ReEncrypt goes to the destination key', () => {
    const r = importCloudTrail(fixture('cloudtrail.json'));
    expect(rows(r.usage)).toEqual([
      [B, '', 'asymmetric', 1, '2026-11'],
      [A, '', 'gdkp_ecc', 1, '2026-11'],
      [A, '', 'gdkp_rsa', 1, '2026-11'],
      [A, '', 'management', 1, '2026-11'],
      [A, '', 'symmetric', 3, '2026-11'],
    ]);
    expect(r.skipped).toBe(2);
  });
  it('accepts JSON lines too', () => {
    const doc = JSON.parse(fixture('cloudtrail.json')) as { Records: unknown[] };
    const jsonl = doc.Records.map((x) => JSON.stringify(x)).join('\n');
    expect(rows(importCloudTrail(jsonl).usage)).toEqual(
      rows(importCloudTrail(fixture('cloudtrail.json')).usage),
    );
  });
  it('a malformed record names its line and column in the document', () => {
    const bad = fixture('cloudtrail.json').replace(
      '"keyPairSpec": "ECC_NIST_P256"',
      '"keySpec": "ECC_NIST_P256"',
    );
    expect(() => importCloudTrail(bad, 'trail.json')).toThrow(ValidationError);
    expect(() => importCloudTrail(bad, 'trail.json')).toThrow(
      'trail.json: Records[2] (line 39, column 5), column requestParameters.keyPairSpec: missing on GenerateDataKeyPair',
    );
    expect(() => importCloudTrail('{"Records": [\n  {"eventSource": "kms.amazonaws.com",,}]}', 't')).toThrow(
      /t: line 2, column \d+: not valid JSON/,
    );
  });
});

describe('GCP billing export', () => {
  it('reads operations rows per key (and version), skipping key-version rows and other services', () => {
    const r = importGcpBilling(fixture('gcp-billing.jsonl'));
    expect(rows(r.usage)).toEqual([
      [G, '', 'symmetric', 300_000, '2026-11'],
      [G, '3', 'symmetric', 200_000, '2026-11'],
    ]);
    expect(r.skipped).toBe(2);
  });
  it('a malformed row names its line and field', () => {
    const lines = fixture('gcp-billing.jsonl').split('\n');
    lines[2] = lines[2]!.replace('"amount":200000', '"amount":"lots"');
    expect(() => importGcpBilling(lines.join('\n'), 'billing.jsonl')).toThrow(
      'billing.jsonl: line 3, column usage.amount: "lots" is not a non-negative number',
    );
    expect(() => importGcpBilling('{"a":1}\n{"b":', 'b.jsonl')).toThrow(
      /b\.jsonl: line 2(, column \d+)?: not valid JSON/,
    );
  });
});

describe('GCP audit logs', () => {
  it('counts Data Access entries per key and version', () => {
    const r = importGcpAudit(fixture('gcp-audit.jsonl'));
    expect(rows(r.usage)).toEqual([
      [G, '', 'management', 1, '2026-11'],
      [G, '', 'symmetric', 3, '2026-11'],
      [
        'gcp-kms://projects/acme-prod/locations/europe-west1/keyRings/payments/cryptoKeys/release-signing',
        '2',
        'asymmetric',
        1,
        '2026-11',
      ],
    ]);
    expect(r.skipped).toBe(2);
  });
  it('a missing method names line and field', () => {
    const bad = fixture('gcp-audit.jsonl').replace('"methodName":"Decrypt"', '"method":"Decrypt"');
    expect(() => importGcpAudit(bad, 'audit.jsonl')).toThrow(
      'audit.jsonl: line 2, column protoPayload.methodName: missing or not a string',
    );
  });
});

describe('Azure', () => {
  it('cost export: operations per vault (Azure bills per vault), scaled from 10K units', () => {
    const r = importAzureCost(fixture('azure-cost.csv'));
    expect(rows(r.usage)).toEqual([
      ['azure-kv://contoso-prod.vault.azure.net', '', 'asymmetric', 30_000, '2026-11'],
      ['azure-kv://contoso-prod.vault.azure.net', '', 'symmetric', 125_000, '2026-11'],
    ]);
    const bad = fixture('azure-cost.csv').replace(',10K,12.5,', ',10K,-1,');
    expect(() => importAzureCost(bad, 'cost.csv')).toThrow(
      'cost.csv: line 2, column 12 (Quantity): "-1" is not a non-negative number',
    );
  });
  it('AuditEvent logs: key operations per key and version, from storage and Log Analytics shapes', () => {
    const r = importAzureAudit(fixture('azure-audit.jsonl'));
    expect(rows(r.usage)).toEqual([
      [Z, '', 'management', 1, '2026-11'],
      [Z, '4c1f0a0b2d3e4f5a6b7c8d9e0f1a2b3c', 'asymmetric', 3, '2026-11'],
    ]);
    expect(r.skipped).toBe(2);
    const bad = fixture('azure-audit.jsonl').replace('"time":"2026-11-02T09:00:01Z"', '"time":"yesterday"');
    expect(() => importAzureAudit(bad, 'kv.jsonl')).toThrow(
      'kv.jsonl: line 2, column time: "yesterday" is not an ISO-8601 time',
    );
  });
});
