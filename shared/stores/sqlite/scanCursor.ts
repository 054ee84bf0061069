import { ValidationError } from '../../core/errors.js';

/** Where a DEK scan stopped: the last returned row's version and id. */
export interface ScanPosition {
  v: string;
  id: string;
}

/** Opaque to callers: base64url JSON, so ids with any characters survive a round trip. */
export function encodeCursor(pos: ScanPosition): string {
  return Buffer.from(JSON.stringify({ v: pos.v, id: pos.id }), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string, storeId: string): ScanPosition {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const p = parsed as Partial<ScanPosition> | undefined;
  if (!p || typeof p !== 'object' || typeof p.v !== 'string' || typeof p.id !== 'string') {
    throw new ValidationError(`store ${storeId}: scan cursor is not one this store returned`);
  }
  return { v: p.v, id: p.id };
}
