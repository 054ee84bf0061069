import { IntegrityError, ValidationError } from '../../core/errors.js';

/** Epoch ms of an ISO timestamp field, or a ValidationError naming the field. */
export function toMillis(value: unknown, field: string): number {
  const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(ms))
    throw new ValidationError(`${field}: "${String(value)}" is not an ISO-8601 timestamp`);
  return ms;
}

/** Parses a stored JSON column; a row that does not parse was written by something else. */
export function parseStored<T>(text: unknown, where: string): T {
  if (typeof text !== 'string') throw new IntegrityError(`${where}: stored value is not JSON text`);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new IntegrityError(`${where}: stored JSON does not parse`, { cause: e });
  }
}

export function requireString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ValidationError(`${field} must be a non-empty string`);
  }
  return value;
}
