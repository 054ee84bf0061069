import type { Algorithm, Protection, VersionState } from '../domain/key.js';

/**
 * Inputs and outputs of the cost model. Inputs describe what happened to each key during a
 * billing period (versions, state changes, rotations, usage); outputs say what it cost and why.
 */

/** Who bills a key. Managed HSM differs enough from a Key Vault vault to be its own provider. */
export type CostProvider = 'aws-kms' | 'gcp-kms' | 'azure-kv' | 'azure-managed-hsm' | 'pkcs11' | 'local';
export const COST_PROVIDERS: readonly CostProvider[] = [
  'aws-kms',
  'gcp-kms',
  'azure-kv',
  'azure-managed-hsm',
  'pkcs11',
  'local',
];

/**
 * Request classes, as providers price them. A cryptographic request's class follows the key's
 * algorithm, so the model refines `symmetric`/`asymmetric`/`rsa_2048` from the key it is made
 * with (importers often cannot tell an RSA 2048 key from an RSA 4096 one). GenerateDataKeyPair
 * classes depend on the pair generated, not the key; `management` (describe, list, get...) is
 * priced as a plain request on AWS and Azure and is free on GCP.
 */
export type RequestClass = 'symmetric' | 'rsa_2048' | 'asymmetric' | 'gdkp_ecc' | 'gdkp_rsa' | 'management';
export const REQUEST_CLASSES: readonly RequestClass[] = [
  'symmetric',
  'rsa_2048',
  'asymmetric',
  'gdkp_ecc',
  'gdkp_rsa',
  'management',
];

export interface StateChange {
  /** ISO-8601 UTC */
  at: string;
  state: VersionState;
}

export type KeyLevelState = 'enabled' | 'disabled' | 'pending_deletion';

export interface CostKeyVersion {
  id: string;
  createdAt: string;
  /** State changes after creation, in time order. A version starts `enabled`. */
  states?: StateChange[];
  /** When the version was destroyed (free from then on). Same as a `destroyed` state change. */
  destroyedAt?: string;
  /**
   * How the version came to be. `manual` (a new version created directly, not via a rotate
   * operation) is not a billed rotation on Azure; unknown origins count as rotations.
   */
  origin?: 'initial' | 'automatic' | 'on_demand' | 'manual';
}

export interface CostKey {
  /** Resource id: a rekey key ref (aws-kms://arn..., gcp-kms://projects/..., azure-kv://host/keys/n). */
  ref: string;
  provider: CostProvider;
  /** Billing scope: AWS account id, GCP billing account (or project), Azure subscription (or vault). */
  account: string;
  accountName?: string;
  region?: string;
  name?: string;
  /** Configured provider id (for policy matching). */
  providerId?: string;
  tags?: Record<string, string>;
  protection: Protection;
  algorithm: Algorithm;
  /** AWS-managed keys pay no storage or rotation fee; requests are billed. */
  managedBy?: 'customer' | 'provider';
  createdAt: string;
  /** Key deleted / purged: nothing bills after this. */
  deletedAt?: string;
  /** Key-level state changes (AWS: a key pending deletion is not billed). Starts `enabled`. */
  keyStates?: { at: string; state: KeyLevelState }[];
  /** Oldest first; the first is the original material, each later one a rotation. */
  versions: CostKeyVersion[];
  /** HSM pool the key lives in: CloudHSM cluster id or Managed HSM pool id. */
  pool?: string;
  /** Last cryptographic use, when the provider reports it. */
  lastUsedAt?: string;
}

export interface HsmPool {
  id: string;
  /** Catalog SKU of one HSM-hour (e.g. `aws-cloudhsm/hsm2m.medium`, `azure-managed-hsm/pool-hour`). */
  sku: string;
  /** HSMs in the cluster (CloudHSM); 1 for a Managed HSM pool. */
  hsms: number;
  account: string;
  region?: string;
  createdAt?: string;
  deletedAt?: string;
}

export interface UsageCounter {
  /** Key ref, or a vault/resource id when the source is not per key. */
  ref: string;
  version?: string;
  class: RequestClass;
  count: number;
  /** YYYY-MM */
  period: string;
  source?: string;
}

export interface CostInventory {
  keys: CostKey[];
  pools?: HsmPool[];
}

export type PartKind = 'key_storage' | 'key_version' | 'rotation' | 'requests' | 'hsm_pool';
export type PartStatus = 'priced' | 'free' | 'unknown';

/** One line of a key's cost: quantity x unit price, with the reason in one sentence. */
export interface CostPart {
  kind: PartKind;
  version?: string;
  requestClass?: RequestClass;
  sku: string;
  meter?: string;
  unit: string;
  /** Billed quantity in `unit` (after any free allowance). */
  quantity: number;
  /** Quantity covered by a free allowance (not in `quantity`). */
  freeQuantity?: number;
  /** Effective unit price in the output currency (tiered SKUs: the average rate). null if unknown. */
  unitPrice: number | null;
  /** The catalog's list unit price before negotiated overrides (same currency). */
  listUnitPrice: number | null;
  cost: number | null;
  status: PartStatus;
  frequency: 'Recurring' | 'Usage-Based' | 'One-Time';
  explanation: string;
  source?: string;
  /** How a shared quantity was split to reach this part (free allowance, HSM pool). */
  allocation?: CostAllocation;
}

/**
 * A share of something that belongs to an account or a pool, not to one key.
 *  - `free_allowance`: the account's free requests, split in proportion to requests;
 *  - `hsm_pool`: the pool's HSM-hours, split in proportion to the hours each key existed.
 */
export type CostAllocation =
  | {
      kind: 'free_allowance';
      allowance: string;
      account: string;
      /** Free requests a month for the whole account. */
      allowanceQuantity: number;
      /** Requests of the account the allowance applies to, this key's included. */
      accountQuantity: number;
      /** Free requests that fell to this key. */
      keyShare: number;
    }
  | {
      kind: 'hsm_pool';
      pool: string;
      hsms: number;
      /** HSM-hours of the pool in the period. */
      poolHsmHours: number;
      /** Hours this key existed in the period, and the sum over the pool's keys. */
      keyHours: number;
      totalKeyHours: number;
      keys: number;
    };

export interface VersionCost {
  id: string;
  /** Hours of the period this version was billable. */
  billableHours: number;
  cost: number | null;
}

export interface KeyCost {
  ref: string;
  provider: CostProvider;
  account: string;
  accountName?: string;
  region?: string;
  protection: Protection;
  algorithm: Algorithm;
  period: string;
  periodStart: string;
  periodEnd: string;
  currency: string;
  catalogVersion: string;
  overrideDigest: string;
  parts: CostPart[];
  versions: VersionCost[];
  /** Sum of all parts, or null when any part's price is unknown. */
  total: number | null;
  /** Sum of the parts whose price is known. */
  knownTotal: number;
  unknownParts: number;
  /** Versions billable at some point in the period. */
  billableVersions: number;
  rotationsInPeriod: number;
}

export interface PoolCost {
  id: string;
  sku: string;
  hsmHours: number;
  cost: number | null;
  keys: number;
  /** Cost not spread over any key (a pool with no keys in the period). */
  unallocated: number | null;
  explanation: string;
}

export interface CostReport {
  period: string;
  periodStart: string;
  periodEnd: string;
  currency: string;
  catalogVersion: string;
  overrideDigest: string;
  keys: KeyCost[];
  pools: PoolCost[];
  /** Usage whose ref matched no key in the inventory (e.g. per-vault Azure cost export lines). */
  unmatchedUsage: UsageCounter[];
  total: number | null;
  knownTotal: number;
  unknownParts: number;
}
