import { constants, createDecipheriv, generateKeyPair, type KeyObject, privateDecrypt } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { SimClock } from '../aws/clock.js';
import { GrpcError, invalid, notFound, unimplemented } from './errors.js';
import type { ImportJobName } from './names.js';

// biome-ignore lint/suspicious/noExplicitAny: proto-loader messages are untyped
type Msg = Record<string, any>;

/**
 * The RSA-based import methods of Cloud KMS: the wrapping key's size, the OAEP hash (MGF1 uses
 * the same), and whether the material travels under an ephemeral AES-256 key (RFC 5649) or
 * directly under RSA-OAEP.
 */
export const IMPORT_METHODS: Record<string, { bits: number; hash: 'sha1' | 'sha256'; hybrid: boolean }> = {
  RSA_OAEP_3072_SHA1_AES_256: { bits: 3072, hash: 'sha1', hybrid: true },
  RSA_OAEP_4096_SHA1_AES_256: { bits: 4096, hash: 'sha1', hybrid: true },
  RSA_OAEP_3072_SHA256_AES_256: { bits: 3072, hash: 'sha256', hybrid: true },
  RSA_OAEP_4096_SHA256_AES_256: { bits: 4096, hash: 'sha256', hybrid: true },
  RSA_OAEP_3072_SHA256: { bits: 3072, hash: 'sha256', hybrid: false },
  RSA_OAEP_4096_SHA256: { bits: 4096, hash: 'sha256', hybrid: false },
};

/** An import job accepts imports for three days after it is created. */
export const IMPORT_JOB_LIFETIME_MS = 3 * 86_400_000;
const KWP_IV = Buffer.from('A65959A6', 'hex');
const EPHEMERAL_BYTES = 32;

export type ImportJobState = 'PENDING_GENERATION' | 'ACTIVE' | 'EXPIRED';

export interface ImportJobRec {
  name: string;
  ringName: string;
  method: string;
  protection: string;
  createMs: number;
  expireMs: number;
  /** Set once the wrapping key pair exists. */
  generateMs?: number;
  privateKey?: KeyObject;
  publicPem?: string;
}

/** What unwrapping a wrapped key gave: the material, or why the import failed. */
export type Unwrapped = { material: Buffer } | { failure: string };

/** Reason recorded on a version whose material could not be recovered. */
export const UNWRAP_FAILED =
  'The wrapped key material could not be unwrapped with the import job key, or is not formatted as the algorithm requires.';

/**
 * Import jobs of every key ring. The wrapping key pair is generated in the background, so a
 * new job is PENDING_GENERATION until it exists (as in the service, where generation takes a
 * moment, longer for HSM jobs), then ACTIVE until it expires on the emulator's clock.
 */
export class ImportJobs {
  private jobs = new Map<string, ImportJobRec>();
  /** Bumped by reset(), so a key pair finished after a reset lands nowhere. */
  private epoch = 0;
  /** While set, finished key pairs wait here: jobs stay PENDING_GENERATION (tests). */
  private held: (() => void)[] | null = null;

  constructor(private readonly clock: SimClock) {}

  reset(): void {
    this.epoch += 1;
    this.jobs.clear();
    this.held = null;
  }

  /** Keeps new jobs PENDING_GENERATION until called again with false. */
  holdGeneration(on: boolean): void {
    if (on) {
      this.held ??= [];
      return;
    }
    const waiting = this.held ?? [];
    this.held = null;
    for (const apply of waiting) apply();
  }

  create(ringName: string, id: string, job: Msg | null): ImportJobRec {
    const name = `${ringName}/importJobs/${id}`;
    if (this.jobs.has(name)) throw new GrpcError(status.ALREADY_EXISTS, `ImportJob ${name} already exists.`);
    const j: Msg = job ?? {};
    const method = String(j.importMethod ?? 'IMPORT_METHOD_UNSPECIFIED');
    if (method === 'IMPORT_METHOD_UNSPECIFIED') throw invalid('import_job.import_method is required');
    const spec = IMPORT_METHODS[method];
    if (!spec) throw unimplemented(`import_job.import_method ${method}`);
    const pl = String(j.protectionLevel ?? 'PROTECTION_LEVEL_UNSPECIFIED');
    if (pl === 'PROTECTION_LEVEL_UNSPECIFIED') throw invalid('import_job.protection_level is required');
    if (pl !== 'SOFTWARE' && pl !== 'HSM')
      throw invalid(`import_job.protection_level ${pl} is not supported for import jobs (SOFTWARE or HSM)`);
    if (j.cryptoKeyBackend) throw unimplemented('import_job.crypto_key_backend');
    const now = this.clock.nowMs();
    const rec: ImportJobRec = {
      name,
      ringName,
      method,
      protection: pl,
      createMs: now,
      expireMs: now + IMPORT_JOB_LIFETIME_MS,
    };
    this.jobs.set(name, rec);
    const epoch = this.epoch;
    generateKeyPair('rsa', { modulusLength: spec.bits }, (err, publicKey, privateKey) => {
      const apply = () => {
        if (err || epoch !== this.epoch || this.jobs.get(name) !== rec) return;
        if (this.state(rec) === 'EXPIRED') return;
        rec.privateKey = privateKey;
        rec.publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
        rec.generateMs = this.clock.nowMs();
      };
      if (this.held) this.held.push(apply);
      else apply();
    });
    return rec;
  }

