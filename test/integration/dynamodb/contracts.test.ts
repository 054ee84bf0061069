import { afterAll, beforeAll } from 'vitest';
import { DynamoDekStore } from '../../../shared/stores/dynamodb/DynamoDekStore.js';
import { DynamoStateStore } from '../../../shared/stores/dynamodb/DynamoStateStore.js';
import { dekStoreContract } from '../../contracts/dekStore.contract.js';
import { stateStoreContract } from '../../contracts/stateStore.contract.js';
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

stateStoreContract('dynamodb (dynalite)', async () => {
  const table = `state-${++n}`;
  await dyn.createStateTable(table);
  return { store: new DynamoStateStore({ table, doc: dyn.client() }), cleanup: async () => {} };
});
