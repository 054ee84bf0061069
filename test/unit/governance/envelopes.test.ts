import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMPROMISE_EVENT_TYPE, parseCompromiseEvent } from '../../../shared/core/domain/compromiseEvent.js';
import { detectTransport, extractCloudEvents } from '../../../shared/core/governance/envelopes.js';
import { HmacEventSigner } from '../../../shared/core/governance/signature.js';

const dir = join(import.meta.dirname, '../../fixtures/governance');
const fixture = (name: string): string => readFileSync(join(dir, name), 'utf8');
const json = (name: string) => JSON.parse(fixture(name));
const signer = new HmacEventSigner(Buffer.from('rekey-fixture-secret-0123456789abcdef', 'utf8'));

describe('extractCloudEvents on realistic deliveries', () => {
  it.each([
    ['cloudevent.json', 'cloudevents', undefined],
    ['eventbridge.json', 'eventbridge', '6a7e8feb-b491-4cf7-a9f1-bf3703467718'],
    ['eventgrid-schema.json', 'eventgrid', 'a1f0c2b3-4d5e-46f7-8091-a2b3c4d5e6f7'],
    ['pubsub-structured.json', 'pubsub', '2070443601311540'],
    ['pubsub-binary.json', 'pubsub', '2070443601311541'],
    ['eventarc-pubsub.json', 'pubsub', '2070443601311541'],
  ])('%s: one event, signature intact, data as sent', async (name, transport, carrierId) => {
    const [x, ...rest] = extractCloudEvents(fixture(name));
    expect(rest).toEqual([]);
    expect(x!.transport).toBe(transport);
    expect(x!.carrierId).toBe(carrierId);
    expect(await signer.verify(x!.event)).toBe(true);
    const e = parseCompromiseEvent(x!.event);
    expect(e.data).toEqual({
      keyRef: 'local://orders',
      version: '2',
      reason: 'version 2 material seen in a heap dump',
      reportedBy: 'siem:rule-4711',
    });
    expect(e.time).toBe('2026-11-28T11:59:30.000Z');
    expect(e.event.type).toBe(COMPROMISE_EVENT_TYPE);
  });

  it('an Event Grid CloudEvents-schema batch gives every event in order', async () => {
    const all = extractCloudEvents(json('eventgrid-cloudevents.json'));
    expect(all.map((x) => x.transport)).toEqual(['cloudevents', 'cloudevents']);
    expect(all.map((x) => (x.event.data as { keyRef: string }).keyRef)).toEqual([
      'local://orders',
      'local://billing',
    ]);
    for (const x of all) expect(await signer.verify(x.event)).toBe(true);
  });

  it('accepts bytes and parsed objects as well as text, and a forced transport', () => {
    const bytes = new TextEncoder().encode(fixture('eventbridge.json'));
    expect(extractCloudEvents(bytes)[0]!.transport).toBe('eventbridge');
    expect(extractCloudEvents(json('pubsub-binary.json'), 'pubsub')[0]!.event.id).toBe(
      '8091a2b3-c4d5-4e6f-9071-8293a4b5c6d7',
    );
    expect(() => extractCloudEvents(json('eventbridge.json'), 'eventgrid')).toThrow(
      'Event Grid event: data must be the CloudEvent',
    );
  });

  it('binary Pub/Sub rebuilds exactly the signed event: a changed attribute breaks the signature', async () => {
    const m = json('pubsub-binary.json');
    m.message.attributes['ce-source'] = '//pubsub.googleapis.com/projects/other/topics/siem';
    const [x] = extractCloudEvents(m);
    expect(await signer.verify(x!.event)).toBe(false);
    const m2 = json('pubsub-binary.json');
    m2.message.data = Buffer.from(
      JSON.stringify({ keyRef: 'local://orders', version: '1', reason: 'x', reportedBy: 'y' }),
    ).toString('base64');
    expect(await signer.verify(extractCloudEvents(m2)[0]!.event)).toBe(false);
  });

  it('an envelope that disagrees with the event it carries is refused', () => {
    const eb = json('eventbridge.json');
    eb['detail-type'] = 'KMS CMK Rotation';
    expect(() => extractCloudEvents(eb)).toThrow(
      'EventBridge event: detail-type "KMS CMK Rotation" differs from the CloudEvent type "dev.rekey.key.compromised"',
    );
    const eb2 = json('eventbridge.json');
    eb2.source = 'aws.kms';
    expect(() => extractCloudEvents(eb2)).toThrow(
      'source "aws.kms" differs from the CloudEvent source "com.example.siem"',
    );
    const eg = json('eventgrid-schema.json');
    eg[0].eventType = 'Microsoft.KeyVault.KeyNearExpiry';
    expect(() => extractCloudEvents(eg)).toThrow(
      'batch[0]: Event Grid event: eventType "Microsoft.KeyVault.KeyNearExpiry" differs',
    );
  });

  it('refuses malformed deliveries with the field at fault', () => {
    expect(() => extractCloudEvents('{not json')).toThrow('delivery: is not JSON');
    expect(() => extractCloudEvents('[]')).toThrow('delivery: is an empty batch');
    expect(() => extractCloudEvents('42')).toThrow('must be a JSON object or an array of them');
    expect(() => extractCloudEvents({ hello: 'world' })).toThrow('is not a CloudEvent, an EventBridge event');
    const ps = json('pubsub-structured.json');
    ps.message.data = '%%%not base64%%%';
    expect(() => extractCloudEvents(ps)).toThrow('Pub/Sub message message.data: is not valid base64');
    const avro = json('pubsub-structured.json');
    avro.message.attributes['content-type'] = 'application/cloudevents+avro';
    expect(() => extractCloudEvents(avro)).toThrow('is an event format rekey does not read');
    const plain = json('pubsub-binary.json');
    delete plain.message.attributes['ce-specversion'];
    expect(() => extractCloudEvents(plain)).toThrow('carries no CloudEvent');
    const noId = json('pubsub-binary.json');
    delete noId.message.attributes['ce-id'];
    expect(() => extractCloudEvents(noId)).toThrow('Pub/Sub message: CloudEvent: id is required');
    const validation = [
      {
        id: '2d1781af-3a4c-4d7c-bd0c-e34b19da4e66',
        topic: '/subscriptions/x/resourceGroups/y/providers/Microsoft.EventGrid/topics/z',
        subject: '',
        eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent',
        eventTime: '2026-11-28T11:00:00Z',
        data: { validationCode: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6' },
        dataVersion: '1',
      },
    ];
    expect(() => extractCloudEvents(validation)).toThrow('subscription validation event');
    expect(() => extractCloudEvents([json('cloudevent.json'), { specversion: '0.3' }])).toThrow(
      'batch[1]: CloudEvent: specversion must be "1.0"',
    );
  });

  it('detects each transport from its shape', () => {
    expect(detectTransport(json('cloudevent.json'))).toBe('cloudevents');
    expect(detectTransport(json('eventbridge.json'))).toBe('eventbridge');
    expect(detectTransport(json('eventgrid-schema.json')[0])).toBe('eventgrid');
    expect(detectTransport(json('pubsub-structured.json'))).toBe('pubsub');
    expect(detectTransport(json('eventarc-pubsub.json'))).toBe('pubsub');
  });
});
