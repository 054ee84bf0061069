import type { ManagedKey } from '../domain/key.js';
import { parseKeyRef } from '../domain/keyRef.js';
import type { CostKey, CostKeyVersion, CostProvider } from './types.js';

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
