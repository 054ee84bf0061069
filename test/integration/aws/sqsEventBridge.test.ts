/**
 * SQS and EventBridge in the same emulator process, driven by the official SDK clients, and
 * the EventBridge EventBus adapter against it.
 */
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RekeyEvent } from '../../../shared/core/ports/EventBus.js';
import {
  EventBridgeEventBus,
  EventPublishError,
} from '../../../shared/telemetry/eventbridge/EventBridgeEventBus.js';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { CREDENTIALS, emulator, REGION, rejectionOf } from './helpers.js';

let emu: AwsEmulator;
let sqs: SQSClient;
let events: EventBridgeClient;

beforeAll(async () => {
  emu = await emulator();
  sqs = new SQSClient({ region: REGION, endpoint: emu.endpoint, credentials: CREDENTIALS, maxAttempts: 1 });
  events = new EventBridgeClient({
    region: REGION,
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
  });
});
afterAll(async () => {
  sqs.destroy();
  events.destroy();
  await emu.close();
});
beforeEach(() => {
  emu.reset();
  emu.clock.thaw();
});

describe('SQS', () => {
  async function queue(name = 'shards') {
    const { QueueUrl } = await sqs.send(
      new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '30' } }),
    );
    return QueueUrl!;
  }

  it('creates queues and finds them by name; an unknown queue is QueueDoesNotExist', async () => {
    const url = await queue();
    expect(url).toBe(`${emu.endpoint}/${emu.account}/shards`);
    expect((await sqs.send(new GetQueueUrlCommand({ QueueName: 'shards' }))).QueueUrl).toBe(url);
    // Same attributes: the same queue; different ones: QueueNameExists.
    expect(await queue()).toBe(url);
    const clash = await rejectionOf(
      sqs.send(new CreateQueueCommand({ QueueName: 'shards', Attributes: { VisibilityTimeout: '60' } })),
    );
    expect(clash.name).toBe('QueueNameExists');
    const e = await rejectionOf(sqs.send(new GetQueueUrlCommand({ QueueName: 'nope' })));
    expect(e.name).toBe('QueueDoesNotExist');
  });

  it('round-trips a batch: send, receive (MD5s checked by the SDK), hide, delete', async () => {
    const url = await queue();
    const entries = Array.from({ length: 10 }, (_, i) => ({
      Id: `m${i}`,
      MessageBody: JSON.stringify({ shard: i }),
    }));
    const sent = await sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
    expect(sent.Successful).toHaveLength(10);
    expect(sent.Failed ?? []).toHaveLength(0);

    emu.clock.freeze();
    const got = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 30,
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
    );
    expect(got.Messages).toHaveLength(10);
    expect(got.Messages!.map((m) => JSON.parse(m.Body!).shard).sort((a, b) => a - b)).toEqual([
      ...Array(10).keys(),
    ]);
    expect(got.Messages![0]!.Attributes?.ApproximateReceiveCount).toBe('1');

    // In flight: invisible until the visibility timeout passes on the simulated clock.
    expect(
      (await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }))).Messages ?? [],
    ).toHaveLength(0);
    const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }));
    expect(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible).toBe('10');
    emu.clock.advance(31_000);
    const again = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    expect(again.Messages).toHaveLength(10);
    expect(again.Messages![0]!.Attributes?.ApproximateReceiveCount).toBe('2');

    const del = await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: url,
        Entries: again.Messages!.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
    expect(del.Successful).toHaveLength(10);
    emu.clock.advance(60_000);
    expect(emu.sqs.depth('shards')).toEqual({ visible: 0, inFlight: 0 });
  });

  it('changes visibility, and refuses bad handles and oversized batches', async () => {
    const url = await queue();
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'one' }));
    const [m] = (await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 600 })))
      .Messages!;
    await sqs.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: url,
        ReceiptHandle: m!.ReceiptHandle,
        VisibilityTimeout: 0,
      }),
    );
    const back = (await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }))).Messages!;
    expect(back[0]!.MessageId).toBe(m!.MessageId);
    // The first receipt handle is stale now.
    const stale = await rejectionOf(
      sqs.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: url,
          ReceiptHandle: m!.ReceiptHandle,
          VisibilityTimeout: 5,
        }),
      ),
    );
    expect(stale.name).toBe('MessageNotInflight');
    const bad = await rejectionOf(
      sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: 'garbage' })),
    );
    expect(bad.name).toBe('ReceiptHandleIsInvalid');
    const tooMany = await rejectionOf(
      sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: url,
          Entries: Array.from({ length: 11 }, (_, i) => ({ Id: `x${i}`, MessageBody: 'b' })),
        }),
      ),
    );
    expect(tooMany.name).toBe('TooManyEntriesInBatchRequest');
    const dup = await rejectionOf(
      sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: url,
          Entries: [
            { Id: 'same', MessageBody: 'a' },
            { Id: 'same', MessageBody: 'b' },
          ],
        }),
      ),
    );
    expect(dup.name).toBe('BatchEntryIdsNotDistinct');
  });

  it('long polling returns as soon as a message arrives', async () => {
    const url = await queue();
    const poll = sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 20, MaxNumberOfMessages: 5 }),
    );
    setTimeout(() => {
      void sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'late' }));
    }, 50);
    const got = await poll;
    expect(got.Messages?.map((m) => m.Body)).toEqual(['late']);
  });
});

