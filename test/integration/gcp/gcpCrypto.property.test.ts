import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type GcpKmsRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { ProviderError } from '../../../shared/core/errors.js';
import { GcpKmsProvider } from '../../../shared/providers/gcp/GcpKmsProvider.js';
import type { GcpKmsEmulator } from '../../emulators/gcp-kms/index.js';
import { DAY_MS, emulator, LOCATION, PROJECT } from './helpers.js';

let emu: GcpKmsEmulator;
let p: GcpKmsProvider;
let ref: GcpKmsRef;

beforeAll(async () => {
  emu = await emulator();
  p = new GcpKmsProvider({
    id: 'gcp-prop',
    projects: [PROJECT],
    locations: [LOCATION],
    apiEndpoint: emu.endpoint.host,
    port: emu.endpoint.port,
    insecure: true,
    libraryRetries: false,
    clock: emu.clock,
  });
  ref = parseKeyRef((await p.createKey({ name: 'prop' })).ref) as GcpKmsRef;
  await p.setAutoRotation(ref, 1);
});
afterAll(async () => {
  await p?.close();
  await emu?.close();
});

const context = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 20 }), {
  maxKeys: 4,
});

it('any DEK and context round-trip across automatic rotations; any other context is refused', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ minLength: 1, maxLength: 512 }),
      context,
      context,
      fc.boolean(),
      async (dek, ctx, other, rotateBetween) => {
        const wrapped = await p.wrap(ref, dek, ctx);
        if (rotateBetween) emu.clock.advance(DAY_MS);
        const out = await p.unwrap(ref, wrapped, ctx);
        expect(Buffer.from(out).equals(Buffer.from(dek))).toBe(true);
        out.fill(0);
        if (JSON.stringify(Object.entries(other).sort()) !== JSON.stringify(Object.entries(ctx).sort())) {
          const e = await p.unwrap(ref, wrapped, other).then(
            () => null,
            (err: unknown) => err,
          );
          expect(e).toBeInstanceOf(ProviderError);
          expect((e as ProviderError).retryable).toBe(false);
        }
      },
    ),
    { numRuns: 40 },
  );
  // The clock moved on: the key did rotate under the property.
  expect((await p.getKey(ref)).versions.length).toBeGreaterThan(1);
});
