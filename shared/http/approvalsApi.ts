import { dirname, resolve } from 'node:path';
import { errorMessage, NotFoundError, RekeyError, ValidationError } from '../core/errors.js';
import type { RekeyConfig } from '../core/policy/types.js';
import {
  ApprovalRefused,
  type ApprovalRequest,
  type ApprovalStatus,
  approve,
  deny,
  getApproval,
  listApprovals,
} from '../core/usecases/approvals.js';
import type { RekeyContext } from '../core/usecases/context.js';
import { type ApproverTokenVerifier, TokenRejected, tokenVerifierFromConfig } from '../governance/tokens.js';

/**
 * The approvals HTTP API as one framework-free function, for the serverless runtimes (an API
 * Gateway / Function URL handler, an Azure HTTP trigger, a Cloud Function) and tests:
 *
 *   GET  .../approvals[?status=pending|approved|denied|expired|used]   list requests
 *   GET  .../approvals/{id}                                              one request
 *   POST .../approvals/{id}/approve   body {"comment"?: string}          approve as the caller
 *   POST .../approvals/{id}/deny      body {"reason"?: string}           deny as the caller
 *
 * Every request needs `Authorization: Bearer <JWT>` (governance/tokens.ts): the caller's
 * identity is the token's `sub`, never anything in the body. Anything before `/approvals` in
 * the path is ignored, so the function can sit under any route prefix.
 */
export interface HttpRequest {
  method: string;
  /** Path, optionally with a query string. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** Raw body (text or bytes) or an already-parsed JSON object; empty for GET. */
  body?: string | Uint8Array | Record<string, unknown> | null;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface ApprovalsApiOptions {
  /** How bearer tokens are checked; default: built from `approvals.tokens` in the config. */
  verifier?: ApproverTokenVerifier;
}

const MAX_BODY_BYTES = 16 * 1024;
const ROUTE = /(?:^|\/)approvals(?:\/([^/]+)(?:\/([^/]+))?)?\/?$/;
const ID = /^apr-[0-9a-f]{16}-\d{1,6}$/;
const STATUSES: ApprovalStatus[] = ['pending', 'approved', 'denied', 'expired', 'used'];

const verifiers = new WeakMap<RekeyConfig, Promise<ApproverTokenVerifier>>();

function json(status: number, value: unknown, extra: Record<string, string> = {}): HttpResponse {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...extra },
    body: JSON.stringify(value),
  };
}

const problem = (status: number, code: string, message: string, extra: Record<string, string> = {}) =>
  json(status, { error: { code, message } }, extra);

function header(h: HttpRequest['headers'], name: string): string | undefined {
  for (const [k, v] of Object.entries(h ?? {})) {
    if (k.toLowerCase() !== name) continue;
    return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

function parseBody(body: HttpRequest['body']): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body === 'object' && !(body instanceof Uint8Array)) return body;
  const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
  if (Buffer.byteLength(text) > MAX_BODY_BYTES)
    throw new ValidationError(`the body is larger than ${MAX_BODY_BYTES} bytes`);
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ValidationError('the body is not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new ValidationError('the body must be a JSON object');
  return v as Record<string, unknown>;
}

function optionalText(body: Record<string, unknown>, field: string): string | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length > 1000)
    throw new ValidationError(`${field} must be a string of at most 1000 characters`);
  return v;
}

const view = (r: ApprovalRequest) => {
  const { rev: _rev, ...rest } = r;
  return rest;
};

/** Handles one HTTP request against the approvals of `ctx`'s state store. */
export async function handleApprovalsRequest(
  ctx: RekeyContext,
  req: HttpRequest,
  opts: ApprovalsApiOptions = {},
): Promise<HttpResponse> {
  const [pathOnly, query = ''] = String(req.path ?? '').split('?', 2);
  const method = String(req.method ?? '').toUpperCase();

  // Authenticate before anything else: no route, id or status leaks to an unauthenticated caller.
  const auth = header(req.headers, 'authorization');
  const challenge = { 'www-authenticate': 'Bearer realm="rekey-approvals"' };
  const m = auth ? /^Bearer\s+(\S+)\s*$/i.exec(auth) : null;
  if (!m)
    return problem(401, 'UNAUTHENTICATED', 'an Authorization: Bearer <token> header is required', challenge);
  let identity: string;
  try {
    let verifier = opts.verifier;
    if (!verifier) {
      let p = verifiers.get(ctx.config);
      if (!p) {
        p = tokenVerifierFromConfig(ctx.config, dirname(resolve(ctx.config.file)), ctx.clock);
        verifiers.set(ctx.config, p);
        p.catch(() => verifiers.delete(ctx.config));
      }
      verifier = await p;
    }
    identity = (await verifier.verify(m[1]!)).identity;
  } catch (e) {
    if (!(e instanceof TokenRejected)) throw e;
    await ctx.audit.append({
      actor: 'unauthenticated',
      action: 'approval.auth_failed',
      target: null,
      details: { method, path: pathOnly!.slice(0, 200), message: e.message.slice(0, 300) },
    });
    return problem(401, 'UNAUTHENTICATED', e.message, challenge);
  }

  const route = ROUTE.exec(pathOnly!);
  if (!route) return problem(404, 'NOT_FOUND', 'no such resource: the API serves /approvals');
  const [, id, verb] = route;
  if (id !== undefined && !ID.test(id))
    return problem(404, 'NOT_FOUND', `approval request ${id.slice(0, 80)} not found`);
  try {
    if (id === undefined) {
      if (method !== 'GET')
        return problem(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`, { allow: 'GET' });
      const status = new URLSearchParams(query).get('status') ?? undefined;
      if (status !== undefined && !STATUSES.includes(status as ApprovalStatus))
        return problem(400, 'VALIDATION', `status must be one of ${STATUSES.join(', ')}`);
      const list = await listApprovals(ctx, status ? { status: status as ApprovalStatus } : {});
      return json(200, { approvals: list.map(view) });
    }
    if (verb === undefined) {
      if (method !== 'GET')
        return problem(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`, { allow: 'GET' });
      return json(200, view(await getApproval(ctx, id)));
    }
    if (verb !== 'approve' && verb !== 'deny') return problem(404, 'NOT_FOUND', 'no such resource');
    if (method !== 'POST')
      return problem(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed here`, { allow: 'POST' });
    const body = parseBody(req.body);
    if (verb === 'approve') {
      const comment = optionalText(body, 'comment');
      return json(200, view(await approve(ctx, id, { by: identity, ...(comment ? { comment } : {}) })));
    }
    const reason = optionalText(body, 'reason');
    return json(200, view(await deny(ctx, id, { by: identity, ...(reason ? { reason } : {}) })));
  } catch (e) {
    if (e instanceof ApprovalRefused) {
      const forbidden = e.kind === 'requester' || e.kind === 'unknown_approver' || e.kind === 'identity';
      return problem(forbidden ? 403 : 409, 'APPROVAL_REFUSED', e.message);
    }
    if (e instanceof NotFoundError) return problem(404, 'NOT_FOUND', e.message);
    if (e instanceof ValidationError) return problem(400, 'VALIDATION', e.message);
    if (e instanceof RekeyError && e.code === 'CONFLICT') return problem(409, 'CONFLICT', e.message);
    return problem(500, 'INTERNAL', `the request failed: ${errorMessage(e).slice(0, 300)}`);
  }
}
