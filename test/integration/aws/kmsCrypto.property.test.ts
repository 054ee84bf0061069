/**
 * Properties of the emulator's cryptography through the SDK: any plaintext and context
 * round-trips across rotations, and any change to the context is refused.
 */
import {
  CreateKeyCommand,
  DecryptCommand,
  EnableKeyRotationCommand,
  EncryptCommand,
  type KMSClient,
  ListKeyRotationsCommand,
} from '@aws-sdk/client-kms';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsEmulator } from '../../emulators/aws/index.js';
import { emulator, kmsClient, rejectionOf } from './helpers.js';

let emu: AwsEmulator;
let kms: KMSClient;
let keyId: string;

beforeAll(async () => {
  emu = await emulator();
  kms = kmsClient(emu);
  keyId = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  await kms.send(new EnableKeyRotationCommand({ KeyId: keyId, RotationPeriodInDays: 90 }));
});
afterAll(async () => {
  kms.destroy();
  await emu.close();
});

const context = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 24 }), {
  maxKeys: 5,
});
const plaintext = fc.uint8Array({ minLength: 1, maxLength: 4096 });

describe('emulated KMS cryptography', () => {
  it('round-trips any plaintext and context, whatever rotations happen in between', async () => {
    const before = (await kms.send(new ListKeyRotationsCommand({ KeyId: keyId }))).Rotations!.length;
    await fc.assert(
      fc.asyncProperty(plaintext, context, fc.nat({ max: 2 }), async (pt, ctx, rotations) => {
        const enc = await kms.send(
          new EncryptCommand({ KeyId: keyId, Plaintext: pt, EncryptionContext: ctx }),
        );
        // Automatic rotations on the simulated clock (on-demand ones are capped at 25 per key).
        emu.clock.advanceDays(90 * rotations);
        // Map order must not matter: send the context reversed.
        const reversed = Object.fromEntries(Object.entries(ctx).reverse());
        const dec = await kms.send(
          new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: reversed }),
        );
        expect(Buffer.from(dec.Plaintext!).equals(Buffer.from(pt))).toBe(true);
      }),
      { numRuns: 40 },
    );
    // The property did span rotations.
    expect((await kms.send(new ListKeyRotationsCommand({ KeyId: keyId }))).Rotations!.length).toBeGreaterThan(
      before,
    );
  });

  it('refuses any other context', async () => {
    await fc.assert(
      fc.asyncProperty(plaintext, context, context, async (pt, ctx, other) => {
        fc.pre(JSON.stringify(Object.entries(ctx).sort()) !== JSON.stringify(Object.entries(other).sort()));
        const enc = await kms.send(
          new EncryptCommand({ KeyId: keyId, Plaintext: pt, EncryptionContext: ctx }),
        );
        const e = await rejectionOf(
          kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: other })),
        );
        expect(e.name).toBe('InvalidCiphertextException');
      }),
      { numRuns: 40 },
    );
  });
});
