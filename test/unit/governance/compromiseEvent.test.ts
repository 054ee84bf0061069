import { describe, expect, it } from 'vitest';
import {
  type CloudEvent,
  COMPROMISE_EVENT_TYPE,
  parseCloudEvent,
  parseCompromiseEvent,
  SIGNATURE_ATTRIBUTE,
  signingBytes,
} from '../../../shared/core/domain/compromiseEvent.js';
import { HmacEventSigner } from '../../../shared/core/governance/signature.js';

const event = (over: Record<string, unknown> = {}, data: Record<string, unknown> = {}): CloudEvent => ({
  specversion: '1.0',
  type: COMPROMISE_EVENT_TYPE,
  source: 'https://siem.example.com',
  id: 'e-1',
  time: '2026-11-28T11:59:30Z',
  datacontenttype: 'application/json',
  data: { keyRef: 'local://orders', version: '2', reason: 'leak', reportedBy: 'siem', ...data },
  ...over,
});

describe('key.compromised events', () => {
  it('parses a well-formed event into what it says', () => {
    const e = parseCompromiseEvent(event({ time: '2026-11-28T12:59:30+01:00' }));
    expect(e.data).toEqual({ keyRef: 'local://orders', version: '2', reason: 'leak', reportedBy: 'siem' });
    expect(e.time).toBe('2026-11-28T11:59:30.000Z');
    expect(parseCompromiseEvent(event({}, { version: undefined })).data.version).toBeUndefined();
  });

  it.each([
    [{ specversion: '0.3' }, {}, 'CloudEvent: specversion must be "1.0" (got "0.3")'],
    [{ id: '' }, {}, 'CloudEvent: id must be a non-empty string'],
    [{ source: undefined }, {}, 'CloudEvent: source is required'],
    [{ type: 'com.example.other' }, {}, 'CloudEvent: type must be "dev.rekey.key.compromised"'],
    [{ time: undefined }, {}, 'CloudEvent: time is required'],
    [{ time: 'yesterday' }, {}, 'CloudEvent: time must be an RFC 3339 date-time'],
    [{ datacontenttype: 'text/plain' }, {}, 'CloudEvent: datacontenttype must be application/json'],
    [{ data: 'a string' }, {}, 'CloudEvent: data must be a JSON object'],
    [{ data_base64: 'AAAA' }, {}, 'CloudEvent: data_base64 is not accepted'],
    [{ 'Bad-Name': 'x' }, {}, 'CloudEvent: attribute "Bad-Name" is not a valid name'],
    [{ nested: { a: 1 } }, {}, 'CloudEvent: attribute "nested" must be a string, number or boolean'],
    [{}, { keyRef: 'ftp://nope' }, 'CloudEvent: data.keyRef is not a key ref'],
    [{}, { reason: '' }, 'CloudEvent: data.reason must not be empty'],
    [{}, { reportedBy: undefined }, 'CloudEvent: data.reportedBy is required'],
    [{}, { extra: 1 }, 'CloudEvent: data.extra is not a known field'],
    [{}, { version: 3 }, 'CloudEvent: data.version'],
  ])('refuses %j / data %j', (over, data, message) => {
    expect(() => parseCompromiseEvent(event(over, data))).toThrow(message);
  });

  it('refuses things that are not objects', () => {
    for (const v of [null, 'x', [event()], 7])
      expect(() => parseCloudEvent(v)).toThrow('CloudEvent: event must be an object');
  });

  it('signs canonical JSON without the signature: key order does not matter, any change does', async () => {
    const a = event();
    const reordered = Object.fromEntries(Object.entries(a).reverse()) as CloudEvent;
    expect(signingBytes(reordered)).toEqual(signingBytes(a));
    expect(new TextDecoder().decode(signingBytes(a))).toBe(
      '{"data":{"keyRef":"local://orders","reason":"leak","reportedBy":"siem","version":"2"},"datacontenttype":"application/json","id":"e-1","source":"https://siem.example.com","specversion":"1.0","time":"2026-11-28T11:59:30Z","type":"dev.rekey.key.compromised"}',
    );
    const signer = new HmacEventSigner(Buffer.alloc(32, 7));
    const signed = signer.sign(a);
    expect(signed[SIGNATURE_ATTRIBUTE]).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(signingBytes(signed)).toEqual(signingBytes(a));
    expect(await signer.verify(signed)).toBe(true);
    expect(await signer.verify({ ...signed, id: 'e-2' })).toBe(false);
    expect(await signer.verify({ ...signed, data: { ...(signed.data as object), version: '1' } })).toBe(
      false,
    );
    expect(await signer.verify({ ...signed, extra: 'x' })).toBe(false);
    expect(await signer.verify(a)).toBe(false);
    expect(await signer.verify({ ...signed, [SIGNATURE_ATTRIBUTE]: 'not-a-mac' })).toBe(false);
    expect(await new HmacEventSigner(Buffer.alloc(32, 8)).verify(signed)).toBe(false);
  });

  it('refuses short HMAC secrets and zeroes its copy on destroy', async () => {
    expect(() => new HmacEventSigner(Buffer.alloc(31))).toThrow('at least 32 bytes');
    const secret = Buffer.alloc(32, 5);
    const signer = new HmacEventSigner(secret);
    const signed = signer.sign(event());
    signer.destroy();
    expect(secret.equals(Buffer.alloc(32, 5))).toBe(true);
    expect(await signer.verify(signed)).toBe(false);
  });
});
