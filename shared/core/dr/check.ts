import type { ManagedKey } from '../domain/key.js';
import type { DekCensus } from '../plan/evaluate.js';
import type { RecoveryInfo } from '../ports/KeyProvider.js';

export type DrStatus = 'recoverable' | 'single-location' | 'unknown';

export interface DrFinding {
  keyRef: string;
  rule: 'single_location' | 'dek_location_without_key_copy' | 'recovery_unknown' | 'no_deletion_protection';
  severity: 'info' | 'warning' | 'critical';
  message: string;
  store?: string;
}

export interface DrKeyReport {
  keyRef: string;
  providerId: string;
  status: DrStatus;
  locations: string[];
  copies: RecoveryInfo['copies'];
  deletionProtection: string | null;
  notes: string[];
  /** DEKs per store that depend on this key. */
  deks: Record<string, number>;
}

export interface DrReport {
  generatedAt: string;
  keys: DrKeyReport[];
  findings: DrFinding[];
  summary: Record<DrStatus, number> & { findings: number; critical: number };
}

/**
 * Whether a place where key material is available covers a place where DEKs live. Exact names
 * match; a multi-region location covers its regions (Google's `us` covers `us-east1`, `global`
 * covers everything); names compare case-insensitively.
 */
export function covers(available: string, dekLocation: string): boolean {
  const a = available.toLowerCase();
  const d = dekLocation.toLowerCase();
  if (a === d || a === 'global') return true;
  return (
    ['us', 'europe', 'asia', 'eu'].includes(a) &&
    (d.startsWith(`${a}-`) || (a === 'eu' && d.startsWith('europe-')))
  );
}

/**
 * Pure: from keys, what their providers say about recovery, the DEK census and where each store
 * lives, decide per key whether it survives the loss of the place it lives, and flag DEKs that
 * would be left without a key.
 */
export function evaluateDr(input: {
  keys: ManagedKey[];
  recovery: Map<string, RecoveryInfo | { error: string }>;
  census: DekCensus;
  storeLocations: Record<string, string | undefined>;
  now: Date;
}): DrReport {
  const keys: DrKeyReport[] = [];
  const findings: DrFinding[] = [];
  for (const key of input.keys) {
    const info = input.recovery.get(key.ref);
    const deks: Record<string, number> = {};
    for (const [store, byVersion] of Object.entries(input.census.get(key.ref) ?? {})) {
      const n = Object.values(byVersion).reduce((a, b) => a + b, 0);
      if (n > 0) deks[store] = n;
    }
    if (!info || 'error' in info) {
      keys.push({
        keyRef: key.ref,
        providerId: key.providerId,
        status: 'unknown',
        locations: [],
        copies: [],
        deletionProtection: null,
        notes: [],
        deks,
      });
      findings.push({
        keyRef: key.ref,
        rule: 'recovery_unknown',
        severity: 'warning',
        message: info
          ? `cannot tell where ${key.ref} can be recovered from: ${info.error}`
          : `provider ${key.providerId} cannot report where its keys can be recovered from`,
      });
      continue;
    }
    const offsite = info.copies.filter(
      (c) => c.kind !== 'backup' || !info.locations.some((l) => covers(l, c.location)),
    );
    const status: DrStatus = offsite.length > 0 ? 'recoverable' : 'single-location';
    keys.push({
      keyRef: key.ref,
      providerId: key.providerId,
      status,
      locations: info.locations,
      copies: info.copies,
      deletionProtection: info.deletionProtection,
      notes: info.notes,
      deks,
    });
    if (status === 'single-location') {
      findings.push({
        keyRef: key.ref,
        rule: 'single_location',
        severity: Object.keys(deks).length > 0 ? 'warning' : 'info',
        message: `${key.ref} lives only in ${info.locations.join(', ') || 'one place'} and has no copy elsewhere`,
      });
    }
    if (!info.deletionProtection) {
      findings.push({
        keyRef: key.ref,
        rule: 'no_deletion_protection',
        severity: 'info',
        message: `${key.ref} has no soft delete or deletion waiting period`,
      });
    }
    const available = [...info.locations, ...info.copies.map((c) => c.location)];
    // A service that replicates to a region it does not name cannot be compared with store locations.
    const unnamed = info.copies.some((c) => c.kind === 'paired-region');
    for (const [store, n] of Object.entries(deks)) {
      const where = input.storeLocations[store];
      if (!where || unnamed) continue;
      if (available.some((a) => covers(a, where))) continue;
      findings.push({
        keyRef: key.ref,
        store,
        rule: 'dek_location_without_key_copy',
        severity: status === 'single-location' ? 'critical' : 'warning',
        message:
          `${n} DEK(s) in store ${store} (${where}) depend on ${key.ref}, which has no copy in ${where}` +
          (status === 'single-location' ? ` and none anywhere but ${info.locations.join(', ')}` : ''),
      });
    }
  }
  const summary = {
    recoverable: 0,
    'single-location': 0,
    unknown: 0,
    findings: findings.length,
    critical: 0,
  };
  for (const k of keys) summary[k.status]++;
  summary.critical = findings.filter((f) => f.severity === 'critical').length;
  return { generatedAt: input.now.toISOString(), keys, findings, summary };
}
