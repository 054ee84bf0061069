import { KeyManagementServiceClient } from '@google-cloud/kms';
import * as grpc from '@grpc/grpc-js';
import {
  type GcpKmsEmulator,
  type GcpKmsEmulatorOptions,
  startGcpKmsEmulator,
} from '../../emulators/gcp-kms/index.js';

// The client library must not probe a metadata server for credentials.
process.env.METADATA_SERVER_DETECTION = 'none';

export const PROJECT = 'rekey-test';
export const LOCATION = 'europe-west1';
export const RING = 'ring';
export const LOCATION_NAME = `projects/${PROJECT}/locations/${LOCATION}`;
export const RING_NAME = `${LOCATION_NAME}/keyRings/${RING}`;

export async function emulator(opts: GcpKmsEmulatorOptions = {}): Promise<GcpKmsEmulator> {
  return startGcpKmsEmulator(opts);
}

/** The official client, unmodified, pointed at the emulator. */
export function rawClient(emu: GcpKmsEmulator): KeyManagementServiceClient {
  return new KeyManagementServiceClient({
    apiEndpoint: emu.endpoint.host,
    port: emu.endpoint.port,
    sslCreds: grpc.credentials.createInsecure(),
  });
}

/** Awaits a rejection and returns the error; fails if the promise resolved. */
export async function rejectionOf(p: Promise<unknown>): Promise<Error & { code?: number; details?: string }> {
  try {
    await p;
  } catch (e) {
    return e as Error & { code?: number };
  }
  throw new Error('expected a rejection, but the call succeeded');
}

export const DAY_MS = 86_400_000;
