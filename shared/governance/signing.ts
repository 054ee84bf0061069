import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { CompactSign, type CryptoKey, compactVerify, importSPKI, type KeyObject } from 'jose';
import { type CloudEvent, SIGNATURE_ATTRIBUTE, signingBytes } from '../core/domain/compromiseEvent.js';
import { ConfigError } from '../core/errors.js';
import { type EventVerifier, HmacEventSigner, MIN_HMAC_SECRET_BYTES } from '../core/governance/signature.js';
import type { JwsAlgorithm, RekeyConfig, SigningConfig } from '../core/policy/types.js';

/**
 * Signature checks for `key.compromised` events, built from the config's `incidents.signing`:
 * HMAC-SHA256 with a secret from the environment (core/governance/signature.ts), or a detached
 * compact JWS (RFC 7515, appendix F) checked against a public key with jose. Both sign the same
 * bytes: signingBytes(event).
 */
type VerifyKey = CryptoKey | KeyObject | Uint8Array;

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

/** A detached JWS: `<protected header>..<signature>` over the event's signing bytes. */
export class JwsEventVerifier implements EventVerifier {
  readonly scheme = 'jws' as const;
  constructor(
    private readonly key: VerifyKey,
    private readonly alg: JwsAlgorithm,
  ) {}

  async verify(event: CloudEvent): Promise<boolean> {
    const sig = event[SIGNATURE_ATTRIBUTE];
    if (typeof sig !== 'string' || sig.length > 8192) return false;
    const m = /^([A-Za-z0-9_-]+)\.\.([A-Za-z0-9_-]+)$/.exec(sig);
    if (!m) return false;
    try {
      await compactVerify(`${m[1]}.${b64url(signingBytes(event))}.${m[2]}`, this.key, {
        algorithms: [this.alg],
      });
      return true;
    } catch {
      return false;
    }
  }
}

/** Signs an event with a detached JWS (producers, tests, the demo). */
export async function signEventJws(
  event: CloudEvent,
  key: VerifyKey,
  alg: JwsAlgorithm,
): Promise<CloudEvent> {
  const { [SIGNATURE_ATTRIBUTE]: _old, ...rest } = event;
  const jws = await new CompactSign(signingBytes(rest as CloudEvent)).setProtectedHeader({ alg }).sign(key);
  const [h, , s] = jws.split('.');
  return { ...(rest as CloudEvent), [SIGNATURE_ATTRIBUTE]: `${h}..${s}` };
}

/** The secret named by `secretEnv`, as bytes; refused when unset or shorter than 32 bytes. */
export function hmacSecretFromEnv(name: string, what: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const v = env[name];
  if (v === undefined || v === '') throw new ConfigError(`${what}: environment variable ${name} is not set`);
  const buf = Buffer.from(v, 'utf8');
  if (buf.length < MIN_HMAC_SECRET_BYTES) {
    buf.fill(0);
    throw new ConfigError(
      `${what}: environment variable ${name} holds fewer than ${MIN_HMAC_SECRET_BYTES} bytes (make one with: openssl rand -base64 48)`,
    );
  }
  return buf;
}

/** A PEM public key (SPKI) for one JWS algorithm, from a file relative to the config's folder. */
export async function publicKeyFromFile(
  file: string,
  alg: JwsAlgorithm,
  baseDir: string,
  what: string,
): Promise<CryptoKey> {
  const path = isAbsolute(file) ? file : resolve(baseDir, file);
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `${what}: cannot read public key ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`,
    );
  }
  try {
    return await importSPKI(pem, alg);
  } catch (e) {
    throw new ConfigError(`${what}: ${path} is not a PEM public key for ${alg}: ${(e as Error).message}`);
  }
}

/** The verifier `incidents.signing` describes. */
export async function eventVerifierFromConfig(
  config: RekeyConfig,
  baseDir: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EventVerifier> {
  const s: SigningConfig | undefined = config.incidents?.signing;
  if (!s) throw new ConfigError(`${config.file}: no incidents block, so no compromise event is accepted`);
  if (s.hmac) {
    const secret = hmacSecretFromEnv(s.hmac.secretEnv, 'incidents.signing.hmac', env);
    try {
      return new HmacEventSigner(secret);
    } finally {
      secret.fill(0);
    }
  }
  const { publicKeyFile, alg } = s.jws!;
  return new JwsEventVerifier(
    await publicKeyFromFile(publicKeyFile, alg, baseDir, 'incidents.signing.jws'),
    alg,
  );
}
