import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { adapterModules } from './adapterModules.js';
import { resolveSecret } from './config/secrets.js';
import { AuditLog } from './core/audit/auditLog.js';
import type { PriceCatalog } from './core/cost/catalog.js';
import { ConfigError } from './core/errors.js';
import type { RekeyConfig } from './core/policy/types.js';
import { type Clock, systemClock } from './core/ports/Clock.js';
import type { DekStore } from './core/ports/DekStore.js';
import type { EventBus } from './core/ports/EventBus.js';
import type { KeyMaterialSource, KeyProvider } from './core/ports/KeyProvider.js';
import type { MetricsSink } from './core/ports/MetricsSink.js';
import type { StateStore } from './core/ports/StateStore.js';
import type { WorkQueue } from './core/ports/WorkQueue.js';
import type { ProgressEvent, RekeyContext } from './core/usecases/context.js';
import { LocalKmsProvider } from './providers/local/LocalKmsProvider.js';
import { SqliteDekStore } from './stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from './stores/sqlite/SqliteStateStore.js';

/**
 * The composition root: config file -> concrete adapters -> a RekeyContext the use cases run
 * on. The only place that knows which adapter implements which port.
 */
export interface ComposeOptions {
  configPath: string;
  /** State database; default `state.db` beside the config file. */
  statePath?: string;
  clock?: Clock;
  actor?: string;
  onProgress?: (e: ProgressEvent) => void;
  /** Create missing DEK tables (workspaces rekey made itself: init, demo). Never for an application's database. */
  createStores?: boolean;
  /** Ready-made providers by id, used instead of building them from the config (demo, tests). */
  providerOverrides?: Map<string, KeyProvider>;
  /**
   * Adapters a runtime builds from its own deployment settings (function environment), used
   * instead of what the config names: the state store, the event bus, the re-wrap work queue.
   */
  state?: StateStore;
  events?: EventBus;
  queue?: WorkQueue;
  /**
   * Parts of the config a runtime never reaches, left unbuilt (the context has none of them):
   * the approvals API works on rekey's own state only, the cost report reads no DEK, a re-wrap
   * worker process prices nothing (no price catalog).
   */
  without?: { providers?: boolean; stores?: boolean; catalog?: boolean };
  /** The price catalog, when the runtime brings it (validated at build time); default: the shipped file. */
  catalog?: PriceCatalog;
}

export interface Composed extends RekeyContext {
  baseDir: string;
  close(): Promise<void>;
}

/** Reads and validates the config file, then composes from it. */
export async function compose(opts: ComposeOptions): Promise<Composed> {
  // Loaded here, not with this module: composing from a config validated elsewhere needs
  // neither the YAML parser nor the schema library (config/readConfig.ts).
  const { readConfig } = await import('./config/readConfig.js');
  return composeFrom(readConfig(opts.configPath), opts);
}

