import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readSettings, STORAGE_CONNECTION } from '../../../functions/azure/settings.js';

/**
 * infra/azure parsed as HCL (no provider download, no cloud): the resources are there, every
 * role assignment is scoped to one resource, no key permission is a wildcard, and the app
 * settings give the functions everything they read.
 */
const DIR = resolve(import.meta.dirname, '../../../infra/azure');

type Block = Record<string, unknown>;
type Tf = {
  resource?: Record<string, Record<string, Block[]>>;
  locals?: Block[];
  variable?: Record<string, Block[]>;
  terraform?: Block[];
};

let tf: Tf;

/** An HCL expression as hcl2json renders it: `${expr}`. */
const ref = (expr: string) => `\${${expr}}`;

function resources(type: string): Record<string, Block> {
  return Object.fromEntries(Object.entries(tf.resource?.[type] ?? {}).map(([n, [b]]) => [n, b!]));
}

/** Every string inside a value, however deep. */
function strings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (v && typeof v === 'object') return Object.values(v).flatMap(strings);
  return [];
}

beforeAll(async () => {
  const { parse } = createRequire(import.meta.url)('@cdktf/hcl2json') as {
    parse(file: string, content: string): Promise<Tf>;
  };
  tf = {};
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.tf'))) {
    const part = await parse(file, readFileSync(join(DIR, file), 'utf8'));
    for (const [type, byName] of Object.entries(part.resource ?? {})) {
      tf.resource ??= {};
      tf.resource[type] = { ...(tf.resource[type] ?? {}), ...byName };
    }
    tf.locals = [...(tf.locals ?? []), ...(part.locals ?? [])];
    tf.variable = { ...(tf.variable ?? {}), ...(part.variable ?? {}) };
    tf.terraform = [...(tf.terraform ?? []), ...(part.terraform ?? [])];
  }
});

