import type { CloudEvent } from '@google-cloud/functions-framework';
import { ValidationError } from '../../shared/core/errors.js';

/** What Eventarc (or the functions framework, for a raw push) hands a Pub/Sub-triggered function. */
export const MESSAGE_PUBLISHED = 'google.cloud.pubsub.topic.v1.messagePublished';

export interface PubSubDelivery {
  messageId: string;
  data: Buffer;
  attributes: Record<string, string>;
  subscription?: string;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The Pub/Sub message inside a `messagePublished` CloudEvent (`data.message.data` base64,
 * `attributes`, `messageId`). Anything else is refused with a ValidationError naming the field.
 */
export function readPubSubEvent(event: CloudEvent<unknown>): PubSubDelivery {
  if (!isObject(event)) throw new ValidationError('CloudEvent: not an object');
  if (event.type !== MESSAGE_PUBLISHED) {
    throw new ValidationError(
      `CloudEvent: type "${String(event.type).slice(0, 100)}" is not ${MESSAGE_PUBLISHED}`,
    );
  }
  let data: unknown = event.data;
  if (typeof data === 'string' || Buffer.isBuffer(data)) {
    try {
      data = JSON.parse(data.toString());
    } catch {
      throw new ValidationError('CloudEvent: data is not JSON');
    }
  }
  if (!isObject(data) || !isObject(data.message))
    throw new ValidationError('CloudEvent: data.message is missing');
  const m = data.message;
  const messageId = m.messageId ?? m.message_id;
  if (typeof messageId !== 'string' || messageId === '') {
    throw new ValidationError('CloudEvent: data.message.messageId is missing');
  }
  if (m.data !== undefined && typeof m.data !== 'string') {
    throw new ValidationError('CloudEvent: data.message.data must be a base64 string');
  }
  const attributes: Record<string, string> = {};
  if (m.attributes !== undefined && m.attributes !== null) {
    if (!isObject(m.attributes))
      throw new ValidationError('CloudEvent: data.message.attributes must be an object');
    for (const [k, v] of Object.entries(m.attributes)) {
      if (typeof v !== 'string')
        throw new ValidationError(`CloudEvent: attribute ${k.slice(0, 50)} is not a string`);
      attributes[k] = v;
    }
  }
  return {
    messageId,
    data: Buffer.from((m.data as string | undefined) ?? '', 'base64'),
    attributes,
    ...(typeof data.subscription === 'string' ? { subscription: data.subscription } : {}),
  };
}
