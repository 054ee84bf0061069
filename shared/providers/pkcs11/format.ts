import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { IntegrityError, ProviderError, ValidationError } from '../../core/errors.js';
import type { WrapContext } from '../../core/ports/KeyProvider.js';
import { PROVIDER } from './errors.js';

/**
 * Byte formats of the PKCS#11 provider: object ids on the token, the metadata object, the
 * plaintext that is wrapped, and the wrapped ciphertext. See docs/pkcs11.md.
 */

/** CKA_APPLICATION of the metadata (CKO_DATA) objects. */
export const APPLICATION = 'rekey';

/** Key family names: what CKA_LABEL holds, and what the ref's `object=` names. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new ValidationError(
      `pkcs11 key name "${name}" must be 1-100 of letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
}

/** CKA_ID of version `v` of key `name`: the label bytes, 0x00, the decimal version number. */
export function versionId(name: string, v: string): Buffer {
  return Buffer.concat([Buffer.from(name, 'utf8'), Buffer.from([0]), Buffer.from(v, 'ascii')]);
}

// ---- metadata -------------------------------------------------------------------------------

export interface VersionMeta {
  id: string;
  state: 'enabled' | 'disabled' | 'destroy_scheduled' | 'destroyed';
  createdAt: string;
  destroyAt?: string;
  compromised?: boolean;
}

export interface FamilyMeta {
  format: 'rekey.pkcs11/1';
  /** Generation: each write creates a new object with gen + 1, then destroys the older ones. */
  gen: number;
  name: string;
  createdAt: string;
  primary: string;
  tags: Record<string, string>;
  versions: VersionMeta[];
}

export function encodeMeta(m: FamilyMeta): Buffer {
  return Buffer.from(JSON.stringify(m), 'utf8');
}

const VERSION_ID = /^[1-9]\d{0,8}$/;
const STATES: ReadonlySet<unknown> = new Set(['enabled', 'disabled', 'destroy_scheduled', 'destroyed']);

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A version entry, or null. Written out rather than as a schema: every process that opens the
 * token reads metadata, and the schema library would be most of a worker process's start-up.
 * Unknown fields are dropped.
 */
function versionOf(v: unknown): VersionMeta | null {
  if (!isObject(v)) return null;
  const { id, state, createdAt, destroyAt, compromised } = v;
  if (typeof id !== 'string' || !VERSION_ID.test(id) || !STATES.has(state) || typeof createdAt !== 'string')
    return null;
  if (destroyAt !== undefined && typeof destroyAt !== 'string') return null;
  if (compromised !== undefined && typeof compromised !== 'boolean') return null;
  return {
    id,
    state: state as VersionMeta['state'],
    createdAt,
    ...(destroyAt !== undefined ? { destroyAt } : {}),
    ...(compromised !== undefined ? { compromised } : {}),
  };
}

/** The metadata as written by encodeMeta, or null; unknown fields are dropped. */
function metaOf(m: unknown): FamilyMeta | null {
  if (!isObject(m) || m.format !== 'rekey.pkcs11/1') return null;
  const { gen, name, createdAt, primary, tags, versions } = m;
  if (typeof gen !== 'number' || !Number.isSafeInteger(gen) || gen < 0) return null;
  if (typeof name !== 'string' || typeof createdAt !== 'string' || typeof primary !== 'string') return null;
  if (!isObject(tags) || Object.values(tags).some((t) => typeof t !== 'string')) return null;
  if (!Array.isArray(versions) || versions.length === 0) return null;
  const out: VersionMeta[] = [];
  for (const v of versions) {
    const checked = versionOf(v);
    if (!checked) return null;
    out.push(checked);
  }
  return {
    format: 'rekey.pkcs11/1',
    gen,
    name,
    createdAt,
    primary,
    tags: { ...(tags as Record<string, string>) },
    versions: out,
  };
}

export function decodeMeta(name: string, raw: Buffer): FamilyMeta {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw new IntegrityError(`pkcs11 metadata object of key "${name}" is not JSON`, { cause: e });
  }
  const meta = metaOf(parsed);
  if (!meta || meta.name !== name) {
    throw new IntegrityError(`pkcs11 metadata object of key "${name}" is not valid rekey metadata`);
  }
  return meta;
}

// ---- wrap context ---------------------------------------------------------------------------

/** Unambiguous, order-independent encoding: sorted entries, each part length-prefixed. */
function encodeContext(ctx: WrapContext): Buffer {
  const parts: Buffer[] = [];
  for (const k of Object.keys(ctx).sort()) {
    const v = ctx[k];
    if (typeof v !== 'string') throw new ValidationError(`wrap context entry "${k}" must be a string`);
    for (const s of [k, v]) {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      parts.push(len, b);
    }
  }
  return Buffer.concat(parts);
}

function digest(label: string, ctx: WrapContext): Buffer {
  return createHash('sha256')
    .update(label)
    .update(Buffer.from([0]))
    .update(encodeContext(ctx))
    .digest();
}

