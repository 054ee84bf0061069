import type { TokenCredential } from '@azure/core-auth';
import { QueueClient, type StoragePipelineOptions } from '@azure/storage-queue';
import { ConfigError, ValidationError } from '../../core/errors.js';
import {
  type AzureStorageConnection,
  isLoopback,
  statusOf,
  translateStorageError,
} from '../../stores/azuretable/client.js';

/** Queue names: 3-63 lowercase letters, digits and single hyphens, starting and ending alphanumeric. */
const QUEUE_NAME = /^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/;

/** A Storage Queue message holds at most 64 KiB (what is sent, after encoding). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

export function checkQueueName(name: unknown, what: string): string {
  if (typeof name !== 'string' || !QUEUE_NAME.test(name)) {
    throw new ConfigError(
      `${what}: queue must be 3-63 lowercase letters, digits and single hyphens, got ${JSON.stringify(name)}`,
    );
  }
  return name;
}

export function createQueueClient(
  c: AzureStorageConnection,
  queue: string,
  options: StoragePipelineOptions = {},
): QueueClient {
  if ('connectionString' in c) {
    if (typeof c.connectionString !== 'string' || !c.connectionString.includes('=')) {
      throw new ConfigError('storage queue: the storage connection string is empty or malformed');
    }
    return new QueueClient(c.connectionString, queue, options);
  }
  let url: URL;
  try {
    url = new URL(c.endpoint);
  } catch {
    throw new ConfigError(`storage queue: endpoint ${JSON.stringify(c.endpoint)} is not a URL`);
  }
  if (url.protocol !== 'https:' && !isLoopback(c.endpoint)) {
    throw new ConfigError(`storage queue: endpoint ${c.endpoint} must be https`);
  }
  return new QueueClient(
    `${c.endpoint.replace(/\/$/, '')}/${queue}`,
    c.credential as TokenCredential,
    options,
  );
}

/** Creates the queue if missing (tests, first runs; Terraform creates it in production). */
export async function ensureQueue(client: QueueClient): Promise<void> {
  try {
    await client.createIfNotExists();
  } catch (e) {
    if (statusOf(e) !== 409) throw translateStorageError(e, `creating queue ${client.name}`, 'azure-queue');
  }
}

/**
 * The text a message is sent as: base64 of the UTF-8 JSON, the encoding the Functions host's
 * queue trigger expects by default (host.json `extensions.queues.messageEncoding`).
 */
export function encodeMessage(value: unknown, what: string, encoding: 'base64' | 'none' = 'base64'): string {
  const json = JSON.stringify(value);
  const text = encoding === 'base64' ? Buffer.from(json, 'utf8').toString('base64') : json;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_MESSAGE_BYTES) {
    throw new ValidationError(
      `${what}: message is ${bytes} bytes encoded; a Storage Queue message holds at most ${MAX_MESSAGE_BYTES}`,
    );
  }
  return text;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; fails with the first error. */
export async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}
