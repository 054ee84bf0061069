import type { AuditRecord } from '../../ports/StateStore.js';
import { GENESIS_HASH, hashRecord } from '../auditLog.js';

/**
 * Verifies the chain incrementally while records stream past an exporter, so each exported
 * record can say whether the chain up to and including it verified. Once broken, it stays broken.
 * Feed records in seq order starting at 1; starting later trusts the first record's prevHash.
 */
export class ChainTracker {
  private prevHash: string | undefined;
  private nextSeq: number | undefined;
  private broken: { seq: number; reason: string } | undefined;

  constructor(start?: { seq: number; prevHash: string }) {
    if (start) {
      this.nextSeq = start.seq;
      this.prevHash = start.prevHash;
    }
  }

  /** True if the chain verifies up to and including `r`. */
  push(r: AuditRecord): boolean {
    if (this.broken) return false;
    if (this.nextSeq === undefined) {
      this.nextSeq = r.seq;
      this.prevHash = r.seq === 1 ? GENESIS_HASH : r.prevHash;
    }
    const { hash, ...rest } = r;
    if (r.seq !== this.nextSeq) this.broken = { seq: r.seq, reason: `record ${this.nextSeq} is missing` };
    else if (r.prevHash !== this.prevHash)
      this.broken = { seq: r.seq, reason: `record ${r.seq} does not link to record ${r.seq - 1}` };
    else if (hashRecord(rest) !== hash) this.broken = { seq: r.seq, reason: `record ${r.seq} was modified` };
    if (this.broken) return false;
    this.prevHash = hash;
    this.nextSeq = r.seq + 1;
    return true;
  }

  get firstBad(): { seq: number; reason: string } | undefined {
    return this.broken;
  }
}
