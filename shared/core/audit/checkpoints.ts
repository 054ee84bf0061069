import { ConflictError, ValidationError } from '../errors.js';
import type { Clock } from '../ports/Clock.js';
import type { AuditRecord, StateStore } from '../ports/StateStore.js';
import {
  type AuditEntry,
  AuditLog,
  type AuditVerifyResult,
  hashRecord,
  verifyAuditChain,
} from './auditLog.js';

/**
 * Signed checkpoints over the audit hash chain.
 *
 * The hash chain alone proves that nothing was edited, deleted or reordered only to someone
 * who trusts the head: an attacker with write access to the database can rewrite a record and
 * recompute every later hash. A checkpoint closes that gap: it is an ordinary audit record
 * (action `audit.checkpoint`) whose details carry a signature over the chain head at that point,
 * made with a key the database does not hold (an HMAC key from a secret, a KMS or HSM key).
 * Rewriting history then changes the record a checkpoint names, and the checkpoint no longer
 * matches it; forging a new checkpoint needs the signing key.
 */

export const CHECKPOINT_ACTION = 'audit.checkpoint';

/** What a signer returns; stored as-is in the checkpoint's details. */
export interface ChainSignature {
  /** e.g. `HMAC-SHA256`, `ECDSA-P256-SHA256`, `RSASSA-PSS-SHA256`. */
  alg: string;
  /** Which key signed: lets a verifier pick the key and lets signing keys rotate. */
  keyId: string;
  /** base64 */
  signature: string;
}

/**
 * Port: signs and verifies checkpoint payloads. Adapters: an HMAC-SHA256 signer over a secret
 * (shared/telemetry/siem/hmacSigner.ts); a KMS/HSM signer would implement the same two
 * methods with an asymmetric key (AWS KMS Sign/Verify, GCP asymmetricSign, Azure sign, C_Sign
 * on PKCS#11), so the verifier only needs the public key.
 */
export interface ChainSigner {
  sign(bytes: Uint8Array): Promise<ChainSignature>;
  /** False (not a throw) for a signature that does not verify or a key this verifier does not hold. */
  verify(bytes: Uint8Array, sig: ChainSignature): Promise<boolean>;
}

export interface CheckpointDetails extends ChainSignature {
  headSeq: number;
  headHash: string;
}

/** The exact bytes a checkpoint signs: a domain-separation label, the head's seq and hash. */
export function checkpointPayload(headSeq: number, headHash: string): Uint8Array {
  if (!Number.isInteger(headSeq) || headSeq < 1) {
    throw new ValidationError(`checkpoint headSeq must be a positive integer, got ${headSeq}`);
  }
  if (!/^[0-9a-f]{64}$/.test(headHash)) {
    throw new ValidationError('checkpoint headHash must be 64 lowercase hex characters');
  }
  return new TextEncoder().encode(`rekey-audit-checkpoint/v1\n${headSeq}\n${headHash}\n`);
}

/** The checkpoint details of a record, or null if it is not a well-formed checkpoint. */
export function checkpointDetailsOf(r: AuditRecord): CheckpointDetails | null {
  if (r.action !== CHECKPOINT_ACTION) return null;
  const d = r.details;
  if (
    typeof d.headSeq !== 'number' ||
    typeof d.headHash !== 'string' ||
    typeof d.alg !== 'string' ||
    typeof d.keyId !== 'string' ||
    typeof d.signature !== 'string'
  ) {
    return null;
  }
  return { headSeq: d.headSeq, headHash: d.headHash, alg: d.alg, keyId: d.keyId, signature: d.signature };
}

export interface CheckpointOptions {
  /** Recorded as the checkpoint's actor. */
  actor: string;
}

/**
 * Appends a checkpoint that signs the record right before it (the current tail). If another
 * writer appends in between, the checkpoint is re-signed over the new tail and retried, so a
 * checkpoint's head is always the record directly before it. Returns null on an empty log.
 */
export async function appendCheckpoint(
  store: StateStore,
  clock: Clock,
  signer: ChainSigner,
  opts: CheckpointOptions,
): Promise<AuditRecord | null> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const tail = await store.auditTail();
    if (!tail) return null;
    const sig = await signer.sign(checkpointPayload(tail.seq, tail.hash));
    const details: CheckpointDetails = {
      headSeq: tail.seq,
      headHash: tail.hash,
      alg: sig.alg,
      keyId: sig.keyId,
      signature: sig.signature,
    };
    const base = {
      seq: tail.seq + 1,
      ts: clock.now().toISOString(),
      actor: opts.actor,
      action: CHECKPOINT_ACTION,
      target: null,
      details: { ...details },
      prevHash: tail.hash,
    };
    const rec: AuditRecord = { ...base, hash: hashRecord(base) };
    if (await store.auditAppend(rec)) return rec;
  }
  throw new ConflictError(
    'audit checkpoint: could not append after 50 attempts (too many concurrent writers)',
  );
}

