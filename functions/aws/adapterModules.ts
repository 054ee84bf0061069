import type { AdapterModules } from '../../shared/adapterModules.js';
import * as awsKms from '../../shared/providers/aws/AwsKmsProvider.js';
import * as azureKeyVault from '../../shared/providers/azure/AzureKeyVaultProvider.js';
import * as gcpKms from '../../shared/providers/gcp/GcpKmsProvider.js';
import * as pkcs11Byok from '../../shared/providers/pkcs11/export.js';
import * as pkcs11 from '../../shared/providers/pkcs11/Pkcs11Provider.js';
import * as dynamoDekStore from '../../shared/stores/dynamodb/DynamoDekStore.js';
import * as dynamoStateStore from '../../shared/stores/dynamodb/DynamoStateStore.js';
import * as postgresDekStore from '../../shared/stores/postgres/PostgresDekStore.js';
import * as postgresStateStore from '../../shared/stores/postgres/PostgresStateStore.js';

/**
 * The adapter table of the AWS bundles, in place of shared/adapterModules.ts
 * (scripts/bundle/aws.mjs `REPLACED`). Every invocation composes the KMS provider and the
 * DynamoDB stores, so they load with the bundle rather than at the first invocation. The
 * adapters these bundles leave out (scripts/bundle/aws.mjs `LEFT_OUT`) resolve there to small
 * modules that fail with a ConfigError, and are imported the same way. The `metrics:` section's
 * sink stays behind an `import()` (a config without one never loads it), and so does the
 * EventBridge bus a config names: the build drops `events:` (the bus is REKEY_EVENT_BUS, which
 * each function's runtime builds itself).
 */
export const adapterModules: AdapterModules = {
  awsKms: async () => awsKms,
  gcpKms: async () => gcpKms,
  azureKeyVault: async () => azureKeyVault,
  pkcs11: async () => pkcs11,
  pkcs11Byok: async () => pkcs11Byok,
  postgresDekStore: async () => postgresDekStore,
  dynamoDekStore: async () => dynamoDekStore,
  postgresStateStore: async () => postgresStateStore,
  dynamoStateStore: async () => dynamoStateStore,
  // The compiled config carries no `events:` (the bus is REKEY_EVENT_BUS): never called here.
  eventBridge: () => import('../../shared/telemetry/eventbridge/EventBridgeEventBus.js'),
  metrics: () => import('../../shared/telemetry/metrics/fromConfig.js'),
};
