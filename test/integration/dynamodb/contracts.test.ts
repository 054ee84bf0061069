import { afterAll, beforeAll } from 'vitest';
import { DynamoDekStore } from '../../../shared/stores/dynamodb/DynamoDekStore.js';
import { dekStoreContract } from '../../contracts/dekStore.contract.js';
import { type Dynalite, startDynalite } from '../../support/dynalite.js';

let dyn: Dynalite;
let n = 0;

beforeAll(async () => {
  dyn = await startDynalite();
});
afterAll(async () => {
  await dyn?.stop();
});

dekStoreContract('dynamodb (dynalite)', async () => {
  const table = `deks-${++n}`;
  await dyn.createDekTable(table);
  const store = new DynamoDekStore({ id: 'orders', table, doc: dyn.client() });
  return { store, cleanup: async () => {} };
});
