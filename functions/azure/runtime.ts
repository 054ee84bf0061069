import { fileURLToPath } from 'node:url';
import type { InvocationContext } from '@azure/functions';
import { type Composed, composeFrom } from '../../shared/compose.js';
import { readConfig } from '../../shared/config/readConfig.js';
import { errorMessage } from '../../shared/core/errors.js';
import type { EventVerifier } from '../../shared/core/governance/signature.js';
import { eventVerifierFromConfig } from '../../shared/governance/signing.js';
import { StorageQueueEventBus } from '../../shared/queues/storagequeue/StorageQueueEventBus.js';
import { StorageQueueWorkQueue } from '../../shared/queues/storagequeue/StorageQueueWorkQueue.js';
import { AzureTableStateStore } from '../../shared/stores/azuretable/AzureTableStateStore.js';
import { LogMetricsSink, log, withInvocation } from './log.js';
import { type AzureSettings, readSettings, storageConnections } from './settings.js';

/** The config file bundled beside the functions (scripts/bundle/azure.mjs copies it there). */
const BUNDLED_CONFIG = fileURLToPath(new URL('./rekey.yaml', import.meta.url));

export interface Runtime {
  ctx: Composed;
  settings: AzureSettings;
  /**
   * The signature check of `key.compromised` events (the config's `incidents.signing`), built on
   * first use: only the compromise function needs its secret. A failure is not kept.
   */
  eventVerifier(): Promise<EventVerifier>;
}

/** Builds the context from the app settings: Table state, Storage Queue work and events. */
async function build(): Promise<Runtime> {
  const settings = readSettings(process.env, BUNDLED_CONFIG);
  const config = readConfig(settings.configPath);
  const conn = await storageConnections(settings.storage);
  const state = new AzureTableStateStore({ table: settings.stateTable, ...conn.table });
  const queue = new StorageQueueWorkQueue({ queue: settings.workQueue, ...conn.queue });
  const events = settings.eventsQueue
    ? new StorageQueueEventBus({ queue: settings.eventsQueue, ...conn.queue })
    : undefined;
  const ctx = await composeFrom(config, {
    state,
    queue,
    ...(events ? { events } : {}),
    actor: settings.actor,
  });
  ctx.metrics = new LogMetricsSink();
  log('info', 'rekey composed', {
    config: settings.configPath,
    providers: [...ctx.providers.keys()],
    stores: [...ctx.stores.keys()],
    stateTable: settings.stateTable,
    workQueue: settings.workQueue,
    eventsQueue: settings.eventsQueue ?? null,
  });
  let verifier: Promise<EventVerifier> | undefined;
  const eventVerifier = () => {
    verifier ??= eventVerifierFromConfig(ctx.config, ctx.baseDir).catch((e) => {
      verifier = undefined;
      throw e;
    });
    return verifier;
  };
  return { ctx, settings, eventVerifier };
}

let runtime: Promise<Runtime> | undefined;

/** Composed once per cold start; a failed start is retried by the next invocation. */
function getRuntime(): Promise<Runtime> {
  runtime ??= build().catch((e) => {
    runtime = undefined;
    throw e;
  });
  return runtime;
}

/** Runs one invocation with its logger bound and the runtime ready; failures are logged, then rethrown. */
export function invoke<T>(context: InvocationContext, fn: (rt: Runtime) => Promise<T>): Promise<T> {
  return withInvocation(context, async () => {
    try {
      return await fn(await getRuntime());
    } catch (e) {
      log('error', 'invocation failed', {
        function: context.functionName,
        invocationId: context.invocationId,
        error: errorMessage(e),
        code: (e as { code?: string }).code ?? null,
      });
      throw e;
    }
  });
}
