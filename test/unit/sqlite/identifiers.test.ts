import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../shared/core/errors.js';
import { quoteDekTable, quoteIdent } from '../../../shared/stores/sqlite/identifiers.js';
import { SqliteDekStore } from '../../../shared/stores/sqlite/SqliteDekStore.js';

const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };

describe('SQL identifiers from config', () => {
  it('quotes plain identifiers, keywords included', () => {
    expect(quoteIdent('data_keys', 't')).toBe('"data_keys"');
    expect(quoteIdent('_x9', 't')).toBe('"_x9"');
    expect(quoteIdent('select', 't')).toBe('"select"');
    expect(quoteIdent('a'.repeat(63), 't')).toBe(`"${'a'.repeat(63)}"`);
  });

  it.each([
    ['empty', ''],
    ['leading digit', '1keys'],
    ['quote', 'keys"; DROP TABLE x; --'],
    ['space', 'data keys'],
    ['dot', 'main.keys'],
    ['dash', 'data-keys'],
    ['non-ascii', 'clés'],
    ['64 characters', 'a'.repeat(64)],
  ])('refuses %s', (_why, name) => {
    expect(() => quoteIdent(name, 'stores.orders.table')).toThrow(ConfigError);
    expect(() => quoteIdent(name, 'stores.orders.table')).toThrow(/stores\.orders\.table/);
  });

  it('names the offending column role', () => {
    expect(() => quoteDekTable('t', { ...COLUMNS, wrapped: 'wrapped dek' }, 'orders')).toThrow(
      /stores\.orders\.columns\.wrapped/,
    );
  });

  it('refuses two roles mapped to one column, case-insensitively', () => {
    expect(() => quoteDekTable('t', { ...COLUMNS, version: 'KEK_REF' }, 'orders')).toThrow(/version and key/);
  });

  it('SqliteDekStore.open refuses a bad name before opening the file', () => {
    // The directory does not exist: had the file been opened first, the error would be about the path.
    expect(() =>
      SqliteDekStore.open({ id: 'orders', path: '/nonexistent-dir/x.db', table: 'x;y', columns: COLUMNS }),
    ).toThrow(/stores\.orders\.table/);
  });
});
