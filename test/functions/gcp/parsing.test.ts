/**
 * What the GCP functions read before any use case runs: deployment settings, the Pub/Sub
 * CloudEvent, Cloud KMS audit-log entries; and how they write logs and metrics. Bad input is
 * refused with the field or variable named.
 */
import { describe, expect, it } from 'vitest';
import { isPermanent } from '../../../functions/gcp/failures.js';
import { errorFields, LogMetricsSink, logger } from '../../../functions/gcp/log.js';
import { readPubSubEvent } from '../../../functions/gcp/pubsubEvent.js';
import { readSettings } from '../../../functions/gcp/settings.js';
import { ConfigError, NotFoundError, ProviderError, ValidationError } from '../../../shared/core/errors.js';
import { parseKmsAuditEvent } from '../../../shared/providers/gcp/auditEvents.js';

const KEY = 'projects/acme-data/locations/europe-west1/keyRings/ring/cryptoKeys/orders';

describe('deployment settings', () => {
  it('reads the environment with defaults', () => {
    const s = readSettings(
      {
        REKEY_STATE_URL: 'postgres://rekey@/rekey?host=/cloudsql/p1:europe-west1:db',
        REKEY_REWRAP_TOPIC: 'projects/p1/topics/rekey-rewrap',
        K_SERVICE: 'rekey-rewrap',
      },
      '/workspace',
    );
    expect(s).toEqual({
      configPath: '/workspace/rekey.yaml',
      stateUrl: 'postgres://rekey@/rekey?host=/cloudsql/p1:europe-west1:db',
      stateSchema: 'rekey',
      rewrapTopic: 'projects/p1/topics/rekey-rewrap',
      shards: 4,
      actor: 'gcp:rekey-rewrap',
    });
  });

  it('names the variable that is wrong, and never echoes a URL', () => {
    expect(() => readSettings({ REKEY_SHARDS: '0' })).toThrow(
      /REKEY_SHARDS must be an integer from 1 to 1000/,
    );
    expect(() => readSettings({ REKEY_REWRAP_TOPIC: 'rekey-rewrap' })).toThrow(ConfigError);
    expect(() => readSettings({ REKEY_EVENTS_TOPIC: 'projects/p/subscriptions/s' })).toThrow(
      /REKEY_EVENTS_TOPIC/,
    );
    let err: Error | undefined;
    try {
      readSettings({ REKEY_STATE_URL: 'mysql://root:hunter2@db/x' });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toMatch(/REKEY_STATE_URL must be a postgres/);
    expect(err?.message).not.toContain('hunter2');
  });
});

describe('Pub/Sub CloudEvents', () => {
  const event = (message: unknown, type = 'google.cloud.pubsub.topic.v1.messagePublished') =>
    ({
      id: '1',
      source: 's',
      specversion: '1.0',
      type,
      data: { message, subscription: 'projects/p/subscriptions/s' },
    }) as never;

  it('decodes data, attributes and the message id (both spellings)', () => {
    const d = readPubSubEvent(
      event({ data: Buffer.from('{"a":1}').toString('base64'), attributes: { kind: 'x' }, message_id: '42' }),
    );
    expect(d).toEqual({
      messageId: '42',
      data: Buffer.from('{"a":1}'),
      attributes: { kind: 'x' },
      subscription: 'projects/p/subscriptions/s',
    });
  });

  it('refuses other event types and malformed messages', () => {
    expect(() =>
      readPubSubEvent(event({ messageId: '1' }, 'google.cloud.storage.object.v1.finalized')),
    ).toThrow(/is not google.cloud.pubsub.topic.v1.messagePublished/);
    expect(() => readPubSubEvent(event(undefined))).toThrow(/data.message is missing/);
    expect(() => readPubSubEvent(event({ data: 'eA==' }))).toThrow(/messageId is missing/);
    expect(() => readPubSubEvent(event({ messageId: '1', data: 5 }))).toThrow(/base64 string/);
    expect(() => readPubSubEvent(event({ messageId: '1', attributes: { a: 1 } }))).toThrow(
      /attribute a is not a string/,
    );
  });
});

describe('Cloud KMS audit-log events', () => {
  const entry = (payload: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    specversion: '1.0',
    id: 'projects/p1/logs/cloudaudit.googleapis.com%2Factivity-abc123',
    type: 'google.cloud.audit.log.v1.written',
    source: '//cloudaudit.googleapis.com/projects/p1/logs/activity',
    time: '2026-11-28T12:00:01Z',
    data: {
      protoPayload: {
        '@type': 'type.googleapis.com/google.cloud.audit.AuditLog',
        serviceName: 'cloudkms.googleapis.com',
        resourceName: KEY,
        ...payload,
      },
      timestamp: '2026-11-28T12:00:00.123456Z',
    },
    ...extra,
  });

  it('turns a new version or a new primary into a version_created key event', () => {
    expect(
      parseKmsAuditEvent(
        entry({ methodName: 'CreateCryptoKeyVersion', response: { name: `${KEY}/cryptoKeyVersions/7` } }),
      ),
    ).toEqual({
      event: {
        provider: 'gcp-kms',
        keyRef: `gcp-kms://${KEY}`,
        kind: 'version_created',
        version: '7',
        at: '2026-11-28T12:00:00.123Z',
        eventId: 'projects/p1/logs/cloudaudit.googleapis.com%2Factivity-abc123',
      },
    });
    const promoted = parseKmsAuditEvent(
      entry({
        methodName: 'google.cloud.kms.v1.KeyManagementService.UpdateCryptoKeyPrimaryVersion',
        request: { name: KEY, cryptoKeyVersionId: '3' },
      }),
    );
    expect(promoted).toMatchObject({ event: { kind: 'version_created', version: '3' } });
  });

  it('ignores other methods and failed calls', () => {
    expect(parseKmsAuditEvent(entry({ methodName: 'Decrypt' }))).toEqual({
      ignored: 'Decrypt does not change which version DEKs should be under',
    });
    expect(parseKmsAuditEvent(entry({ methodName: 'CreateCryptoKeyVersion', status: { code: 7 } }))).toEqual({
      ignored: 'the CreateCryptoKeyVersion call failed (status 7)',
    });
  });

  it('refuses malformed entries naming the field', () => {
    const cases: Array<[unknown, RegExp]> = [
      [null, /event must be an object/],
      [
        { ...entry({ methodName: 'x' }), type: 'google.cloud.pubsub.topic.v1.messagePublished' },
        /type .* is not/,
      ],
      [{ ...entry({}), data: 'nope' }, /data is not JSON/],
      [{ ...entry({}), data: {} }, /data.protoPayload must be an AuditLog/],
      [
        entry({ methodName: 'CreateCryptoKeyVersion', serviceName: 'storage.googleapis.com' }),
        /serviceName is storage/,
      ],
      [
        entry({ methodName: 'CreateCryptoKeyVersion', resourceName: 'projects/p1/topics/t' }),
        /must name a Cloud KMS crypto key/,
      ],
      [entry({}), /methodName must be a non-empty string/],
      [{ ...entry({ methodName: 'CreateCryptoKeyVersion' }), id: '' }, /id must be a non-empty string/],
    ];
    for (const [input, why] of cases) {
      expect(() => parseKmsAuditEvent(input)).toThrow(ValidationError);
      expect(() => parseKmsAuditEvent(input)).toThrow(why);
    }
  });
});

