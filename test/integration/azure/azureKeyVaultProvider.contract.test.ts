import { afterAll } from 'vitest';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { keyProviderContract } from '../../contracts/keyProvider.contract.js';
import { certificates, emulator, HSM, provider, VAULT } from './helpers.js';

afterAll(() => certificates().cleanup());

const SKIP = {
  scheduleDestroy:
    'Key Vault cannot delete or schedule the deletion of a single key version; only whole keys are (soft) deleted',
};

for (const [label, host] of [
  ['vault, RSA keys', VAULT],
  ['managed HSM, oct-HSM keys', HSM],
] as const) {
  keyProviderContract(
    `azure-kv (emulator, ${label})`,
    async () => {
      const emu = await emulator();
      const p = provider(emu, { vaults: [host], endpoints: { [host]: emu.endpoints[host]! } });
      return {
        provider: p,
        createKey: async (name) => parseKeyRef((await p.createKey({ name })).ref),
        cleanup: async () => {
          await p.close();
          await emu.close();
        },
      };
    },
    { skip: SKIP },
  );
}
