import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, hashRecord, verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import {
  appendCheckpoint,
  CHECKPOINT_ACTION,
  CheckpointingAuditLog,
  checkpointPayload,
  describeVerification,
  verifyAuditWithCheckpoints,
} from '../../../shared/core/audit/checkpoints.js';
import { ConfigError, ValidationError } from '../../../shared/core/errors.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import { HmacChainSigner, hmacKeyId } from '../../../shared/telemetry/siem/hmacSigner.js';

const KEY = Buffer.alloc(32, 7);
const OTHER = Buffer.alloc(32, 9);

let state: SqliteStateStore;
let clock: ManualClock;
let signer: HmacChainSigner;

beforeEach(() => {
  state = SqliteStateStore.open(':memory:');
  clock = new ManualClock('2026-11-28T00:00:00Z');
  signer = new HmacChainSigner(KEY);
});
afterEach(async () => {
  await state.close?.();
});

async function appendN(log: AuditLog, n: number) {
  for (let i = 0; i < n; i++) {
    clock.advance(1000);
    await log.append({
      actor: 'op',
      action: 'key.rotated',
      target: `local://k${i}`,
      details: { primary: `${i}` },
    });
  }
}

describe('HMAC chain signer', () => {
  it('signs and verifies; refuses another key, another payload, another alg', async () => {
    const bytes = checkpointPayload(3, 'a'.repeat(64));
    const sig = await signer.sign(bytes);
    expect(sig).toMatchObject({ alg: 'HMAC-SHA256', keyId: hmacKeyId(KEY) });
    expect(await signer.verify(bytes, sig)).toBe(true);
    expect(await signer.verify(checkpointPayload(4, 'a'.repeat(64)), sig)).toBe(false);
    expect(await signer.verify(bytes, { ...sig, alg: 'HMAC-SHA1' })).toBe(false);
    expect(await new HmacChainSigner(OTHER).verify(bytes, sig)).toBe(false);
    // A rotated signer (new key first) still verifies what the old key signed.
    const rotated = new HmacChainSigner([OTHER, KEY]);
    expect(await rotated.verify(bytes, sig)).toBe(true);
    expect((await rotated.sign(bytes)).keyId).toBe(hmacKeyId(OTHER));
  });

  it('refuses short keys, and the key id does not reveal the key', () => {
    expect(() => new HmacChainSigner(Buffer.alloc(16, 1))).toThrow(ConfigError);
    expect(hmacKeyId(KEY)).not.toContain(KEY.toString('hex').slice(0, 8));
  });

  it('zeroes its key copy on destroy, leaving the caller buffer alone', async () => {
    const mine = Buffer.alloc(32, 5);
    const s = new HmacChainSigner(mine);
    s.destroy();
    expect(mine.every((b) => b === 5)).toBe(true);
    await expect(s.sign(new Uint8Array([1]))).rejects.toThrow();
  });

  it('checkpoint payload validates its inputs', () => {
    expect(() => checkpointPayload(0, 'a'.repeat(64))).toThrow(ValidationError);
    expect(() => checkpointPayload(1, 'xyz')).toThrow(ValidationError);
  });
});

