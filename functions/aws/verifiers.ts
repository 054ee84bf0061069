import { importSPKI } from 'jose';
import type { CloudEvent } from '../../shared/core/domain/compromiseEvent.js';
import { ConfigError } from '../../shared/core/errors.js';
import type { EventVerifier } from '../../shared/core/governance/signature.js';
import type { RekeyConfig, SigningConfig } from '../../shared/core/policy/types.js';
import type { Clock } from '../../shared/core/ports/Clock.js';
import { eventVerifierFromConfig, JwsEventVerifier } from '../../shared/governance/signing.js';
import {
  type ApproverTokenVerifier,
  JwtApproverVerifier,
  tokenVerifierFromConfig,
} from '../../shared/governance/tokens.js';

/**
 * Signature and token checks as the config describes them, for the functions: HMAC secrets come
 * from the environment (shared/governance), public keys from the compiled config, where the
 * build put them, so that no key file has to travel beside a bundle.
 */

/** The PEM the build carried for a `jws` block. */
async function publicKey(s: SigningConfig, publicKeys: Record<string, string>, field: string) {
  const { publicKeyFile, alg } = s.jws!;
  const pem = publicKeys[publicKeyFile];
  if (!pem)
    throw new ConfigError(`${field}: public key ${publicKeyFile} is not in the compiled config; build again`);
  return { key: await importSPKI(pem, alg), alg };
}

/** A verifier that accepts nothing: the use case refuses first, as `not_configured`. */
const NOTHING: EventVerifier = { scheme: 'hmac-sha256', verify: async (_e: CloudEvent) => false };

/** How `key.compromised` events are checked (`incidents.signing`). */
export async function compromiseVerifier(
  config: RekeyConfig,
  baseDir: string,
  publicKeys: Record<string, string>,
): Promise<EventVerifier> {
  const s = config.incidents?.signing;
  if (!s) return NOTHING;
  if (s.hmac) return eventVerifierFromConfig(config, baseDir);
  const { key, alg } = await publicKey(s, publicKeys, 'incidents.signing.jws');
  return new JwsEventVerifier(key, alg);
}

/** How approver tokens are checked (`approvals.tokens`). */
export async function approverVerifier(
  config: RekeyConfig,
  baseDir: string,
  publicKeys: Record<string, string>,
  clock: Clock,
): Promise<ApproverTokenVerifier> {
  const t = config.approvals?.tokens;
  if (!t?.jws) return tokenVerifierFromConfig(config, baseDir, clock);
  const { key, alg } = await publicKey(t, publicKeys, 'approvals.tokens.jws');
  return new JwtApproverVerifier(key, alg, clock);
}
