import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { makeTestCertificates, type TestCertificates } from '../../support/azureCert.js';
import { SimClock } from '../aws/clock.js';
import { EMULATOR_TOKEN } from './credential.js';
import { badParameter, KvError } from './errors.js';
import { EventSink } from './events.js';
import { type AzureFaultConfig, AzureFaults } from './faults.js';
import { warmRsaPool } from './rsaPool.js';
import { Vault } from './vault.js';

/** api-version values the emulator answers; anything else is refused with BadParameter. */
export const SUPPORTED_API_VERSIONS = ['7.0', '7.1', '7.2', '7.3', '7.4', '7.5', '7.6', '2025-07-01'];
/** Rotation (rotate, rotation policies) arrived in 7.3. */
const ROTATION_API_VERSIONS = new Set(SUPPORTED_API_VERSIONS.slice(SUPPORTED_API_VERSIONS.indexOf('7.3')));
const DEFAULT_TENANT = '00000000-0000-0000-0000-00000000e4e1';

export interface AzureKeyVaultEmulatorOptions {
  /**
   * Vault and Managed HSM hosts to serve, e.g. `prod.vault.azure.net`,
   * `rekey-hsm.managedhsm.azure.net`. Each is served on its own port on 127.0.0.1.
   */
  vaults?: string[];
  /** First port; vault i listens on port + i. 0 (default): every vault gets a free port. */
  port?: number;
  /** Bearer tokens accepted. Default: [EMULATOR_TOKEN]. */
  tokens?: string[];
  tenantId?: string;
  subscriptionId?: string;
  resourceGroup?: string;
  /** Soft-delete retention, 7-90 days (default 90). */
  softDeleteRetentionDays?: number;
  faults?: AzureFaultConfig;
  /** Start of simulated time (default: now). */
  now?: Date | string;
  /** Certificates to serve with; default: a fresh CA and server cert from openssl. */
  certificates?: TestCertificates;
}

export interface AzureKeyVaultEmulator {
  /** Vault host -> https URL where it is served (what a provider's `endpoints` option takes). */
  endpoints: Record<string, string>;
  /** The first vault's URL. */
  endpoint: string;
  vaults: Map<string, Vault>;
  clock: SimClock;
  faults: AzureFaults;
  events: EventSink;
  /** PEM file of the CA that signed the server certificate (for NODE_EXTRA_CA_CERTS). */
  caPath: string;
  /** The CA as PEM text (for a client's TLS options). */
  ca: string;
  tokens: string[];
  /** Requests answered, by operation name (tests check what was called). */
  requests: Record<string, number>;
  close(): Promise<void>;
}

interface Route {
  op: string;
  method: string;
  pattern: RegExp;
  rotation?: boolean;
  run(
    v: Vault,
    base: string,
    m: RegExpExecArray,
    body: Record<string, unknown>,
    q: URLSearchParams,
    api: string,
  ): unknown;
}