/**
 * Data for CKM_AES_CBC_ENCRYPT_DATA: the per-context wrapping key is derived inside the HSM
 * from the version key and this digest, so a wrong context means a wrong key.
 */
export function deriveData(ctx: WrapContext): Buffer {
  return digest('rekey/pkcs11/derive/v1', ctx);
}

/** A second, independent check of the context, made when the payload is read on unwrap. */
function contextTag(ctx: WrapContext): Buffer {
  return digest('rekey/pkcs11/context/v1', ctx).subarray(0, 16);
}

// ---- wrapped payload ------------------------------------------------------------------------

const MAGIC = Buffer.from([0x52, 0x4b, 0x01]); // "RK", payload format 1
const TAG = 16;
const SALT = 16;
export const MAX_DEK = 1024;

/**
 * What goes into the HSM as the secret that is wrapped:
 *   magic(3) | dekLen(2) | dek | contextTag(16) | salt(16) | zeros to a multiple of 8.
 * The salt makes two wraps of one DEK differ (AES key wrap is deterministic). The payload
 * is a multiple of 8 bytes so no module ever pads it (SoftHSM 2.6 returns the padding on
 * unwrap instead of removing it); the length field says where the DEK ends.
 */
export function buildPayload(dek: Uint8Array, ctx: WrapContext): Buffer {
  if (dek.length === 0 || dek.length > MAX_DEK) {
    throw new ValidationError(`DEK must be 1-${MAX_DEK} bytes, got ${dek.length}`);
  }
  const body = MAGIC.length + 2 + dek.length + TAG + SALT;
  const out = Buffer.alloc(Math.ceil(body / 8) * 8);
  MAGIC.copy(out, 0);
  out.writeUInt16BE(dek.length, MAGIC.length);
  out.set(dek, MAGIC.length + 2);
  contextTag(ctx).copy(out, MAGIC.length + 2 + dek.length);
  randomBytes(SALT).copy(out, MAGIC.length + 2 + dek.length + TAG);
  return out;
}

/** Checks the payload read back from the HSM and returns a fresh copy of the DEK. */
export function openPayload(payload: Buffer, ctx: WrapContext, what: string): Uint8Array {
  const bad = (why: string) =>
    new ProviderError(PROVIDER, 'CKR_WRAPPED_KEY_INVALID', `${what}: wrapped DEK is not valid (${why})`);
  if (
    payload.length < MAGIC.length + 2 + 1 + TAG + SALT ||
    !payload.subarray(0, MAGIC.length).equals(MAGIC)
  ) {
    throw bad('unknown payload format');
  }
  const len = payload.readUInt16BE(MAGIC.length);
  const tagAt = MAGIC.length + 2 + len;
  const end = tagAt + TAG + SALT;
  if (len === 0 || end > payload.length || payload.length - end >= 8) throw bad('bad length');
  for (let i = end; i < payload.length; i++) if (payload[i] !== 0) throw bad('bad padding');
  if (!timingSafeEqual(payload.subarray(tagAt, tagAt + TAG), contextTag(ctx))) {
    throw bad('the wrap context does not match');
  }
  return Uint8Array.from(payload.subarray(MAGIC.length + 2, tagAt));
}

const CT_FORMAT = 0x01;

/** Bytes a ciphertext adds in front of the AES key wrap output (the format byte). */
export const CT_HEADER = 1;

/**
 * Turns `buf[at]` and the `wrappedLen` bytes of key wrap output written after it into a
 * ciphertext, and returns a view of it: lets a batch write every output into one buffer.
 */
export function ciphertextAt(buf: Buffer, at: number, wrappedLen: number): Uint8Array {
  buf[at] = CT_FORMAT;
  return buf.subarray(at, at + CT_HEADER + wrappedLen);
}

/** Ciphertext as stored by the application: format byte | AES key wrap output. */
export function encodeCiphertext(wrapped: Buffer): Uint8Array {
  // From Node's Buffer pool: a ciphertext is not secret, and one small allocation per DEK from
  // the C heap (which SoftHSM also allocates from for every call) costs a re-wrap dearly.
  const out = Buffer.allocUnsafe(1 + wrapped.length);
  out[0] = CT_FORMAT;
  wrapped.copy(out, 1);
  return out;
}

export function decodeCiphertext(ct: Uint8Array, what: string): Buffer {
  // RFC 5649 output is a multiple of 8 bytes, at least 16.
  if (ct.length < 17 || ct[0] !== CT_FORMAT || (ct.length - 1) % 8 !== 0) {
    throw new ProviderError(PROVIDER, 'CKR_WRAPPED_KEY_LEN_RANGE', `${what}: not a rekey PKCS#11 ciphertext`);
  }
  // A view, not a copy: the module only reads it.
  return Buffer.from(ct.buffer, ct.byteOffset + 1, ct.length - 1);
}
