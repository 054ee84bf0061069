import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../shared/core/errors.js';
import { parseKmsEvent } from '../../../shared/providers/aws/events.js';

const KEY_ID = '1234abcd-12ab-34cd-56ef-1234567890ab';
const ARN = `arn:aws:kms:us-west-2:111122223333:key/${KEY_ID}`;

/** The shape of the examples in the AWS KMS developer guide (EventBridge events). */
const event = (over: Record<string, unknown> = {}) => ({
  version: '0',
  id: '6a7e8feb-b491-4cf7-a9f1-bf3703467718',
  'detail-type': 'KMS CMK Rotation',
  source: 'aws.kms',
  account: '111122223333',
  time: '2026-05-23T03:11:54Z',
  region: 'us-west-2',
  resources: [ARN],
  detail: { 'key-id': KEY_ID },
  ...over,
});

const refused = (input: unknown): string => {
  try {
    parseKmsEvent(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    return (e as Error).message;
  }
  throw new Error('expected a ValidationError');
};

describe('parseKmsEvent', () => {
  it('turns a rotation into a version_created key event for the key ARN', () => {
    expect(parseKmsEvent(event())).toEqual({
      kind: 'key_event',
      event: {
        provider: 'aws-kms',
        keyRef: `aws-kms://${ARN}`,
        kind: 'version_created',
        at: '2026-05-23T03:11:54.000Z',
        eventId: '6a7e8feb-b491-4cf7-a9f1-bf3703467718',
      },
    });
  });

  it('takes the key material id as the version when the event names it', () => {
    const material = 'ab'.repeat(32);
    const r = parseKmsEvent(event({ detail: { 'key-id': KEY_ID, 'key-material-id': material, extra: 1 } }));
    expect(r).toMatchObject({ kind: 'key_event', event: { version: material } });
    expect(refused(event({ detail: { 'key-id': KEY_ID, 'key-material-id': 'nope' } }))).toMatch(
      /detail\.key-material-id/,
    );
  });

  it('maps imported material expiry to expired and a deletion to a notice', () => {
    expect(parseKmsEvent(event({ 'detail-type': 'KMS Imported Key Material Expiration' }))).toMatchObject({
      kind: 'key_event',
      event: { kind: 'expired' },
    });
    expect(parseKmsEvent(event({ 'detail-type': 'KMS CMK Deletion' }))).toEqual({
      kind: 'key_deleted',
      keyRef: `aws-kms://${ARN}`,
      at: '2026-05-23T03:11:54.000Z',
      eventId: '6a7e8feb-b491-4cf7-a9f1-bf3703467718',
    });
  });

  it('accepts multi-Region key ids', () => {
    const mrk = 'mrk-1234abcd12ab34cd56ef1234567890ab';
    const arn = `arn:aws:kms:us-west-2:111122223333:key/${mrk}`;
    expect(parseKmsEvent(event({ resources: [arn], detail: { 'key-id': mrk } }))).toMatchObject({
      event: { keyRef: `aws-kms://${arn}` },
    });
  });

  it('refuses anything else, naming the field', () => {
    expect(refused(null)).toMatch(/event must be an object/);
    expect(refused([event()])).toMatch(/event must be an object/);
    expect(refused(event({ id: '' }))).toMatch(/\bid must be a non-empty string/);
    expect(refused(event({ source: 'aws.s3' }))).toMatch(/source must be "aws.kms"/);
    expect(refused(event({ 'detail-type': 'AWS API Call via CloudTrail' }))).toMatch(
      /detail-type .* not a KMS key event/,
    );
    expect(refused(event({ time: 'yesterday' }))).toMatch(/time must be an ISO-8601/);
    expect(refused(event({ account: '42' }))).toMatch(/account must be a 12-digit/);
    expect(refused(event({ resources: [] }))).toMatch(/resources must hold exactly one key ARN/);
    expect(refused(event({ resources: [ARN, ARN] }))).toMatch(/resources must hold exactly one/);
    expect(refused(event({ resources: ['arn:aws:s3:::bucket'] }))).toMatch(
      /resources\[0\] must be a KMS key ARN/,
    );
    expect(refused(event({ resources: [ARN.replace('key/', 'alias/')] }))).toMatch(/resources\[0\]/);
    expect(refused(event({ region: 'eu-west-1' }))).toMatch(/region does not match/);
    expect(refused(event({ account: '999999999999' }))).toMatch(/account does not match/);
    expect(refused(event({ resources: [ARN.replace(KEY_ID, 'not-a-key-id')] }))).toMatch(/resources\[0\]/);
    expect(refused(event({ detail: null }))).toMatch(/detail must be an object/);
    expect(refused(event({ detail: {} }))).toMatch(/detail\.key-id must be a non-empty string/);
    expect(refused(event({ detail: { 'key-id': 'ffffffff-12ab-34cd-56ef-1234567890ab' } }))).toMatch(
      /detail\.key-id does not match the key ARN/,
    );
  });
});
