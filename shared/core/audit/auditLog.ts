import { createHash } from 'node:crypto';
import { ConflictError } from '../errors.js';
import type { Clock } from '../ports/Clock.js';
import type { AuditRecord, StateStore } from '../ports/StateStore.js';
import { canonicalJson } from '../util/canonicalJson.js';

/** Hash of the record before the first one. */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEntry {
  actor: string;
  action: string;
  target?: string | null;
  details?: Record<string, unknown>;
}

/** sha256 over the canonical form of every field except the hash itself. */
export function hashRecord(r: Omit<AuditRecord, 'hash'>): string {
  return createHash('sha256')
    .update(
      canonicalJson({
        seq: r.seq,
        ts: r.ts,
        actor: r.actor,
        action: r.action,
        target: r.target,
        details: r.details,
        prevHash: r.prevHash,
      }),
    )
    .digest('hex');
}

/**
 * Append-only, hash-chained log. Each record carries the previous record's hash, so editing,
 * deleting or reordering any record breaks every hash after it. Appends are conditional on
 * the tail not having moved; concurrent writers retry.
 */
export class AuditLog {
  constructor(
    private readonly store: StateStore,
    private readonly clock: Clock,
  ) {}

  async append(entry: AuditEntry): Promise<AuditRecord> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const tail = await this.store.auditTail();
      const base = {
        seq: (tail?.seq ?? 0) + 1,
        ts: this.clock.now().toISOString(),
        actor: entry.actor,
        action: entry.action,
        target: entry.target ?? null,
        details: entry.details ?? {},
        prevHash: tail?.hash ?? GENESIS_HASH,
      };
      const rec: AuditRecord = { ...base, hash: hashRecord(base) };
      if (await this.store.auditAppend(rec)) return rec;
    }
    throw new ConflictError('audit log: could not append after 50 attempts (too many concurrent writers)');
  }
}

export interface AuditVerifyResult {
  ok: boolean;
  records: number;
  /** The first record that does not verify, and why. */
  firstBad?: { seq: number; reason: string };
  headHash: string;
}

/** Recomputes the whole chain in pages; names the first record that does not verify. */
export async function verifyAuditChain(store: StateStore, pageSize = 1000): Promise<AuditVerifyResult> {
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let count = 0;
  for (;;) {
    const page = await store.auditRead(expectedSeq, pageSize);
    if (page.length === 0) break;
    for (const r of page) {
      const bad = (reason: string): AuditVerifyResult => ({
        ok: false,
        records: count,
        firstBad: { seq: r.seq, reason },
        headHash: prevHash,
      });
      if (r.seq !== expectedSeq) {
        return {
          ok: false,
          records: count,
          firstBad: { seq: expectedSeq, reason: `record ${expectedSeq} is missing (next is ${r.seq})` },
          headHash: prevHash,
        };
      }
      if (r.prevHash !== prevHash)
        return bad(`record ${r.seq} does not link to record ${r.seq - 1} (prevHash differs)`);
      const { hash, ...rest } = r;
      if (hashRecord(rest) !== hash)
        return bad(`record ${r.seq} was modified (hash does not match its contents)`);
      prevHash = hash;
      expectedSeq++;
      count++;
    }
  }
  return { ok: true, records: count, headHash: prevHash };
}
