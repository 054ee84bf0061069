import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PubSub } from '@google-cloud/pubsub';
import {
  type PubSubEmulator,
  type PubSubEmulatorOptions,
  startPubSubEmulator,
} from '../../emulators/gcp-pubsub/index.js';

// The client library must not probe a metadata server for credentials.
process.env.METADATA_SERVER_DETECTION = 'none';

export const PROJECT = 'rekey-test';

export async function emulator(opts: PubSubEmulatorOptions = {}): Promise<PubSubEmulator> {
  return startPubSubEmulator({ timeScale: 0.01, ...opts });
}

/** The official client, unmodified, pointed at the emulator the way an application would be. */
export function client(emu: PubSubEmulator): PubSub {
  return new PubSub({ projectId: PROJECT, apiEndpoint: emu.host });
}

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A loopback HTTP endpoint that answers each POST with what `respond` says and keeps what it got. */
export async function pushEndpoint(
  respond: (r: Received, n: number) => number | Promise<number> = () => 204,
): Promise<{ url: string; received: Received[]; server: Server; close(): Promise<void> }> {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const r = { path: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks).toString() };
      received.push(r);
      const code = await respond(r, received.length);
      if (code === 0) return; // never answer: the push times out
      res.writeHead(code).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    server,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls until `check` returns a value (not undefined/false), failing after `ms`. */
export async function until<T>(
  check: () => T | undefined | false,
  ms = 10_000,
  what = 'condition',
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function rejectionOf(p: Promise<unknown>): Promise<Error & { code?: number; details?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: number; details?: string };
  }
  throw new Error('expected a rejection, but the call succeeded');
}
