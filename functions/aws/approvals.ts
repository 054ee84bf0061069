import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type { ApproverTokenVerifier } from '../../shared/governance/tokens.js';
import { handleApprovalsRequest } from '../../shared/http/approvalsApi.js';
import { awsRuntime, errorFields, makeLogger } from './runtime.js';
import { approverVerifier } from './verifiers.js';

/**
 * The approvals HTTP API behind a Lambda function URL (payload format 2.0): list, show, approve
 * and deny M-of-N approval requests. The handler authenticates every request itself (bearer
 * JWTs, `approvals.tokens`), so the URL has no IAM authorizer; the caller's identity is the
 * token's subject. The log shows method, path and status, never a header or a body.
 */
const logger = makeLogger('approvals');
// The API reads and writes approval requests in rekey's state: no key provider, no DEK store.
const runtime = awsRuntime({ without: { providers: true, stores: true } });
let verifier: Promise<ApproverTokenVerifier> | undefined;

type Response = APIGatewayProxyStructuredResultV2 & { statusCode: number; body: string };

async function run(event: APIGatewayProxyEventV2): Promise<Response> {
  const ctx = await runtime.context();
  verifier ??= approverVerifier(ctx.config, ctx.baseDir, runtime.publicKeys(), ctx.clock).catch(
    (e: unknown) => {
      verifier = undefined;
      throw e;
    },
  );
  const method = event.requestContext?.http?.method ?? 'GET';
  const path = event.rawPath ?? '/';
  const body =
    event.body === undefined
      ? undefined
      : event.isBase64Encoded
        ? Buffer.from(event.body, 'base64')
        : event.body;
  const res = await handleApprovalsRequest(
    ctx,
    {
      method,
      path: event.rawQueryString ? `${path}?${event.rawQueryString}` : path,
      headers: event.headers ?? {},
      ...(body !== undefined ? { body } : {}),
    },
    { verifier: await verifier },
  );
  const line = { method, path: path.slice(0, 200), status: res.status };
  if (res.status >= 500) logger.error('approvals request failed', { ...line, error: res.body.slice(0, 500) });
  else logger.info('approvals request', line);
  return { statusCode: res.status, headers: res.headers, body: res.body };
}

export const handler = middy(run)
  .use(injectLambdaContext(logger))
  .onError((request) => {
    // Composition or token setup failed: the caller learns nothing of the configuration.
    logger.error('approvals function failed', errorFields(request.error));
    request.response = {
      statusCode: 500,
      headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
      body: JSON.stringify({
        error: { code: 'INTERNAL', message: 'the approvals service failed; see its log' },
      }),
    };
  });
