/**
 * Where compose finds the adapters a config can name, one loader per module. Each module is
 * imported on first use, so a run loads only the SDKs its config names: the embedded default
 * starts without any of them.
 *
 * A bundle whose every invocation needs some of these swaps this module for a table of its own
 * (the AWS functions: functions/aws/adapterModules.ts, through scripts/bundle/aws.mjs). A module
 * reached only through `import()` is set apart by the bundler, so it would be loaded at the
 * first invocation instead of with the bundle, and it and everything it imports would be
 * wrapped for lazy start-up, which also keeps the SDK clients' unused commands in.
 */
export const adapterModules = {
  awsKms: () => import('./providers/aws/AwsKmsProvider.js'),
  gcpKms: () => import('./providers/gcp/GcpKmsProvider.js'),
  azureKeyVault: () => import('./providers/azure/AzureKeyVaultProvider.js'),
  pkcs11: () => import('./providers/pkcs11/Pkcs11Provider.js'),
  pkcs11Byok: () => import('./providers/pkcs11/export.js'),
  postgresDekStore: () => import('./stores/postgres/PostgresDekStore.js'),
  dynamoDekStore: () => import('./stores/dynamodb/DynamoDekStore.js'),
  postgresStateStore: () => import('./stores/postgres/PostgresStateStore.js'),
  dynamoStateStore: () => import('./stores/dynamodb/DynamoStateStore.js'),
  eventBridge: () => import('./telemetry/eventbridge/EventBridgeEventBus.js'),
  metrics: () => import('./telemetry/metrics/fromConfig.js'),
};

/** The shape a replacement table has: the same loaders, each giving the same module. */
export type AdapterModules = typeof adapterModules;
