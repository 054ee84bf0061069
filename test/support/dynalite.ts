import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { createDocClient, type DocClient } from '../../shared/stores/dynamodb/client.js';
import { ensureDynamoTable } from '../../shared/stores/dynamodb/ensureTable.js';
import { dekTableDefinition, stateTableDefinition } from '../../shared/stores/dynamodb/tables.js';

/**
 * dynalite (a DynamoDB implementation on an in-memory LevelDB) in this process, on
 * 127.0.0.1 and a free port. Clients get static test credentials and no retries unless asked.
 * dynalite has no transactions (TransactWriteItems) and no throttling.
 */
export interface Dynalite {
  endpoint: string;
  /** A document client for this endpoint; `maxAttempts` defaults to 1 so faults surface at once. */
  client(opts?: { maxAttempts?: number; endpoint?: string }): DocClient;
  /** Creates a DEK table (default attribute names) with its GSI, waits until ACTIVE. */
  createDekTable(name: string, index?: string): Promise<void>;
  createStateTable(name: string): Promise<void>;
  stop(): Promise<void>;
}

interface DynaliteServer {
  listen(port: number, host: string, cb: () => void): void;
  address(): AddressInfo | string | null;
  close(cb: (err?: Error) => void): void;
  on(event: 'error', cb: (e: Error) => void): void;
}

export async function startDynalite(): Promise<Dynalite> {
  const dynalite = createRequire(import.meta.url)('dynalite') as (
    opts: Record<string, number>,
  ) => DynaliteServer;
  const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: DocClient[] = [];
  const client = (opts: { maxAttempts?: number; endpoint?: string } = {}) => {
    const c = createDocClient({
      region: 'us-east-1',
      endpoint: opts.endpoint ?? endpoint,
      maxAttempts: opts.maxAttempts ?? 1,
      client: { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } },
    });
    clients.push(c);
    return c;
  };
  const admin = client();
  return {
    endpoint,
    client,
    createDekTable: (name, index) => ensureDynamoTable(admin, dekTableDefinition(name, index)),
    createStateTable: (name) => ensureDynamoTable(admin, stateTableDefinition(name)),
    async stop() {
      for (const c of clients) c.destroy();
      await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));
    },
  };
}
