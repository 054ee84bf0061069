import type { IncomingMessage } from 'node:http';

/** An error the way AWS JSON protocols return it: `{"__type": ..., "message": ...}`. */
export class AwsError extends Error {
  readonly type: string;
  readonly status: number;
  /** Extra members some services add beside the message. */
  readonly extra: Record<string, unknown>;
  constructor(type: string, message: string, status = 400, extra: Record<string, unknown> = {}) {
    super(message);
    this.type = type;
    this.status = status;
    this.extra = extra;
  }
}

export const validationError = (message: string) => new AwsError('ValidationException', message);

/** Reads the whole body, refusing anything over `limit` bytes. */
export async function readBody(req: IncomingMessage, limit = 2 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit)
      throw new AwsError('RequestEntityTooLargeException', `request body over ${limit} bytes`, 413);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

export function parseJsonBody(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new AwsError(
      'SerializationException',
      'Start of structure or map found where not expected, or body is not JSON',
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new AwsError('SerializationException', 'request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

export interface SigV4Scope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

const SIGV4 =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

/**
 * Checks that the request carries a well-formed SigV4 Authorization header and returns its
 * credential scope. The signature itself is not verified: the emulator has no secret keys.
 */
export function checkSigV4(req: IncomingMessage): SigV4Scope {
  const auth = req.headers.authorization;
  if (auth === undefined || auth === '') {
    throw new AwsError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const m = SIGV4.exec(auth);
  if (!m) {
    throw new AwsError(
      'IncompleteSignatureException',
      "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters with AWS4-HMAC-SHA256",
    );
  }
  const signed = m[5]!.split(';');
  if (!signed.includes('host')) {
    throw new AwsError('IncompleteSignatureException', "'Host' must be a signed header");
  }
  if (req.headers['x-amz-date'] === undefined) {
    throw new AwsError(
      'IncompleteSignatureException',
      "Authorization header requires existence of 'X-Amz-Date'",
    );
  }
  return { accessKeyId: m[1]!, date: m[2]!, region: m[3]!, service: m[4]! };
}

// ---- member readers: they produce the "1 validation error detected" style messages AWS uses ----

export function optString(
  body: Record<string, unknown>,
  name: string,
  min = 1,
  max = 2048,
): string | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new AwsError('SerializationException', `${name} must be a string`);
  if (v.length < min || v.length > max) {
    throw validationError(
      `1 validation error detected: Value at '${lcFirst(name)}' failed to satisfy constraint: Member must have length between ${min} and ${max}`,
    );
  }
  return v;
}

export function reqString(body: Record<string, unknown>, name: string, min = 1, max = 2048): string {
  const v = optString(body, name, min, max);
  if (v === undefined) {
    throw validationError(
      `1 validation error detected: Value null at '${lcFirst(name)}' failed to satisfy constraint: Member must not be null`,
    );
  }
  return v;
}

export function optInt(
  body: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new AwsError('SerializationException', `${name} must be an integer`);
  }
  if (v < min || v > max) {
    throw validationError(
      `1 validation error detected: Value '${v}' at '${lcFirst(name)}' failed to satisfy constraint: Member must have value ${min === max ? `equal to ${min}` : `between ${min} and ${max}`}`,
    );
  }
  return v;
}

export function optBool(body: Record<string, unknown>, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new AwsError('SerializationException', `${name} must be a boolean`);
  return v;
}

export function optBlob(
  body: Record<string, unknown>,
  name: string,
  min: number,
  max: number,
): Buffer | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) {
    throw new AwsError('SerializationException', `${name} must be base64`);
  }
  const b = Buffer.from(v, 'base64');
  if (b.length < min || b.length > max) {
    throw validationError(
      `1 validation error detected: Value at '${lcFirst(name)}' failed to satisfy constraint: Member must have length between ${min} and ${max}`,
    );
  }
  return b;
}

export function optStringMap(
  body: Record<string, unknown>,
  name: string,
): Record<string, string> | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v))
    throw new AwsError('SerializationException', `${name} must be a map`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (typeof val !== 'string')
      throw new AwsError('SerializationException', `${name}.${k} must be a string`);
    out[k] = val;
  }
  return out;
}

export function optEnum<T extends string>(
  body: Record<string, unknown>,
  name: string,
  values: readonly T[],
): T | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw validationError(
      `1 validation error detected: Value '${String(v)}' at '${lcFirst(name)}' failed to satisfy constraint: Member must satisfy enum value set: [${values.join(', ')}]`,
    );
  }
  return v as T;
}

function lcFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

/** Epoch seconds with milliseconds, the timestamp format of the AWS JSON protocols. */
export function epoch(ms: number): number {
  return Math.round(ms) / 1000;
}

/** Opaque pagination markers: base64 of the position, so clients cannot build their own. */
export function encodeMarker(position: string): string {
  return Buffer.from(`m1:${position}`, 'utf8').toString('base64');
}

export function decodeMarker(marker: string): string {
  const text = Buffer.from(marker, 'base64').toString('utf8');
  if (!text.startsWith('m1:')) throw new AwsError('InvalidMarkerException', `Invalid marker: ${marker}`);
  return text.slice(3);
}

/** Paginates a sorted list by the `id` of its items. */
export function paginate<T>(
  items: T[],
  idOf: (t: T) => string,
  limit: number,
  marker: string | undefined,
): { page: T[]; truncated: boolean; next?: string } {
  let start = 0;
  if (marker !== undefined) {
    const after = decodeMarker(marker);
    const i = items.findIndex((t) => idOf(t) === after);
    // The item the marker names may have gone since (deleted key): resume after its sort position.
    start = i >= 0 ? i + 1 : items.findIndex((t) => idOf(t) > after);
    if (start < 0) start = items.length;
  }
  const page = items.slice(start, start + limit);
  const truncated = start + limit < items.length;
  return truncated
    ? { page, truncated, next: encodeMarker(idOf(page[page.length - 1]!)) }
    : { page, truncated };
}
