import { ConfigError } from '../../core/errors.js';
import type { DekColumns } from '../../core/policy/types.js';

/** Table and column names come from a config file: only plain identifiers are accepted. */
export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Validates an identifier and returns it double-quoted (quoting also neutralises keywords). */
export function quoteIdent(name: unknown, what: string): string {
  if (typeof name !== 'string' || !IDENTIFIER.test(name)) {
    throw new ConfigError(
      `${what}: "${String(name)}" is not a valid SQL identifier (letters, digits and _, not starting with a digit, at most 63)`,
    );
  }
  return `"${name}"`;
}

export interface QuotedDekTable {
  table: string;
  id: string;
  key: string;
  version: string;
  wrapped: string;
  context: string;
  /** Unquoted names, for introspection and messages. */
  raw: { table: string; columns: DekColumns };
}

const COLUMN_ROLES = ['id', 'key', 'version', 'wrapped', 'context'] as const;

export function quoteDekTable(table: string, columns: DekColumns, storeId: string): QuotedDekTable {
  if (!columns || typeof columns !== 'object') throw new ConfigError(`stores.${storeId}.columns is missing`);
  const q = {
    table: quoteIdent(table, `stores.${storeId}.table`),
    raw: { table, columns: { ...columns } },
  } as QuotedDekTable;
  const seen = new Map<string, string>();
  for (const role of COLUMN_ROLES) {
    const name = columns[role];
    q[role] = quoteIdent(name, `stores.${storeId}.columns.${role}`);
    // SQLite identifiers are case-insensitive: `Id` and `id` are the same column.
    const folded = name.toLowerCase();
    const other = seen.get(folded);
    if (other) {
      throw new ConfigError(`stores.${storeId}.columns: ${role} and ${other} both name column "${name}"`);
    }
    seen.set(folded, role);
  }
  return q;
}
