import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { SimClock } from './clock.js';
import { AwsError, optInt, optString, reqString } from './protocol.js';

/**
 * Amazon SQS standard queues over the JSON protocol (`AmazonSQS.<Op>`), for the operations rekey's
 * shard queue uses. Visibility timeouts follow the simulated clock; long polls wait in real time.
 */

interface Message {
  id: string;
  body: string;
  md5: string;
  attributes?: Record<string, unknown>;
  md5OfAttributes?: string;
  sentAt: number;
  visibleAt: number;
  receiveCount: number;
  firstReceivedAt?: number;
  /** The receipt handle of the latest receive; older handles stop working for visibility changes. */
  handle?: string;
}

interface Queue {
  name: string;
  url: string;
  createdAt: number;
  attributes: Record<string, string>;
  messages: Message[];
  waiters: Set<() => void>;
}

const DEFAULT_ATTRIBUTES: Record<string, string> = {
  VisibilityTimeout: '30',
  MessageRetentionPeriod: '345600',
  DelaySeconds: '0',
  ReceiveMessageWaitTimeSeconds: '0',
  MaximumMessageSize: '262144',
};
const ATTRIBUTE_RANGES: Record<string, [number, number]> = {
  VisibilityTimeout: [0, 43200],
  MessageRetentionPeriod: [60, 1209600],
  DelaySeconds: [0, 900],
  ReceiveMessageWaitTimeSeconds: [0, 20],
  MaximumMessageSize: [1024, 262144],
};

const invalidParameter = (message: string) => new AwsError('InvalidParameterValue', message);
const noQueue = () =>
  new AwsError('QueueDoesNotExist', 'The specified queue does not exist.', 400, {
    queryError: 'AWS.SimpleQueueService.NonExistentQueue;Sender',
  });