describe('EventBridge PutEvents', () => {
  it('records valid entries and reports bad ones per entry', async () => {
    const out = await events.send(
      new PutEventsCommand({
        Entries: [
          {
            Source: 'app',
            DetailType: 'Thing',
            Detail: '{"a":1}',
            Resources: ['arn:aws:kms:eu-west-1:1:key/x'],
          },
          { Source: 'app', DetailType: 'Thing', Detail: 'not json' },
          { Source: 'app', Detail: '{}' },
        ],
      }),
    );
    expect(out.FailedEntryCount).toBe(2);
    expect(out.Entries?.map((e) => e.ErrorCode ?? 'ok')).toEqual([
      'ok',
      'MalformedDetail',
      'InvalidArgument',
    ]);
    const recorded = emu.events.events({ source: 'app' });
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({
      'detail-type': 'Thing',
      detail: { a: 1 },
      region: REGION,
      eventBusName: 'default',
    });
    const listed = (await (await fetch(`${emu.endpoint}/_emulator/events`)).json()) as { events: unknown[] };
    expect(listed.events).toHaveLength(1);
  });

  it('refuses more than 10 entries per call', async () => {
    const e = await rejectionOf(
      events.send(
        new PutEventsCommand({
          Entries: Array.from({ length: 11 }, () => ({ Source: 'app', DetailType: 'X', Detail: '{}' })),
        }),
      ),
    );
    expect(e.name).toBe('ValidationException');
  });
});

describe('EventBridgeEventBus', () => {
  const rotated = (i: number): RekeyEvent => ({
    type: 'KeyRotated',
    id: `evt-${i}`,
    time: '2026-05-01T10:00:00.000Z',
    detail: {
      keyRef: `aws-kms://arn:aws:kms:${REGION}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab`,
      providerId: 'aws-prod',
      previousVersion: 'a'.repeat(64),
      newVersion: 'b'.repeat(64),
      reason: 'schedule',
    },
  });
  const bus = (extra: Partial<ConstructorParameters<typeof EventBridgeEventBus>[0]> = {}) =>
    new EventBridgeEventBus({ client: events, retryDelayMs: 1, ...extra });

  it('publishes in batches of at most 10 with Source rekey and the event id in the detail', async () => {
    const list = Array.from({ length: 23 }, (_, i) => rotated(i));
    await bus().publish(list);
    expect(emu.requestCounts['events.PutEvents']).toBe(3);
    const got = emu.events.events({ source: 'rekey' });
    expect(got.map((e) => (e.detail as { id: string }).id)).toEqual(list.map((e) => e.id));
    expect(got[0]).toMatchObject({
      'detail-type': 'KeyRotated',
      time: '2026-05-01T10:00:00Z',
      resources: ['arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'],
      detail: { reason: 'schedule', providerId: 'aws-prod' },
    });
  });

  it('re-sends only the entries that failed transiently (FailedEntryCount)', async () => {
    emu.events.failEntries(3, 'InternalFailure');
    await bus().publish(Array.from({ length: 10 }, (_, i) => rotated(i)));
    expect(emu.requestCounts['events.PutEvents']).toBe(2);
    const ids = emu.events.events().map((e) => (e.detail as { id: string }).id);
    expect(ids.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `evt-${i}`).sort());
  });

  it('reports what could not be delivered, retryable only when every failure was transient', async () => {
    emu.events.failEntries(100, 'InternalFailure');
    const e = (await rejectionOf(
      bus({ entryRetries: 1 }).publish([rotated(1), rotated(2)]),
    )) as unknown as EventPublishError;
    expect(e).toBeInstanceOf(EventPublishError);
    expect(e.retryable).toBe(true);
    expect(e.failed.map((f) => [f.eventId, f.code])).toEqual([
      ['evt-1', 'InternalFailure'],
      ['evt-2', 'InternalFailure'],
    ]);
    expect(emu.requestCounts['events.PutEvents']).toBe(2);

    emu.reset();
    emu.events.failEntries(1, 'InvalidArgument');
    const p = (await rejectionOf(bus().publish([rotated(1), rotated(2)]))) as unknown as EventPublishError;
    expect(p.retryable).toBe(false);
    expect(p.failed.map((f) => f.eventId)).toEqual(['evt-1']);
    expect(emu.requestCounts['events.PutEvents']).toBe(1);
    expect(emu.events.events()).toHaveLength(1);
  });

  it('refuses an entry over 256 KB without sending it, and still sends the others', async () => {
    const big: RekeyEvent = {
      type: 'PolicyViolation',
      id: 'big',
      time: '2026-05-01T10:00:00Z',
      detail: {
        keyRef: 'local://k',
        providerId: 'local',
        policy: 'p',
        rule: 'r',
        severity: 'info',
        message: 'x'.repeat(300_000),
      },
    };
    const e = (await rejectionOf(bus().publish([big, rotated(1)]))) as unknown as EventPublishError;
    expect(e.failed.map((f) => [f.eventId, f.code])).toEqual([['big', 'EntryTooLarge']]);
    expect(emu.events.events().map((x) => (x.detail as { id: string }).id)).toEqual(['evt-1']);
  });

  it('a throttled PutEvents call is a retryable, throttled ProviderError', async () => {
    emu.faults.failNext('PutEvents', 'ThrottlingException', 1);
    const e = (await rejectionOf(bus().publish([rotated(1)]))) as unknown as EventPublishError;
    expect(e).toMatchObject({ providerCode: 'ThrottlingException', retryable: true, throttled: true });
  });
});
