import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { AwsKmsProvider } from '../../../shared/providers/aws/AwsKmsProvider.js';
import { keyProviderContract } from '../../contracts/keyProvider.contract.js';
import { CREDENTIALS, emulator, REGION } from './helpers.js';

keyProviderContract(
  'aws-kms (emulator)',
  async () => {
    const emu = await emulator();
    const provider = new AwsKmsProvider({
      id: 'aws-test',
      regions: [REGION],
      endpoint: emu.endpoint,
      credentials: CREDENTIALS,
      maxAttempts: 1,
      rotationPollMs: 10,
    });
    return {
      provider,
      createKey: async (name) => parseKeyRef((await provider.createKey({ name })).ref),
      cleanup: async () => {
        await provider.close();
        await emu.close();
      },
    };
  },
  {
    skip: {
      versionState: 'AWS KMS enables and disables whole keys, never a single key material',
      scheduleDestroy: 'AWS KMS deletes whole keys (ScheduleKeyDeletion), never a single key material',
    },
  },
);