/** Seq of the newest checkpoint among the last `within` records, or 0 if there is none. */
export async function lastCheckpointSeq(store: StateStore, within: number): Promise<number> {
  const tail = await store.auditTail();
  if (!tail) return 0;
  const from = Math.max(1, tail.seq - within + 1);
  const page = await store.auditRead(from, tail.seq - from + 1);
  let last = 0;
  for (const r of page) if (r.action === CHECKPOINT_ACTION) last = r.seq;
  return last;
}

/**
 * An AuditLog that appends a signed checkpoint after every `every` records. Drop-in where an
 * AuditLog is expected. Several processes may each add a checkpoint; extra checkpoints are harmless.
 */
export class CheckpointingAuditLog extends AuditLog {
  private lastCheckpoint: number | undefined;

  constructor(
    private readonly auditStore: StateStore,
    private readonly auditClock: Clock,
    private readonly signer: ChainSigner,
    private readonly every: number,
    private readonly checkpointActor = 'rekey',
  ) {
    super(auditStore, auditClock);
    if (!Number.isInteger(every) || every < 1) {
      throw new ValidationError(`audit checkpoint interval must be a positive integer, got ${every}`);
    }
  }

  override async append(entry: AuditEntry): Promise<AuditRecord> {
    const rec = await super.append(entry);
    if (this.lastCheckpoint === undefined) {
      this.lastCheckpoint = await lastCheckpointSeq(this.auditStore, this.every + 1);
      // None among the newest every+1 records: a young log counts from its start, an older one is due now.
      if (this.lastCheckpoint === 0) this.lastCheckpoint = Math.max(0, rec.seq - this.every);
    }
    if (rec.seq - this.lastCheckpoint >= this.every) await this.checkpoint();
    return rec;
  }

  /** Appends a checkpoint now (on demand). */
  async checkpoint(): Promise<AuditRecord | null> {
    const cp = await appendCheckpoint(this.auditStore, this.auditClock, this.signer, {
      actor: this.checkpointActor,
    });
    if (cp) this.lastCheckpoint = cp.seq;
    return cp;
  }
}

export type AuditProblemKind =
  | 'chain'
  | 'malformed_checkpoint'
  | 'bad_signature'
  | 'head_mismatch'
  | 'head_missing'
  | 'truncated'
  | 'rewritten';

export interface AuditProblem {
  kind: AuditProblemKind;
  /** The record the problem is about (the checkpoint, for checkpoint problems). */
  seq: number;
  message: string;
}

export interface KnownCheckpoint {
  /** Seq of a record the caller saw earlier (typically a checkpoint's seq or head). */
  seq: number;
  /** Its hash, as the caller saw it. */
  hash: string;
}

export interface CheckpointVerifyResult {
  ok: boolean;
  records: number;
  chain: AuditVerifyResult;
  checkpoints: number;
  /** The newest checkpoint whose signature and head verified. */
  lastValidCheckpoint?: { seq: number; headSeq: number; headHash: string; keyId: string; ts: string };
  /** Records after the newest valid checkpoint: nothing signs them yet. */
  unsigned: { fromSeq: number; toSeq: number; count: number } | null;
  problems: AuditProblem[];
}

export interface VerifyWithCheckpointsOptions {
  /** The last checkpoint (or head) the caller recorded elsewhere; a shorter or different chain is flagged. */
  lastKnown?: KnownCheckpoint;
  pageSize?: number;
}

/**
 * verifyAuditChain, plus: every checkpoint's signature over (headSeq, headHash) verifies, and the
 * record at headSeq still has that hash. Reports records after the last valid checkpoint and,
 * given the last checkpoint the caller knows of, a chain cut short or rewritten below it.
 */
