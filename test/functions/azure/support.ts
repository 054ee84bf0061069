import { createServer, type Server } from 'node:http';
import type { QueueClient } from '@azure/storage-queue';
import { EMULATOR_TOKEN } from '../../emulators/azure-keyvault/credential.js';

/** The App Service managed identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER), on loopback. */
export async function startIdentityEndpoint(header: string): Promise<Server> {
  const srv = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.headers['x-identity-header'] !== header || url.searchParams.get('api-version') !== '2019-08-01') {
      res.writeHead(400).end();
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        access_token: EMULATOR_TOKEN,
        expires_on: String(Math.floor(Date.now() / 1000) + 3600),
        resource: url.searchParams.get('resource'),
        token_type: 'Bearer',
      }),
    );
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return srv;
}

/** Receives every message on a queue, as the host's queue listener does, and deletes it. */
export async function receiveAll(
  q: QueueClient,
): Promise<{ body: unknown; dequeueCount: number; id: string }[]> {
  const out = [];
  for (;;) {
    const r = await q.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 60 });
    if (r.receivedMessageItems.length === 0) return out;
    for (const m of r.receivedMessageItems) {
      out.push({
        body: JSON.parse(Buffer.from(m.messageText, 'base64').toString('utf8')),
        dequeueCount: m.dequeueCount,
        id: m.messageId,
      });
      await q.deleteMessage(m.messageId, m.popReceipt);
    }
  }
}

/** What the host passes a timer function. */
export const timer = { isPastDue: false, schedule: { adjustForDST: true }, scheduleStatus: {} };
