import { ValidationError } from '../errors.js';
import type { RewrapShardMessage } from '../ports/WorkQueue.js';

/**
 * The check every worker runs on a queue message before touching anything. Written out rather
 * than as a schema: it is the only validation a re-wrap worker needs at run time, and the
 * serverless bundles stay free of the schema library this way.
 */
const FIELDS = new Set(['kind', 'jobId', 'providerId', 'verify', 'batchSize', 'ratePerSecond']);

/** Checks a queue message body; a malformed one is refused with the field that is wrong. */
export function parseShardMessage(body: unknown): RewrapShardMessage {
  let value = body;
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body);
    } catch {
      throw new ValidationError('re-wrap message: body is not JSON');
    }
  }
  const fail = (at: string, message: string): never => {
    throw new ValidationError(`re-wrap message: ${at}: ${message}`);
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return fail('(message)', `expected an object, got ${describe(value)}`);
  }
  const m = value as Record<string, unknown>;
  if (m.kind !== 'rewrap-shard') fail('kind', `expected "rewrap-shard", got ${describe(m.kind)}`);
  text(m.jobId, 512, 'jobId', fail);
  text(m.providerId, 128, 'providerId', fail);
  let verify = m.verify as RewrapShardMessage['verify'];
  if (verify !== 'full' && verify !== 'none') {
    if (verify === null || typeof verify !== 'object' || Array.isArray(verify)) {
      fail('verify', `expected "full", "none" or { sample }, got ${describe(verify)}`);
    }
    const v = verify as Record<string, unknown>;
    const extra = Object.keys(v).find((k) => k !== 'sample');
    if (extra !== undefined) fail('verify', `unknown field "${extra}"`);
    if (typeof v.sample !== 'number' || !(v.sample > 0 && v.sample <= 1)) {
      fail('verify.sample', `expected a number above 0 and at most 1, got ${describe(v.sample)}`);
    }
    verify = { sample: v.sample as number };
  }
  const batch = m.batchSize;
  if (typeof batch !== 'number' || !Number.isInteger(batch) || batch < 1 || batch > 10_000) {
    fail('batchSize', `expected an integer from 1 to 10000, got ${describe(batch)}`);
  }
  if (m.ratePerSecond !== undefined) {
    const r = m.ratePerSecond;
    if (typeof r !== 'number' || !Number.isFinite(r) || r <= 0) {
      fail('ratePerSecond', `expected a positive number, got ${describe(r)}`);
    }
  }
  const unknown = Object.keys(m).find((k) => !FIELDS.has(k));
  if (unknown !== undefined) fail('(message)', `unknown field "${unknown.slice(0, 64)}"`);
  return {
    kind: 'rewrap-shard',
    jobId: m.jobId as string,
    providerId: m.providerId as string,
    verify,
    batchSize: batch as number,
    ...(m.ratePerSecond !== undefined ? { ratePerSecond: m.ratePerSecond as number } : {}),
  };
}

function text(v: unknown, max: number, at: string, fail: (at: string, message: string) => never): void {
  if (typeof v !== 'string' || v.length < 1 || v.length > max) {
    fail(at, `expected a string of 1 to ${max} characters, got ${describe(v)}`);
  }
}

/** What a value is, for messages: its type, or a short rendering of a scalar. */
function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  return String(v);
}