describe('infra/azure (Terraform, azurerm)', () => {
  it('pins the azurerm provider', () => {
    const req = tf.terraform!.flatMap((t) => (t.required_providers as Block[] | undefined) ?? []);
    expect(req[0]).toMatchObject({
      azurerm: { source: 'hashicorp/azurerm', version: expect.stringMatching(/4/) },
    });
  });

  it('declares the resource group, storage (table, queues), the Node 20 Linux Function App with its identity, Event Grid', () => {
    expect(Object.keys(resources('azurerm_resource_group'))).toHaveLength(1);
    const account = Object.values(resources('azurerm_storage_account'))[0]!;
    expect(account).toMatchObject({ shared_access_key_enabled: false, min_tls_version: 'TLS1_2' });
    expect(Object.keys(resources('azurerm_storage_table'))).toEqual(['state']);
    expect(Object.keys(resources('azurerm_storage_queue')).sort()).toEqual(['events', 'rewrap']);
    const app = resources('azurerm_linux_function_app').rekey!;
    expect(app.identity).toEqual([{ type: 'SystemAssigned' }]);
    expect(app.storage_uses_managed_identity).toBe(true);
    const stack = ((app.site_config as Block[])[0]!.application_stack as Block[])[0]!;
    expect(stack.node_version).toBe('20');
    expect(Object.keys(resources('azurerm_eventgrid_system_topic'))).toEqual(['vault']);
    expect(resources('azurerm_eventgrid_system_topic').vault).toMatchObject({
      topic_type: 'Microsoft.KeyVault.vaults',
    });
  });

  it('subscribes the keyVaultEvents function to exactly the three Key Vault key events', () => {
    const sub = resources('azurerm_eventgrid_system_topic_event_subscription').key_events!;
    expect([...(sub.included_event_types as string[])].sort()).toEqual([
      'Microsoft.KeyVault.KeyExpired',
      'Microsoft.KeyVault.KeyNearExpiry',
      'Microsoft.KeyVault.KeyNewVersionCreated',
    ]);
    const endpoint = (sub.azure_function_endpoint as Block[])[0]!;
    expect(endpoint.function_id).toMatch(
      /azurerm_linux_function_app\.rekey\.id\}\/functions\/keyVaultEvents$/,
    );
    expect(sub.storage_blob_dead_letter_destination).toBeDefined();
  });

  it('every role assignment is scoped to one resource, never a subscription or resource group', () => {
    const assignments = resources('azurerm_role_assignment');
    expect(Object.keys(assignments).sort()).toEqual([
      'deadletter',
      'incident_publishers',
      'incidents_deadletter',
      'keys',
      'secrets',
      'storage',
    ]);
    for (const [name, a] of Object.entries(assignments)) {
      const scope = String(a.scope);
      expect(scope, name).toMatch(
        /^\$\{(azurerm_storage_account\.rekey\.id|azurerm_storage_container\.deadletter\.id|azurerm_eventgrid_topic\.incidents\.id|each\.value)\}$|^\$\{each\.value\.key_vault_id\}\/secrets\/\$\{each\.value\.name\}$/,
      );
      expect(scope, name).not.toMatch(/subscription|resource_group/);
    }
    // Key Vault access: the custom role, on each vault of var.key_vault_ids, to the app's identity.
    expect(assignments.keys).toMatchObject({
      for_each: ref('local.vaults'),
      scope: ref('each.value'),
      role_definition_id: ref('azurerm_role_definition.rekey_keys.role_definition_resource_id'),
      principal_id: ref('azurerm_linux_function_app.rekey.identity[0].principal_id'),
    });
    const vaults = (tf.locals ?? []).find((l) => 'vaults' in l)!.vaults as string;
    expect(vaults).toContain('var.key_vault_ids');
  });

  it('the key role holds exactly the key actions rekey uses, none of them a wildcard', () => {
    const role = resources('azurerm_role_definition').rekey_keys!;
    const perms = (role.permissions as Block[])[0]!;
    expect(perms.actions).toEqual([]);
    expect([...(perms.data_actions as string[])].sort()).toEqual([
      'Microsoft.KeyVault/vaults/keyrotationpolicies/read',
      'Microsoft.KeyVault/vaults/keyrotationpolicies/write',
      'Microsoft.KeyVault/vaults/keys/read',
      'Microsoft.KeyVault/vaults/keys/rotate/action',
      'Microsoft.KeyVault/vaults/keys/unwrap/action',
      'Microsoft.KeyVault/vaults/keys/update/action',
      'Microsoft.KeyVault/vaults/keys/wrap/action',
    ]);
    expect(role.assignable_scopes).toBe(ref('var.key_vault_ids'));
    // No wildcard anywhere in a permission, and no built-in role that carries one.
    for (const s of strings(tf.resource)) expect(s).not.toMatch(/\/\*|^\*$/);
    const builtIn = Object.values(resources('azurerm_role_assignment')).flatMap((a) =>
      strings(a.role_definition_name ?? []),
    );
    for (const role of builtIn)
      expect(role).not.toMatch(/^(Owner|Contributor)$|Key Vault (Crypto Officer|Administrator)/);
    const storage = resources('azurerm_role_assignment').storage!;
    const storageRoles = [...String(storage.for_each).matchAll(/"([^"]+)"/g)].map((m) => m[1]);
    expect(storageRoles.sort()).toEqual([
      'Storage Blob Data Owner',
      'Storage Queue Data Contributor',
      'Storage Table Data Contributor',
    ]);
  });

  it('the app settings name the state table and the queues, and give the functions every setting they read', () => {
    const settings = (tf.locals ?? []).find((l) => 'app_settings' in l)!.app_settings as Record<
      string,
      string
    >;
    expect(settings.REKEY_STATE_TABLE).toBe(ref('azurerm_storage_table.state.name'));
    expect(settings.REKEY_WORK_QUEUE).toBe(ref('azurerm_storage_queue.rewrap.name'));
    expect(settings.REKEY_EVENTS_QUEUE).toBe(ref('azurerm_storage_queue.events.name'));
    expect(settings[`${STORAGE_CONNECTION}__accountName`]).toBe(ref('azurerm_storage_account.rekey.name'));
    expect(settings.REKEY_SCHEDULE).toBe(ref('var.schedule'));
    const app = resources('azurerm_linux_function_app').rekey!;
    expect(settings.REKEY_COST_SCHEDULE).toBe(ref('var.cost_schedule'));
    expect(app.app_settings).toBe(ref('merge(var.app_settings, local.app_settings, local.secret_settings)'));
    // Every %SETTING% a function binding names is an app setting.
    const main = readFileSync(resolve(DIR, '../../functions/azure/main.ts'), 'utf8');
    const bound = [...main.matchAll(/'%([A-Z_]+)%'/g)].map((m) => m[1]!);
    expect(bound.sort()).toEqual(['REKEY_COST_SCHEDULE', 'REKEY_SCHEDULE', 'REKEY_WORK_QUEUE']);
    for (const b of bound) expect(settings, b).toHaveProperty(b);
    // The functions start with exactly these settings (values stand in for Terraform's).
    const env = Object.fromEntries(Object.keys(settings).map((k) => [k, k === 'REKEY_SHARDS' ? '4' : 'x']));
    expect(readSettings(env, '/app/rekey.yaml')).toMatchObject({
      stateTable: 'x',
      workQueue: 'x',
      eventsQueue: 'x',
      storage: {
        tableEndpoint: 'https://x.table.core.windows.net',
        queueEndpoint: 'https://x.queue.core.windows.net',
      },
    });
  });

  it('has an incidents topic taking CloudEvents from Entra ID publishers only, delivered to compromiseEvents', () => {
    const topic = resources('azurerm_eventgrid_topic').incidents!;
    expect(topic).toMatchObject({
      input_schema: 'CloudEventSchemaV1_0',
      local_auth_enabled: false,
      identity: [{ type: 'SystemAssigned' }],
    });
    const sub = resources('azurerm_eventgrid_event_subscription').compromise!;
    expect(sub).toMatchObject({
      scope: ref('azurerm_eventgrid_topic.incidents.id'),
      event_delivery_schema: 'CloudEventSchemaV1_0',
      included_event_types: ['dev.rekey.key.compromised'],
    });
    const endpoint = (sub.azure_function_endpoint as Block[])[0]!;
    expect(endpoint.function_id).toMatch(
      /azurerm_linux_function_app\.rekey\.id\}\/functions\/compromiseEvents$/,
    );
    expect(endpoint.max_events_per_batch).toBe(1);
    expect(sub.dead_letter_identity).toEqual([{ type: 'SystemAssigned' }]);
    expect(sub.storage_blob_dead_letter_destination).toBeDefined();
    const publishers = resources('azurerm_role_assignment').incident_publishers!;
    expect(publishers).toMatchObject({
      for_each: ref('toset(var.incident_publisher_ids)'),
      scope: ref('azurerm_eventgrid_topic.incidents.id'),
      role_definition_name: 'EventGrid Data Sender',
    });
    expect(resources('azurerm_role_assignment').incidents_deadletter).toMatchObject({
      scope: ref('azurerm_storage_container.deadletter.id'),
      principal_id: ref('azurerm_eventgrid_topic.incidents.identity[0].principal_id'),
    });
  });

  it('passes the signing and token secrets as Key Vault references the app may read, one secret each', () => {
    const locals = Object.assign({}, ...(tf.locals ?? [])) as Record<string, string>;
    expect(locals.secret_settings).toMatch(/@Microsoft\.KeyVault\(VaultName=.*;SecretName=\$\{s\.name\}\)/);
    expect(locals.secrets).toContain('var.incident_signing_secret');
    expect(locals.secrets).toContain('var.approval_token_secret');
    expect(resources('azurerm_role_assignment').secrets).toMatchObject({
      for_each: ref('local.secrets'),
      role_definition_name: 'Key Vault Secrets User',
      principal_id: ref('azurerm_linux_function_app.rekey.identity[0].principal_id'),
    });
    const typeOf = (name: string) => String((tf.variable![name] as Block[])[0]!.type);
    // The settings default to the secretEnv names the bundled examples and docs use.
    expect(typeOf('incident_signing_secret')).toContain('"REKEY_INCIDENT_KEY"');
    expect(typeOf('approval_token_secret')).toContain('"REKEY_APPROVAL_TOKEN_KEY"');
  });
});
