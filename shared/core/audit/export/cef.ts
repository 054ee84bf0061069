import type { AuditRecord } from '../../ports/StateStore.js';
import { canonicalJson } from '../../util/canonicalJson.js';
import { isFailure, meaningOf, type SeverityId } from './actions.js';
import { redactDetails } from './redact.js';

/**
 * ArcSight Common Event Format:
 * `CEF:0|rekey|rekey|<version>|<action>|<name>|<severity>|<key=value ...>`.
 * Header fields escape `\` and `|`; extension values escape `\`, `=` and line breaks. Neither
 * may hold a raw line break, so each event is exactly one line.
 */

export function escapeCefHeader(s: string): string {
  return s
    .replace(/\\/g, '\\\\')
    .replace(/\|/g, '\\|')
    .replace(/\r\n|\r|\n/g, ' ');
}

export function escapeCefValue(s: string): string {
  return s
    .replace(/\\/g, '\\\\')
    .replace(/=/g, '\\=')
    .replace(/\r\n|\n/g, '\\n')
    .replace(/\r/g, '\\r');
}

/** CEF severity 0-10 from the OCSF severity (Low 0-3, Medium 4-6, High 7-8, Very-High 9-10). */
const CEF_SEVERITY: Record<SeverityId, number> = { 1: 1, 2: 3, 3: 5, 4: 8 };

/** Longest custom string value many CEF consumers accept; longer details are cut and marked. */
export const CEF_MAX_STRING = 4000;

export interface CefOptions {
  productVersion: string;
  chainValid?: boolean;
}

export function toCef(r: AuditRecord, opts: CefOptions): string {
  const m = meaningOf(r);
  const { value: details } = redactDetails(r.details);
  let detailText = canonicalJson(details);
  if (detailText.length > CEF_MAX_STRING) detailText = `${detailText.slice(0, CEF_MAX_STRING - 3)}...`;
  const ext: [string, string][] = [
    ['rt', String(Date.parse(r.ts))],
    ['suser', r.actor],
    ['act', r.action],
    ['outcome', isFailure(r) ? 'failure' : 'success'],
    ['cat', 'rekey-audit'],
    ['externalId', String(r.seq)],
    ['msg', r.target ? `${m.name}: ${r.target}` : m.name],
    ['cn1Label', 'seq'],
    ['cn1', String(r.seq)],
    ['cs1Label', 'target'],
    ['cs1', r.target ?? ''],
    ['cs2Label', 'hash'],
    ['cs2', r.hash],
    ['cs3Label', 'prevHash'],
    ['cs3', r.prevHash],
    ['cs4Label', 'details'],
    ['cs4', detailText],
  ];
  if (opts.chainValid !== undefined) ext.push(['cs5Label', 'chainValid'], ['cs5', String(opts.chainValid)]);
  if (typeof r.details.planId === 'string') ext.push(['cs6Label', 'planId'], ['cs6', r.details.planId]);
  const header = [
    'CEF:0',
    'rekey',
    'rekey',
    escapeCefHeader(opts.productVersion),
    escapeCefHeader(r.action),
    escapeCefHeader(m.name),
    String(CEF_SEVERITY[m.severityId]),
  ].join('|');
  return `${header}|${ext.map(([k, v]) => `${k}=${escapeCefValue(v)}`).join(' ')}`;
}