  get(n: ImportJobName): ImportJobRec {
    const j = this.jobs.get(n.name);
    if (!j) throw notFound(`ImportJob ${n.name} not found.`);
    return j;
  }

  inRing(ringName: string): ImportJobRec[] {
    return [...this.jobs.values()].filter((j) => j.ringName === ringName);
  }

  state(j: ImportJobRec): ImportJobState {
    if (this.clock.nowMs() >= j.expireMs) return 'EXPIRED';
    return j.privateKey ? 'ACTIVE' : 'PENDING_GENERATION';
  }

  /** Expired jobs lose their private key: nothing wrapped for them can be imported any more. */
  tick(): void {
    for (const j of this.jobs.values()) {
      if (j.privateKey && this.state(j) === 'EXPIRED') j.privateKey = undefined;
    }
  }

  message(j: ImportJobRec): Msg {
    const state = this.state(j);
    return {
      name: j.name,
      importMethod: j.method,
      protectionLevel: j.protection,
      createTime: ts(j.createMs),
      generateTime: j.generateMs === undefined ? null : ts(j.generateMs),
      expireTime: ts(j.expireMs),
      expireEventTime: state === 'EXPIRED' ? ts(j.expireMs) : null,
      state,
      publicKey: state === 'ACTIVE' ? { pem: j.publicPem } : null,
      // Deviation: HSM jobs carry an attestation statement in the service; the emulator has none.
      attestation: null,
    };
  }

  /**
   * The length checks the service makes before it unwraps anything; a failure rejects the
   * request (INVALID_ARGUMENT) and creates no version. `materialBytes` is what the target
   * algorithm takes (32 for GOOGLE_SYMMETRIC_ENCRYPTION).
   */
  checkLength(j: ImportJobRec, wrapped: Buffer, materialBytes: number): void {
    const spec = IMPORT_METHODS[j.method]!;
    const rsa = spec.bits / 8;
    if (!spec.hybrid) {
      if (wrapped.length !== rsa) throw invalid('Wrapped key has invalid length');
      return;
    }
    if (wrapped.length < rsa + 16) throw invalid('Wrapped key is too short');
    if ((wrapped.length - rsa) % 8 !== 0) throw invalid('Wrapped key does not consist of 64-bit blocks');
    if (wrapped.length - rsa !== kwpLength(materialBytes)) throw invalid('Wrapped key has invalid length');
  }

  /** Recovers the material inside the job's wrapping key, or says why it cannot. */
  unwrap(j: ImportJobRec, wrapped: Buffer, materialBytes: number): Unwrapped {
    const spec = IMPORT_METHODS[j.method]!;
    const key = j.privateKey!;
    const rsa = spec.bits / 8;
    const oaep = { key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: spec.hash };
    let material: Buffer;
    try {
      if (!spec.hybrid) material = privateDecrypt(oaep, wrapped);
      else {
        const ephemeral = privateDecrypt(oaep, wrapped.subarray(0, rsa));
        try {
          if (ephemeral.length !== EPHEMERAL_BYTES) return { failure: UNWRAP_FAILED };
          const d = createDecipheriv('id-aes256-wrap-pad', ephemeral, KWP_IV);
          material = Buffer.concat([d.update(wrapped.subarray(rsa)), d.final()]);
        } finally {
          ephemeral.fill(0);
        }
      }
    } catch {
      return { failure: UNWRAP_FAILED };
    }
    if (material.length !== materialBytes) {
      material.fill(0);
      return { failure: UNWRAP_FAILED };
    }
    return { material };
  }
}

/** Length of an RFC 5649 wrap of `n` bytes: padded to 8, plus the 8-byte integrity block. */
function kwpLength(n: number): number {
  return Math.ceil(n / 8) * 8 + 8;
}

function ts(ms: number): { seconds: string; nanos: number } {
  const s = Math.floor(ms / 1000);
  return { seconds: String(s), nanos: (ms - s * 1000) * 1_000_000 };
}
