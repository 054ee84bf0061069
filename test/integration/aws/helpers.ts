import { KMSClient } from '@aws-sdk/client-kms';
import { type AwsEmulator, type AwsEmulatorOptions, startAwsEmulator } from '../../emulators/aws/index.js';

export const REGION = 'eu-west-1';
/** Static dummy credentials: the emulator checks the SigV4 header's shape, not the secret. */
export const CREDENTIALS = {
  accessKeyId: 'AKIAEMULATOR00000000',
  secretAccessKey: 'emulator-secret-not-a-real-one',
};

export async function emulator(opts: AwsEmulatorOptions = {}): Promise<AwsEmulator> {
  return startAwsEmulator(opts);
}

export function kmsClient(emu: AwsEmulator, opts: { region?: string; maxAttempts?: number } = {}): KMSClient {
  return new KMSClient({
    region: opts.region ?? REGION,
    endpoint: emu.endpoint,
    credentials: CREDENTIALS,
    maxAttempts: opts.maxAttempts ?? 1,
  });
}

/** Awaits a rejection and returns the error; fails if the promise resolved. */
export async function rejectionOf(
  p: Promise<unknown>,
): Promise<Error & { name: string; $metadata?: { httpStatusCode?: number; attempts?: number } }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { name: string };
  }
  throw new Error('expected a rejection, but the call succeeded');
}
