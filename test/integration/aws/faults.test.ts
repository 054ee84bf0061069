/**
 * Fault injection: the shared crypto quota, random throttling and 5xx, scripted failures, and
 * the SDK's own retries staying bounded.
 */
import { CreateKeyCommand, EncryptCommand, type KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { emulator, kmsClient, rejectionOf } from './helpers.js';

let emu: AwsEmulator;
let kms: KMSClient;
let keyId: string;

beforeAll(async () => {
  emu = await emulator();
  kms = kmsClient(emu);
});
afterAll(async () => {
  kms.destroy();
  await emu.close();
});
beforeEach(async () => {
  emu.reset();
  keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
});

const encrypt = (client: KMSClient = kms) =>
  client.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('payload') }));

describe('crypto request quota', () => {
  it('throttles crypto operations over the quota with ThrottlingException (HTTP 400)', async () => {
    emu.faults.set({ cryptoRequestsPerSecond: 1, cryptoBurst: 5 });
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => encrypt()));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results
      .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      .map((r) => r.reason);
    expect(ok).toBeGreaterThanOrEqual(5);
    expect(refused.length).toBeGreaterThan(0);
    for (const e of refused) {
      expect(e.name).toBe('ThrottlingException');
      expect(e.$metadata.httpStatusCode).toBe(400);
    }
    expect(emu.faults.counts.quota).toBe(refused.length);
    // Control-plane calls do not draw from the crypto quota.
    await expect(kms.send(new ListKeysCommand({}))).resolves.toBeDefined();
  });

  it('is configurable over the control API', async () => {
    const res = await fetch(`${emu.endpoint}/_emulator/faults`, {
      method: 'POST',
      body: JSON.stringify({ cryptoRequestsPerSecond: 1, cryptoBurst: 1 }),
    });
    expect(res.status).toBe(200);
    const results = await Promise.allSettled([encrypt(), encrypt(), encrypt()]);
    expect(results.filter((r) => r.status === 'rejected').length).toBeGreaterThanOrEqual(1);
    const state = (await (await fetch(`${emu.endpoint}/_emulator/faults`)).json()) as {
      counts: { quota?: number };
    };
    expect(state.counts.quota).toBeGreaterThanOrEqual(1);
  });
});

describe('SDK retries stay bounded', () => {
  it('gives up after maxAttempts when throttling persists', async () => {
    const client = kmsClient(emu, { maxAttempts: 3 });
    emu.faults.failNext('Encrypt', 'ThrottlingException', 100);
    const e = await rejectionOf(encrypt(client));
    expect(e.name).toBe('ThrottlingException');
    expect(e.$metadata?.attempts).toBe(3);
    expect(emu.requestCounts['kms.Encrypt']).toBe(3);
    client.destroy();
  });

  it('succeeds when throttling clears within the attempts', async () => {
    const client = kmsClient(emu, { maxAttempts: 3 });
    emu.faults.failNext('Encrypt', 'ThrottlingException', 2);
    const out = await encrypt(client);
    expect(out.CiphertextBlob).toBeDefined();
    expect(out.$metadata.attempts).toBe(3);
    client.destroy();
  });

  it('retries 5xx (KMSInternalException, HTTP 500) too', async () => {
    const client = kmsClient(emu, { maxAttempts: 2 });
    emu.faults.failNext('Encrypt', 'KMSInternalException', 1, 500);
    const out = await encrypt(client);
    expect(out.$metadata.attempts).toBe(2);
    client.destroy();
  });
});

describe('random faults', () => {
  it('throttle and 5xx probabilities apply to the configured services, reproducibly with a seed', async () => {
    const run = async () => {
      emu.faults.reset();
      emu.faults.set({ throttleProbability: 0.3, serverErrorProbability: 0.2, seed: 42 });
      const names: string[] = [];
      for (let i = 0; i < 40; i++) {
        try {
          await encrypt();
          names.push('ok');
        } catch (e) {
          names.push((e as Error).name);
        }
      }
      return names;
    };
    const first = await run();
    expect(first).toContain('ok');
    expect(first).toContain('ThrottlingException');
    expect(first).toContain('KMSInternalException');
    expect(await run()).toEqual(first);
  });

  it('latency does not change results', async () => {
    emu.faults.set({ latencyMs: 20 });
    await expect(encrypt()).resolves.toMatchObject({ KeyId: expect.stringContaining(keyId) });
  });

  it('refuses nonsense configuration', () => {
    expect(() => emu.faults.set({ throttleProbability: 2 })).toThrow(RangeError);
    expect(() => emu.faults.set({ cryptoRequestsPerSecond: 0 })).toThrow(RangeError);
  });
});
