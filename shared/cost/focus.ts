import type { Writable } from 'node:stream';
import type { CostPart, CostProvider, KeyCost } from '../core/cost/types.js';
import { csvLine } from './csv.js';

/**
 * FOCUS 1.2 rows: one per cost part of a key (so per version where a version bills), with
 * ResourceId set to the key's provider id and rekey's explanation in ChargeDescription. Parts
 * whose price is unknown are not rows (FOCUS costs cannot be null): `focusRows` reports them
 * through `onUnknown` instead, so they are never silently zero.
 */

export const FOCUS_COLUMNS = [
  'BilledCost',
  'BillingAccountId',
  'BillingAccountName',
  'BillingCurrency',
  'BillingPeriodEnd',
  'BillingPeriodStart',
  'ChargeCategory',
  'ChargeClass',
  'ChargeDescription',
  'ChargeFrequency',
  'ChargePeriodEnd',
  'ChargePeriodStart',
  'ConsumedQuantity',
  'ConsumedUnit',
  'ContractedCost',
  'ContractedUnitPrice',
  'EffectiveCost',
  'InvoiceIssuerName',
  'ListCost',
  'ListUnitPrice',
  'PricingCategory',
  'PricingCurrency',
  'PricingQuantity',
  'PricingUnit',
  'ProviderName',
  'PublisherName',
  'RegionId',
  'RegionName',
  'ResourceId',
  'ResourceName',
  'ResourceType',
  'ServiceCategory',
  'ServiceName',
  'SkuId',
  'SkuMeter',
  'x_KeyVersion',
  'x_BillableKeyVersions',
  'x_RotationCount',
  'x_ProtectionLevel',
  'x_Algorithm',
  'x_RequestClass',
  'x_FreeQuantity',
  'x_CostPart',
  'x_EstimateSource',
  'x_CatalogVersion',
  'x_OverrideDigest',
] as const;

export type FocusColumn = (typeof FOCUS_COLUMNS)[number];
export type FocusRow = Record<FocusColumn, string | number | null>;

/** Mandatory in FOCUS 1.2 (non-null unless noted in NULLABLE). */
export const FOCUS_MANDATORY: readonly FocusColumn[] = [
  'BilledCost',
  'BillingAccountId',
  'BillingAccountName',
  'BillingCurrency',
  'BillingPeriodEnd',
  'BillingPeriodStart',
  'ChargeCategory',
  'ChargeClass',
  'ChargeDescription',
  'ChargePeriodEnd',
  'ChargePeriodStart',
  'ContractedCost',
  'EffectiveCost',
  'InvoiceIssuerName',
  'ListCost',
  'PricingQuantity',
  'PricingUnit',
  'ProviderName',
  'PublisherName',
  'ServiceCategory',
  'ServiceName',
];
const NULLABLE = new Set<FocusColumn>(['ChargeClass']);
const DECIMALS = new Set<FocusColumn>([
  'BilledCost',
  'ContractedCost',
  'ContractedUnitPrice',
  'EffectiveCost',
  'ListCost',
  'ListUnitPrice',
  'PricingQuantity',
  'ConsumedQuantity',
]);
const DATES = new Set<FocusColumn>([
  'BillingPeriodEnd',
  'BillingPeriodStart',
  'ChargePeriodEnd',
  'ChargePeriodStart',
]);

const PROVIDER: Record<CostProvider, { provider: string; service: string; resourceType: string }> = {
  'aws-kms': { provider: 'AWS', service: 'AWS Key Management Service', resourceType: 'KMS Key' },
  'gcp-kms': { provider: 'Google Cloud', service: 'Cloud Key Management Service', resourceType: 'CryptoKey' },
  'azure-kv': { provider: 'Microsoft', service: 'Key Vault', resourceType: 'Key Vault Key' },
  'azure-managed-hsm': {
    provider: 'Microsoft',
    service: 'Azure Key Vault Managed HSM',
    resourceType: 'Managed HSM Key',
  },
  pkcs11: { provider: 'Self-hosted', service: 'PKCS#11 HSM', resourceType: 'PKCS#11 Key' },
  local: { provider: 'Self-hosted', service: 'rekey local KMS', resourceType: 'Local Key' },
};

/** HSM pool rows are billed by the pool's provider, whoever the key's is. */
function providerOfPart(kc: KeyCost, part: CostPart) {
  if (part.kind === 'hsm_pool') {
    if (part.sku.startsWith('aws-cloudhsm/')) return { provider: 'AWS', service: 'AWS CloudHSM' };
    if (part.sku.startsWith('azure-managed-hsm/'))
      return { provider: 'Microsoft', service: 'Azure Key Vault Managed HSM' };
  }
  return PROVIDER[kc.provider];
}

/** The id FOCUS consumers join on: key ARN, full resource name, Key Vault key id, PKCS#11 URI. */
export function resourceIdOf(ref: string): string {
  if (ref.startsWith('aws-kms://')) return ref.slice('aws-kms://'.length);
  if (ref.startsWith('gcp-kms://')) return ref.slice('gcp-kms://'.length);
  if (ref.startsWith('azure-kv://')) return `https://${ref.slice('azure-kv://'.length)}`;
  return ref;
}

function resourceNameOf(ref: string): string {
  if (ref.startsWith('pkcs11:')) return /object=([^;?]+)/.exec(ref)?.[1] ?? ref;
  return ref.slice(ref.lastIndexOf('/') + 1);
}

const focusDate = (iso: string) => `${iso.slice(0, 19)}Z`;

export interface FocusOptions {
  /** What the usage came from (rekey counters, aws-cur, cloudtrail...). Default `rekey-estimate`. */
  estimateSource?: string;
  onUnknown?: (kc: KeyCost, part: CostPart) => void;
}

