/**
 * Dual control on AWS, through the built bundles: a config whose changes need approvals is
 * accepted by a first cycle; a changed config makes the next cycle wait (nothing runs) with an
 * approval request; approvers approve over HTTP, as Lambda function URL events (payload 2.0)
 * with bearer tokens; the cycle after that applies the change and uses the request up.
 */
import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, ScheduledEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintApproverToken } from '../../../shared/governance/tokens.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import {
  type AwsStack,
  CONFIG_YAML,
  captureStdout,
  type Handler,
  lambdaContext,
  loadBundle,
  REGION,
  startStack,
  writeCompiledConfig,
} from './helpers.js';

const SECRET = 'approver-token-secret-for-tests-0123456789';
const APPROVALS = `approvals:
  approvers: [sec-alice, sec-bob, ops-carol]
  quorum: 2
  expiry: P1D
  require: [policy_change]
  tokens: { hmac: { secretEnv: REKEY_APPROVAL_TOKEN_KEY } }
`;
const CONFIG_A = `${CONFIG_YAML}${APPROVALS}`;
const CONFIG_B = CONFIG_A.replace('rotate: { every: P90D }', 'rotate: { every: P180D }');

type Url = APIGatewayProxyEventV2;
type Reply = APIGatewayProxyStructuredResultV2 & {
  statusCode: number;
  body: string;
  headers: Record<string, string>;
};
let stack: AwsStack;
let approvals: Handler<Url, Reply>;
let state: DynamoStateStore;
let requestId: string;
let out: ReturnType<typeof captureStdout>;

const schedule = (): ScheduledEvent => ({
  version: '0',
  id: randomUUID(),
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '111122223333',
  time: new Date().toISOString(),
  region: REGION,
  resources: [`arn:aws:events:${REGION}:111122223333:rule/rekey-test-schedule`],
  detail: {},
});

const token = (identity: string, secret = SECRET) =>
  mintApproverToken({ key: Buffer.from(secret), alg: 'HS256', identity, now: new Date(), ttlSeconds: 300 });

/** A request as a Lambda function URL delivers it. */
function urlEvent(
  method: string,
  path: string,
  o: { bearer?: string; body?: string; query?: string; base64?: boolean } = {},
): Url {
  const now = new Date();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: o.query ?? '',
    headers: {
      host: 'abcdefghij.lambda-url.eu-west-1.on.aws',
      'user-agent': 'curl/8.5.0',
      'x-forwarded-proto': 'https',
      ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(o.bearer ? { authorization: `Bearer ${o.bearer}` } : {}),
    },
    ...(o.query ? { queryStringParameters: Object.fromEntries(new URLSearchParams(o.query)) } : {}),
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abcdefghij',
      domainName: 'abcdefghij.lambda-url.eu-west-1.on.aws',
      domainPrefix: 'abcdefghij',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' },
      requestId: randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(o.body !== undefined
      ? {
          body: o.base64 ? Buffer.from(o.body).toString('base64') : o.body,
          isBase64Encoded: Boolean(o.base64),
        }
      : { isBase64Encoded: false }),
  };
}

const call = async (e: Url) => {
  const r = await approvals(e, lambdaContext('approvals', 30_000));
  return { status: r.statusCode, headers: r.headers, body: JSON.parse(r.body) };
};

beforeAll(async () => {
  stack = await startStack({ keysCreatedDaysAgo: 10, config: CONFIG_A });
  await stack.createKey('orders', { 'data-class': 'pci' });
  stack.emu.clock.set(new Date());
  stack.applyEnv({ REKEY_APPROVAL_TOKEN_KEY: SECRET });
  state = new DynamoStateStore({ table: stack.stateTable, doc: stack.dyn.client() });
  approvals = await loadBundle('approvals');
  out = captureStdout();
});

afterAll(async () => {
  out?.stop();
  await stack?.close();
});

