import type { ManagedKey } from '../domain/key.js';
import { type ProviderType, parseKeyRef } from '../domain/keyRef.js';
import { matchesPolicy } from '../policy/match.js';
import type { Policy } from '../policy/types.js';
import type { CostKey, CostKeyVersion, CostProvider, HsmPool } from './types.js';

/**
 * A CostKey from rekey's own inventory. The inventory holds each version's current state, not
 * when it changed, so the current state is assumed since creation, except that a version
 * scheduled for destruction is billed until its destroyAt and a destroyed version not at all.
 * Billing scope: the AWS account, GCP project, Azure vault (override with `account`).
 */
export function costKeyFromManaged(
  key: ManagedKey,
  extra: Partial<
    Pick<CostKey, 'account' | 'accountName' | 'region' | 'pool' | 'managedBy' | 'lastUsedAt'>
  > = {},
): CostKey {
  const ref = parseKeyRef(key.ref);
  let provider: CostProvider = key.providerType;
  let account = 'local';
  let region: string | undefined;
  switch (ref.type) {
    case 'aws-kms':
      account = ref.account;
      region = ref.region;
      break;
    case 'gcp-kms':
      account = ref.project;
      region = ref.location;
      break;
    case 'azure-kv':
      account = ref.host;
      if (ref.kind === 'managedhsm') provider = 'azure-managed-hsm';
      break;
    case 'pkcs11':
      account = ref.attributes.token ?? 'pkcs11';
      break;
  }
  const versions: CostKeyVersion[] = key.versions.map((v) => {
    const out: CostKeyVersion = { id: v.id, createdAt: v.createdAt };
    if (v.state === 'destroyed') out.destroyedAt = v.createdAt;
    else if (v.state !== 'enabled') {
      out.states = [{ at: v.createdAt, state: v.state }];
      if (v.state === 'destroy_scheduled' && v.destroyAt) out.destroyedAt = v.destroyAt;
    }
    return out;
  });
  const out: CostKey = {
    ref: key.ref,
    provider,
    account,
    name: key.name,
    providerId: key.providerId,
    tags: key.tags,
    protection: key.protection,
    algorithm: key.algorithm,
    createdAt: key.createdAt,
    versions,
    ...extra,
  };
  if (region && !out.region) out.region = region;
  if (extra.account) out.account = extra.account;
  return out;
}

/**
 * The ManagedKey fields policy matching looks at (provider id, name, tags, protection, ref), for
 * a key known only from a cost inventory. A key without a provider id matches by provider type.
 */
export function managedView(k: CostKey): ManagedKey {
  const providerType: ProviderType = k.provider === 'azure-managed-hsm' ? 'azure-kv' : k.provider;
  return {
    ref: k.ref,
    providerType,
    providerId: k.providerId ?? k.provider,
    name: k.name ?? k.ref,
    tags: k.tags ?? {},
    protection: k.protection,
    algorithm: k.algorithm,
    enabled: true,
    primaryVersion: k.versions[k.versions.length - 1]?.id ?? '',
    versions: [],
    createdAt: k.createdAt,
  };
}

/** The policy that governs a cost key: the first match in file order, as for live keys. */
export function policyForCostKey(policies: readonly Policy[], k: CostKey): Policy | undefined {
  const view = managedView(k);
  return policies.find((p) => matchesPolicy(p, view));
}

/** The `rekey-inventory/1` file (docs/cost.md), as `rekey inventory export` writes it. */
export interface InventoryFile {
  format: 'rekey-inventory/1';
  exportedAt: string;
  keys: CostKey[];
  pools: HsmPool[];
}

/**
 * rekey's inventory as the file `rekey cost estimate` reads. `lastUsed` adds the last use the
 * provider reported, by key ref.
 */
export function inventoryFile(
  keys: readonly ManagedKey[],
  opts: { exportedAt: string; lastUsed?: ReadonlyMap<string, string>; pools?: HsmPool[] },
): InventoryFile {
  return {
    format: 'rekey-inventory/1',
    exportedAt: opts.exportedAt,
    keys: keys.map((k) => {
      const used = opts.lastUsed?.get(k.ref);
      return costKeyFromManaged(k, used ? { lastUsedAt: used } : {});
    }),
    pools: opts.pools ?? [],
  };
}
