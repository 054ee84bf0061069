import { gunzipSync, gzipSync } from 'node:zlib';
import { IntegrityError, ValidationError } from '../../core/errors.js';

/**
 * Table Storage keys may not contain `/ \ # ?` or control characters (U+0000-U+001F,
 * U+007F-U+009F) and hold at most 1 KiB of UTF-16 (512 characters). rekey's ids can contain
 * anything, so those characters, and `~` (the escape) and `%` (which some URL layers decode),
 * are written as `~XX`. Every other id keeps its own text and its own order.
 */
const SPECIAL = new Set(['#', '/', '\\', '?', '~', '%']);
export const MAX_KEY_CHARS = 512;

/** True for a character a key may not hold as it is. */
export function needsEscape(c: string): boolean {
  const code = c.charCodeAt(0);
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f) || SPECIAL.has(c);
}

export function escapeKey(text: string): string {
  let out = '';
  for (const c of text) out += needsEscape(c) ? `~${c.charCodeAt(0).toString(16).padStart(2, '0')}` : c;
  return out;
}

export function unescapeKey(key: string): string {
  return key.replace(/~([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
}

/** A key built from fixed parts and escaped ids, refused when it exceeds the service limit. */
export function key(what: string, ...parts: string[]): string {
  const k = parts.join(':');
  if (k.length > MAX_KEY_CHARS) {
    throw new ValidationError(
      `${what}: too long for a Table Storage key (${k.length} characters after escaping, at most ${MAX_KEY_CHARS})`,
    );
  }
  return k;
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');
const MAX_MS = 9_999_999_999_999;
/** Epoch ms as a key that sorts newest first (Table Storage only reads in ascending order). */
export const newestFirstKey = (ms: number) => pad(MAX_MS - ms, 13);
export const seqKey = (seq: number) => pad(seq, 16);
export const indexKey = (i: number) => pad(i, 10);

/**
 * Bodies are JSON, gzipped, cut into binary properties `b00`, `b01`... A binary property holds
 * at most 64 KiB and an entity at most 1 MiB. Binary travels base64-encoded (4/3 larger) and
 * emulators measure the request rather than the stored entity, so one entity carries at most
 * 11 chunks of 64,000 bytes (~940 KB on the wire); larger bodies go over several entities.
 */
export const CHUNK_BYTES = 64_000;
export const CHUNKS_PER_ENTITY = 11;
export const ENTITY_BODY_BYTES = CHUNK_BYTES * CHUNKS_PER_ENTITY;

const chunkName = (i: number) => `b${pad(i, 2)}`;

export function gzipJson(value: unknown): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(value), 'utf8'));
}

/** Properties holding `packed` (at most ENTITY_BODY_BYTES). */
export function chunkProps(packed: Buffer): Record<string, Uint8Array | number> {
  if (packed.length > ENTITY_BODY_BYTES) {
    throw new ValidationError(`body of ${packed.length} bytes does not fit one entity`);
  }
  const props: Record<string, Uint8Array | number> = {};
  let n = 0;
  for (let i = 0; i < packed.length; i += CHUNK_BYTES) {
    props[chunkName(n++)] = packed.subarray(i, i + CHUNK_BYTES);
  }
  props.chunks = n;
  return props;
}

export function readChunks(entity: Record<string, unknown>, where: string): Buffer {
  const n = Number(entity.chunks);
  if (!Number.isInteger(n) || n < 0 || n > CHUNKS_PER_ENTITY) {
    throw new IntegrityError(`${where}: stored entity has no valid chunk count`);
  }
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const c = entity[chunkName(i)];
    if (!(c instanceof Uint8Array)) throw new IntegrityError(`${where}: chunk ${i} of ${n} is missing`);
    parts.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  }
  return Buffer.concat(parts);
}

export function gunzipJson<T>(packed: Buffer, where: string): T {
  let text: string;
  try {
    text = gunzipSync(packed).toString('utf8');
  } catch (e) {
    throw new IntegrityError(`${where}: stored body does not decompress`, { cause: e });
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new IntegrityError(`${where}: stored body is not JSON`, { cause: e });
  }
}

/** A small body kept in one entity (jobs, action records, records, audit details). */
export function packSmall(value: unknown, what: string): Record<string, Uint8Array | number> {
  const packed = gzipJson(value);
  if (packed.length > ENTITY_BODY_BYTES) {
    throw new ValidationError(
      `${what}: body is ${packed.length} bytes compressed, more than one entity holds (${ENTITY_BODY_BYTES})`,
    );
  }
  return chunkProps(packed);
}

export function unpackSmall<T>(entity: Record<string, unknown>, where: string): T {
  return gunzipJson<T>(readChunks(entity, where), where);
}