export class SqsService {
  private readonly queues = new Map<string, Queue>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly account: string,
    private readonly clock: SimClock,
  ) {}

  reset(): void {
    for (const q of this.queues.values()) for (const w of q.waiters) w();
    this.queues.clear();
  }

  /** Wakes pending long polls so the server can close. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.reset();
  }

  /** Messages of a queue (visible or not), for inspection. */
  depth(name: string): { visible: number; inFlight: number } {
    const q = this.queues.get(name);
    if (!q) return { visible: 0, inFlight: 0 };
    const now = this.clock.nowMs();
    this.expire(q, now);
    const visible = q.messages.filter((m) => m.visibleAt <= now).length;
    return { visible, inFlight: q.messages.length - visible };
  }

  async handle(op: string, base: string, body: Record<string, unknown>): Promise<unknown> {
    switch (op) {
      case 'CreateQueue':
        return this.createQueue(base, body);
      case 'GetQueueUrl': {
        const name = reqString(body, 'QueueName', 1, 80);
        const q = this.queues.get(name);
        if (!q) throw noQueue();
        return { QueueUrl: q.url };
      }
      case 'ListQueues': {
        const prefix = optString(body, 'QueueNamePrefix', 0, 80) ?? '';
        return {
          QueueUrls: [...this.queues.values()].filter((q) => q.name.startsWith(prefix)).map((q) => q.url),
        };
      }
      case 'DeleteQueue': {
        const q = this.queue(body);
        this.queues.delete(q.name);
        for (const w of q.waiters) w();
        return {};
      }
      case 'PurgeQueue':
        this.queue(body).messages.length = 0;
        return {};
      case 'GetQueueAttributes':
        return this.getAttributes(body);
      case 'SendMessage': {
        const q = this.queue(body);
        return this.send(q, body);
      }
      case 'SendMessageBatch':
        return this.batch(body, (q, entry) => {
          const r = this.send(q, entry);
          return { Id: entry.Id, ...r };
        });
      case 'ReceiveMessage':
        return this.receive(body);
      case 'DeleteMessage': {
        const q = this.queue(body);
        this.deleteByHandle(q, reqString(body, 'ReceiptHandle', 1, 4096));
        return {};
      }
      case 'DeleteMessageBatch':
        return this.batch(body, (q, entry) => {
          this.deleteByHandle(q, reqString(entry, 'ReceiptHandle', 1, 4096));
          return { Id: entry.Id };
        });
      case 'ChangeMessageVisibility': {
        const q = this.queue(body);
        this.changeVisibility(q, body);
        return {};
      }
      case 'ChangeMessageVisibilityBatch':
        return this.batch(body, (q, entry) => {
          this.changeVisibility(q, entry);
          return { Id: entry.Id };
        });
      default:
        throw new AwsError('UnsupportedOperation', `The emulator does not implement AmazonSQS.${op}`);
    }
  }

  private queue(body: Record<string, unknown>): Queue {
    const url = reqString(body, 'QueueUrl', 1, 2048);
    const name = url.replace(/\/+$/, '').split('/').pop() ?? '';
    const q = this.queues.get(name);
    if (!q) throw noQueue();
    return q;
  }

  private createQueue(base: string, body: Record<string, unknown>) {
    const name = reqString(body, 'QueueName', 1, 80);
    if (!/^[A-Za-z0-9_-]{1,80}$/.test(name)) {
      throw invalidParameter(
        `Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length (got ${name.slice(0, 80)})`,
      );
    }
    const requested = (body.Attributes ?? {}) as Record<string, unknown>;
    const attributes = { ...DEFAULT_ATTRIBUTES };
    for (const [k, v] of Object.entries(requested)) {
      const range = ATTRIBUTE_RANGES[k];
      if (!range) throw new AwsError('InvalidAttributeName', `Unknown or unsupported attribute ${k}.`);
      const n = Number(v);
      if (typeof v !== 'string' || !Number.isInteger(n) || n < range[0] || n > range[1]) {
        throw new AwsError('InvalidAttributeValue', `Invalid value for the parameter ${k}.`);
      }
      attributes[k] = v;
    }
    const existing = this.queues.get(name);
    if (existing) {
      const same = Object.entries(requested).every(([k, v]) => existing.attributes[k] === v);
      if (!same) {
        throw new AwsError(
          'QueueNameExists',
          `A queue already exists with the same name and a different value for attribute(s)`,
        );
      }
      return { QueueUrl: existing.url };
    }
    const q: Queue = {
      name,
      url: `${base}/${this.account}/${name}`,
      createdAt: this.clock.nowMs(),
      attributes,
      messages: [],
      waiters: new Set(),
    };
    this.queues.set(name, q);
    return { QueueUrl: q.url };
  }

  private getAttributes(body: Record<string, unknown>) {
    const q = this.queue(body);
    const now = this.clock.nowMs();
    this.expire(q, now);
    const visible = q.messages.filter((m) => m.visibleAt <= now).length;
    const all: Record<string, string> = {
      ...q.attributes,
      ApproximateNumberOfMessages: String(visible),
      ApproximateNumberOfMessagesNotVisible: String(q.messages.length - visible),
      CreatedTimestamp: String(Math.floor(q.createdAt / 1000)),
      QueueArn: `arn:aws:sqs:us-east-1:${this.account}:${q.name}`,
    };
    const names = Array.isArray(body.AttributeNames) ? (body.AttributeNames as string[]) : ['All'];
    const Attributes = names.includes('All')
      ? all
      : Object.fromEntries(names.filter((n) => n in all).map((n) => [n, all[n]!]));
    return { Attributes };
  }

  private send(q: Queue, body: Record<string, unknown>) {
    const text = body.MessageBody;
    if (typeof text !== 'string' || text.length === 0) {
      throw new AwsError('MissingParameter', 'The request must contain the parameter MessageBody.');
    }
    const max = Number(q.attributes.MaximumMessageSize);
    if (Buffer.byteLength(text, 'utf8') > max) {
      throw invalidParameter(
        `One or more parameters are invalid. Reason: Message must be shorter than ${max} bytes.`,
      );
    }
    // SQS accepts only #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
    if (!validSqsText(text)) {
      throw new AwsError('InvalidMessageContents', 'Invalid characters found in the message body.');
    }
    const delay = optInt(body, 'DelaySeconds', 0, 900) ?? Number(q.attributes.DelaySeconds);
    const now = this.clock.nowMs();
    const attrs = body.MessageAttributes as Record<string, MessageAttribute> | undefined;
    const m: Message = {
      id: randomUUID(),
      body: text,
      md5: md5(text),
      sentAt: now,
      visibleAt: now + delay * 1000,
      receiveCount: 0,
    };
    if (attrs && Object.keys(attrs).length > 0) {
      m.attributes = attrs;
      m.md5OfAttributes = md5OfAttributes(attrs);
    }
    q.messages.push(m);
    for (const w of q.waiters) w();
    return {
      MessageId: m.id,
      MD5OfMessageBody: m.md5,
      ...(m.md5OfAttributes ? { MD5OfMessageAttributes: m.md5OfAttributes } : {}),
    };
  }

  /** Runs each entry of a batch request, collecting per-entry failures as SQS does. */
  private batch(
    body: Record<string, unknown>,
    run: (q: Queue, entry: Record<string, unknown> & { Id: string }) => Record<string, unknown>,
  ) {
    const q = this.queue(body);
    const entries = body.Entries;
    if (!Array.isArray(entries) || entries.length === 0) {
      throw new AwsError('EmptyBatchRequest', 'There should be at least one entry in the request.');
    }
    if (entries.length > 10) {
      throw new AwsError(
        'TooManyEntriesInBatchRequest',
        `Maximum number of entries per request are 10. You have sent ${entries.length}.`,
      );
    }
    const ids = new Set<string>();
    for (const e of entries as Array<{ Id?: unknown }>) {
      if (typeof e.Id !== 'string' || !/^[A-Za-z0-9_-]{1,80}$/.test(e.Id)) {
        throw new AwsError(
          'InvalidBatchEntryId',
          'A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.',
        );
      }
      if (ids.has(e.Id)) throw new AwsError('BatchEntryIdsNotDistinct', `Id ${e.Id} repeated.`);
      ids.add(e.Id);
    }
    if (
      body.Entries &&
      entries.some((e) => typeof (e as { MessageBody?: unknown }).MessageBody === 'string')
    ) {
      const total = entries.reduce(
        (n, e) => n + Buffer.byteLength(String((e as { MessageBody?: unknown }).MessageBody ?? ''), 'utf8'),
        0,
      );
      if (total > Number(q.attributes.MaximumMessageSize)) {
        throw new AwsError(
          'BatchRequestTooLong',
          'Batch requests cannot be longer than the maximum message size.',
        );
      }
    }
    const Successful: Record<string, unknown>[] = [];
    const Failed: Record<string, unknown>[] = [];
    for (const e of entries as Array<Record<string, unknown> & { Id: string }>) {
      try {
        Successful.push(run(q, e));
      } catch (err) {
        if (!(err instanceof AwsError)) throw err;
        Failed.push({ Id: e.Id, Code: err.type, Message: err.message, SenderFault: err.status < 500 });
      }
    }
    return { Successful, Failed };
  }

  private expire(q: Queue, now: number): void {
    const retention = Number(q.attributes.MessageRetentionPeriod) * 1000;
    q.messages = q.messages.filter((m) => m.sentAt + retention > now);
  }

  private async receive(body: Record<string, unknown>) {
    const q = this.queue(body);
    const max = optInt(body, 'MaxNumberOfMessages', 1, 10) ?? 1;
    const visibility = optInt(body, 'VisibilityTimeout', 0, 43200) ?? Number(q.attributes.VisibilityTimeout);
    const wait = optInt(body, 'WaitTimeSeconds', 0, 20) ?? Number(q.attributes.ReceiveMessageWaitTimeSeconds);
    const wanted = [
      ...(Array.isArray(body.AttributeNames) ? body.AttributeNames : []),
      ...(Array.isArray(body.MessageSystemAttributeNames) ? body.MessageSystemAttributeNames : []),
    ] as string[];
    const wantAttrs = Array.isArray(body.MessageAttributeNames) && body.MessageAttributeNames.length > 0;
    const deadline = Date.now() + wait * 1000;
    for (;;) {
      const now = this.clock.nowMs();
      this.expire(q, now);
      const ready = q.messages.filter((m) => m.visibleAt <= now).slice(0, max);
      if (ready.length > 0 || Date.now() >= deadline || this.closed || !this.queues.has(q.name)) {
        return { Messages: ready.map((m) => this.deliver(m, now, visibility, wanted, wantAttrs)) };
      }
      await this.waitFor(q, Math.min(deadline - Date.now(), 100));
    }
  }

  private waitFor(q: Queue, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.timers.delete(t);
        q.waiters.delete(done);
        resolve();
      };
      const t = setTimeout(done, Math.max(ms, 1));
      this.timers.add(t);
      q.waiters.add(done);
    });
  }

  private deliver(m: Message, now: number, visibility: number, wanted: string[], wantAttrs: boolean) {
    m.receiveCount++;
    m.firstReceivedAt ??= now;
    m.visibleAt = now + visibility * 1000;
    m.handle = `${m.id}:${randomBytes(12).toString('base64url')}`;
    const all = wanted.includes('All');
    const sys: Record<string, string> = {
      SenderId: 'AIDAEMULATOR',
      SentTimestamp: String(m.sentAt),
      ApproximateReceiveCount: String(m.receiveCount),
      ApproximateFirstReceiveTimestamp: String(m.firstReceivedAt),
    };
    const Attributes = Object.fromEntries(Object.entries(sys).filter(([k]) => all || wanted.includes(k)));
    return {
      MessageId: m.id,
      ReceiptHandle: Buffer.from(m.handle).toString('base64'),
      MD5OfBody: m.md5,
      Body: m.body,
      ...(Object.keys(Attributes).length > 0 ? { Attributes } : {}),
      ...(wantAttrs && m.attributes
        ? { MessageAttributes: m.attributes, MD5OfMessageAttributes: m.md5OfAttributes }
        : {}),
    };
  }

  private findByHandle(q: Queue, receipt: string): { message?: Message; id: string; handle: string } {
    const handle = Buffer.from(receipt, 'base64').toString('utf8');
    const m = /^([0-9a-f-]{36}):[A-Za-z0-9_-]+$/.exec(handle);
    if (!m)
      throw new AwsError(
        'ReceiptHandleIsInvalid',
        `The input receipt handle "${receipt}" is not a valid receipt handle.`,
      );
    return { message: q.messages.find((x) => x.id === m[1]), id: m[1]!, handle };
  }

  private deleteByHandle(q: Queue, receipt: string): void {
    // Deleting an already deleted message succeeds, as in SQS.
    const { id } = this.findByHandle(q, receipt);
    q.messages = q.messages.filter((x) => x.id !== id);
  }

  private changeVisibility(q: Queue, body: Record<string, unknown>): void {
    const { message, handle } = this.findByHandle(q, reqString(body, 'ReceiptHandle', 1, 4096));
    const timeout = optInt(body, 'VisibilityTimeout', 0, 43200);
    if (timeout === undefined)
      throw new AwsError('MissingParameter', 'The request must contain the parameter VisibilityTimeout.');
    const now = this.clock.nowMs();
    if (!message || message.handle !== handle || message.visibleAt <= now) {
      throw new AwsError('MessageNotInflight', 'The message referred to is not in flight.');
    }
    message.visibleAt = now + timeout * 1000;
    if (timeout === 0) for (const w of q.waiters) w();
  }
}

