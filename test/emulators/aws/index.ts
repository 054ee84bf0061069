import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SimClock } from './clock.js';
import { EventBridgeService } from './eventbridge.js';
import { type FaultConfig, Faults, type ServiceName } from './faults.js';
import { KmsService } from './kms.js';
import { AwsError, checkSigV4, parseJsonBody, readBody } from './protocol.js';
import { SqsService } from './sqs.js';

export { SimClock } from './clock.js';
export type { RecordedEvent } from './eventbridge.js';
export type { FaultConfig } from './faults.js';
export { MAX_ON_DEMAND_ROTATIONS } from './kms.js';

export interface AwsEmulatorOptions {
  /** 0 (default) picks a free port. The server listens on 127.0.0.1 only. */
  port?: number;
  /** Account id in ARNs. Default 111122223333. */
  account?: string;
  /** Start of simulated time; default: now. */
  startTime?: Date | string;
  faults?: FaultConfig;
  /** Simulated duration of an on-demand rotation; 0 (default) completes it within the request. */
  onDemandRotationMs?: number;
  /** Called for each request (operation, status); handy when debugging a test. */
  onRequest?: (info: { service: ServiceName | 'control'; operation: string; status: number }) => void;
}

export interface AwsEmulator {
  /** `http://127.0.0.1:<port>`: give it to the SDK clients as `endpoint`. */
  endpoint: string;
  port: number;
  account: string;
  clock: SimClock;
  faults: Faults;
  kms: KmsService;
  sqs: SqsService;
  events: EventBridgeService;
  /** Requests served, by `<service>.<operation>`. */
  requestCounts: Record<string, number>;
  /** Forgets every key, queue, event, fault and count. */
  reset(): void;
  close(): Promise<void>;
}

const TARGETS: Record<string, { service: ServiceName; contentType: string }> = {
  TrentService: { service: 'kms', contentType: 'application/x-amz-json-1.1' },
  AmazonSQS: { service: 'sqs', contentType: 'application/x-amz-json-1.0' },
  AWSEvents: { service: 'events', contentType: 'application/x-amz-json-1.1' },
};

/**
 * Starts the emulator in this process. AWS JSON protocol requests are POSTed to `/` with an
 * `X-Amz-Target` header; `/_emulator/...` is the control API (see docs/aws.md).
 */