export async function composeFrom(
  config: RekeyConfig,
  opts: Omit<ComposeOptions, 'configPath'>,
): Promise<Composed> {
  const baseDir = dirname(resolve(config.file));
  const at = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const clock = opts.clock ?? systemClock;
  const providers = new Map<string, KeyProvider>();
  const materialSources = new Map<string, KeyMaterialSource>();
  const stores = new Map<string, DekStore>();
  const closers: (() => Promise<void> | void)[] = [];
  try {
    for (const [id, pc] of opts.without?.providers ? [] : Object.entries(config.providers)) {
      const given = opts.providerOverrides?.get(id);
      if (given) {
        providers.set(id, given);
        closers.push(() => given.close?.());
        continue;
      }
      switch (pc.type) {
        case 'local': {
          const p = await LocalKmsProvider.open({
            id,
            keystorePath: at(pc.keystore),
            masterKeyRef: pc.masterKey,
            baseDir,
            clock,
          });
          providers.set(id, p);
          closers.push(() => p.close());
          break;
        }
        case 'aws-kms': {
          // Loaded only when configured: the SDK stays out of local-only start-up.
          const { AwsKmsProvider } = await adapterModules.awsKms();
          const p = new AwsKmsProvider({
            id,
            regions: pc.regions,
            ...(pc.endpoint ? { endpoint: pc.endpoint } : {}),
            ...(pc.profile ? { profile: pc.profile } : {}),
            ...(pc.rotateByNewKey ? { rotateByNewKey: pc.rotateByNewKey } : {}),
          });
          providers.set(id, p);
          closers.push(() => p.close?.());
          break;
        }
        case 'gcp-kms': {
          const { GcpKmsProvider, gcpEndpointOptions } = await adapterModules.gcpKms();
          const p = new GcpKmsProvider({
            id,
            projects: pc.projects,
            locations: pc.locations,
            ...(pc.keyRings ? { keyRings: pc.keyRings } : {}),
            ...(pc.endpoint ? gcpEndpointOptions(pc.endpoint) : {}),
            clock,
          });
          providers.set(id, p);
          closers.push(() => p.close());
          break;
        }
        case 'azure-kv': {
          const { AzureKeyVaultProvider } = await adapterModules.azureKeyVault();
          // Credentials: DefaultAzureCredential (managed identity, workload identity, az login...).
          const p = new AzureKeyVaultProvider({
            id,
            vaults: pc.vaults,
            ...(pc.endpoints ? { endpoints: pc.endpoints } : {}),
          });
          providers.set(id, p);
          closers.push(() => p.close?.());
          break;
        }
        case 'pkcs11': {
          const { Pkcs11Provider } = await adapterModules.pkcs11();
          // The provider keeps the PIN for re-login; it is never logged or echoed.
          const pin = resolveSecret(pc.pin, baseDir, `provider ${id} pin`);
          const p = await Pkcs11Provider.open({ id, module: pc.module, token: pc.token, pin, clock });
          providers.set(id, p);
          closers.push(() => p.close());
          // The HSM is also where BYOK material comes from (rekey byok, policies' byok.source).
          const { createByokSource } = await adapterModules.pkcs11Byok();
          materialSources.set(id, createByokSource(p));
          break;
        }
        default:
          throw new ConfigError(
            `${config.file}: provider "${id}" has type ${(pc as { type: string }).type}, which this build cannot run`,
          );
      }
    }
    for (const [id, sc] of opts.without?.stores ? [] : Object.entries(config.stores)) {
      switch (sc.type) {
        case 'sqlite': {
          const s = SqliteDekStore.open({
            id,
            path: at(sc.path),
            table: sc.table,
            columns: sc.columns,
            create: Boolean(opts.createStores),
          });
          stores.set(id, s);
          closers.push(() => s.close?.());
          break;
        }
        case 'postgres': {
          const { PostgresDekStore } = await adapterModules.postgresDekStore();
          const url = secretText(sc.url, baseDir, `stores.${id}.url`);
          const s = new PostgresDekStore({ ...sc, id, url });
          if (opts.createStores) await s.ensureTable();
          stores.set(id, s);
          closers.push(() => s.close());
          break;
        }
        case 'dynamodb': {
          const { DynamoDekStore } = await adapterModules.dynamoDekStore();
          const s = new DynamoDekStore({ ...sc, id });
          if (opts.createStores) await s.ensureTable();
          stores.set(id, s);
          closers.push(() => s.close());
          break;
        }
      }
    }
    const state =
      opts.state ?? (await openState(config, opts.statePath, at, baseDir, Boolean(opts.createStores)));
    closers.push(() => state.close?.());
    let events: EventBus | undefined = opts.events;
    if (!events && config.events?.type === 'eventbridge') {
      const { EventBridgeEventBus } = await adapterModules.eventBridge();
      events = new EventBridgeEventBus({
        eventBusName: config.events.bus,
        ...(config.events.region ? { region: config.events.region } : {}),
        ...(config.events.endpoint ? { endpoint: config.events.endpoint } : {}),
      });
    }
    let metrics: MetricsSink | undefined;
    if (config.metrics) {
      const { metricsSinkFromConfig } = await adapterModules.metrics();
      const sink = await metricsSinkFromConfig(config.metrics, {
        baseDir,
        secret: (ref, what) => secretText(ref, baseDir, what),
      });
      metrics = sink;
      closers.push(() => sink.close?.());
    }
    const catalog = opts.catalog ?? (opts.without?.catalog ? undefined : await loadShippedCatalog());
    return {
      config,
      baseDir,
      providers,
      ...(materialSources.size > 0 ? { materialSources } : {}),
      stores,
      state,
      audit: new AuditLog(state, clock),
      ...(catalog ? { catalog } : {}),
      ...(events ? { events } : {}),
      ...(opts.queue ? { queue: opts.queue } : {}),
      ...(metrics ? { metrics } : {}),
      clock,
      actor: opts.actor ?? process.env.REKEY_ACTOR ?? `cli:${process.env.USER ?? 'unknown'}`,
      instanceId: `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      isOwnerGone: localOwnerGone,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      async close() {
        for (const c of closers.reverse()) await c();
      },
    };
  } catch (e) {
    for (const c of closers.reverse()) await c();
    throw e;
  }
}

/** rekey's own state store: --state (a SQLite file) wins, then the config's `state`, then state.db. */
async function openState(
  config: RekeyConfig,
  statePath: string | undefined,
  at: (p: string) => string,
  baseDir: string,
  create: boolean,
): Promise<StateStore> {
  const sc = statePath ? undefined : config.state;
  if (!sc) return SqliteStateStore.open(statePath ?? at('state.db'));
  switch (sc.type) {
    case 'sqlite':
      return SqliteStateStore.open(at(sc.path));
    case 'postgres': {
      const { PostgresStateStore } = await adapterModules.postgresStateStore();
      return PostgresStateStore.open({ url: secretText(sc.url, baseDir, 'state.url'), schema: sc.schema });
    }
    case 'dynamodb': {
      const { DynamoStateStore } = await adapterModules.dynamoStateStore();
      const s = new DynamoStateStore({
        table: sc.table,
        ...(sc.region ? { region: sc.region } : {}),
        ...(sc.endpoint ? { endpoint: sc.endpoint } : {}),
      });
      if (create) await s.ensureTable();
      return s;
    }
  }
}

/** A secret that is text (a connection URL): resolved, decoded, and the bytes zeroed. */
function secretText(ref: string, baseDir: string, what: string): string {
  const buf = resolveSecret(ref, baseDir, what);
  const text = buf.toString('utf8');
  buf.fill(0);
  return text;
}

/**
 * A lease owner id is `host:pid:nonce`. On this host, an owner whose process no longer exists
 * crashed or was killed: its leases can be taken over at once. Owners elsewhere are never
 * presumed gone (their leases expire instead).
 */
export function localOwnerGone(owner: string): boolean {
  const [host, pidText] = owner.split(':');
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** The shipped price catalog, validated (its loader brings the schema library, hence loaded here). */
async function loadShippedCatalog() {
  const { loadCatalog } = await import('./cost/catalogFile.js');
  return loadCatalog();
}
