import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI, generateKeyPair } from 'jose';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { type CloudEvent, COMPROMISE_EVENT_TYPE } from '../../../shared/core/domain/compromiseEvent.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { extractCloudEvents } from '../../../shared/core/governance/envelopes.js';
import { type EventVerifier, HmacEventSigner } from '../../../shared/core/governance/signature.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import type { KeyProvider } from '../../../shared/core/ports/KeyProvider.js';
import {
  EventRefused,
  handleCompromiseEvent,
  listIncidents,
} from '../../../shared/core/usecases/handleCompromise.js';
import {
  eventVerifierFromConfig,
  JwsEventVerifier,
  signEventJws,
} from '../../../shared/governance/signing.js';
import { lostDeks, type TestWorkspace, testWorkspace } from '../../support/workspace.js';

/**
 * key.compromised CloudEvents end to end on the embedded default: accepted only from configured
 * sources with a valid signature, once per event id, while fresh; every refusal audited and
 * leaving keys, DEKs and records as they were.
 */
const SOURCE = 'https://siem.example.com/rules/kms';
const SECRET = Buffer.from('an-incident-secret-of-at-least-32-bytes!', 'utf8');
const YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
incidents:
  sources: [${SOURCE}, https://edr.example.com]
  signing: { hmac: { secretEnv: REKEY_TEST_INCIDENT_KEY } }
  maxAge: PT30M
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full, batchSize: 25 }
`;

const dir = mkdtempSync(join(tmpdir(), 'rekey-gov-events-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let w: TestWorkspace;
afterEach(async () => {
  await w?.close();
});
const signer = new HmacEventSigner(SECRET);

async function setup(wrap?: (p: KeyProvider) => KeyProvider): Promise<string> {
  w = await testWorkspace(YAML, wrap);
  w.ctx.actor = 'svc-incidents';
  return w.seed('orders', 60);
}

function event(over: Partial<CloudEvent> = {}, data: Record<string, unknown> = {}): CloudEvent {
  return {
    specversion: '1.0',
    type: COMPROMISE_EVENT_TYPE,
    source: SOURCE,
    id: 'evt-0001',
    time: new Date(w.clock.now().getTime() - 5 * 60_000).toISOString(),
    datacontenttype: 'application/json',
    data: {
      keyRef: 'local://orders',
      version: '1',
      reason: 'material in a heap dump',
      reportedBy: 'siem:rule-4711',
      ...data,
    },
    ...over,
  };
}

/** Everything a refused event must leave untouched. */
async function snapshot() {
  const key = await w.local.getKey(parseKeyRef('local://orders'));
  return {
    key,
    deks: await w.store.countByVersion('local://orders'),
    incidents: await w.state.listRecords('incident', { limit: 100 }),
    events: await w.state.listRecords('incident-event', { limit: 100 }),
    marks: await w.state.listRecords('compromised', { limit: 100 }),
  };
}

async function refused(input: unknown, verify: EventVerifier = signer) {
  const e = await handleCompromiseEvent(w.ctx, input, { verify }).then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(EventRefused);
  return e as EventRefused;
}

describe('handleCompromiseEvent', () => {
  it('contains the version once; the same event again returns the earlier outcome', async () => {
    await setup();
    const signed = signer.sign(event());
    const first = await handleCompromiseEvent(w.ctx, signed, { verify: signer });
    expect(first).toMatchObject({ eventId: 'evt-0001', source: SOURCE, outcome: 'handled' });
    expect(first.incident).toMatchObject({
      status: 'contained',
      version: '1',
      newVersion: '2',
      reportedBy: 'siem:rule-4711',
      origin: { source: SOURCE, eventId: 'evt-0001' },
      deksMoved: 60,
    });
    expect(first.incident.reportedAt).toBe(signed.time ? new Date(signed.time).toISOString() : '');
    expect(first.incident.timeToContainMs).toBeGreaterThanOrEqual(5 * 60_000);
    const again = await handleCompromiseEvent(w.ctx, signed, { verify: signer });
    expect(again).toMatchObject({
      outcome: 'duplicate',
      incident: { id: first.incident.id, status: 'contained' },
    });
    const key = await w.local.getKey(parseKeyRef('local://orders'));
    expect(key.versions.map((v) => [v.id, v.state])).toEqual([
      ['1', 'disabled'],
      ['2', 'enabled'],
    ]);
    expect(await lostDeks(w)).toEqual([]);
    expect(await listIncidents(w.ctx)).toHaveLength(1);
    // A late redelivery (past maxAge) of the same event is still a duplicate, not a new action.
    w.clock.advance(2 * 3600_000);
    expect((await handleCompromiseEvent(w.ctx, signed, { verify: signer })).outcome).toBe('duplicate');
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
  });

  it('refuses forged, replayed, stale and unknown-key events, audits each, and changes nothing', async () => {
    await setup();
    const before = await snapshot();
    const cases: [unknown, string, RegExp][] = [
      [
        signer.sign(event({ source: 'https://evil.example.com' })),
        'source',
        /source "https:\/\/evil.example.com" is not one of incidents.sources/,
      ],
      [{ ...signer.sign(event()), id: 'evt-9999' }, 'signature', /the hmac-sha256 signature does not verify/],
      [event(), 'signature', /does not verify/],
      [new HmacEventSigner(Buffer.alloc(40, 1)).sign(event()), 'signature', /does not verify/],
      [
        signer.sign(event({ time: new Date(w.clock.now().getTime() - 31 * 60_000).toISOString() })),
        'stale',
        /older than incidents.maxAge PT30M/,
      ],
      [
        signer.sign(event({ time: new Date(w.clock.now().getTime() + 3600_000).toISOString() })),
        'future',
        /in the future/,
      ],
      [signer.sign(event({}, { keyRef: 'local://nope' })), 'unknown_key', /local:\/\/nope/],
      [signer.sign(event({}, { version: '7' })), 'unknown_version', /has no version 7/],
      [
        signer.sign(
          event(
            {},
            {
              keyRef: 'aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
            },
          ),
        ),
        'unknown_key',
        /no aws-kms provider is configured/,
      ],
      [{ ...event(), type: 'com.example.other' }, 'malformed', /type must be "dev.rekey.key.compromised"/],
      ['not even an object', 'malformed', /event must be an object/],
    ];
    for (const [input, refusal, message] of cases) {
      const e = await refused(input);
      expect(e.refusal, String(message)).toBe(refusal);
      expect(e.message).toMatch(message);
    }
    expect(await snapshot()).toEqual(before);
    const audit = (await w.state.auditRead(1, 1000)).filter((r) => r.action === 'incident.event_refused');
    expect(audit.map((r) => r.details.refusal)).toEqual(cases.map((c) => c[1]));
    expect(audit.every((r) => r.actor === 'svc-incidents')).toBe(true);
  });

  it('an event id seen before with other content is a replay: refused, nothing done', async () => {
    await setup();
    await handleCompromiseEvent(w.ctx, signer.sign(event()), { verify: signer });
    const before = await snapshot();
    const e = await refused(signer.sign(event({}, { reason: 'something else' })));
    expect(e.refusal).toBe('replayed');
    expect(e.message).toBe(`event id evt-0001 from ${SOURCE} was already used by a different event`);
    expect(await snapshot()).toEqual(before);
    // The same id from another configured source is another event.
    const other = await handleCompromiseEvent(
      w.ctx,
      signer.sign(event({ source: 'https://edr.example.com' }, { version: '2' })),
      {
        verify: signer,
      },
    );
    expect(other.outcome).toBe('handled');
  });

  it('without an incidents block no event is accepted', async () => {
    await setup();
    w.ctx.config = loadConfig(YAML.replace(/incidents:[\s\S]*?maxAge: PT30M\n/, ''), 'test.yaml');
    const e = await refused(signer.sign(event()));
    expect(e.refusal).toBe('not_configured');
    expect(e.message).toBe('compromise events are not accepted: test.yaml has no incidents block');
  });

  it('a crash after the event was accepted is finished by the redelivery, with one rotation', async () => {
    let rotations = 0;
    let failNextDisable = true;
    await setup((p) =>
      Object.assign(Object.create(p) as KeyProvider, {
        rotate: async (ref: Parameters<KeyProvider['rotate']>[0]) => {
          rotations++;
          return p.rotate(ref);
        },
        setVersionState: async (...a: Parameters<KeyProvider['setVersionState']>) => {
          if (failNextDisable) {
            failNextDisable = false;
            throw new Error('process died');
          }
          return p.setVersionState(...a);
        },
      }),
    );
    const signed = signer.sign(event());
    const first = await handleCompromiseEvent(w.ctx, signed, { verify: signer });
    expect(first.incident.status).toBe('open');
    expect(first.incident.failures.map((f) => f.error)).toEqual(['process died']);
    const second = await handleCompromiseEvent(w.ctx, signed, { verify: signer });
    expect(second).toMatchObject({
      outcome: 'handled',
      incident: { id: first.incident.id, status: 'contained', runs: 2 },
    });
    expect(rotations).toBe(1);
    expect((await handleCompromiseEvent(w.ctx, signed, { verify: signer })).outcome).toBe('duplicate');
  });

  it('takes events out of their envelopes and checks detached JWS signatures (ES256)', async () => {
    await setup();
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const verify = new JwsEventVerifier(publicKey, 'ES256');
    const signed = await signEventJws(event(), privateKey, 'ES256');
    expect(signed.rekeysignature).toMatch(/^[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+$/);
    const delivery = {
      message: {
        attributes: { 'content-type': 'application/cloudevents+json' },
        data: Buffer.from(JSON.stringify(signed)).toString('base64'),
        messageId: '1',
      },
      subscription: 'projects/p/subscriptions/s',
    };
    const [x] = extractCloudEvents(JSON.stringify(delivery));
    const out = await handleCompromiseEvent(w.ctx, x!.event, { verify });
    expect(out.incident.status).toBe('contained');
    // Another key's signature, an HMAC where a JWS is expected, an embedded payload: refused.
    const other = await generateKeyPair('ES256');
    expect(
      (await refused(await signEventJws(event({ id: 'e2' }), other.privateKey, 'ES256'), verify)).refusal,
    ).toBe('signature');
    expect((await refused(signer.sign(event({ id: 'e3' })), verify)).refusal).toBe('signature');
    const s = (await signEventJws(event({ id: 'e4' }), privateKey, 'ES256')).rekeysignature as string;
    const [h, sig] = s.split('..');
    const embedded = {
      ...event({ id: 'e4' }),
      rekeysignature: `${h}.${Buffer.from('{}').toString('base64url')}.${sig}`,
    };
    expect((await refused(embedded, verify)).refusal).toBe('signature');
  });

  it('builds its verifier from incidents.signing (HMAC from the environment, JWS from a PEM file)', async () => {
    await setup();
    const env = { REKEY_TEST_INCIDENT_KEY: SECRET.toString('utf8') };
    const hmac = await eventVerifierFromConfig(w.ctx.config, dir, env);
    expect(await hmac.verify(signer.sign(event()))).toBe(true);
    await expect(eventVerifierFromConfig(w.ctx.config, dir, {})).rejects.toThrow(
      'incidents.signing.hmac: environment variable REKEY_TEST_INCIDENT_KEY is not set',
    );
    await expect(
      eventVerifierFromConfig(w.ctx.config, dir, { REKEY_TEST_INCIDENT_KEY: 'short' }),
    ).rejects.toThrow('holds fewer than 32 bytes');
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { extractable: true });
    writeFileSync(join(dir, 'siem.pub.pem'), await exportSPKI(publicKey));
    const jwsConfig = loadConfig(
      YAML.replace(
        '{ hmac: { secretEnv: REKEY_TEST_INCIDENT_KEY } }',
        '{ jws: { publicKeyFile: siem.pub.pem, alg: EdDSA } }',
      ),
      join(dir, 'x.yaml'),
    );
    const jws = await eventVerifierFromConfig(jwsConfig, dir, {});
    expect(await jws.verify(await signEventJws(event(), privateKey, 'EdDSA'))).toBe(true);
    const missing = loadConfig(
      YAML.replace(
        '{ hmac: { secretEnv: REKEY_TEST_INCIDENT_KEY } }',
        '{ jws: { publicKeyFile: nope.pem, alg: ES256 } }',
      ),
      'x.yaml',
    );
    await expect(eventVerifierFromConfig(missing, dir, {})).rejects.toThrow(
      /incidents.signing.jws: cannot read public key .*nope.pem: ENOENT/,
    );
  });
});
