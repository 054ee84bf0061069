import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';
import type { DynamoDekAttributes } from '../../core/policy/types.js';

export const DEFAULT_DEK_ATTRIBUTES: DynamoDekAttributes = {
  id: 'id',
  key: 'kek_ref',
  version: 'kek_version',
  wrapped: 'wrapped_dek',
  context: 'aad',
  versionId: 'kek_version_id',
};
export const DEFAULT_DEK_INDEX = 'by_kek_version';

/**
 * The DEK table: one item per DEK keyed by its id, and a GSI keyed by (key ref, `version#id`)
 * so a scan reads one key's DEKs version by version, in id order, without touching others.
 */
export function dekTableDefinition(
  table: string,
  index = DEFAULT_DEK_INDEX,
  a: DynamoDekAttributes = DEFAULT_DEK_ATTRIBUTES,
): CreateTableCommandInput {
  return {
    TableName: table,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: a.id, AttributeType: 'S' },
      { AttributeName: a.key, AttributeType: 'S' },
      { AttributeName: a.versionId, AttributeType: 'S' },
    ],
    KeySchema: [{ AttributeName: a.id, KeyType: 'HASH' }],
    GlobalSecondaryIndexes: [
      {
        IndexName: index,
        KeySchema: [
          { AttributeName: a.key, KeyType: 'HASH' },
          { AttributeName: a.versionId, KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
  };
}

/** rekey's state: one table, generic string keys `pk` / `sk` (single-table design). */
export function stateTableDefinition(table: string): CreateTableCommandInput {
  return {
    TableName: table,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'sk', AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ],
  };
}
