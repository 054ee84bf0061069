import { type CloudEvent, parseCloudEvent } from '../domain/compromiseEvent.js';
import { ValidationError } from '../errors.js';

/**
 * Pure functions that take the CloudEvent out of whatever carried it. Every transport wraps the
 * same structured event; the signature covers the event, never the envelope, so an envelope
 * only has to agree with what it carries:
 *
 * - `cloudevents`: the event itself (HTTP structured mode; Event Grid's CloudEvents schema).
 *   A JSON array is a batch.
 * - `eventbridge`: `detail` is the event; `detail-type` must equal its `type` and `source` its
 *   `source` (so EventBridge rules can filter on them).
 * - `eventgrid`: Event Grid schema; `data` is the event and `eventType` must equal its `type`.
 *   Deliveries are arrays.
 * - `pubsub`: a push envelope `{message: {data, attributes, messageId}, subscription}`, or the
 *   Eventarc `google.cloud.pubsub.topic.v1.messagePublished` event whose data is one. Structured
 *   mode (attribute `content-type: application/cloudevents+json`): `message.data` is the event,
 *   base64. Binary mode: context attributes are the `ce-*` attributes, `message.data` is `data`.
 */
export type Transport = 'cloudevents' | 'eventbridge' | 'eventgrid' | 'pubsub';

export interface Extracted {
  transport: Transport;
  event: CloudEvent;
  /** The carrier's own message id (EventBridge id, Event Grid id, Pub/Sub messageId), for logs. */
  carrierId?: string;
}

const PUBSUB_PUBLISHED = 'google.cloud.pubsub.topic.v1.messagePublished';
const EVENT_GRID_VALIDATION = 'Microsoft.EventGrid.SubscriptionValidationEvent';

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

const fail = (transport: string, why: string): never => {
  throw new ValidationError(`${transport}: ${why}`);
};

/** JSON text or bytes become a value; anything else is returned as it is. */
function fromJsonText(input: unknown, what: string): unknown {
  let s: string | undefined;
  if (typeof input === 'string') s = input;
  else if (input instanceof Uint8Array) s = utf8(input, what);
  if (s === undefined) return input;
  try {
    return JSON.parse(s);
  } catch {
    return fail(what, 'is not JSON');
  }
}

function utf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return fail(what, 'is not UTF-8 text');
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;

