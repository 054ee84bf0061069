import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { GENESIS_HASH, hashRecord, verifyAuditChain } from '../audit/auditLog.js';
import { ConfigError, IntegrityError, ValidationError } from '../errors.js';
import type { AuditRecord, StateEntry, StateStore } from '../ports/StateStore.js';

/**
 * Backups of rekey's own state are JSON Lines: a header, one line per entry, and a trailer with
 * the entry count and a SHA-256 over every byte before it (and an HMAC-SHA256 with the same
 * coverage when a backup key is given). A restore checks the whole file before writing anything,
 * writes only into an empty store, and then verifies the audit chain it wrote.
 */
export const BACKUP_FORMAT = 'rekey-state-backup';
const KINDS = new Set(['inventory', 'plan', 'run', 'action', 'job', 'audit', 'record']);

interface Header {
  format: typeof BACKUP_FORMAT;
  version: 1;
  createdAt: string;
  source: string;
}
interface Trailer {
  end: true;
  entries: number;
  sha256: string;
  hmacSha256?: string;
}

class Digest {
  private readonly sha = createHash('sha256');
  private readonly mac;
  constructor(key?: Uint8Array) {
    this.mac = key ? createHmac('sha256', key) : undefined;
  }
  add(line: string): void {
    this.sha.update(line);
    this.mac?.update(line);
  }
  done(): { sha256: string; hmacSha256?: string } {
    return { sha256: this.sha.digest('hex'), ...(this.mac ? { hmacSha256: this.mac.digest('hex') } : {}) };
  }
}

/** Lines of a backup of `state` (each ends with a newline). */
export async function* backupLines(
  state: StateStore,
  opts: { source: string; now: Date; key?: Uint8Array },
): AsyncIterable<string> {
  if (!state.exportEntries) throw new ConfigError(`the ${opts.source} state store cannot export a backup`);
  const digest = new Digest(opts.key);
  const header: Header = {
    format: BACKUP_FORMAT,
    version: 1,
    createdAt: opts.now.toISOString(),
    source: opts.source,
  };
  const first = `${JSON.stringify(header)}\n`;
  digest.add(first);
  yield first;
  let entries = 0;
  for await (const e of state.exportEntries()) {
    const line = `${JSON.stringify(e)}\n`;
    digest.add(line);
    entries++;
    yield line;
  }
  const trailer: Trailer = { end: true, entries, ...digest.done() };
  yield `${JSON.stringify(trailer)}\n`;
}

export interface BackupSummary {
  header: Header;
  entries: number;
  byKind: Record<string, number>;
  authenticated: boolean;
}

function parseLine(line: string, n: number): unknown {
  try {
    return JSON.parse(line);
  } catch {
    throw new IntegrityError(`backup line ${n}: not JSON`);
  }
}

/**
 * Checks a whole backup: format, every line, count, digest (and HMAC when a key is given; a
 * backup made with a key is refused without one). Returns what it holds; writes nothing.
 */
