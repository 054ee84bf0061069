import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ValidationError } from '../../core/errors.js';
import type { WrapContext } from '../../core/ports/KeyProvider.js';

/**
 * The local KMS's two uses of AES-256-GCM:
 *  - sealing a key version's material under the master key (at rest in the keystore);
 *  - wrapping a DEK under a key version (what callers store).
 * Nothing here touches the keystore or logs; failures come back as null for the caller to
 * translate, so no detail of why authentication failed ever reaches a message.
 */
export const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ALG = 'aes-256-gcm';

/** First byte of every DEK ciphertext this provider writes. */
const DEK_FORMAT_V1 = 0x01;
const MAX_VERSION_ID_BYTES = 32;

const CHECK_PLAINTEXT = Buffer.from('rekey local keystore master key check', 'utf8');
const CHECK_AAD = Buffer.from('rekey-local-check|v1', 'utf8');

function seal(key: Buffer, plaintext: Uint8Array, aad: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv(ALG, key, iv, { authTagLength: TAG_BYTES });
  c.setAAD(aad);
  const body = c.update(plaintext);
  c.final();
  const tag = c.getAuthTag();
  return Buffer.concat([iv, tag, body]);
}

/** Opens iv|tag|body; null if it does not authenticate. The result is a fresh buffer. */
function open(key: Buffer, sealed: Uint8Array, aad: Buffer): Buffer | null {
  if (sealed.length < IV_BYTES + TAG_BYTES) return null;
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  return openParts(
    key,
    buf.subarray(0, IV_BYTES),
    buf.subarray(IV_BYTES, IV_BYTES + TAG_BYTES),
    buf.subarray(IV_BYTES + TAG_BYTES),
    aad,
  );
}

function openParts(key: Buffer, iv: Buffer, tag: Buffer, body: Buffer, aad: Buffer): Buffer | null {
  const d = createDecipheriv(ALG, key, iv, { authTagLength: TAG_BYTES });
  d.setAAD(aad);
  d.setAuthTag(tag);
  const out = d.update(body);
  try {
    d.final();
  } catch {
    // GCM releases plaintext before the tag is checked: wipe it.
    out.fill(0);
    return null;
  }
  return out;
}

function kekAad(name: string, version: string): Buffer {
  return Buffer.from(`rekey-local-kek|${name}|${version}`, 'utf8');
}

/** Encrypts a version's material under the master key for storage. */
export function sealMaterial(masterKey: Buffer, name: string, version: string, material: Buffer): Buffer {
  return seal(masterKey, material, kekAad(name, version));
}

/** Decrypts a version's stored material; null if it does not authenticate. */
export function openMaterial(
  masterKey: Buffer,
  name: string,
  version: string,
  sealed: Uint8Array,
): Buffer | null {
  return open(masterKey, sealed, kekAad(name, version));
}

/** A known constant sealed under the master key: lets a keystore detect the wrong master key up front. */
export function makeCheckValue(masterKey: Buffer): Buffer {
  return seal(masterKey, CHECK_PLAINTEXT, CHECK_AAD);
}

export function checkValueMatches(masterKey: Buffer, value: Uint8Array): boolean {
  const out = open(masterKey, value, CHECK_AAD);
  if (!out) return false;
  const ok = out.equals(CHECK_PLAINTEXT);
  out.fill(0);
  return ok;
}

/**
 * Canonical JSON of a wrap context: keys sorted by code unit, no whitespace. Built by hand
 * because JSON.stringify puts integer-like keys first whatever the insertion order.
 */
export function canonicalContext(ctx: WrapContext): string {
  if (ctx === null || typeof ctx !== 'object' || Array.isArray(ctx)) {
    throw new ValidationError('wrap context must be an object of string values');
  }
  const keys = Object.keys(ctx).sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = ctx[k];
    if (typeof v !== 'string') throw new ValidationError(`wrap context field "${k}" must be a string`);
    out += `${i === 0 ? '' : ','}${JSON.stringify(k)}:${JSON.stringify(v)}`;
  }
  return `${out}}`;
}

/**
 * The AADs of recent (key, version, context) triples. A re-wrap meets the same few contexts
 * (tenants, tables) over and over; canonicalising one costs more than the cipher's AAD pass.
 * Keyed by the context's plain JSON, so differently ordered spellings are separate entries
 * with the same canonical value. AADs are not secret.
 */
const AAD_MEMO_MAX = 4096;
const aadMemo = new Map<string, Buffer>();
/**
 * AADs by context object, for frozen contexts: a store that parses each distinct context
 * once hands out the same frozen object for every DEK that has it, and a frozen object of
 * strings cannot change, so its AAD per (key, version) is computed once.
 */