describe('approvals on AWS', () => {
  it('a changed config waits for approvals, and nothing runs', async () => {
    const first = await loadBundle<ScheduledEvent, Record<string, unknown>>('scheduler', 'config-a');
    expect(await first(schedule(), lambdaContext('scheduler'))).toMatchObject({ status: 'applied' });
    // A deployment with another config: new execution environments.
    await writeCompiledConfig(stack.dir, CONFIG_B);
    const second = await loadBundle<ScheduledEvent, Record<string, unknown>>('scheduler', 'config-b');
    const r = await second(schedule(), lambdaContext('scheduler'));
    expect(r).toMatchObject({
      status: 'awaiting_approval',
      queued: 0,
      requestId: expect.stringMatching(/^apr-/),
    });
    requestId = r.requestId as string;
    const audit = await state.auditRead(1, 1000);
    expect(audit.filter((x) => x.action === 'config.accepted')).toHaveLength(1);
    expect(audit.filter((x) => x.action === 'approval.requested')).toHaveLength(1);
  });

  it('refuses requests without a valid bearer token before anything else', async () => {
    const none = await call(urlEvent('GET', '/approvals'));
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="rekey-approvals"');
    const forged = await call(
      urlEvent('GET', '/approvals', { bearer: await token('sec-alice', 'x'.repeat(40)) }),
    );
    expect(forged.status).toBe(401);
    const approveForged = await call(
      urlEvent('POST', `/approvals/${requestId}/approve`, {
        bearer: await token('sec-alice', 'y'.repeat(40)),
      }),
    );
    expect(approveForged.status).toBe(401);
    expect((await state.getRecord('approval', requestId))?.body).toMatchObject({ approvals: [] });
  });

  it('lists the pending request and takes approvals from distinct approvers', async () => {
    const alice = await token('sec-alice');
    const list = await call(urlEvent('GET', '/approvals', { bearer: alice, query: 'status=pending' }));
    expect(list.status).toBe(200);
    expect(list.body.approvals.map((a: { id: string }) => a.id)).toEqual([requestId]);
    expect(list.body.approvals[0]).toMatchObject({ action: 'policy_change', quorum: 2, status: 'pending' });

    const mallory = await call(
      urlEvent('POST', `/approvals/${requestId}/approve`, { bearer: await token('mallory') }),
    );
    expect(mallory.status).toBe(403);
    const one = await call(
      urlEvent('POST', `/approvals/${requestId}/approve`, { bearer: alice, body: '{}' }),
    );
    expect(one).toMatchObject({ status: 200, body: { status: 'pending' } });
    const twice = await call(urlEvent('POST', `/approvals/${requestId}/approve`, { bearer: alice }));
    expect(twice.status).toBe(409);
    // Function URLs may deliver the body base64-encoded.
    const two = await call(
      urlEvent('POST', `/approvals/${requestId}/approve`, {
        bearer: await token('sec-bob'),
        body: JSON.stringify({ comment: 'reviewed the rotation change' }),
        base64: true,
      }),
    );
    expect(two).toMatchObject({ status: 200, body: { status: 'approved' } });
    expect(two.body.approvals.map((a: { by: string }) => a.by)).toEqual(['sec-alice', 'sec-bob']);
  });

  it('answers wrong methods and unknown routes', async () => {
    const alice = await token('sec-alice');
    expect((await call(urlEvent('PUT', `/approvals/${requestId}`, { bearer: alice }))).status).toBe(405);
    expect((await call(urlEvent('GET', '/elsewhere', { bearer: alice }))).status).toBe(404);
    expect((await call(urlEvent('GET', '/approvals/apr-0000000000000000-1', { bearer: alice }))).status).toBe(
      404,
    );
  });

  it('the next cycle applies the approved change and uses the request up', async () => {
    const scheduler = await loadBundle<ScheduledEvent, Record<string, unknown>>('scheduler', 'config-b');
    expect(await scheduler(schedule(), lambdaContext('scheduler'))).toMatchObject({ status: 'applied' });
    const got = await call(urlEvent('GET', `/approvals/${requestId}`, { bearer: await token('ops-carol') }));
    expect(got.body).toMatchObject({ id: requestId, status: 'used' });
    const accepted = (await state.auditRead(1, 1000)).filter((a) => a.action === 'config.accepted');
    expect(accepted.at(-1)?.details).toMatchObject({ via: requestId });
  });

  it('logs method, path and status, never a token', () => {
    const lines = out.lines().filter((l) => l.includes('"approvals request"'));
    expect(lines.length).toBeGreaterThan(5);
    expect(JSON.parse(lines[0]!)).toMatchObject({ method: 'GET', path: '/approvals', status: 401 });
    expect(out.lines().join('\n')).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
  });
});
