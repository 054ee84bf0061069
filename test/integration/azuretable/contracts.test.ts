import { afterAll, beforeAll } from 'vitest';
import { AzureTableStateStore } from '../../../shared/stores/azuretable/AzureTableStateStore.js';
import { stateStoreContract } from '../../contracts/stateStore.contract.js';
import { type Azurite, startAzurite } from '../../support/azurite.js';

let azurite: Azurite;
let n = 0;

beforeAll(async () => {
  azurite = await startAzurite({ services: ['table'] });
});
afterAll(async () => {
  await azurite?.stop();
});

stateStoreContract('azure table (Azurite)', async () => {
  const store = new AzureTableStateStore({
    table: `state${++n}`,
    connectionString: azurite.connectionString,
  });
  await store.ensureTable();
  return { store, cleanup: async () => {} };
});
