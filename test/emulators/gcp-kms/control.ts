import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { status } from '@grpc/grpc-js';
import type { SimClock } from '../aws/clock.js';
import type { GcpFaultConfig, GcpFaults } from './faults.js';

interface Controlled {
  clock: SimClock;
  faults: GcpFaults;
  requestCounts: Record<string, number>;
  reset(): void;
}

/**
 * HTTP side port for driving an emulator that runs in another process (main.ts):
 *   GET  /health, GET /clock, POST /clock {set?, advanceMs?, advanceDays?, freeze?}
 *   GET  /faults, POST /faults {...GcpFaultConfig, failNext?: {method, code, count?}}
 *   GET  /requests, POST /reset
 * `code` is a gRPC status name such as UNAVAILABLE.
 */
export async function startControlServer(
  port: number,
  c: Controlled,
  /** More `GET name` endpoints an emulator adds (answered with 200 and the returned body). */
  extra: Record<string, () => unknown> = {},
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => send(res, 500, { message: String(e) }));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname.replace(/^\/+/, '');
    try {
      const body =
        req.method === 'POST' && chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString()) : {};
      switch (`${req.method} ${path}`) {
        case 'GET health':
          return send(res, 200, { ok: true, now: c.clock.now().toISOString() });
        case 'GET clock':
          return send(res, 200, { now: c.clock.now().toISOString() });
        case 'POST clock':
          if (typeof body.set === 'string') c.clock.set(body.set);
          if (typeof body.advanceMs === 'number') c.clock.advance(body.advanceMs);
          if (typeof body.advanceDays === 'number') c.clock.advanceDays(body.advanceDays);
          if (body.freeze === true) c.clock.freeze();
          if (body.freeze === false) c.clock.thaw();
          return send(res, 200, { now: c.clock.now().toISOString() });
        case 'GET faults':
          return send(res, 200, { config: c.faults.current(), counts: c.faults.counts });
        case 'POST faults': {
          const { failNext, ...config } = body as GcpFaultConfig & {
            failNext?: { method: string; code: string; count?: number };
          };
          c.faults.set(config);
          if (failNext) {
            const code = status[failNext.code as keyof typeof status];
            if (typeof code !== 'number') throw new RangeError(`unknown gRPC status ${failNext.code}`);
            c.faults.failNext(failNext.method, code, failNext.count);
          }
          return send(res, 200, { config: c.faults.current() });
        }
        case 'GET requests':
          return send(res, 200, { counts: c.requestCounts });
        case 'POST reset':
          c.reset();
          return send(res, 200, {});
        default: {
          const more = req.method === 'GET' ? extra[path] : undefined;
          if (more) return send(res, 200, more());
          return send(res, 404, { message: `no control endpoint ${req.method} /${path}` });
        }
      }
    } catch (e) {
      return send(res, 400, { message: e instanceof Error ? e.message : String(e) });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
