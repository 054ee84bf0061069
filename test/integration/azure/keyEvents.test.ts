import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import { loadConfig } from '../../../shared/core/policy/load.js';
import type { DekRecord } from '../../../shared/core/ports/DekStore.js';
import type { RekeyContext } from '../../../shared/core/usecases/context.js';
import { handleKeyEvent } from '../../../shared/core/usecases/handleKeyEvent.js';
import { parseKeyVaultEvent } from '../../../shared/providers/azure/events.js';
import { SqliteDekStore } from '../../../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../../../shared/stores/sqlite/SqliteStateStore.js';
import type { AzureKeyVaultEmulator } from '../../emulators/azure-keyvault/index.js';
import { provider as azureProvider, emulator, sdkClient, VAULT } from './helpers.js';

/**
 * Key Vault's own events drive rekey: Event Grid's KeyNewVersionCreated (a rotation policy
 * fired) makes rekey re-wrap; KeyNearExpiry makes it rotate now, then re-wrap.
 */
let emu: AzureKeyVaultEmulator | undefined;
afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

async function setup() {
  emu = await emulator();
  const provider = azureProvider(emu, {
    id: 'az',
    vaults: [VAULT],
    endpoints: { [VAULT]: emu.endpoints[VAULT]! },
  });
  const store = SqliteDekStore.open({
    id: 'app',
    path: ':memory:',
    table: 'data_keys',
    columns: { id: 'id', key: 'k', version: 'v', wrapped: 'w', context: 'c' },
    create: true,
  });
  const state = SqliteStateStore.open(':memory:');
  const config = loadConfig(
    `version: 1
providers:
  az: { type: azure-kv, vaults: [${VAULT}] }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
  - name: pci
    match: { provider: [az], tags: { data-class: pci } }
    rotate: { every: P90D }
    rewrap: { stores: [app] }
`,
    'events.yaml',
  );
  const clock = { now: () => emu!.clock.now() };
  const ctx: RekeyContext = {
    config,
    providers: new Map([['az', provider]]),
    stores: new Map([['app', store]]),
    state,
    audit: new AuditLog(state, clock),
    clock,
    actor: 'events-test',
    instanceId: 'events-test-1',
  };
  const key = await provider.createKey({ name: 'orders', tags: { 'data-class': 'pci' } });
  const ref = parseKeyRef(key.ref);
  const recs: DekRecord[] = [];
  for (let i = 0; i < 40; i++) {
    const w = await provider.wrap(ref, randomBytes(32), { row: String(i) });
    recs.push({
      id: `d${i}`,
      keyRef: key.ref,
      version: w.version,
      wrapped: w.ciphertext,
      context: { row: String(i) },
    });
  }
  await store.insertMany(recs);
  return { ctx, provider, store, key };
}

describe('Key Vault events as triggers', () => {
  it('KeyNewVersionCreated from a rotation policy re-wraps the DEKs; the same event again changes nothing', async () => {
    const { ctx, store, key } = await setup();
    const client = sdkClient(emu!, VAULT);
    await client.updateKeyRotationPolicy('orders', {
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P30D' }],
    });
    emu!.clock.advanceDays(31);
    const [raw] = emu!.events.ofType('Microsoft.KeyVault.KeyNewVersionCreated');
    expect(raw).toBeDefined();
    const event = parseKeyVaultEvent(raw);
    const first = await handleKeyEvent(ctx, event);
    expect(first).toMatchObject({ outcome: 'rewrapped', keyRef: key.ref });
    const primary = (await ctx.providers.get('az')!.getKey(parseKeyRef(key.ref))).primaryVersion;
    expect(primary).not.toBe(key.primaryVersion);
    expect(await store.countByVersion(key.ref)).toEqual({ [primary]: 40 });
    const again = await handleKeyEvent(ctx, event);
    expect(again).toMatchObject({
      outcome: 'ignored',
      reason: expect.stringContaining('no DEK is left'),
      jobs: [],
    });
    expect(await store.countByVersion(key.ref)).toEqual({ [primary]: 40 });
  });

  it('KeyNearExpiry rotates now and re-wraps; a replay after the rotation is ignored', async () => {
    const { ctx, store, key } = await setup();
    const event = parseKeyVaultEvent({
      id: 'evt-near-1',
      topic: '/subscriptions/x/resourceGroups/y/providers/Microsoft.KeyVault/vaults/rekey-prod',
      subject: 'orders',
      eventType: 'Microsoft.KeyVault.KeyNearExpiry',
      eventTime: emu!.clock.now().toISOString(),
      data: {
        Id: `https://${VAULT}/keys/orders/${key.primaryVersion}`,
        VaultName: 'rekey-prod',
        ObjectType: 'Key',
        ObjectName: 'orders',
        Version: key.primaryVersion,
        NBF: null,
        EXP: null,
      },
      dataVersion: '1',
      metadataVersion: '1',
    });
    const first = await handleKeyEvent(ctx, event);
    expect(first.outcome).toBe('rotated');
    expect(await store.countByVersion(key.ref)).toEqual({ [first.rotatedTo!]: 40 });
    const replay = await handleKeyEvent(ctx, event);
    expect(replay).toMatchObject({ outcome: 'ignored', reason: expect.stringContaining('already rotated') });
    const versions = (await ctx.providers.get('az')!.getKey(parseKeyRef(key.ref))).versions;
    expect(versions).toHaveLength(2);
  });

  it('an event for a key no policy governs is ignored, and recorded', async () => {
    const { ctx, provider } = await setup();
    const other = await provider.createKey({ name: 'unmanaged' });
    const out = await handleKeyEvent(ctx, {
      provider: 'azure-kv',
      keyRef: other.ref,
      kind: 'version_created',
      at: new Date().toISOString(),
      eventId: 'e-1',
    });
    expect(out.outcome).toBe('ignored');
    const tail = await ctx.state.auditTail();
    expect(tail).toMatchObject({ action: 'event.handled', details: { eventId: 'e-1', outcome: 'ignored' } });
  });

  it('a malformed or forged event is refused before anything changes', async () => {
    const { ctx, key } = await setup();
    expect(() => parseKeyVaultEvent({ eventType: 'Microsoft.KeyVault.KeyNewVersionCreated' })).toThrow(
      'Key Vault event',
    );
    await expect(
      handleKeyEvent(ctx, {
        provider: 'aws-kms',
        keyRef: key.ref,
        kind: 'version_created',
        at: '',
        eventId: 'x',
      }),
    ).rejects.toThrow('not a aws-kms key');
    expect(await ctx.state.auditTail()).toBeNull();
  });
});
