import type { Request, Response } from '@google-cloud/functions-framework';
import { handleApprovalsRequest } from '../../shared/http/approvalsApi.js';
import { errorFields, logger } from './log.js';
import { rekey } from './runtime.js';

const log = logger('rekey-approvals');

/**
 * HTTPS -> this function: the approvals API (`GET /approvals`, `GET /approvals/{id}`,
 * `POST /approvals/{id}/approve|deny`). Every request must carry an approver's bearer JWT in
 * `Authorization`, checked before anything is routed (a failed check is audited); the token's
 * subject is who approves. With Cloud Run IAM in front as well, callers send their Google ID
 * token in `X-Serverless-Authorization`, leaving `Authorization` to the approver token.
 * Logs carry the method, path and status, never a token.
 */
export async function rekeyApprovals(req: Request, res: Response): Promise<void> {
  const method = req.method.toUpperCase();
  const path = req.originalUrl ?? req.url;
  const pathOnly = path.split('?')[0];
  try {
    const { ctx } = await rekey('state');
    const answer = await handleApprovalsRequest(ctx, {
      method,
      path,
      headers: req.headers,
      body: method === 'GET' || method === 'HEAD' ? null : (req.rawBody ?? null),
    });
    const severity = answer.status >= 500 ? 'ERROR' : answer.status >= 400 ? 'WARNING' : 'INFO';
    log.write(severity, 'approvals request', {
      httpRequest: { requestMethod: method, requestUrl: pathOnly, status: answer.status },
      ...(answer.status >= 400 ? { error: errorOf(answer.body) } : {}),
    });
    res.status(answer.status).set(answer.headers).send(answer.body);
  } catch (e) {
    // Composition failed (a setting, the database): nothing was done.
    log.write('ERROR', 'approvals request failed', {
      httpRequest: { requestMethod: method, requestUrl: pathOnly, status: 503 },
      ...errorFields(e),
    });
    res
      .status(503)
      .set({ 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
      .send(
        JSON.stringify({ error: { code: 'UNAVAILABLE', message: 'rekey could not start; try again later' } }),
      );
  }
}

/** The error object of an API answer (code and message; never a token). */
function errorOf(body: string): unknown {
  try {
    return (JSON.parse(body) as { error?: unknown }).error ?? null;
  } catch {
    return null;
  }
}
