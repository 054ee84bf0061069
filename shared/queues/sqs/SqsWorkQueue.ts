import {
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SendMessageBatchResultEntry,
  SQSClient,
  type SQSClientConfig,
} from '@aws-sdk/client-sqs';
import { ProviderError, ValidationError } from '../../core/errors.js';
import type { WorkMessage, WorkQueue } from '../../core/ports/WorkQueue.js';

export interface SqsWorkQueueOptions {
  /** The queue's URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`). */
  queueUrl: string;
  /** Used in errors. Default `sqs`. */
  id?: string;
  /** A ready client (tests, custom middleware); otherwise one is built from the fields below. */
  client?: SQSClient;
  region?: string;
  endpoint?: string;
  credentials?: SQSClientConfig['credentials'];
  /** SDK attempts per call. Default 3. */
  maxAttempts?: number;
  /** How many more times entries that failed on the service's side are sent again. Default 2. */
  entryRetries?: number;
  /** Base delay between entry retries, doubled each time. Default 100 ms. */
  retryDelayMs?: number;
}

/** SendMessageBatch takes at most 10 entries, and at most 256 KiB for the whole request. */
export const MAX_ENTRIES_PER_BATCH = 10;
export const MAX_BATCH_BYTES = 262_144;

interface Failed {
  jobId: string;
  code: string;
  message: string;
  senderFault: boolean;
}

/**
 * The re-wrap work queue on Amazon SQS: each message is one JSON body, sent in batches of up to
 * ten. Entries SQS refuses on its own side are sent again a bounded number of times; entries
 * refused as the sender's fault are not. Whatever is still undelivered is thrown as one
 * ProviderError naming the jobs. Re-sending is harmless: the work a message names is idempotent.
 */
export class SqsWorkQueue implements WorkQueue {
  private readonly id: string;
  private readonly queueUrl: string;
  private readonly client: SQSClient;
  private readonly ownsClient: boolean;
  private readonly entryRetries: number;
  private readonly retryDelayMs: number;

  constructor(opts: SqsWorkQueueOptions) {
    if (typeof opts.queueUrl !== 'string' || !/^https?:\/\/[^/]+\/.+/.test(opts.queueUrl)) {
      throw new ValidationError(
        `SQS work queue: queueUrl must be a queue URL, got "${String(opts.queueUrl)}"`,
      );
    }
    this.id = opts.id ?? 'sqs';
    this.queueUrl = opts.queueUrl;
    this.ownsClient = !opts.client;
    this.client =
      opts.client ??
      new SQSClient({
        ...(opts.region ? { region: opts.region } : {}),
        ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
        ...(opts.credentials ? { credentials: opts.credentials } : {}),
        maxAttempts: opts.maxAttempts ?? 3,
      });
    this.entryRetries = opts.entryRetries ?? 2;
    this.retryDelayMs = opts.retryDelayMs ?? 100;
  }

  async send(messages: WorkMessage[]): Promise<void> {
    // Every body is checked before anything is sent, so a bad message changes nothing.
    const entries = messages.map((m, i) => {
      const body = JSON.stringify(m);
      const size = Buffer.byteLength(body, 'utf8');
      if (size > MAX_BATCH_BYTES) {
        throw new ValidationError(
          `SQS work queue: message ${i} (job ${m.jobId.slice(0, 80)}) is ${size} bytes; SQS takes at most ${MAX_BATCH_BYTES}`,
        );
      }
      return { jobId: m.jobId, entry: { Id: `m${i}`, MessageBody: body }, size };
    });
    const failed: Failed[] = [];
    for (const batch of batches(entries)) failed.push(...(await this.sendBatch(batch)));
    if (failed.length > 0) {
      const sample = failed
        .slice(0, 3)
        .map((f) => `${f.jobId}: ${f.code}`)
        .join('; ');
      throw new ProviderError(this.id, failed[0]!.code, `${failed.length} message(s) not queued: ${sample}`, {
        retryable: failed.every((f) => !f.senderFault),
      });
    }
  }

  private async sendBatch(batch: Array<{ jobId: string; entry: SendMessageBatchRequestEntry }>) {
    let pending = batch;
    const failed: Failed[] = [];
    for (let attempt = 0; pending.length > 0; attempt++) {
      const out = await this.put(pending.map((p) => p.entry));
      const errors = new Map((out.Failed ?? []).map((f) => [f.Id, f]));
      const ok = new Set((out.Successful ?? []).map((s: SendMessageBatchResultEntry) => s.Id));
      const retry: typeof pending = [];
      for (const p of pending) {
        if (ok.has(p.entry.Id)) continue;
        const f = errors.get(p.entry.Id);
        const senderFault = f?.SenderFault ?? false;
        if (!senderFault && attempt < this.entryRetries) retry.push(p);
        else
          failed.push({
            jobId: p.jobId,
            code: f?.Code ?? 'MissingResult',
            message: f?.Message ?? 'no result for this entry',
            senderFault,
          });
      }
      pending = retry;
      if (pending.length > 0) await sleep(this.retryDelayMs * 2 ** attempt);
    }
    return failed;
  }

  private async put(entries: SendMessageBatchRequestEntry[]) {
    try {
      return await this.client.send(
        new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries }),
      );
    } catch (e) {
      const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
      const name = err.name ?? 'UnknownError';
      const status = err.$metadata?.httpStatusCode;
      const throttled = name === 'ThrottlingException' || name === 'RequestThrottled' || status === 429;
      throw new ProviderError(this.id, name, `SendMessageBatch: ${name}: ${err.message ?? ''}`, {
        retryable: throttled || status === undefined || status >= 500,
        throttled,
        cause: e,
      });
    }
  }

  close(): void {
    if (this.ownsClient) this.client.destroy();
  }
}

/** Groups entries into requests of at most 10 entries and 256 KiB. */
function* batches<T extends { size: number }>(entries: T[]): Generator<T[]> {
  let cur: T[] = [];
  let bytes = 0;
  for (const e of entries) {
    if (cur.length === MAX_ENTRIES_PER_BATCH || (cur.length > 0 && bytes + e.size > MAX_BATCH_BYTES)) {
      yield cur;
      cur = [];
      bytes = 0;
    }
    cur.push(e);
    bytes += e.size;
  }
  if (cur.length > 0) yield cur;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