describe('signed checkpoints', () => {
  it('a checkpoint signs the record right before it and is itself a chained audit record', async () => {
    const log = new AuditLog(state, clock);
    await appendN(log, 3);
    const cp = await appendCheckpoint(state, clock, signer, { actor: 'auditor' });
    expect(cp).toMatchObject({ seq: 4, action: CHECKPOINT_ACTION, details: { headSeq: 3 } });
    const [head] = await state.auditRead(3, 1);
    expect(cp!.details.headHash).toBe(head!.hash);
    expect(cp!.prevHash).toBe(head!.hash);
    expect((await verifyAuditChain(state)).ok).toBe(true);
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v).toMatchObject({ ok: true, records: 4, checkpoints: 1, unsigned: null, problems: [] });
    expect(v.lastValidCheckpoint).toMatchObject({ seq: 4, headSeq: 3 });
  });

  it('an empty log gets no checkpoint', async () => {
    expect(await appendCheckpoint(state, clock, signer, { actor: 'a' })).toBeNull();
    expect(await verifyAuditWithCheckpoints(state, signer)).toMatchObject({
      ok: true,
      records: 0,
      unsigned: null,
    });
  });

  it('CheckpointingAuditLog checkpoints every N records', async () => {
    const log = new CheckpointingAuditLog(state, clock, signer, 5);
    await appendN(log, 12);
    const all = await state.auditRead(1, 100);
    expect(all.filter((r) => r.action === CHECKPOINT_ACTION).map((r) => r.seq)).toEqual([6, 12]);
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.ok).toBe(true);
    expect(v.unsigned).toEqual({ fromSeq: 13, toSeq: 14, count: 2 });
    expect(describeVerification(v).join('\n')).toContain(
      'records 13-14 (2) are after the last valid checkpoint',
    );
  });

  it('a fresh CheckpointingAuditLog over an existing log finds the last checkpoint', async () => {
    await appendN(new CheckpointingAuditLog(state, clock, signer, 4), 3);
    const again = new CheckpointingAuditLog(state, clock, signer, 4);
    await appendN(again, 1);
    const all = await state.auditRead(1, 100);
    expect(all.filter((r) => r.action === CHECKPOINT_ACTION).map((r) => r.seq)).toEqual([5]);
  });

  it('refuses a non-positive interval', () => {
    expect(() => new CheckpointingAuditLog(state, clock, signer, 0)).toThrow(ValidationError);
  });

  it('a checkpoint signed with a key the verifier does not hold is named', async () => {
    await appendN(new AuditLog(state, clock), 2);
    await appendCheckpoint(state, clock, new HmacChainSigner(OTHER), { actor: 'x' });
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'bad_signature', seq: 3 })]);
    expect(v.problems[0]!.message).toContain(`key ${hmacKeyId(OTHER)}`);
  });

  it('a forged checkpoint record (valid chain, made-up signature) fails its signature', async () => {
    await appendN(new AuditLog(state, clock), 2);
    const tail = (await state.auditTail())!;
    const base = {
      seq: 3,
      ts: clock.now().toISOString(),
      actor: 'mallory',
      action: CHECKPOINT_ACTION,
      target: null,
      details: {
        headSeq: 2,
        headHash: tail.hash,
        alg: 'HMAC-SHA256',
        keyId: hmacKeyId(KEY),
        signature: Buffer.alloc(32).toString('base64'),
      },
      prevHash: tail.hash,
    };
    expect(await state.auditAppend({ ...base, hash: hashRecord(base) })).toBe(true);
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.chain.ok).toBe(true);
    expect(v.problems.map((p) => p.kind)).toEqual(['bad_signature']);
  });

  it('a checkpoint over an older record is checked against that record; one over a later record is refused', async () => {
    const log = new AuditLog(state, clock);
    await appendN(log, 3);
    const [first] = await state.auditRead(1, 1);
    const sig = await signer.sign(checkpointPayload(1, first!.hash));
    await log.append({
      actor: 'a',
      action: CHECKPOINT_ACTION,
      details: { headSeq: 1, headHash: first!.hash, ...sig },
    });
    expect(await verifyAuditWithCheckpoints(state, signer)).toMatchObject({
      ok: true,
      lastValidCheckpoint: { seq: 4, headSeq: 1 },
    });
    const ahead = await signer.sign(checkpointPayload(9, 'b'.repeat(64)));
    await log.append({
      actor: 'a',
      action: CHECKPOINT_ACTION,
      details: { headSeq: 9, headHash: 'b'.repeat(64), ...ahead },
    });
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'head_missing', seq: 5 })]);
  });

  it('a checkpoint missing its fields is reported as malformed', async () => {
    await appendN(new AuditLog(state, clock), 1);
    await new AuditLog(state, clock).append({
      actor: 'x',
      action: CHECKPOINT_ACTION,
      details: { headSeq: 1 },
    });
    const v = await verifyAuditWithCheckpoints(state, signer);
    expect(v.problems).toEqual([expect.objectContaining({ kind: 'malformed_checkpoint', seq: 2 })]);
  });

  it('flags a chain shorter than the last checkpoint the caller knows of', async () => {
    const log = new AuditLog(state, clock);
    await appendN(log, 3);
    const cp = (await appendCheckpoint(state, clock, signer, { actor: 'a' }))!;
    const ok = await verifyAuditWithCheckpoints(state, signer, { lastKnown: { seq: cp.seq, hash: cp.hash } });
    expect(ok.ok).toBe(true);
    const v = await verifyAuditWithCheckpoints(state, signer, {
      lastKnown: { seq: 9, hash: 'f'.repeat(64) },
    });
    expect(v.ok).toBe(false);
    expect(v.problems[0]).toMatchObject({ kind: 'truncated', seq: 9 });
    expect(v.problems[0]!.message).toContain('ends at record 4');
    const w = await verifyAuditWithCheckpoints(state, signer, {
      lastKnown: { seq: 4, hash: 'f'.repeat(64) },
    });
    expect(w.problems[0]).toMatchObject({ kind: 'rewritten', seq: 4 });
  });
});
