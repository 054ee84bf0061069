/**
 * Interop with the AWS Encryption SDK for JavaScript: a message encrypted through a KMS keyring
 * pointed at the emulator still decrypts after rekey rotates the key, and rekey can re-wrap the
 * message's encrypted data key server-side under the new material.
 */
import { buildClient, CommitmentPolicy, getClient, KmsKeyringNode } from '@aws-crypto/client-node';
import { KMS } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { AwsKmsProvider } from '../../../shared/providers/aws/AwsKmsProvider.js';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { CREDENTIALS, emulator, REGION } from './helpers.js';

let emu: AwsEmulator;
let provider: AwsKmsProvider;

beforeAll(async () => {
  emu = await emulator();
  provider = new AwsKmsProvider({
    id: 'aws-esdk',
    regions: [REGION],
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    rotationPollMs: 5,
  });
});
afterAll(async () => {
  await provider.close();
  await emu.close();
});

describe('AWS Encryption SDK against the emulator', () => {
  it('decrypts a message written before a rotation made by the provider', async () => {
    const key = await provider.createKey({ name: 'esdk', tags: { app: 'billing' } });
    const arn = key.aws.arn;
    const clientProvider = getClient(KMS, {
      endpoint: emu.endpoint,
      credentials: CREDENTIALS,
      maxAttempts: 1,
    });
    const keyring = new KmsKeyringNode({ generatorKeyId: arn, clientProvider });
    const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
    const context = { tenant: 'acme', purpose: 'invoice' };
    const message = Buffer.from('invoice #42: 1,000 EUR');

    const { result: sealed, messageHeader } = await encrypt(keyring, message, { encryptionContext: context });
    expect(messageHeader.encryptedDataKeys).toHaveLength(1);
    expect(messageHeader.encryptedDataKeys[0]!.providerInfo).toBe(arn);
    expect(emu.requestCounts['kms.GenerateDataKey']).toBe(1);

    const v2 = await provider.rotate(parseKeyRef(key.ref));
    expect(v2.id).not.toBe(key.primaryVersion);
    expect((await provider.getKey(parseKeyRef(key.ref))).primaryVersion).toBe(v2.id);

    const opened = await decrypt(keyring, sealed);
    expect(Buffer.from(opened.plaintext).equals(message)).toBe(true);
    expect(opened.messageHeader.encryptionContext).toMatchObject(context);
    expect(emu.requestCounts['kms.Decrypt']).toBe(1);

    // The encrypted data key is an ordinary KMS ciphertext: rekey can move it to the new
    // material without seeing the data key, and KMS still opens it with the message's context.
    const edk = messageHeader.encryptedDataKeys[0]!.encryptedDataKey;
    const edkContext = messageHeader.encryptionContext;
    const moved = await provider.rewrap(
      parseKeyRef(key.ref),
      { version: key.primaryVersion, ciphertext: edk },
      edkContext,
    );
    expect(moved.version).toBe(v2.id);
    const dataKey = await provider.unwrap(parseKeyRef(key.ref), moved, edkContext);
    expect(dataKey.length).toBeGreaterThan(0);
    dataKey.fill(0);
  });
});
