import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../shared/core/policy/load.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import {
  JwtApproverVerifier,
  mintApproverToken,
  tokenVerifierFromConfig,
} from '../../../shared/governance/tokens.js';
import { type HttpRequest, handleApprovalsRequest } from '../../../shared/http/approvalsApi.js';
import { DAY, type TestWorkspace, testWorkspace } from '../../support/workspace.js';

/**
 * The approvals HTTP handler, called the way a runtime calls it, on a real workspace whose
 * apply opened a destroy request. Tokens are real JWTs (HS256 with the configured secret, or
 * ES256 from a configured public key); every refusal leaves the request as it was.
 */
const SECRET = Buffer.from('approver-token-secret-with-enough-bytes!', 'utf8');
const YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
approvals:
  approvers: [alice, bob, carol, svc-rotator]
  quorum: 2
  expiry: P1D
  tokens: { hmac: { secretEnv: REKEY_TEST_APPROVAL_TOKEN_KEY } }
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full, batchSize: 50 }
    retire: { disableAfter: P0D, destroyAfter: P0D, destroyDelay: P7D, approvals: 2 }
`;

const dir = mkdtempSync(join(tmpdir(), 'rekey-gov-api-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let w: TestWorkspace;
let requestId: string;
let verifier: JwtApproverVerifier;

beforeEach(async () => {
  w = await testWorkspace(YAML);
  w.ctx.actor = 'svc-rotator';
  await w.seed('k', 10, { ageDays: 100 });
  const { plan } = await makePlan(w.ctx);
  const report = await applyPlan(w.ctx, plan);
  requestId = report.outcomes.find((o) => o.type === 'schedule_destroy')!.result!.requestId as string;
  verifier = new JwtApproverVerifier(SECRET, 'HS256', w.clock);
});
afterEach(async () => {
  await w.close();
});

const token = (identity: string, o: { ttl?: number; key?: Uint8Array; now?: Date } = {}) =>
  mintApproverToken({
    key: o.key ?? SECRET,
    alg: 'HS256',
    identity,
    now: o.now ?? w.clock.now(),
    ttlSeconds: o.ttl ?? 600,
  });

async function call(req: Partial<HttpRequest> & { token?: string }) {
  const { token: t, ...rest } = req;
  const res = await handleApprovalsRequest(
    w.ctx,
    {
      method: 'GET',
      path: '/approvals',
      headers: t ? { Authorization: `Bearer ${t}` } : {},
      ...rest,
    },
    { verifier },
  );
  return { ...res, json: JSON.parse(res.body) };
}

const record = () => w.state.getRecord('approval', requestId);

describe('approvals HTTP API', () => {
  it('lists, shows, approves and denies as the identity in the token', async () => {
    const list = await call({ token: await token('alice'), path: '/api/approvals?status=pending' });
    expect(list.status).toBe(200);
    expect(list.headers['content-type']).toMatch(/^application\/json/);
    expect(list.json.approvals.map((r: { id: string }) => r.id)).toEqual([requestId]);
    expect(list.json.approvals[0]).not.toHaveProperty('rev');
    const one = await call({ token: await token('alice'), path: `/approvals/${requestId}` });
    expect(one.json).toMatchObject({ id: requestId, action: 'destroy', status: 'pending' });
    const a = await call({
      token: await token('alice'),
      method: 'POST',
      path: `/approvals/${requestId}/approve`,
      body: '{"comment":"census checked"}',
    });
    expect(a.status).toBe(200);
    expect(a.json).toMatchObject({
      status: 'pending',
      approvals: [{ by: 'alice', comment: 'census checked' }],
    });
    const b = await call({
      token: await token('bob'),
      method: 'post',
      path: `/approvals/${requestId}/approve`,
    });
    expect(b.json.status).toBe('approved');
    const d = await call({
      token: await token('carol'),
      method: 'POST',
      path: `/approvals/${requestId}/deny`,
      body: { reason: 'legal hold' },
    });
    expect(d.json).toMatchObject({ status: 'denied', denied: { by: 'carol', reason: 'legal hold' } });
  });

  it('refuses the requester, a duplicate, an unknown approver and an expired request, leaving the request as it was', async () => {
    await call({ token: await token('alice'), method: 'POST', path: `/approvals/${requestId}/approve` });
    const before = await record();
    const approveAs = async (who: string) =>
      call({ token: await token(who), method: 'POST', path: `/approvals/${requestId}/approve` });
    const requester = await approveAs('svc-rotator');
    expect(requester.status).toBe(403);
    expect(requester.json.error).toEqual({
      code: 'APPROVAL_REFUSED',
      message: `svc-rotator made request ${requestId} and cannot approve it`,
    });
    const dup = await approveAs('alice');
    expect(dup.status).toBe(409);
    expect(dup.json.error.message).toBe(`alice has already approved request ${requestId}`);
    const unknown = await approveAs('mallory');
    expect(unknown.status).toBe(403);
    expect(unknown.json.error.message).toMatch(/^mallory is not one of the approvers/);
    expect(await record()).toEqual(before);
    w.clock.advance(DAY + 1000);
    const expired = await approveAs('bob');
    expect(expired.status).toBe(409);
    expect(expired.json.error.message).toMatch(new RegExp(`^approval request ${requestId} expired at `));
    expect(await record()).toEqual(before);
  });

  it('refuses missing, forged, expired and over-long tokens with 401, audited, state unchanged', async () => {
    const before = await record();
    const approve = (t?: string) =>
      call({ method: 'POST', path: `/approvals/${requestId}/approve`, ...(t ? { token: t } : {}) });
    const none = await approve();
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toBe('Bearer realm="rekey-approvals"');
    const forged = await approve(
      await token('bob', { key: Buffer.from('not-the-secret-but-long-enough-anyway!!', 'utf8') }),
    );
    expect(forged.status).toBe(401);
    expect(forged.json.error.message).toMatch(/signature verification failed/);
    const stale = await approve(
      await token('bob', { now: new Date(w.clock.now().getTime() - 2 * 3600_000) }),
    );
    expect(stale.status).toBe(401);
    expect(stale.json.error.message).toMatch(/"exp" claim timestamp check failed/);
    const iat = Math.floor(w.clock.now().getTime() / 1000);
    const long = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('bob')
      .setAudience('rekey-approvals')
      .setIssuedAt(iat)
      .setExpirationTime(iat + 86_400)
      .sign(SECRET);
    expect((await approve(long)).json.error.message).toBe(
      'the bearer token lives 86400 s; at most 3600 s are accepted',
    );
    const wrongAud = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('bob')
      .setAudience('someone-else')
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .sign(SECRET);
    expect((await approve(wrongAud)).json.error.message).toMatch(/unexpected "aud" claim value/);
    const noneAlg = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(
      JSON.stringify({ sub: 'bob', aud: 'rekey-approvals', iat, exp: iat + 60 }),
    ).toString('base64url')}.`;
    expect((await approve(noneAlg)).status).toBe(401);
    expect((await approve('garbage')).status).toBe(401);
    // Unauthenticated callers learn nothing about routes either.
    expect((await call({ path: '/nothing-here' })).status).toBe(401);
    expect(await record()).toEqual(before);
    const audit = (await w.state.auditRead(1, 1000)).filter((r) => r.action === 'approval.auth_failed');
    expect(audit).toHaveLength(6);
    expect(JSON.stringify(audit)).not.toContain(SECRET.toString('utf8'));
  });

  it('answers bad routes, methods and bodies clearly', async () => {
    const t = await token('alice');
    expect((await call({ token: t, path: '/elsewhere' })).status).toBe(404);
    expect((await call({ token: t, path: '/approvals/apr-0000000000000000-1' })).json.error).toEqual({
      code: 'NOT_FOUND',
      message: 'approval request apr-0000000000000000-1 not found',
    });
    expect((await call({ token: t, path: '/approvals/../../etc' })).status).toBe(404);
    expect((await call({ token: t, path: `/approvals/${requestId}/explode`, method: 'POST' })).status).toBe(
      404,
    );
    const m = await call({ token: t, path: '/approvals', method: 'DELETE' });
    expect(m.status).toBe(405);
    expect(m.headers.allow).toBe('GET');
    expect((await call({ token: t, path: `/approvals/${requestId}/approve` })).status).toBe(405);
    expect((await call({ token: t, path: '/approvals?status=weird' })).json.error.message).toMatch(
      /^status must be one of/,
    );
    const bad = await call({
      token: t,
      method: 'POST',
      path: `/approvals/${requestId}/approve`,
      body: '{nope',
    });
    expect(bad).toMatchObject({
      status: 400,
      json: { error: { code: 'VALIDATION', message: 'the body is not JSON' } },
    });
    const big = await call({
      token: t,
      method: 'POST',
      path: `/approvals/${requestId}/deny`,
      body: JSON.stringify({ reason: 'x'.repeat(20_000) }),
    });
    expect(big.status).toBe(400);
    expect((await record())!.rev).toBe(1);
  });

  it('builds its verifier from approvals.tokens: HS256 from the environment, or a JWS public key', async () => {
    process.env.REKEY_TEST_APPROVAL_TOKEN_KEY = SECRET.toString('utf8');
    try {
      const res = await handleApprovalsRequest(w.ctx, {
        method: 'GET',
        path: '/approvals',
        headers: { authorization: `Bearer ${await token('bob')}` },
      });
      expect(res.status).toBe(200);
    } finally {
      delete process.env.REKEY_TEST_APPROVAL_TOKEN_KEY;
    }
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(join(dir, 'approvers.pem'), await exportSPKI(publicKey));
    const config = loadConfig(
      YAML.replace(
        '{ hmac: { secretEnv: REKEY_TEST_APPROVAL_TOKEN_KEY } }',
        '{ jws: { publicKeyFile: approvers.pem, alg: ES256 } }',
      ),
      join(dir, 'rekey.yaml'),
    );
    const es = await tokenVerifierFromConfig(config, dir, w.clock);
    const good = await mintApproverToken({
      key: privateKey,
      alg: 'ES256',
      identity: 'carol',
      now: w.clock.now(),
      ttlSeconds: 60,
    });
    expect(await es.verify(good)).toMatchObject({ identity: 'carol' });
    // An HS256 token signed with the PEM text as secret (algorithm confusion) is refused.
    const confused = await mintApproverToken({
      key: Buffer.from(await exportSPKI(publicKey)),
      alg: 'HS256',
      identity: 'carol',
      now: w.clock.now(),
      ttlSeconds: 60,
    });
    await expect(es.verify(confused)).rejects.toThrow(
      /"alg" \(Algorithm\) Header Parameter value not allowed/,
    );
    await expect(
      tokenVerifierFromConfig(loadConfig(YAML.replace(/ {2}tokens: .*\n/, ''), 'x.yaml'), dir, w.clock),
    ).rejects.toThrow('x.yaml: approvals.tokens is not set, so the approvals API cannot authenticate anyone');
  });
});