function base64(s: unknown, what: string): Uint8Array {
  if (typeof s !== 'string') return fail(what, 'must be a base64 string');
  if (!BASE64.test(s)) fail(what, 'is not valid base64');
  const bin = atob(s.length % 4 === 0 ? s : s + '='.repeat(4 - (s.length % 4)));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Which transport an object looks like. */
export function detectTransport(v: Record<string, unknown>): Transport {
  if ('specversion' in v) return v.type === PUBSUB_PUBLISHED ? 'pubsub' : 'cloudevents';
  if ('detail-type' in v && 'detail' in v) return 'eventbridge';
  if ('eventType' in v && 'topic' in v) return 'eventgrid';
  if (isObject(v.message) && ('subscription' in v || 'data' in v.message || 'attributes' in v.message))
    return 'pubsub';
  return fail(
    'event',
    'is not a CloudEvent, an EventBridge event, an Event Grid event or a Pub/Sub push envelope',
  );
}

/**
 * Every CloudEvent in a delivery (one, or a batch), with the transport it came by. All or
 * nothing: a malformed element refuses the delivery with the element's index in the message.
 */
export function extractCloudEvents(input: unknown, transport?: Transport): Extracted[] {
  const value = fromJsonText(input, 'delivery');
  if (Array.isArray(value)) {
    if (value.length === 0) fail('delivery', 'is an empty batch');
    return value.map((v, i) => {
      try {
        return extractOne(v, transport);
      } catch (e) {
        if (e instanceof ValidationError) throw new ValidationError(`batch[${i}]: ${e.message}`);
        throw e;
      }
    });
  }
  return [extractOne(value, transport)];
}

function extractOne(v: unknown, transport?: Transport): Extracted {
  if (!isObject(v)) return fail('delivery', 'must be a JSON object or an array of them');
  const kind = transport ?? detectTransport(v);
  switch (kind) {
    case 'cloudevents':
      return { transport: 'cloudevents', event: parseCloudEvent(v) };
    case 'eventbridge':
      return fromEventBridge(v);
    case 'eventgrid':
      return fromEventGrid(v);
    case 'pubsub':
      return fromPubSub(v);
  }
}

function fromEventBridge(v: Record<string, unknown>): Extracted {
  const where = 'EventBridge event';
  const detail = fromJsonText(v.detail, `${where} detail`);
  if (!isObject(detail) || !('specversion' in detail))
    fail(where, 'detail must be the CloudEvent (a JSON object with specversion)');
  const event = wrapErrors(where, () => parseCloudEvent(detail));
  if (v['detail-type'] !== event.type)
    fail(
      where,
      `detail-type ${JSON.stringify(v['detail-type'])} differs from the CloudEvent type "${event.type}"`,
    );
  if (v.source !== event.source)
    fail(where, `source ${JSON.stringify(v.source)} differs from the CloudEvent source "${event.source}"`);
  return {
    transport: 'eventbridge',
    event,
    ...(typeof v.id === 'string' ? { carrierId: v.id } : {}),
  };
}

function fromEventGrid(v: Record<string, unknown>): Extracted {
  const where = 'Event Grid event';
  if (v.eventType === EVENT_GRID_VALIDATION)
    fail(where, 'is a subscription validation event: the endpoint must answer it with data.validationCode');
  const data = fromJsonText(v.data, `${where} data`);
  if (!isObject(data) || !('specversion' in data))
    fail(where, 'data must be the CloudEvent (a JSON object with specversion)');
  const event = wrapErrors(where, () => parseCloudEvent(data));
  if (v.eventType !== event.type)
    fail(where, `eventType ${JSON.stringify(v.eventType)} differs from the CloudEvent type "${event.type}"`);
  return { transport: 'eventgrid', event, ...(typeof v.id === 'string' ? { carrierId: v.id } : {}) };
}

function fromPubSub(v: Record<string, unknown>): Extracted {
  const where = 'Pub/Sub message';
  // Eventarc delivers a push as a CloudEvent whose data is the push envelope.
  const envelope = 'specversion' in v ? fromJsonText(v.data, `${where} event data`) : v;
  if (!isObject(envelope) || !isObject(envelope.message))
    return fail(where, 'the envelope has no message object');
  const m = envelope.message;
  const attrs = m.attributes ?? {};
  if (!isObject(attrs)) return fail(where, 'message.attributes must be an object');
  for (const [k, a] of Object.entries(attrs))
    if (typeof a !== 'string') fail(where, `attribute ${k} must be a string`);
  const attributes = attrs as Record<string, string>;
  const messageId = typeof m.messageId === 'string' ? m.messageId : m.message_id;
  const carrier = typeof messageId === 'string' ? { carrierId: messageId } : {};
  const bytes = m.data === undefined ? new Uint8Array(0) : base64(m.data, `${where} message.data`);
  const contentType = attributes['content-type'] ?? attributes['Content-Type'];
  if (contentType && /^application\/cloudevents/i.test(contentType)) {
    if (!/^application\/cloudevents\+json\s*(?:;.*)?$/i.test(contentType))
      fail(where, `content-type "${contentType}" is an event format rekey does not read (JSON only)`);
    const event = wrapErrors(where, () => parseCloudEvent(fromJsonText(bytes, `${where} message.data`)));
    return { transport: 'pubsub', event, ...carrier };
  }
  if (!('ce-specversion' in attributes))
    fail(
      where,
      'carries no CloudEvent (no ce-specversion attribute and no application/cloudevents content-type)',
    );
  const ce: Record<string, unknown> = {};
  for (const [k, a] of Object.entries(attributes)) if (k.startsWith('ce-')) ce[k.slice(3)] = a;
  const dct = contentType ?? attributes['ce-datacontenttype'];
  if (dct !== undefined) ce.datacontenttype = dct;
  if (bytes.length > 0) {
    if (dct === undefined || /^application\/(?:[\w.+-]+\+)?json\s*(?:;.*)?$/i.test(dct))
      ce.data = fromJsonText(bytes, `${where} message.data`);
    else fail(where, `data of type "${dct}" is not JSON`);
  }
  const event = wrapErrors(where, () => parseCloudEvent(ce));
  return { transport: 'pubsub', event, ...carrier };
}

function wrapErrors<T>(where: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ValidationError) throw new ValidationError(`${where}: ${e.message}`);
    throw e;
  }
}
