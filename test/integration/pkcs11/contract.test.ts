import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { Pkcs11Provider } from '../../../shared/providers/pkcs11/Pkcs11Provider.js';
import { keyProviderContract } from '../../contracts/keyProvider.contract.js';
import { startSoftHsm } from '../../support/softhsm.js';

keyProviderContract('pkcs11 (SoftHSM2)', async () => {
  const hsm = await startSoftHsm({ label: 'contract' });
  const provider = await Pkcs11Provider.open({
    id: 'softhsm',
    module: hsm.module,
    token: hsm.label,
    pin: hsm.pin,
  });
  return {
    provider,
    async createKey(name) {
      const key = await provider.createKey({ name });
      return parseKeyRef(key.ref);
    },
    async cleanup() {
      await provider.close();
      await hsm.cleanup();
    },
  };
});