export async function verifyAuditWithCheckpoints(
  store: StateStore,
  signer: ChainSigner,
  opts: VerifyWithCheckpointsOptions = {},
): Promise<CheckpointVerifyResult> {
  const pageSize = opts.pageSize ?? 1000;
  const chain = await verifyAuditChain(store, pageSize);
  const problems: AuditProblem[] = [];
  if (!chain.ok && chain.firstBad) {
    problems.push({ kind: 'chain', seq: chain.firstBad.seq, message: chain.firstBad.reason });
  }

  // The record just before each one: what a checkpoint written by appendCheckpoint signs.
  let prev: { seq: number; hash: string } | undefined;
  let knownHash: string | undefined;
  let checkpoints = 0;
  let lastValid: CheckpointVerifyResult['lastValidCheckpoint'];
  let maxSeq = 0;
  let records = 0;
  for (let from = 1; ; ) {
    const page = await store.auditRead(from, pageSize);
    if (page.length === 0) break;
    for (const r of page) {
      records++;
      maxSeq = Math.max(maxSeq, r.seq);
      if (opts.lastKnown && r.seq === opts.lastKnown.seq) knownHash = r.hash;
      const before = prev;
      prev = { seq: r.seq, hash: r.hash };
      if (r.action !== CHECKPOINT_ACTION) continue;
      checkpoints++;
      const cp = checkpointDetailsOf(r);
      if (!cp) {
        problems.push({
          kind: 'malformed_checkpoint',
          seq: r.seq,
          message: `checkpoint ${r.seq} lacks headSeq, headHash, alg, keyId or signature`,
        });
        continue;
      }
      let payload: Uint8Array;
      try {
        payload = checkpointPayload(cp.headSeq, cp.headHash);
      } catch (e) {
        problems.push({
          kind: 'malformed_checkpoint',
          seq: r.seq,
          message: `checkpoint ${r.seq}: ${(e as Error).message}`,
        });
        continue;
      }
      const signed = await signer.verify(payload, cp);
      if (!signed) {
        problems.push({
          kind: 'bad_signature',
          seq: r.seq,
          message: `checkpoint ${r.seq}: the ${cp.alg} signature by key ${cp.keyId} over record ${cp.headSeq} does not verify (forged, altered, or signed with a key this verifier does not hold)`,
        });
        continue;
      }
      const actual =
        cp.headSeq >= r.seq
          ? undefined
          : before?.seq === cp.headSeq
            ? before.hash
            : await storedHash(store, cp.headSeq);
      if (actual === undefined) {
        problems.push({
          kind: 'head_missing',
          seq: r.seq,
          message: `checkpoint ${r.seq} signs record ${cp.headSeq}, which is not in the log before it (deleted or reordered)`,
        });
        continue;
      }
      if (actual !== cp.headHash) {
        problems.push({
          kind: 'head_mismatch',
          seq: r.seq,
          message: `checkpoint ${r.seq} signed record ${cp.headSeq} with a different hash: history up to record ${cp.headSeq} was rewritten`,
        });
        continue;
      }
      lastValid = { seq: r.seq, headSeq: cp.headSeq, headHash: cp.headHash, keyId: cp.keyId, ts: r.ts };
    }
    from = page[page.length - 1]!.seq + 1;
  }

  if (opts.lastKnown) {
    const { seq, hash } = opts.lastKnown;
    const actual = knownHash;
    if (maxSeq < seq) {
      problems.push({
        kind: 'truncated',
        seq,
        message: `the log ends at record ${maxSeq} but record ${seq} was known to exist: the log was truncated`,
      });
    } else if (actual === undefined) {
      problems.push({ kind: 'truncated', seq, message: `known record ${seq} is missing from the log` });
    } else if (actual !== hash) {
      problems.push({
        kind: 'rewritten',
        seq,
        message: `record ${seq} no longer has the hash recorded for it: history was rewritten`,
      });
    }
  }

  // The checkpoint record itself adds only its timestamp and actor to what it signs: count it as covered.
  const coveredTo = lastValid?.seq ?? 0;
  const unsigned =
    maxSeq > coveredTo ? { fromSeq: coveredTo + 1, toSeq: maxSeq, count: maxSeq - coveredTo } : null;
  problems.sort((a, b) => a.seq - b.seq);
  return {
    ok: problems.length === 0,
    records,
    chain,
    checkpoints,
    ...(lastValid ? { lastValidCheckpoint: lastValid } : {}),
    unsigned,
    problems,
  };
}

async function storedHash(store: StateStore, seq: number): Promise<string | undefined> {
  const [r] = await store.auditRead(seq, 1);
  return r?.seq === seq ? r.hash : undefined;
}

/** One line per problem, then the unsigned tail; for the CLI. */
export function describeVerification(r: CheckpointVerifyResult): string[] {
  const lines = r.problems.map((p) => `${p.kind}: ${p.message}`);
  if (r.unsigned) {
    lines.push(
      `records ${r.unsigned.fromSeq}-${r.unsigned.toSeq} (${r.unsigned.count}) are after the last valid checkpoint and not yet signed`,
    );
  }
  if (r.ok) lines.unshift(`ok: ${r.records} records, ${r.checkpoints} checkpoints`);
  return lines;
}

/** Parses `<seq>:<hash>` (as printed by `rekey audit checkpoint`) into a KnownCheckpoint. */
export function parseKnownCheckpoint(text: string): KnownCheckpoint {
  const m = /^(\d+):([0-9a-f]{64})$/.exec(text.trim());
  if (!m) throw new ValidationError(`last known checkpoint "${text}" must be <seq>:<64 hex hash>`);
  return { seq: Number(m[1]), hash: m[2]! };
}
