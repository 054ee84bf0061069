/**
 * The built events function on rekey's own `key.compromised` CloudEvents, delivered by
 * EventBridge from the rekey bus exactly as a producer put them (PutEvents with Source = the
 * CloudEvent's source, DetailType = its type, Detail = the signed event): a signed event from a
 * listed source rotates the key and moves every DEK off the compromised material; the same event
 * again changes nothing; unsigned, forged, tampered, unlisted and replayed events are refused,
 * audited and change nothing.
 */
import { randomUUID } from 'node:crypto';
import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import type { EventBridgeEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CloudEvent, COMPROMISE_EVENT_TYPE } from '../../../shared/core/domain/compromiseEvent.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { HmacEventSigner } from '../../../shared/core/governance/signature.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import {
  type AwsStack,
  CONFIG_YAML,
  captureStdout,
  type Handler,
  lambdaContext,
  loadBundle,
  notAllowed,
  observeCalls,
  REGION,
  startStack,
} from './helpers.js';

const SOURCE = 'https://siem.example.com/rules/kms';
const SECRET = 'incident-secret-for-tests-only-0123456789abcdef';
const CONFIG = `${CONFIG_YAML}incidents:
  sources: [${SOURCE}]
  signing: { hmac: { secretEnv: REKEY_INCIDENT_KEY } }
  maxAge: PT1H
`;

type Delivery = EventBridgeEvent<string, unknown>;
let stack: AwsStack;
let events: Handler<Delivery, Record<string, unknown>>;
let state: DynamoStateStore;
let orders: string;
let compromised: string;
let out: ReturnType<typeof captureStdout>;
const calls = new Set<string>();
const signer = new HmacEventSigner(Buffer.from(SECRET));

function cloudEvent(over: Partial<CloudEvent> = {}, data: Record<string, unknown> = {}): CloudEvent {
  return {
    specversion: '1.0',
    type: COMPROMISE_EVENT_TYPE,
    source: SOURCE,
    id: randomUUID(),
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: {
      keyRef: parseKeyRef(orders).uri,
      version: compromised,
      reason: 'key material seen in a heap dump',
      reportedBy: 'siem:rule-4711',
      ...data,
    },
    ...over,
  };
}

/** Puts the event on the rekey bus as a producer does, and returns what EventBridge delivers. */
async function deliver(event: CloudEvent, envelope: { source?: string } = {}): Promise<Delivery> {
  const client = new EventBridgeClient({
    region: REGION,
    endpoint: stack.emu.endpoint,
    credentials: { accessKeyId: 'AKIASIEM000000000000', secretAccessKey: 'siem-not-a-secret' },
  });
  try {
    await client.send(
      new PutEventsCommand({
        Entries: [
          {
            EventBusName: stack.bus,
            Source: envelope.source ?? event.source,
            DetailType: event.type,
            Detail: JSON.stringify(event),
          },
        ],
      }),
    );
  } finally {
    client.destroy();
  }
  const { eventBusName: _bus, ...delivered } = stack.emu.events.events({ detailType: event.type }).at(-1)!;
  return delivered as Delivery;
}

const audited = async (action: string) =>
  (await state.auditRead(1, 10_000)).filter((r) => r.action === action);
const versions = async () => (await stack.provider.getKey(parseKeyRef(orders))).versions.map((v) => v.id);

beforeAll(async () => {
  stack = await startStack({ keysCreatedDaysAgo: 10, config: CONFIG });
  orders = await stack.createKey('orders', { 'data-class': 'pci' });
  await stack.seed(orders, 40);
  compromised = (await stack.provider.getKey(parseKeyRef(orders))).primaryVersion;
  stack.emu.clock.set(new Date());
  stack.applyEnv({ REKEY_INCIDENT_KEY: SECRET });
  state = new DynamoStateStore({ table: stack.stateTable, doc: stack.dyn.client() });
  events = observeCalls(stack, await loadBundle('events'), calls);
  out = captureStdout();
});

afterAll(async () => {
  out?.stop();
  await stack?.close();
});

