import { ValidationError } from '../../core/errors.js';
import type { StateRecord } from '../../core/ports/StateStore.js';
import { parseStored } from '../sqlite/json.js';

export interface RecordWrite {
  kind: string;
  id: string;
  body: Record<string, unknown>;
  updatedAt: string;
}

/** Checks the arguments of StateStore.putRecord the same way in every store. */
export function checkRecordWrite(rec: RecordWrite, expectedRev: number): void {
  if (typeof rec.kind !== 'string' || rec.kind === '')
    throw new ValidationError('record kind must be a non-empty string');
  if (typeof rec.id !== 'string' || rec.id === '') {
    throw new ValidationError(`record ${rec.kind}: id must be a non-empty string`);
  }
  if (!Number.isSafeInteger(expectedRev) || expectedRev < 0) {
    throw new ValidationError(`record ${rec.kind}/${rec.id}: expectedRev must be an integer >= 0`);
  }
  if (rec.body === null || typeof rec.body !== 'object' || Array.isArray(rec.body)) {
    throw new ValidationError(`record ${rec.kind}/${rec.id}: body must be an object`);
  }
  if (typeof rec.updatedAt !== 'string' || Number.isNaN(Date.parse(rec.updatedAt))) {
    throw new ValidationError(`record ${rec.kind}/${rec.id}: updatedAt must be an ISO timestamp`);
  }
}

/** A records row as the SQL stores keep it. */
export interface RecordRow {
  kind: string;
  id: string;
  rev: number | string;
  updated_at: string;
  body: string;
}

export function recordFromRow(row: RecordRow): StateRecord {
  return {
    kind: row.kind,
    id: row.id,
    rev: Number(row.rev),
    updatedAt: row.updated_at,
    body: parseStored<Record<string, unknown>>(row.body, `record ${row.kind}/${row.id}`),
  };
}
