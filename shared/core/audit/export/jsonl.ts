import type { AuditRecord } from '../../ports/StateStore.js';
import { redactDetails } from './redact.js';

export interface ExportContext {
  /** Whether the hash chain verified up to and including this record. */
  chainValid: boolean;
  /** Whether a valid signed checkpoint at or after this record covers it (when known). */
  signed?: boolean;
}

/**
 * One JSON line per record: the record exactly as stored (so a consumer can recompute its hash),
 * plus the verification context. Should redaction ever drop a field, the line names it under
 * `redacted`, and its hash will then, rightly, no longer match the exported contents.
 */
export function toJsonLine(r: AuditRecord, ctx: ExportContext): string {
  const { value, removed } = redactDetails(r.details);
  const line: Record<string, unknown> = {
    seq: r.seq,
    ts: r.ts,
    actor: r.actor,
    action: r.action,
    target: r.target,
    details: value,
    prevHash: r.prevHash,
    hash: r.hash,
    chainValid: ctx.chainValid,
  };
  if (ctx.signed !== undefined) line.signed = ctx.signed;
  if (removed.length > 0) line.redacted = removed;
  return JSON.stringify(line);
}