describe('events function: key.compromised', () => {
  it('refuses an unsigned event, changing nothing', async () => {
    const r = await events(await deliver(cloudEvent()), lambdaContext('events'));
    expect(r).toMatchObject({
      outcome: 'refused',
      reason: expect.stringMatching(/signature does not verify/),
    });
    expect(await versions()).toEqual([compromised]);
    expect(await stack.deks.countByVersion(orders)).toEqual({ [compromised]: 40 });
    expect((await audited('incident.event_refused')).map((a) => a.details.refusal)).toEqual(['signature']);
  });

  it('refuses a forged signature, a tampered event and an unlisted source', async () => {
    const forged = new HmacEventSigner(Buffer.from('another-secret-of-at-least-32-bytes!!')).sign(
      cloudEvent(),
    );
    expect(await events(await deliver(forged), lambdaContext('events'))).toMatchObject({
      outcome: 'refused',
    });
    const signed = signer.sign(cloudEvent());
    const tampered = { ...signed, data: { ...(signed.data as object), reason: 'nothing to see' } };
    expect(await events(await deliver(tampered), lambdaContext('events'))).toMatchObject({
      outcome: 'refused',
    });
    const elsewhere = signer.sign(cloudEvent({ source: 'https://attacker.example.com' }));
    expect(await events(await deliver(elsewhere), lambdaContext('events'))).toMatchObject({
      outcome: 'refused',
      reason: expect.stringMatching(/not one of incidents.sources/),
    });
    // An envelope that does not agree with the event it carries never reaches the use case.
    const mismatched = await deliver(signer.sign(cloudEvent()), { source: 'com.example.other' });
    expect(await events(mismatched, lambdaContext('events'))).toMatchObject({ outcome: 'rejected' });
    expect((await audited('incident.event_refused')).map((a) => a.details.refusal)).toEqual([
      'signature',
      'signature',
      'signature',
      'source',
    ]);
    expect(await versions()).toEqual([compromised]);
    expect(await stack.deks.countByVersion(orders)).toEqual({ [compromised]: 40 });
  });

  let first: CloudEvent;
  let result: Record<string, unknown>;
  it('a signed event rotates the key and moves every DEK off the compromised material', async () => {
    first = signer.sign(cloudEvent());
    result = await events(await deliver(first), lambdaContext('events'));
    // AWS KMS cannot disable one key material: the DEKs are moved, the whole key is to retire.
    expect(result).toMatchObject({ outcome: 'retire_key', eventId: expect.any(String), rewrapped: 40 });
    const key = await stack.provider.getKey(parseKeyRef(orders));
    expect(key.primaryVersion).not.toBe(compromised);
    expect(result.rotatedTo).toBe(key.primaryVersion);
    expect(await stack.deks.countByVersion(orders)).toEqual({ [key.primaryVersion]: 40 });
    for (const [id, pt] of stack.plaintexts) {
      const d = (await stack.deks.get(id))!;
      const got = Buffer.from(
        await stack.provider.unwrap(
          parseKeyRef(orders),
          { version: d.version, ciphertext: d.wrapped },
          d.context,
        ),
      );
      expect(got.equals(pt)).toBe(true);
      got.fill(0);
    }
    expect(await audited('incident.event_accepted')).toHaveLength(1);
    expect(await audited('version.compromised')).toHaveLength(1);
    const rotated = stack.emu.events.events({ source: 'rekey', detailType: 'KeyRotated' });
    expect(rotated.map((e) => (e.detail as { reason?: string }).reason)).toEqual(['compromise']);
    const line = out
      .lines()
      .filter((l) => l.includes('"level"'))
      .map((l) => JSON.parse(l))
      .find((l) => l.message === 'compromise handled: retire the key');
    expect(line).toMatchObject({ keyRef: parseKeyRef(orders).uri, incidentId: result.incidentId });
  });

  it('the same event delivered again changes nothing', async () => {
    const before = {
      versions: await versions(),
      rotations: stack.emu.requestCounts['kms.RotateKeyOnDemand'],
    };
    const again = await events(await deliver(structuredClone(first)), lambdaContext('events'));
    expect(again).toMatchObject({ outcome: 'retire_key', incidentId: result.incidentId });
    expect(await versions()).toEqual(before.versions);
    expect(stack.emu.requestCounts['kms.RotateKeyOnDemand']).toBe(before.rotations);
    expect(await audited('key.rotated')).toHaveLength(1);
    expect(await audited('incident.event_accepted')).toHaveLength(1);
  });

  it('refuses the event id used again with other content', async () => {
    const resigned = signer.sign({ ...first, data: { ...(first.data as object), reason: 'again' } });
    const r = await events(await deliver(resigned), lambdaContext('events'));
    expect(r).toMatchObject({
      outcome: 'refused',
      reason: expect.stringMatching(/already used by a different event/),
    });
    expect((await audited('incident.event_refused')).at(-1)?.details.refusal).toBe('replayed');
    expect(await audited('key.rotated')).toHaveLength(1);
  });

  it('called only what the events role in serverless.yml allows', () => {
    expect(calls).toContain('kms.RotateKeyOnDemand');
    expect(notAllowed(calls, 'EventsRole')).toEqual([]);
  });
});