export async function startAwsEmulator(opts: AwsEmulatorOptions = {}): Promise<AwsEmulator> {
  const account = opts.account ?? '111122223333';
  if (!/^\d{12}$/.test(account)) throw new RangeError(`account must be 12 digits (got ${account})`);
  const clock = new SimClock(opts.startTime);
  const faults = new Faults(opts.faults);
  const kms = new KmsService({ account, clock, onDemandRotationMs: opts.onDemandRotationMs });
  const sqs = new SqsService(account, clock);
  const events = new EventBridgeService(account, clock);
  const requestCounts: Record<string, number> = {};
  clock.onJump(() => kms.tick());

  const server = createServer((req, res) => {
    serve(req, res).catch((e: unknown) => {
      if (!res.headersSent)
        send(res, 500, 'application/json', { __type: 'InternalFailure', message: String(e) });
    });
  });

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname.startsWith('/_emulator/')) {
      const raw = await readBody(req);
      const status = control(req.method ?? 'GET', url.pathname.slice('/_emulator/'.length), raw, res);
      opts.onRequest?.({ service: 'control', operation: url.pathname, status });
      return;
    }
    const requestId = randomUUID();
    const target = String(req.headers['x-amz-target'] ?? '');
    const dot = target.indexOf('.');
    const prefix = dot > 0 ? target.slice(0, dot) : '';
    const operation = dot > 0 ? target.slice(dot + 1) : '';
    const t = TARGETS[prefix];
    const contentType = t?.contentType ?? 'application/x-amz-json-1.1';
    const base = { 'x-amzn-RequestId': requestId };
    try {
      const raw = await readBody(req);
      if (req.method !== 'POST')
        throw new AwsError('UnknownOperationException', `${req.method} is not supported`, 400);
      if (!t) throw new AwsError('UnknownOperationException', `Unknown target ${target || '(none)'}`);
      const scope = checkSigV4(req);
      const body = parseJsonBody(raw);
      count(`${t.service}.${operation}`);
      const latency = faults.latencyFor(t.service);
      if (latency > 0) await new Promise((r) => setTimeout(r, latency));
      faults.check(t.service, operation);
      let out: unknown;
      if (t.service === 'kms') out = await kms.handle(operation, scope.region, body, requestId);
      else if (t.service === 'events') out = events.handle(operation, scope.region, body);
      else out = await sqs.handle(operation, `http://${req.headers.host ?? '127.0.0.1'}`, body);
      send(res, 200, contentType, out, base);
      opts.onRequest?.({ service: t.service, operation, status: 200 });
    } catch (e) {
      if (!(e instanceof AwsError)) throw e;
      const headers: Record<string, string> = { ...base, 'x-amzn-ErrorType': e.type };
      const { queryError, ...extra } = e.extra as { queryError?: string };
      if (queryError) headers['x-amzn-query-error'] = queryError;
      // SQS (query-compatible JSON) names errors with the service namespace.
      const type = t?.service === 'sqs' ? `com.amazonaws.sqs#${e.type}` : e.type;
      send(res, e.status, contentType, { __type: type, message: e.message, ...extra }, headers);
      opts.onRequest?.({ service: t?.service ?? 'kms', operation, status: e.status });
    }
  }

  function count(key: string): void {
    requestCounts[key] = (requestCounts[key] ?? 0) + 1;
  }

  function control(method: string, path: string, raw: Buffer, res: ServerResponse): number {
    const reply = (status: number, body: unknown) => {
      send(res, status, 'application/json', body);
      return status;
    };
    try {
      const body = method === 'POST' ? parseJsonBody(raw) : {};
      switch (`${method} ${path}`) {
        case 'GET health':
          return reply(200, { ok: true, account, now: clock.now().toISOString() });
        case 'GET clock':
          return reply(200, { now: clock.now().toISOString() });
        case 'POST clock': {
          if (typeof body.set === 'string') clock.set(body.set);
          if (typeof body.advanceMs === 'number') clock.advance(body.advanceMs);
          if (typeof body.advanceDays === 'number') clock.advanceDays(body.advanceDays);
          if (body.freeze === true) clock.freeze();
          if (body.freeze === false) clock.thaw();
          return reply(200, { now: clock.now().toISOString() });
        }
        case 'GET faults':
          return reply(200, { config: faults.current(), counts: faults.counts });
        case 'POST faults': {
          const { failNext, ...config } = body as FaultConfig & {
            failNext?: { operation: string; type: string; count?: number; status?: number };
          };
          faults.set(config);
          if (failNext) faults.failNext(failNext.operation, failNext.type, failNext.count, failNext.status);
          return reply(200, { config: faults.current() });
        }
        case 'GET events':
          return reply(200, { events: events.events() });
        case 'POST events/fail-entries':
          events.failEntries(Number(body.count ?? 1), typeof body.code === 'string' ? body.code : undefined);
          return reply(200, {});
        case 'GET requests':
          return reply(200, { counts: requestCounts });
        case 'POST reset':
          reset();
          return reply(200, {});
        default:
          return reply(404, { message: `no control endpoint ${method} /_emulator/${path}` });
      }
    } catch (e) {
      return reply(400, { message: e instanceof Error ? e.message : String(e) });
    }
  }

  function reset(): void {
    kms.reset();
    sqs.reset();
    events.reset();
    faults.reset();
    for (const k of Object.keys(requestCounts)) delete requestCounts[k];
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    account,
    clock,
    faults,
    kms,
    sqs,
    events,
    requestCounts,
    reset,
    close: async () => {
      sqs.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      kms.reset();
    },
  };
}

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}
