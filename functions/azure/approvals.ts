import type { HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { handleApprovalsRequest } from '../../shared/http/approvalsApi.js';
import { log } from './log.js';
import { invoke } from './runtime.js';

/**
 * Bodies above this are refused before they are read (the API itself accepts at most 16 KiB).
 * The Functions host would otherwise buffer up to 100 MB for an anonymous caller.
 */
export const MAX_REQUEST_BYTES = 64 * 1024;

/**
 * HTTP trigger for the approvals API (`/api/approvals...`). The function is anonymous at the host:
 * every request must carry an approver's bearer JWT, which the API checks before routing (and
 * audits when it fails); the token's subject is who approves. A function key would add a
 * shared secret that names nobody. Logs carry the method, path and status, never the token.
 */
export function approvals(request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> {
  return invoke(context, async ({ ctx }) => {
    const url = new URL(request.url);
    const length = Number(request.headers.get('content-length') ?? 0);
    if (length > MAX_REQUEST_BYTES) {
      log('warn', 'approvals request', { method: request.method, path: url.pathname, status: 413 });
      return {
        status: 413,
        jsonBody: { error: { code: 'TOO_LARGE', message: `bodies are at most ${MAX_REQUEST_BYTES} bytes` } },
      };
    }
    const method = request.method.toUpperCase();
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const res = await handleApprovalsRequest(ctx, {
      method,
      path: `${url.pathname}${url.search}`,
      headers,
      body: method === 'GET' || method === 'HEAD' ? null : await request.text(),
    });
    log(res.status >= 500 ? 'error' : res.status >= 400 ? 'warn' : 'info', 'approvals request', {
      method,
      path: url.pathname,
      status: res.status,
      ...(res.status >= 400 ? { error: safeError(res.body) } : {}),
    });
    return { status: res.status, headers: res.headers, body: res.body };
  });
}

/** The error object of an API answer (code and message; they never hold a token). */
function safeError(body: string): unknown {
  try {
    return (JSON.parse(body) as { error?: unknown }).error ?? null;
  } catch {
    return null;
  }
}