const N = '([^/]+)';
const ROUTES: Route[] = [
  {
    op: 'listKeys',
    method: 'GET',
    pattern: /^\/keys\/?$/,
    run: (v, b, _m, _x, q, api) => v.listKeys(b, q, api),
  },
  {
    op: 'createKey',
    method: 'POST',
    pattern: new RegExp(`^/keys/${N}/create$`),
    run: (v, b, m, x) => v.createKey(b, m[1]!, x),
  },
  {
    op: 'rotateKey',
    method: 'POST',
    rotation: true,
    pattern: new RegExp(`^/keys/${N}/rotate$`),
    run: (v, b, m) => v.rotateKey(b, m[1]!),
  },
  {
    op: 'getKeyRotationPolicy',
    method: 'GET',
    rotation: true,
    pattern: new RegExp(`^/keys/${N}/rotationpolicy$`),
    run: (v, b, m) => v.getRotationPolicy(b, m[1]!),
  },
  {
    op: 'updateKeyRotationPolicy',
    method: 'PUT',
    rotation: true,
    pattern: new RegExp(`^/keys/${N}/rotationpolicy$`),
    run: (v, b, m, x) => v.updateRotationPolicy(b, m[1]!, x),
  },
  {
    op: 'listKeyVersions',
    method: 'GET',
    pattern: new RegExp(`^/keys/${N}/versions$`),
    run: (v, b, m, _x, q, api) => v.listVersions(b, m[1]!, q, api),
  },
  ...(['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'] as const).map(
    (op): Route => ({
      op,
      method: 'POST',
      pattern: new RegExp(`^/keys/${N}/([^/]*)/${op.toLowerCase()}$`),
      run: (v, b, m, x) => v.crypto(b, m[1]!, m[2]!, op, x),
    }),
  ),
  {
    op: 'getKey',
    method: 'GET',
    pattern: new RegExp(`^/keys/${N}(?:/([^/]*))?$`),
    run: (v, b, m) => v.getKey(b, m[1]!, m[2] ?? ''),
  },
  {
    op: 'importKey',
    method: 'PUT',
    pattern: new RegExp(`^/keys/${N}$`),
    run: (v, b, m, x) => v.importKey(b, m[1]!, x),
  },
  {
    op: 'updateKey',
    method: 'PATCH',
    pattern: new RegExp(`^/keys/${N}(?:/([^/]*))?$`),
    run: (v, b, m, x) => v.updateKey(b, m[1]!, m[2] ?? '', x),
  },
  {
    op: 'deleteKey',
    method: 'DELETE',
    pattern: new RegExp(`^/keys/${N}$`),
    run: (v, b, m) => v.deleteKey(b, m[1]!),
  },
  {
    op: 'listDeletedKeys',
    method: 'GET',
    pattern: /^\/deletedkeys\/?$/,
    run: (v, b, _m, _x, q, api) => v.listDeletedKeys(b, q, api),
  },
  {
    op: 'getDeletedKey',
    method: 'GET',
    pattern: new RegExp(`^/deletedkeys/${N}$`),
    run: (v, b, m) => v.getDeletedKey(b, m[1]!),
  },
  {
    op: 'recoverDeletedKey',
    method: 'POST',
    pattern: new RegExp(`^/deletedkeys/${N}/recover$`),
    run: (v, b, m) => v.recoverKey(b, m[1]!),
  },
  {
    op: 'purgeDeletedKey',
    method: 'DELETE',
    pattern: new RegExp(`^/deletedkeys/${N}$`),
    run: (v, _b, m) => {
      v.purgeKey(m[1]!);
      return null;
    },
  },
];

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1_000_000) {
        reject(badParameter('Request body too large.'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = body === null || body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'x-ms-request-id': randomUUID(),
    'x-ms-keyvault-service-version': '1.9.0.0',
    ...(text ? { 'content-type': 'application/json; charset=utf-8' } : {}),
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

function sendError(res: ServerResponse, e: KvError): void {
  send(res, e.status, { error: { code: e.code, message: e.message } }, e.headers);
}

export async function startAzureKeyVaultEmulator(
  opts: AzureKeyVaultEmulatorOptions = {},
): Promise<AzureKeyVaultEmulator> {
  const hosts = opts.vaults ?? ['rekey-prod.vault.azure.net', 'rekey-hsm.managedhsm.azure.net'];
  const retention = opts.softDeleteRetentionDays ?? 90;
  if (!(Number.isInteger(retention) && retention >= 7 && retention <= 90)) {
    throw new RangeError('softDeleteRetentionDays must be an integer from 7 to 90');
  }
  warmRsaPool();
  const certs = opts.certificates ?? makeTestCertificates();
  const ownCerts = opts.certificates === undefined;
  const clock = new SimClock(opts.now);
  const events = new EventSink();
  const faults = new AzureFaults(opts.faults ?? {});
  const tokens = opts.tokens ?? [EMULATOR_TOKEN];
  const tenant = opts.tenantId ?? DEFAULT_TENANT;
  const requests: Record<string, number> = {};
  const vaults = new Map<string, Vault>();
  for (const h of hosts) {
    const v = new Vault(
      {
        host: h,
        subscriptionId: opts.subscriptionId ?? '00000000-0000-0000-0000-000000000001',
        resourceGroup: opts.resourceGroup ?? 'rekey-test',
        softDeleteRetentionDays: retention,
      },
      clock,
      events,
    );
    vaults.set(v.host, v);
  }
  clock.onJump(() => {
    for (const v of vaults.values()) v.tick();
  });

  const byPort = new Map<number, Vault>();

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://placeholder');
    const hostHeader = (req.headers.host ?? '').toLowerCase();
    const hostname = hostHeader.replace(/:\d+$/, '');
    const vault =
      vaults.get(hostname) ??
      (hostname === '127.0.0.1' || hostname === 'localhost'
        ? byPort.get(req.socket.localPort ?? -1)
        : undefined);
    const bodyBuf = await readBody(req);
    if (!vault) {
      // Deviation: the real service has no such host at all (DNS fails); say so in a Key Vault-shaped body.
      throw new KvError(404, 'VaultNotFound', `No vault or managed HSM is served for host '${hostname}'.`);
    }
    if (url.pathname.startsWith('/_emulator/')) {
      control(url.pathname, req.method ?? 'GET', bodyBuf, res);
      return;
    }
    const auth = req.headers.authorization;
    const challenge = `Bearer authorization="https://login.microsoftonline.com/${tenant}", resource="${vault.challengeResource}"`;
    if (!auth) {
      throw new KvError(401, 'Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.', {
        'WWW-Authenticate': challenge,
      });
    }
    const m = /^Bearer (.+)$/.exec(auth);
    if (!m || !tokens.includes(m[1]!)) {
      throw new KvError(401, 'Unauthorized', 'AKV10032: Invalid issuer or token.', {
        'WWW-Authenticate': challenge,
      });
    }
    const api = url.searchParams.get('api-version');
    if (api === null)
      throw badParameter('The api-version query parameter (?api-version=) is required for all requests.');
    if (!SUPPORTED_API_VERSIONS.includes(api)) {
      throw badParameter(
        `The specified version (${api}) is not recognized. Consider using the latest supported version (${SUPPORTED_API_VERSIONS[SUPPORTED_API_VERSIONS.length - 1]}).`,
      );
    }
    const method = req.method ?? 'GET';
    let path: string;
    try {
      path = decodeURIComponent(url.pathname);
    } catch {
      throw badParameter('Malformed path.');
    }
    for (const r of ROUTES) {
      if (r.method !== method) continue;
      const pm = r.pattern.exec(path);
      if (!pm) continue;
      if (r.rotation && !ROTATION_API_VERSIONS.has(api)) {
        throw badParameter(`Operation ${r.op} needs api-version 7.3 or later (got ${api}).`);
      }
      if (faults.latencyMs > 0) await new Promise((ok) => setTimeout(ok, faults.latencyMs));
      faults.check(vault.host, r.op, vault.quotaClass(pm[1], r.op));
      let body: Record<string, unknown> = {};
      if (bodyBuf.length > 0) {
        try {
          body = JSON.parse(bodyBuf.toString('utf8')) as Record<string, unknown>;
        } catch {
          throw badParameter('The request body is not valid JSON.');
        }
        if (body === null || typeof body !== 'object' || Array.isArray(body))
          throw badParameter('The request body must be a JSON object.');
      }
      const base = `https://${hostHeader}`;
      const out = r.run(vault, base, pm, body, url.searchParams, api);
      requests[r.op] = (requests[r.op] ?? 0) + 1;
      send(res, out === null ? 204 : 200, out);
      return;
    }
    throw new KvError(404, 'NotFound', `No operation ${method} ${url.pathname}.`);
  }

  function control(path: string, method: string, body: Buffer, res: ServerResponse): void {
    let json: Record<string, unknown> = {};
    try {
      if (body.length) json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw badParameter('The control request body is not valid JSON.');
    }
    const key = `${method} ${path}`;
    let out: unknown;
    if (key === 'GET /_emulator/clock') out = { now: clock.now().toISOString() };
    else if (key === 'POST /_emulator/clock/advance') {
      const ms = Number(json.ms ?? 0) + Number(json.days ?? 0) * 86_400_000;
      out = { now: clock.advance(ms).toISOString() };
    } else if (key === 'GET /_emulator/events') out = { events: events.events };
    else if (key === 'POST /_emulator/faults') {
      try {
        faults.set(json as AzureFaultConfig);
      } catch (e) {
        throw badParameter((e as Error).message);
      }
      out = {};
    } else if (key === 'POST /_emulator/faults/reset') {
      faults.reset();
      out = {};
    } else throw new KvError(404, 'NotFound', `No control operation ${key}.`);
    send(res, 200, out);
  }

  const servers: Server[] = [];
  const endpoints: Record<string, string> = {};
  let i = 0;
  for (const v of vaults.values()) {
    const server = createServer({ cert: certs.cert, key: certs.key }, (req, res) => {
      handle(req, res).catch((e: unknown) => {
        if (res.headersSent) return;
        if (e instanceof KvError) sendError(res, e);
        else
          sendError(
            res,
            new KvError(500, 'InternalServerError', 'The emulator failed to process the request.'),
          );
      });
    });
    const port = opts.port ? opts.port + i : 0;
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(port, '127.0.0.1', () => ok());
    });
    const actual = (server.address() as AddressInfo).port;
    byPort.set(actual, v);
    endpoints[v.host] = `https://127.0.0.1:${actual}`;
    servers.push(server);
    i += 1;
  }

  return {
    endpoints,
    endpoint: Object.values(endpoints)[0]!,
    vaults,
    clock,
    faults,
    events,
    caPath: certs.caPath,
    ca: certs.ca,
    tokens,
    requests,
    close: async () => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((ok) => {
              s.close(() => ok());
              s.closeAllConnections();
            }),
        ),
      );
      if (ownCerts) certs.cleanup();
    },
  };
}
