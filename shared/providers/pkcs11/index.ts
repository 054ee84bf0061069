export {
  Pkcs11Provider,
  type Pkcs11ProviderOptions,
  type RewrapItem,
  type RewrapItemResult,
} from './Pkcs11Provider.js';
export { Pkcs11WorkerPool, type Pkcs11WorkerPoolOptions } from './workerPool.js';
