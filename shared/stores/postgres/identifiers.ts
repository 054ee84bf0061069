import { ConfigError } from '../../core/errors.js';
import { quoteIdent } from '../sqlite/identifiers.js';

export { quoteIdent };

/** Column roles of a DEK table; `context` may be absent (then every DEK's context is {}). */
export interface PgDekColumns {
  id: string;
  key: string;
  version: string;
  wrapped: string;
  context?: string | null;
}

export interface QuotedPgTable {
  /** `"schema"."table"` or `"table"`. */
  table: string;
  id: string;
  key: string;
  version: string;
  wrapped: string;
  context: string | null;
  raw: { schema: string | null; table: string; columns: PgDekColumns };
}

/**
 * Validates `table` (`name` or `schema.name`) and the column names, then double-quotes them.
 * Quoted names are case-sensitive in PostgreSQL: a table created without quotes is stored in
 * lower case, so the config must name it in lower case too.
 */
export function quotePgDekTable(table: string, columns: PgDekColumns, storeId: string): QuotedPgTable {
  if (typeof table !== 'string') throw new ConfigError(`stores.${storeId}.table is missing`);
  if (!columns || typeof columns !== 'object') throw new ConfigError(`stores.${storeId}.columns is missing`);
  const parts = table.split('.');
  if (parts.length > 2) {
    throw new ConfigError(`stores.${storeId}.table: "${table}" must be "table" or "schema.table"`);
  }
  const quotedParts = parts.map((p) => quoteIdent(p, `stores.${storeId}.table`));
  const q: QuotedPgTable = {
    table: quotedParts.join('.'),
    id: quoteIdent(columns.id, `stores.${storeId}.columns.id`),
    key: quoteIdent(columns.key, `stores.${storeId}.columns.key`),
    version: quoteIdent(columns.version, `stores.${storeId}.columns.version`),
    wrapped: quoteIdent(columns.wrapped, `stores.${storeId}.columns.wrapped`),
    context:
      columns.context === null || columns.context === undefined
        ? null
        : quoteIdent(columns.context, `stores.${storeId}.columns.context`),
    raw: {
      schema: parts.length === 2 ? parts[0]! : null,
      table: parts[parts.length - 1]!,
      columns: { ...columns },
    },
  };
  const seen = new Map<string, string>();
  for (const role of ['id', 'key', 'version', 'wrapped', 'context'] as const) {
    const name = columns[role];
    if (name === null || name === undefined) continue;
    const other = seen.get(name);
    if (other)
      throw new ConfigError(`stores.${storeId}.columns: ${role} and ${other} both name column "${name}"`);
    seen.set(name, role);
  }
  return q;
}