export async function verifyBackup(lines: AsyncIterable<string>, key?: Uint8Array): Promise<BackupSummary> {
  const digest = new Digest(key);
  let header: Header | undefined;
  let trailer: Trailer | undefined;
  let entries = 0;
  const byKind: Record<string, number> = {};
  // The audit records must form an unbroken chain from the first one, checked before any write.
  let prevHash = GENESIS_HASH;
  let nextSeq = 1;
  let n = 0;
  for await (const raw of lines) {
    n++;
    if (raw.trim() === '') continue;
    if (trailer) throw new IntegrityError(`backup line ${n}: data after the trailer`);
    const line = raw.endsWith('\n') ? raw : `${raw}\n`;
    const value = parseLine(line, n) as Record<string, unknown>;
    if (!header) {
      if (value.format !== BACKUP_FORMAT || value.version !== 1) {
        throw new ValidationError(`backup line 1: not a ${BACKUP_FORMAT} version 1 file`);
      }
      header = value as unknown as Header;
      digest.add(line);
      continue;
    }
    if (value.end === true) {
      trailer = value as unknown as Trailer;
      continue;
    }
    const t = value.t;
    if (typeof t !== 'string' || !KINDS.has(t) || typeof value.v !== 'object' || value.v === null) {
      throw new IntegrityError(`backup line ${n}: not a state entry`);
    }
    if (t === 'audit') {
      const r = value.v as AuditRecord;
      const { hash, ...rest } = r;
      if (r.seq !== nextSeq || r.prevHash !== prevHash || hashRecord(rest) !== hash) {
        throw new IntegrityError(
          `backup line ${n}: audit record ${String(r.seq)} does not continue the chain`,
        );
      }
      prevHash = hash;
      nextSeq++;
    }
    byKind[t] = (byKind[t] ?? 0) + 1;
    entries++;
    digest.add(line);
  }
  if (!header) throw new ValidationError('backup is empty');
  if (!trailer) throw new IntegrityError('backup is truncated: no trailer line');
  if (trailer.entries !== entries) {
    throw new IntegrityError(`backup holds ${entries} entries, its trailer says ${trailer.entries}`);
  }
  const got = digest.done();
  if (!safeEqual(got.sha256, trailer.sha256)) {
    throw new IntegrityError('backup digest does not match: the file was changed or damaged');
  }
  if (trailer.hmacSha256 && !key)
    throw new ConfigError('this backup is authenticated: give the backup key to restore it');
  if (key) {
    if (!trailer.hmacSha256)
      throw new IntegrityError('a backup key was given but the backup carries no HMAC');
    if (!safeEqual(got.hmacSha256!, trailer.hmacSha256)) {
      throw new IntegrityError('backup HMAC does not match: wrong key, or the file was changed');
    }
  }
  return { header, entries, byKind, authenticated: Boolean(key) };
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Refuses to restore over existing state: a restore never merges. */
async function requireEmpty(state: StateStore): Promise<void> {
  if ((await state.auditTail()) || (await state.latestPlan()) || (await state.latestInventory())) {
    throw new ConfigError('the target state store is not empty; restore into a new one');
  }
}

/**
 * Restores a verified backup. `lines` is called twice: once to verify the whole file, once to
 * write. Returns the summary; the audit chain is verified after the writes.
 */
export async function restoreBackup(
  state: StateStore,
  lines: () => AsyncIterable<string>,
  key?: Uint8Array,
): Promise<BackupSummary> {
  const summary = await verifyBackup(lines(), key);
  await requireEmpty(state);
  let n = 0;
  for await (const raw of lines()) {
    n++;
    if (raw.trim() === '' || n === 1) continue;
    const value = JSON.parse(raw) as StateEntry | { end: true };
    if ('end' in value) break;
    await writeEntry(state, value, n);
  }
  const chain = await verifyAuditChain(state);
  if (!chain.ok) {
    throw new IntegrityError(
      `restored audit chain does not verify at record ${chain.firstBad?.seq}: ${chain.firstBad?.reason}`,
    );
  }
  return summary;
}

async function writeEntry(state: StateStore, e: StateEntry, line: number): Promise<void> {
  switch (e.t) {
    case 'inventory':
      return state.saveInventory(e.v);
    case 'plan':
      return state.savePlan(e.v);
    case 'run':
      return state.saveRun(e.v);
    case 'action':
      return state.putActionRecord(e.v);
    case 'job':
      await state.createRewrapJob(e.v);
      return state.saveRewrapJob(e.v);
    case 'record': {
      const { kind, id, body, updatedAt } = e.v;
      if (!(await state.putRecord({ kind, id, body, updatedAt }, 0))) {
        throw new IntegrityError(`backup line ${line}: record ${kind}/${id} appears twice`);
      }
      return;
    }
    case 'audit':
      if (!(await state.auditAppend(e.v))) {
        throw new IntegrityError(`backup line ${line}: audit record ${e.v.seq} is out of sequence`);
      }
  }
}
