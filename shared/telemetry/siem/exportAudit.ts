import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { toCef } from '../../core/audit/export/cef.js';
import { ChainTracker } from '../../core/audit/export/chainTracker.js';
import { toJsonLine } from '../../core/audit/export/jsonl.js';
import { toOcsf } from '../../core/audit/export/ocsf.js';
import { ValidationError } from '../../core/errors.js';
import type { AuditRecord, StateStore } from '../../core/ports/StateStore.js';

export type AuditExportFormat = 'jsonl' | 'ocsf' | 'cef';
export const AUDIT_EXPORT_FORMATS: readonly AuditExportFormat[] = ['jsonl', 'ocsf', 'cef'];

export interface AuditExportOptions {
  format: AuditExportFormat;
  /** rekey's version, for OCSF metadata.product.version and the CEF header. */
  productVersion: string;
  /** Only records at or after this instant (ISO-8601). The chain is still verified from record 1. */
  since?: string;
  /** Only records before this instant (ISO-8601). */
  until?: string;
  /**
   * Records up to this seq are covered by a verified signed checkpoint (from
   * verifyAuditWithCheckpoints: lastValidCheckpoint.seq); exported as `signed` in JSON lines.
   */
  signedThroughSeq?: number;
  hostname?: string;
  pageSize?: number;
}

export interface AuditExportResult {
  /** Records written. */
  exported: number;
  /** Records read (the chain is checked over all of them). */
  scanned: number;
  chainValid: boolean;
  firstBad?: { seq: number; reason: string };
}

function checkInstant(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new ValidationError(`audit export: ${what} "${v}" is not an ISO-8601 instant`);
  return t;
}

/** One line (without newline) in the chosen format. */
export function formatRecord(
  r: AuditRecord,
  chainValid: boolean,
  opts: Pick<AuditExportOptions, 'format' | 'productVersion' | 'signedThroughSeq' | 'hostname'>,
): string {
  switch (opts.format) {
    case 'jsonl':
      return toJsonLine(r, {
        chainValid,
        ...(opts.signedThroughSeq !== undefined ? { signed: r.seq <= opts.signedThroughSeq } : {}),
      });
    case 'ocsf':
      return JSON.stringify(
        toOcsf(r, {
          productVersion: opts.productVersion,
          chainValid,
          ...(opts.hostname ? { hostname: opts.hostname } : {}),
        }),
      );
    case 'cef':
      return toCef(r, { productVersion: opts.productVersion, chainValid });
    default:
      throw new ValidationError(
        `audit export: unknown format "${String(opts.format)}" (use ${AUDIT_EXPORT_FORMATS.join(', ')})`,
      );
  }
}

/**
 * Streams the audit log to `out`, one event per line, in seq order, honouring back-pressure.
 * Each event says whether the hash chain verified up to it. Does not end `out`.
 */
export async function exportAudit(
  store: StateStore,
  out: Writable,
  opts: AuditExportOptions,
): Promise<AuditExportResult> {
  if (!AUDIT_EXPORT_FORMATS.includes(opts.format)) {
    throw new ValidationError(
      `audit export: unknown format "${String(opts.format)}" (use ${AUDIT_EXPORT_FORMATS.join(', ')})`,
    );
  }
  const since = checkInstant(opts.since, 'since');
  const until = checkInstant(opts.until, 'until');
  const pageSize = opts.pageSize ?? 1000;
  const tracker = new ChainTracker();
  let exported = 0;
  let scanned = 0;
  for (let from = 1; ; ) {
    const page = await store.auditRead(from, pageSize);
    if (page.length === 0) break;
    for (const r of page) {
      scanned++;
      const valid = tracker.push(r);
      const t = Date.parse(r.ts);
      if ((since !== undefined && t < since) || (until !== undefined && t >= until)) continue;
      if (!out.write(`${formatRecord(r, valid, opts)}\n`)) await once(out, 'drain');
      exported++;
    }
    from = page[page.length - 1]!.seq + 1;
  }
  const bad = tracker.firstBad;
  return { exported, scanned, chainValid: !bad, ...(bad ? { firstBad: bad } : {}) };
}

/** Exports to a file (created 0600, or appended to with `append`), closing it when done. */
export async function exportAuditToFile(
  store: StateStore,
  path: string,
  opts: AuditExportOptions & { append?: boolean },
): Promise<AuditExportResult> {
  const out = createWriteStream(path, { flags: opts.append ? 'a' : 'w', mode: 0o600 });
  try {
    const result = await exportAudit(store, out, opts);
    out.end();
    await finished(out);
    return result;
  } catch (e) {
    out.destroy();
    throw e;
  }
}
