import { describe, expect, it } from 'vitest';
import { errorFields, isRetryable, readSettings } from '../../../functions/aws/runtime.js';
import { ConfigError, ProviderError, ValidationError } from '../../../shared/core/errors.js';

const base = { REKEY_STATE_TABLE: 'rekey-state', LAMBDA_TASK_ROOT: '/var/task' };

describe('AWS function settings', () => {
  it('reads the environment serverless.yml sets', () => {
    expect(
      readSettings(
        {
          ...base,
          REKEY_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/111122223333/rekey-shards',
          REKEY_EVENT_BUS: 'rekey',
          REKEY_SHARDS: '8',
          AWS_LAMBDA_FUNCTION_NAME: 'rekey-prod-scheduler',
        },
        { queue: true },
      ),
    ).toEqual({
      configPath: '/var/task/dist/aws/rekey.config.json',
      root: '/var/task',
      stateTable: 'rekey-state',
      queueUrl: 'https://sqs.eu-west-1.amazonaws.com/111122223333/rekey-shards',
      eventBus: 'rekey',
      shards: 8,
      actor: 'aws-lambda:rekey-prod-scheduler',
    });
    expect(readSettings({ ...base, REKEY_CONFIG: 'conf/prod.json' }).configPath).toBe(
      '/var/task/conf/prod.json',
    );
    expect(
      readSettings({
        ...base,
        REKEY_CONFIG: '/opt/rekey.config.json',
        REKEY_CONFIG_DIGEST: 'ab12',
        REKEY_ACTOR: 'svc:rekey',
      }),
    ).toMatchObject({
      configPath: '/opt/rekey.config.json',
      configDigest: 'ab12',
      actor: 'svc:rekey',
    });
  });

  it('names the variable that is missing or malformed', () => {
    expect(() => readSettings({})).toThrow(ConfigError);
    expect(() => readSettings({})).toThrow(/REKEY_STATE_TABLE/);
    expect(() => readSettings(base, { queue: true })).toThrow(/REKEY_QUEUE_URL/);
    expect(() => readSettings(base, { idempotency: true })).toThrow(/REKEY_IDEMPOTENCY_TABLE/);
    expect(() => readSettings({ ...base, REKEY_SHARDS: 'many' })).toThrow(/REKEY_SHARDS must be an integer/);
    expect(() => readSettings({ ...base, REKEY_SHARDS: '0' })).toThrow(/REKEY_SHARDS/);
  });

  it('retries only what a provider says is transient, and logs errors without stacks', () => {
    expect(
      isRetryable(new ProviderError('aws', 'ThrottlingException', 'slow down', { retryable: true })),
    ).toBe(true);
    expect(isRetryable(new ProviderError('aws', 'AccessDenied', 'no'))).toBe(false);
    expect(isRetryable(new ValidationError('bad'))).toBe(false);
    expect(errorFields(new ValidationError('bad input'))).toEqual({
      errorType: 'ValidationError',
      errorCode: 'VALIDATION',
      error: 'bad input',
    });
    expect(errorFields('oops')).toEqual({ error: 'oops' });
  });
});
