import { type CryptoKey, type JWTPayload, jwtVerify, type KeyObject, SignJWT } from 'jose';
import { ConfigError, RekeyError } from '../core/errors.js';
import type { JwsAlgorithm, RekeyConfig } from '../core/policy/types.js';
import type { Clock } from '../core/ports/Clock.js';
import { hmacSecretFromEnv, publicKeyFromFile } from './signing.js';

/**
 * Approver tokens for the approvals HTTP API: compact JWTs (RFC 7519) signed with HS256 (the
 * `approvals.tokens.hmac` secret) or with the one asymmetric algorithm `approvals.tokens.jws`
 * names. Claims: `sub` = the approver identity, `aud` = `rekey-approvals`, `iat` and `exp`
 * required, at most one hour apart. Anything else is refused with the reason.
 */
export const TOKEN_AUDIENCE = 'rekey-approvals';
export const MAX_TOKEN_SECONDS = 3600;

export class TokenRejected extends RekeyError {
  constructor(message: string) {
    super('UNAUTHENTICATED', message);
  }
}

export interface ApproverIdentity {
  identity: string;
  expiresAt: string;
}

export interface ApproverTokenVerifier {
  verify(token: string): Promise<ApproverIdentity>;
}

type Key = CryptoKey | KeyObject | Uint8Array;

export class JwtApproverVerifier implements ApproverTokenVerifier {
  private readonly key: Key;
  constructor(
    key: Key,
    private readonly alg: JwsAlgorithm | 'HS256',
    private readonly clock: Clock,
  ) {
    this.key = key instanceof Uint8Array ? new Uint8Array(key) : key;
  }

  async verify(token: string): Promise<ApproverIdentity> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 8192)
      throw new TokenRejected('the bearer token is missing or too long');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: [this.alg],
        audience: TOKEN_AUDIENCE,
        requiredClaims: ['sub', 'exp', 'iat'],
        currentDate: this.clock.now(),
        clockTolerance: 30,
      }));
    } catch (e) {
      throw new TokenRejected(`the bearer token was refused: ${(e as Error).message}`);
    }
    const { sub, exp, iat } = payload as { sub: string; exp: number; iat: number };
    if (iat > this.clock.now().getTime() / 1000 + 30)
      throw new TokenRejected('the bearer token was issued in the future');
    if (exp - iat > MAX_TOKEN_SECONDS)
      throw new TokenRejected(
        `the bearer token lives ${exp - iat} s; at most ${MAX_TOKEN_SECONDS} s are accepted`,
      );
    return { identity: sub, expiresAt: new Date(exp * 1000).toISOString() };
  }

  destroy(): void {
    if (this.key instanceof Uint8Array) this.key.fill(0);
  }
}

/** The verifier `approvals.tokens` describes. */
export async function tokenVerifierFromConfig(
  config: RekeyConfig,
  baseDir: string,
  clock: Clock,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ApproverTokenVerifier> {
  const t = config.approvals?.tokens;
  if (!t)
    throw new ConfigError(
      `${config.file}: approvals.tokens is not set, so the approvals API cannot authenticate anyone`,
    );
  if (t.hmac) {
    const secret = hmacSecretFromEnv(t.hmac.secretEnv, 'approvals.tokens.hmac', env);
    try {
      return new JwtApproverVerifier(secret, 'HS256', clock);
    } finally {
      secret.fill(0);
    }
  }
  const { publicKeyFile, alg } = t.jws!;
  return new JwtApproverVerifier(
    await publicKeyFromFile(publicKeyFile, alg, baseDir, 'approvals.tokens.jws'),
    alg,
    clock,
  );
}

/** Makes an approver token (HS256 with the shared secret, or an asymmetric private key). */
export async function mintApproverToken(opts: {
  key: Key;
  alg: JwsAlgorithm | 'HS256';
  identity: string;
  now: Date;
  ttlSeconds: number;
}): Promise<string> {
  if (!(opts.ttlSeconds > 0 && opts.ttlSeconds <= MAX_TOKEN_SECONDS))
    throw new ConfigError(`a token lives between 1 and ${MAX_TOKEN_SECONDS} seconds`);
  const iat = Math.floor(opts.now.getTime() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: opts.alg, typ: 'JWT' })
    .setSubject(opts.identity)
    .setAudience(TOKEN_AUDIENCE)
    .setIssuedAt(iat)
    .setExpirationTime(iat + opts.ttlSeconds)
    .sign(opts.key);
}