interface MessageAttribute {
  DataType: string;
  StringValue?: string;
  BinaryValue?: string;
}

function validSqsText(text: string): boolean {
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    const ok =
      c === 0x9 ||
      c === 0xa ||
      c === 0xd ||
      (c >= 0x20 && c <= 0xd7ff) ||
      (c >= 0xe000 && c <= 0xfffd) ||
      c >= 0x10000;
    if (!ok) return false;
  }
  return true;
}

function md5(text: string | Buffer): string {
  return createHash('md5').update(text).digest('hex');
}

/** The MD5 SQS computes over message attributes: sorted names, length-prefixed fields. */
function md5OfAttributes(attrs: Record<string, MessageAttribute>): string {
  const parts: Buffer[] = [];
  const lp = (b: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    parts.push(len, b);
  };
  for (const name of Object.keys(attrs).sort()) {
    const a = attrs[name]!;
    lp(Buffer.from(name, 'utf8'));
    lp(Buffer.from(a.DataType, 'utf8'));
    if (a.BinaryValue !== undefined) {
      parts.push(Buffer.from([2]));
      lp(Buffer.from(a.BinaryValue, 'base64'));
    } else {
      parts.push(Buffer.from([1]));
      lp(Buffer.from(a.StringValue ?? '', 'utf8'));
    }
  }
  return md5(Buffer.concat(parts));
}
