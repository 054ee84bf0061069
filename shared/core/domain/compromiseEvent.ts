import { ValidationError } from '../errors.js';
import { canonicalJson } from '../util/canonicalJson.js';
import { COMPROMISE_EVENT_TYPE } from './compromiseEventType.js';
import { parseKeyRef } from './keyRef.js';

/**
 * The `key.compromised` CloudEvent (CloudEvents 1.0, JSON format) that tells rekey a key version
 * must be treated as compromised. The schema, the signature and the transports that carry it are
 * documented in docs/governance.md.
 */
export { COMPROMISE_EVENT_TYPE };

/** The extension attribute that carries the signature (HMAC or detached JWS). */
export const SIGNATURE_ATTRIBUTE = 'rekeysignature';

/** A CloudEvent in its structured (JSON) form: context attributes, extensions, and `data`. */
export interface CloudEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  time?: string;
  datacontenttype?: string;
  subject?: string;
  dataschema?: string;
  data?: unknown;
  [extension: string]: unknown;
}

/** What a `key.compromised` event says. */
export interface CompromiseEventData {
  /** The key, as a rekey key ref. */
  keyRef: string;
  /** The compromised version; absent: the version that is primary when the event is handled. */
  version?: string;
  reason: string;
  /** Who (or which detector) reported it. */
  reportedBy: string;
}

/** A checked `key.compromised` event. */
export interface CompromiseEvent {
  event: CloudEvent;
  data: CompromiseEventData;
  /** `time`, normalised to ISO-8601 UTC. */
  time: string;
}

/** RFC 3339 date-time, as CloudEvents `time` requires. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/i;
/** Extension attribute names: lower-case letters and digits (CloudEvents 1.0 naming rule). */
const ATTRIBUTE_NAME = /^[a-z0-9]{1,20}$/;
const CORE = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'time',
  'datacontenttype',
  'subject',
  'dataschema',
]);

const fail = (field: string, why: string): never => {
  throw new ValidationError(`CloudEvent: ${field} ${why}`);
};

function text(e: Record<string, unknown>, field: string, required: boolean, max = 1024): string | undefined {
  const v = e[field];
  if (v === undefined || v === null) {
    if (required) fail(field, 'is required');
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0) fail(field, 'must be a non-empty string');
  if ((v as string).length > max) fail(field, `must be at most ${max} characters`);
  return v as string;
}

/**
 * Checks the context attributes of a structured CloudEvent 1.0 (required `id`, `source`,
 * `specversion`, `type`; `time` as RFC 3339; extension names) and returns it unchanged.
 * `data_base64` is refused: rekey's events carry JSON data.
 */
export function parseCloudEvent(input: unknown): CloudEvent {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) fail('event', 'must be an object');
  const e = input as Record<string, unknown>;
  if (e.specversion !== '1.0') fail('specversion', `must be "1.0" (got ${JSON.stringify(e.specversion)})`);
  text(e, 'id', true, 256);
  text(e, 'source', true, 512);
  text(e, 'type', true, 256);
  const time = text(e, 'time', false, 64);
  if (time !== undefined && (!RFC3339.test(time) || Number.isNaN(Date.parse(time))))
    fail('time', 'must be an RFC 3339 date-time, e.g. 2026-11-28T12:00:00Z');
  text(e, 'datacontenttype', false, 256);
  text(e, 'subject', false, 1024);
  text(e, 'dataschema', false, 1024);
  if ('data_base64' in e) fail('data_base64', 'is not accepted: send the data as JSON in "data"');
  for (const name of Object.keys(e)) {
    if (CORE.has(name) || name === 'data') continue;
    if (!ATTRIBUTE_NAME.test(name))
      fail(
        `attribute "${name.slice(0, 40)}"`,
        'is not a valid name (lower-case letters and digits, at most 20)',
      );
    const v = e[name];
    if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      fail(`attribute "${name}"`, 'must be a string, number or boolean');
  }
  return e as CloudEvent;
}

/** `data`'s fields, in the order they are checked, with their longest accepted length. */
const DATA_FIELDS: { name: keyof CompromiseEventData; max: number; optional?: boolean }[] = [
  { name: 'keyRef', max: 2048 },
  { name: 'version', max: 128, optional: true },
  { name: 'reason', max: 1000 },
  { name: 'reportedBy', max: 256 },
];

/** `data`, checked field by field (written out, so event handlers need no schema library). */
function parseData(v: unknown): CompromiseEventData {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return fail('data', 'must be a JSON object');
  const d = v as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const { name, max, optional } of DATA_FIELDS) {
    const x = d[name];
    if (x === undefined) {
      if (optional) continue;
      fail(`data.${name}`, 'is required');
    }
    if (typeof x !== 'string')
      fail(`data.${name}`, `must be a string (got ${x === null ? 'null' : typeof x})`);
    const t = x as string;
    if (t.length === 0) fail(`data.${name}`, 'must not be empty');
    if (t.length > max) fail(`data.${name}`, `must be at most ${max} characters`);
    out[name] = t;
  }
  const unknown = Object.keys(d).find((k) => !DATA_FIELDS.some((f) => f.name === k));
  if (unknown !== undefined) fail(`data.${unknown.slice(0, 40)}`, 'is not a known field');
  return out as unknown as CompromiseEventData;
}

/** Checks that a CloudEvent is a well-formed `key.compromised` event and returns what it says. */
export function parseCompromiseEvent(input: unknown): CompromiseEvent {
  const event = parseCloudEvent(input);
  if (event.type !== COMPROMISE_EVENT_TYPE)
    fail('type', `must be "${COMPROMISE_EVENT_TYPE}" (got "${event.type.slice(0, 100)}")`);
  if (event.time === undefined) fail('time', 'is required (events older than incidents.maxAge are refused)');
  const ct = event.datacontenttype;
  if (ct !== undefined && !/^application\/json\s*(?:;.*)?$/i.test(ct))
    fail('datacontenttype', `must be application/json (got "${ct.slice(0, 100)}")`);
  const data = parseData(event.data);
  try {
    data.keyRef = parseKeyRef(data.keyRef).uri;
  } catch (e) {
    fail('data.keyRef', `is not a key ref: ${(e as Error).message}`);
  }
  return { event, data, time: new Date(Date.parse(event.time!)).toISOString() };
}

/**
 * The bytes a signature covers: the UTF-8 of the event's canonical JSON (object keys sorted at
 * every depth, no whitespace) with the signature attribute left out.
 */
export function signingBytes(event: CloudEvent): Uint8Array {
  const { [SIGNATURE_ATTRIBUTE]: _sig, ...rest } = event;
  return new TextEncoder().encode(canonicalJson(rest));
}
