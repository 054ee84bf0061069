import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { GcpKmsProvider } from '../../../shared/providers/gcp/GcpKmsProvider.js';
import { keyProviderContract } from '../../contracts/keyProvider.contract.js';
import { emulator, LOCATION, PROJECT, RING } from './helpers.js';

keyProviderContract('gcp-kms (emulator)', async () => {
  const emu = await emulator();
  const provider = new GcpKmsProvider({
    id: 'gcp-test',
    projects: [PROJECT],
    locations: [LOCATION],
    keyRings: [RING],
    apiEndpoint: emu.endpoint.host,
    port: emu.endpoint.port,
    insecure: true,
    libraryRetries: false,
    clock: emu.clock,
  });
  return {
    provider,
    createKey: async (name) => parseKeyRef((await provider.createKey({ name })).ref),
    cleanup: async () => {
      await provider.close();
      await emu.close();
    },
  };
});