const aadOfFrozen = new WeakMap<WrapContext, Map<string, Map<string, Buffer>>>();

function dekAad(name: string, version: string, ctx: WrapContext): Buffer {
  if (!Object.isFrozen(ctx)) return dekAadOf(name, version, ctx);
  let byName = aadOfFrozen.get(ctx);
  if (byName === undefined) {
    byName = new Map();
    aadOfFrozen.set(ctx, byName);
  }
  let byVersion = byName.get(name);
  if (byVersion === undefined) {
    byVersion = new Map();
    byName.set(name, byVersion);
  }
  let aad = byVersion.get(version);
  if (aad === undefined) {
    aad = dekAadOf(name, version, ctx);
    byVersion.set(version, aad);
  }
  return aad;
}

function dekAadOf(name: string, version: string, ctx: WrapContext): Buffer {
  // Plain JSON drops what is not a string (undefined, functions): those go the checked way.
  for (const k in ctx) if (typeof ctx[k] !== 'string') canonicalContext(ctx);
  const key = `${name}\0${version}\0${JSON.stringify(ctx)}`;
  let aad = aadMemo.get(key);
  if (aad === undefined) {
    aad = Buffer.from(`rekey-local-dek|${name}|${version}|${canonicalContext(ctx)}`, 'utf8');
    if (aadMemo.size >= AAD_MEMO_MAX) aadMemo.clear();
    aadMemo.set(key, aad);
  }
  return aad;
}

/**
 * Wraps a DEK. Layout: format tag (1) | version id length (1) | version id (ASCII) | IV (12) |
 * GCM tag (16) | ciphertext.
 */
// IVs come from a pooled CSPRNG buffer: one randomBytes call per 512 IVs instead of one each.
// The bytes are the same CSPRNG output; each slice is copied out and used once.
const IV_POOL_IVS = 512;
let ivPool = Buffer.alloc(0);
let ivAt = 0;
function nextIv(): Buffer {
  if (ivAt + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_BYTES * IV_POOL_IVS);
    ivAt = 0;
  }
  const iv = Buffer.from(ivPool.subarray(ivAt, ivAt + IV_BYTES));
  ivAt += IV_BYTES;
  return iv;
}

export function wrapDek(
  kek: Buffer,
  name: string,
  version: string,
  dek: Uint8Array,
  ctx: WrapContext,
): Buffer {
  const vid = Buffer.from(version, 'ascii');
  if (vid.length === 0 || vid.length > MAX_VERSION_ID_BYTES)
    throw new Error(`bad version id length ${vid.length}`);
  const iv = nextIv();
  const c = createCipheriv(ALG, kek, iv, { authTagLength: TAG_BYTES });
  c.setAAD(dekAad(name, version, ctx));
  const body = c.update(dek);
  c.final();
  const tag = c.getAuthTag();
  const out = Buffer.allocUnsafe(2 + vid.length + IV_BYTES + TAG_BYTES + body.length);
  let at = 0;
  out[at++] = DEK_FORMAT_V1;
  out[at++] = vid.length;
  at += vid.copy(out, at);
  at += iv.copy(out, at);
  at += tag.copy(out, at);
  body.copy(out, at);
  return out;
}

export interface ParsedDek {
  version: string;
  iv: Buffer;
  tag: Buffer;
  body: Buffer;
}

/** Parses the layout written by wrapDek; null if it is not one. */
export function parseWrappedDek(ct: Uint8Array): ParsedDek | null {
  if (!(ct instanceof Uint8Array) || ct.length < 2) return null;
  const buf = Buffer.from(ct.buffer, ct.byteOffset, ct.byteLength);
  if (buf[0] !== DEK_FORMAT_V1) return null;
  const vlen = buf[1]!;
  if (vlen === 0 || vlen > MAX_VERSION_ID_BYTES) return null;
  const ivAt = 2 + vlen;
  const bodyAt = ivAt + IV_BYTES + TAG_BYTES;
  if (buf.length <= bodyAt) return null;
  return {
    version: buf.toString('latin1', 2, ivAt),
    iv: buf.subarray(ivAt, ivAt + IV_BYTES),
    tag: buf.subarray(ivAt + IV_BYTES, bodyAt),
    body: buf.subarray(bodyAt),
  };
}

/** Unwraps a parsed DEK; null if it does not authenticate (wrong key, context or bytes). */
export function unwrapDek(kek: Buffer, name: string, parsed: ParsedDek, ctx: WrapContext): Buffer | null {
  return openParts(kek, parsed.iv, parsed.tag, parsed.body, dekAad(name, parsed.version, ctx));
}
