import { createPublicKey, randomBytes } from 'node:crypto';
import type { protos } from '@google-cloud/kms';
import { ProviderError } from '../../core/errors.js';

type IImportJob = protos.google.cloud.kms.v1.IImportJob;

/** RSA wrapping key sizes Cloud KMS offers for import jobs. */
export type ImportRsaBits = 3072 | 4096;

/**
 * The import method for rekey's `rsa-aes-kwp-sha1`: RSA-OAEP with SHA-1 (and MGF1-SHA-1) of an
 * ephemeral AES-256 key, then RFC 5649 of the material, which is PKCS#11 CKM_RSA_AES_KEY_WRAP.
 */
export function importMethodFor(
  bits: ImportRsaBits,
): 'RSA_OAEP_3072_SHA1_AES_256' | 'RSA_OAEP_4096_SHA1_AES_256' {
  return bits === 4096 ? 'RSA_OAEP_4096_SHA1_AES_256' : 'RSA_OAEP_3072_SHA1_AES_256';
}

/** Import jobs closer than this to expiry are not reused: the material must still arrive in time. */
export const JOB_REUSE_MARGIN_MS = 3_600_000;

const JOB_NAME =
  /^projects\/([a-z][a-z0-9-]{4,28}[a-z0-9]|\d{1,19})\/locations\/([a-z0-9-]{1,63})\/keyRings\/([A-Za-z0-9_-]{1,63})\/importJobs\/([A-Za-z0-9_-]{1,63})$/;

export function parseImportJobName(
  name: string,
): { project: string; location: string; keyRing: string; id: string } | null {
  const m = JOB_NAME.exec(name);
  return m ? { project: m[1]!, location: m[2]!, keyRing: m[3]!, id: m[4]! } : null;
}

/**
 * A fresh import job id: `rekey-<method>-<protection>-<UTC stamp>-<4 hex>`, so the jobs rekey
 * made are recognisable in a key ring and never collide.
 */
export function newImportJobId(method: string, protection: string, now: Date): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'z')
    .toLowerCase();
  return `rekey-${method.toLowerCase().replace(/_/g, '-')}-${protection.toLowerCase()}-${stamp}-${randomBytes(2).toString('hex')}`;
}

/** Milliseconds of a protobuf Timestamp (seconds may arrive as a string or a Long). */
export function timestampMs(
  t: { seconds?: unknown; nanos?: number | null } | null | undefined,
): number | null {
  if (!t || t.seconds === undefined || t.seconds === null) return null;
  const s = Number(typeof t.seconds === 'object' ? String(t.seconds) : t.seconds);
  if (!Number.isFinite(s)) return null;
  return s * 1000 + Math.floor((t.nanos ?? 0) / 1_000_000);
}

/** Whether a listed job can take an import of `method` at `protection` for at least the margin. */
export function reusable(job: IImportJob, method: string, protection: string, nowMs: number): boolean {
  const expire = timestampMs(job.expireTime);
  return (
    String(job.state) === 'ACTIVE' &&
    String(job.importMethod) === method &&
    String(job.protectionLevel) === protection &&
    Boolean(job.publicKey?.pem) &&
    expire !== null &&
    expire - nowMs > JOB_REUSE_MARGIN_MS
  );
}

/**
 * The wrapping key of an ACTIVE job as SubjectPublicKeyInfo DER, checked to be an RSA key of
 * the size its method names.
 */
export function wrappingKeyDer(providerId: string, job: IImportJob, bits: number): Uint8Array {
  const pem = job.publicKey?.pem;
  if (!pem) {
    throw new ProviderError(
      providerId,
      'MalformedResponse',
      `import job ${job.name}: no public key in the response`,
    );
  }
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new ProviderError(
      providerId,
      'MalformedResponse',
      `import job ${job.name}: the public key is not a PEM SubjectPublicKeyInfo`,
      { cause: e },
    );
  }
  if (key.asymmetricKeyType !== 'rsa' || key.asymmetricKeyDetails?.modulusLength !== bits) {
    throw new ProviderError(
      providerId,
      'MalformedResponse',
      `import job ${job.name}: expected a ${bits}-bit RSA wrapping key, got ${key.asymmetricKeyType} ${key.asymmetricKeyDetails?.modulusLength ?? '?'}`,
    );
  }
  return new Uint8Array(key.export({ type: 'spki', format: 'der' }));
}

/** Polls `read` until `done` holds, backing off from 50 ms to 2 s, for at most `limitMs`. */
export async function pollUntil<T>(
  read: () => Promise<T>,
  done: (t: T) => boolean,
  limitMs: number,
): Promise<{ value: T; done: boolean }> {
  const started = Date.now();
  let delay = 50;
  for (;;) {
    const value = await read();
    if (done(value)) return { value, done: true };
    if (Date.now() - started + delay > limitMs) return { value, done: false };
    await new Promise((res) => setTimeout(res, delay));
    delay = Math.min(delay * 2, 2000);
  }
}
