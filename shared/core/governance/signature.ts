import { createHmac, timingSafeEqual } from 'node:crypto';
import { type CloudEvent, SIGNATURE_ATTRIBUTE, signingBytes } from '../domain/compromiseEvent.js';
import { ValidationError } from '../errors.js';

/**
 * Checks the signature a CloudEvent carries in its `rekeysignature` attribute. A bad, missing or
 * malformed signature is `false`, never a throw, so callers refuse every forgery the same way.
 */
export interface EventVerifier {
  readonly scheme: 'hmac-sha256' | 'jws';
  verify(event: CloudEvent): Promise<boolean>;
}

/** At least as many bytes as the HMAC-SHA256 output, so the secret is not the weak part. */
export const MIN_HMAC_SECRET_BYTES = 32;

function base64url(bytes: Uint8Array): string {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * HMAC-SHA256 over the event's signing bytes (docs/governance.md); the attribute holds the
 * 32-byte MAC in unpadded base64url (43 characters). The secret is copied in and zeroed by
 * destroy(); it is never logged.
 */
export class HmacEventSigner implements EventVerifier {
  readonly scheme = 'hmac-sha256' as const;
  private readonly secret: Uint8Array;

  constructor(secret: Uint8Array) {
    if (secret.length < MIN_HMAC_SECRET_BYTES)
      throw new ValidationError(`an HMAC secret must be at least ${MIN_HMAC_SECRET_BYTES} bytes`);
    this.secret = new Uint8Array(secret);
  }

  mac(event: CloudEvent): string {
    return base64url(createHmac('sha256', this.secret).update(signingBytes(event)).digest());
  }

  /** The event with its signature attribute set (for producers and tests). */
  sign(event: CloudEvent): CloudEvent {
    const { [SIGNATURE_ATTRIBUTE]: _old, ...rest } = event;
    return { ...(rest as CloudEvent), [SIGNATURE_ATTRIBUTE]: this.mac(rest as CloudEvent) };
  }

  async verify(event: CloudEvent): Promise<boolean> {
    const given = event[SIGNATURE_ATTRIBUTE];
    if (typeof given !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(given)) return false;
    const want = new TextEncoder().encode(this.mac(event));
    const got = new TextEncoder().encode(given);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  destroy(): void {
    this.secret.fill(0);
  }
}