describe('logs and metrics', () => {
  it('writes Cloud Logging JSON lines and metrics as log entries, skipping zero counters', () => {
    const lines: string[] = [];
    const log = logger('rekey-rewrap', (l) => lines.push(l));
    new LogMetricsSink(log, { runtime: 'gcp' }).record([
      {
        name: 'rekey.rewrap.rewrapped',
        value: 50,
        unit: 'Count',
        dimensions: { store: 'orders' },
        properties: { keyRef: 'k' },
      },
      { name: 'rekey.rewrap.failed', value: 0, unit: 'Count', dimensions: { store: 'orders' } },
      { name: 'rekey.rewrap.rate', value: 0, unit: 'Count/Second', dimensions: { store: 'orders' } },
    ]);
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed.map((p) => p.metric.name)).toEqual(['rekey.rewrap.rewrapped', 'rekey.rewrap.rate']);
    expect(parsed[0]).toEqual({
      severity: 'INFO',
      message: 'metric rekey.rewrap.rewrapped',
      metric: {
        name: 'rekey.rewrap.rewrapped',
        value: 50,
        unit: 'Count',
        dimensions: { runtime: 'gcp', store: 'orders' },
      },
      properties: { keyRef: 'k' },
      'logging.googleapis.com/labels': { app: 'rekey', function: 'rekey-rewrap' },
    });
  });

  it('keeps stacks for unexpected errors only; sorts failures into retry or acknowledge', () => {
    expect(errorFields(new ValidationError('bad'))).toEqual({
      error: { name: 'ValidationError', code: 'VALIDATION', message: 'bad' },
    });
    expect(errorFields(new TypeError('boom'))).toHaveProperty('stack_trace');
    expect(isPermanent(new ValidationError('x'))).toBe(true);
    expect(isPermanent(new NotFoundError('x'))).toBe(true);
    expect(isPermanent(new ProviderError('gcp', 'PERMISSION_DENIED', 'x', { retryable: false }))).toBe(true);
    expect(isPermanent(new ProviderError('gcp', 'UNAVAILABLE', 'x', { retryable: true }))).toBe(false);
    expect(isPermanent(new Error('connection reset'))).toBe(false);
  });
});