export function* focusRows(costs: Iterable<KeyCost>, opts: FocusOptions = {}): Generator<FocusRow> {
  for (const kc of costs) {
    for (const part of kc.parts) {
      if (part.cost === null || part.unitPrice === null) {
        opts.onUnknown?.(kc, part);
        continue;
      }
      const p = providerOfPart(kc, part);
      const list = part.listUnitPrice ?? part.unitPrice;
      const consumed = part.quantity + (part.freeQuantity ?? 0);
      yield {
        BilledCost: part.cost,
        BillingAccountId: kc.account,
        BillingAccountName: kc.accountName ?? kc.account,
        BillingCurrency: kc.currency,
        BillingPeriodEnd: focusDate(kc.periodEnd),
        BillingPeriodStart: focusDate(kc.periodStart),
        ChargeCategory: 'Usage',
        ChargeClass: null,
        ChargeDescription: part.explanation,
        ChargeFrequency: part.frequency,
        ChargePeriodEnd: focusDate(kc.periodEnd),
        ChargePeriodStart: focusDate(kc.periodStart),
        ConsumedQuantity: consumed,
        ConsumedUnit: part.unit,
        ContractedCost: part.cost,
        ContractedUnitPrice: part.unitPrice,
        EffectiveCost: part.cost,
        InvoiceIssuerName: p.provider,
        ListCost: list * part.quantity,
        ListUnitPrice: list,
        PricingCategory: 'Standard',
        PricingCurrency: kc.currency,
        PricingQuantity: part.quantity,
        PricingUnit: part.unit,
        ProviderName: p.provider,
        PublisherName: p.provider,
        RegionId: kc.region ?? null,
        RegionName: kc.region ?? null,
        ResourceId: resourceIdOf(kc.ref),
        ResourceName: resourceNameOf(kc.ref),
        ResourceType: PROVIDER[kc.provider].resourceType,
        ServiceCategory: 'Security',
        ServiceName: p.service,
        SkuId: part.sku,
        SkuMeter: part.meter ?? null,
        x_KeyVersion: part.version ?? null,
        x_BillableKeyVersions: kc.billableVersions,
        x_RotationCount: kc.rotationsInPeriod,
        x_ProtectionLevel: kc.protection,
        x_Algorithm: kc.algorithm,
        x_RequestClass: part.requestClass ?? null,
        x_FreeQuantity: part.freeQuantity ?? null,
        x_CostPart: part.kind,
        x_EstimateSource: opts.estimateSource ?? 'rekey-estimate',
        x_CatalogVersion: kc.catalogVersion,
        x_OverrideDigest: kc.overrideDigest,
      };
    }
  }
}

/**
 * Problems with a row against FOCUS 1.2 rules rekey relies on: mandatory columns present,
 * decimals finite, dates in UTC ISO form, ListCost = ListUnitPrice x PricingQuantity.
 */
export function focusRowProblems(row: Partial<FocusRow>): string[] {
  const out: string[] = [];
  for (const c of FOCUS_MANDATORY) {
    const v = row[c];
    if (v === undefined || (v === null && !NULLABLE.has(c)) || v === '') out.push(`${c} is missing`);
  }
  for (const c of DECIMALS) {
    const v = row[c];
    if (v !== null && v !== undefined && (typeof v !== 'number' || !Number.isFinite(v))) {
      out.push(`${c} is not a decimal`);
    }
  }
  for (const c of DATES) {
    const v = row[c];
    if (typeof v !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(v)) {
      out.push(`${c} is not a UTC date-time`);
    }
  }
  if (typeof row.BillingCurrency === 'string' && !/^[A-Z]{3}$/.test(row.BillingCurrency)) {
    out.push('BillingCurrency is not an ISO 4217 code');
  }
  for (const c of Object.keys(row)) {
    if (!(FOCUS_COLUMNS as readonly string[]).includes(c))
      out.push(`${c} is not a FOCUS column nor x_-prefixed`);
  }
  const { ListCost, ListUnitPrice, PricingQuantity } = row;
  if (
    typeof ListCost === 'number' &&
    typeof ListUnitPrice === 'number' &&
    typeof PricingQuantity === 'number'
  ) {
    const expect = ListUnitPrice * PricingQuantity;
    if (Math.abs(ListCost - expect) > 1e-9 * Math.max(1, Math.abs(expect))) {
      out.push(`ListCost ${ListCost} != ListUnitPrice ${ListUnitPrice} x PricingQuantity ${PricingQuantity}`);
    }
  }
  return out;
}

function cell(v: string | number | null): string {
  if (v === null) return '';
  return typeof v === 'number' ? formatDecimal(v) : v;
}

/** Decimals without exponent notation (FOCUS consumers parse plain decimals). */
export function formatDecimal(n: number): string {
  if (Number.isInteger(n)) return String(n);
  const s = String(n);
  return /e/i.test(s) ? n.toFixed(20).replace(/0+$/, '').replace(/\.$/, '') : s;
}

/** CSV text chunks (RFC 4180, CRLF), header first. */
export function* focusCsv(rows: Iterable<FocusRow>): Generator<string> {
  yield csvLine([...FOCUS_COLUMNS]);
  for (const r of rows) yield csvLine(FOCUS_COLUMNS.map((c) => cell(r[c])));
}

/** JSON lines, one row per line (nulls kept). */
export function* focusJsonl(rows: Iterable<FocusRow>): Generator<string> {
  for (const r of rows) yield `${JSON.stringify(r)}\n`;
}

/** Streams chunks to a writable, honouring backpressure. */
export async function writeChunks(chunks: Iterable<string>, out: Writable): Promise<void> {
  for (const c of chunks) {
    if (!out.write(c)) await new Promise<void>((resolve) => out.once('drain', resolve));
  }
}
