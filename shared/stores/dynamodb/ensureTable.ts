import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
} from '@aws-sdk/client-dynamodb';
import { ProviderError } from '../../core/errors.js';
import { type DocClient, guarded, translateDynamoError } from './client.js';

/*
 * Table creation, apart from the clients and error translation (client.ts): only `init`, the
 * demo and tests create tables. Deployments have theirs made by their stack (serverless.yml for
 * the AWS functions, whose bundles leave this module out).
 */

/** Creates a table if it does not exist and waits until it is ACTIVE (tests, demos, first runs). */
export async function ensureDynamoTable(
  doc: DocClient,
  def: CreateTableCommandInput,
  timeoutMs = 60_000,
): Promise<void> {
  const name = def.TableName!;
  try {
    await doc.send(new CreateTableCommand(def));
  } catch (e) {
    if ((e as { name?: string } | undefined)?.name !== 'ResourceInUseException')
      throw translateDynamoError(e, `creating table ${name}`);
  }
  const until = Date.now() + timeoutMs;
  for (;;) {
    const d = await guarded(`describing table ${name}`, () =>
      doc.send(new DescribeTableCommand({ TableName: name })),
    );
    const indexesReady = (d.Table?.GlobalSecondaryIndexes ?? []).every((i) => i.IndexStatus === 'ACTIVE');
    if (d.Table?.TableStatus === 'ACTIVE' && indexesReady) return;
    if (Date.now() > until)
      throw new ProviderError('dynamodb', 'Timeout', `table ${name} did not become ACTIVE`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
