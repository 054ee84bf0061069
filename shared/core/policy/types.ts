import type { Duration } from '../domain/duration.js';
import type { Algorithm, Protection } from '../domain/key.js';
import type { ImportWrapAlgorithm } from '../ports/KeyProvider.js';

/**
 * The validated, resolved form of a rekey config file. The loader (load.ts) turns YAML into
 * this; everything downstream works only with these types.
 */

/** `env:NAME` or `file:/path`: secrets are never written inline in a policy file. */
export type SecretRef = string;

export interface LocalProviderConfig {
  type: 'local';
  /** Keystore file (SQLite), relative to the config file's folder. Default `kms.db`. */
  keystore: string;
  /** Where the master key comes from. Default `file:master.key` (created 0600 by `rekey init`). */
  masterKey: SecretRef;
}
export interface AwsKmsProviderConfig {
  type: 'aws-kms';
  regions: string[];
  endpoint?: string;
  profile?: string;
  /** Alias name globs whose symmetric keys rotate by a new key and an alias swap. */
  rotateByNewKey?: string[];
}
export interface GcpKmsProviderConfig {
  type: 'gcp-kms';
  projects: string[];
  locations: string[];
  keyRings?: string[];
  endpoint?: string;
}
export interface AzureKvProviderConfig {
  type: 'azure-kv';
  vaults: string[];
  /** Per-host endpoint overrides (emulators, private endpoints): vault host -> https URL. */
  endpoints?: Record<string, string>;
}
export interface Pkcs11ProviderConfig {
  type: 'pkcs11';
  module: string;
  token: string;
  pin: SecretRef;
}
export type ProviderConfig =
  | LocalProviderConfig
  | AwsKmsProviderConfig
  | GcpKmsProviderConfig
  | AzureKvProviderConfig
  | Pkcs11ProviderConfig;

export interface DekColumns {
  id: string;
  key: string;
  version: string;
  wrapped: string;
  context: string;
}
export interface SqliteStoreConfig {
  type: 'sqlite';
  /** Database file, relative to the config file's folder. */
  path: string;
  table: string;
  columns: DekColumns;
  /** Where the DEKs live (region or site), for disaster-recovery checks. */
  location?: string;
}
/** Like DekColumns, but the context column may be absent (null): every DEK's context is then {}. */
export interface PostgresDekColumns {
  id: string;
  key: string;
  version: string;
  wrapped: string;
  context: string | null;
}
/** How ids compare: the id column's own type. */
export type DekIdType = 'text' | 'uuid' | 'bigint';
export interface PostgresStoreConfig {
  type: 'postgres';
  /** Connection URL, resolved by the caller (it may hold a password). */
  url: SecretRef;
  /** `table` or `schema.table`. */
  table: string;
  columns: PostgresDekColumns;
  /** Type of the id column; when absent it is read from the catalog. */
  idType?: DekIdType;
  location?: string;
}
/** Names of the DEK item's attributes in a DynamoDB table. */
export interface DynamoDekAttributes {
  /** The table's partition key. */
  id: string;
  /** Partition key of the GSI. */
  key: string;
  version: string;
  wrapped: string;
  /** A map of strings; null: not stored, every DEK's context is {}. */
  context: string | null;
  /** Sort key of the GSI: `<version>#<id>`, kept in step by the store. */
  versionId: string;
}
export interface DynamoDbStoreConfig {
  type: 'dynamodb';
  table: string;
  /** GSI on (key, versionId). */
  index: string;
  attributes: DynamoDekAttributes;
  region?: string;
  location?: string;
  /** Endpoint override (DynamoDB Local, dynalite, VPC endpoints). */
  endpoint?: string;
}
export type StoreConfig = SqliteStoreConfig | PostgresStoreConfig | DynamoDbStoreConfig;

export interface RotationWindow {
  text: string;
  /** Days of week the window opens on, 0 = Sunday. */
  days: number[];
  /** Minutes after midnight (in the window's offset) when it opens / closes; end may be < start (crosses midnight). */
  startMinute: number;
  endMinute: number;
  /** Offset of the window's clock from UTC, in minutes (UTC = 0). */
  offsetMinutes: number;
}

export interface Rate {
  text: string;
  perSecond: number;
}

export type Verify = { mode: 'full' } | { mode: 'none' } | { mode: 'sample'; fraction: number };

export interface Money {
  amount: number;
  currency: string;
}

export interface PolicyMatch {
  /** Configured provider ids. */
  provider?: string[];
  /** Every listed tag must be present; values are globs. */
  tags?: Record<string, string>;
  /** Key name globs; any may match. */
  name?: string[];
  protection?: Protection[];
  /** Exact key refs. */
  keys?: string[];
}

export interface Policy {
  name: string;
  /** Index in the file, for messages and ordering. */
  index: number;
  match: PolicyMatch;
  rotate?: {
    every: Duration;
    window?: RotationWindow;
    /** auto: native schedule when the provider can express the period, otherwise rekey rotates on demand. */
    mode: 'auto' | 'native' | 'rekey';
  };
  require?: { protection?: Protection; algorithms?: Algorithm[] };
  rewrap?: {
    stores: string[];
    within?: Duration;
    rate?: Rate;
    verify: Verify;
    batchSize: number;
  };
  retire?: {
    /** Disable a version this long after it stopped being primary (once no DEK references it). */
    disableAfter?: Duration;
    /** Schedule destruction this long after it stopped being primary. */
    destroyAfter?: Duration;
    /** Provider-side waiting period before destruction. Default P30D. */
    destroyDelay: Duration;
    /** Approvals required before destruction is scheduled. */
    approvals: number;
  };
  budget?: { perKeyMonthly?: Money };
  /** Keys with imported material (BYOK): where rotation gets new material, and expiry. */
  byok?: {
    /** Provider id of the material source (a pkcs11 provider). */
    source: string;
    algorithm?: ImportWrapAlgorithm;
    /** Material imported by rekey expires this long after the import. */
    expiresAfter?: Duration;
    /** Material expiring within this is a finding. Default P30D. */
    warnBefore: Duration;
  };
  /** Actions on keys this policy governs that need M-of-N approvals (docs/governance.md). */
  approvals?: { require: PolicyApprovalAction[]; quorum?: number };
  /** What compromise handling does beyond containment. */
  onCompromise?: {
    /** Request destruction of the compromised version (behind approvals) once it is disabled. */
    destroy: boolean;
  };
}

/** Actions that can require M-of-N approvals. */
export type ApprovalAction = 'destroy' | 'disable' | 'policy_change' | 'import' | 'rotation_period_lowered';
export const APPROVAL_ACTIONS: readonly ApprovalAction[] = [
  'destroy',
  'disable',
  'policy_change',
  'import',
  'rotation_period_lowered',
];
/** The ones a policy can name for its keys (a policy change concerns the whole file). */
export type PolicyApprovalAction = Exclude<ApprovalAction, 'policy_change'>;
export const POLICY_APPROVAL_ACTIONS: readonly PolicyApprovalAction[] = [
  'destroy',
  'disable',
  'import',
  'rotation_period_lowered',
];

export type JwsAlgorithm = 'ES256' | 'ES384' | 'RS256' | 'PS256' | 'EdDSA';
export const JWS_ALGORITHMS: readonly JwsAlgorithm[] = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'];

/**
 * How signed input (compromise events, approver tokens) is checked: an HMAC-SHA256 secret taken
 * from an environment variable, or a public key (PEM, SPKI) and the one JWS algorithm it signs with.
 */
export type SigningConfig =
  | { hmac: { secretEnv: string }; jws?: undefined }
  | { jws: { publicKeyFile: string; alg: JwsAlgorithm }; hmac?: undefined };

/** Where `key.compromised` CloudEvents may come from and how they are authenticated. */
export interface IncidentsConfig {
  /** Accepted CloudEvents `source` values, compared exactly. */
  sources: string[];
  signing: SigningConfig;
  /** Older events are refused (replay protection). Default PT1H. */
  maxAge: Duration;
}

/** Dual control: who may approve, how many must, for how long a request stays open. */
export interface ApprovalsConfig {
  /** Identities (service identities, not people) allowed to approve. */
  approvers: string[];
  /** M: distinct approvals needed, unless a rule asks for more. */
  quorum: number;
  /** How long a request stays open, and how long an approved request may be used. */
  expiry: Duration;
  /** Actions that need approvals for every key (and `policy_change` for the file). */
  require: ApprovalAction[];
  /** How the approvals HTTP API authenticates approvers (bearer JWTs). */
  tokens?: SigningConfig;
}

export type StateConfig =
  | { type: 'sqlite'; path: string }
  | { type: 'postgres'; url: SecretRef; schema: string }
  | { type: 'dynamodb'; table: string; region?: string; endpoint?: string };

/** Where rekey's metrics go (docs/metrics.md); absent: nowhere. */
export type MetricsConfig =
  | {
      type: 'emf';
      namespace: string;
      service: string;
      /** `stdout`, `stderr` or a file path (relative to the config file). */
      output: string;
      perKey: boolean;
      rollups: string[][];
    }
  | {
      type: 'otlp';
      endpoint?: string;
      /** Header name -> secret ref (env:NAME, file:PATH). */
      headers?: Record<string, SecretRef>;
      intervalSeconds: number;
      timeoutSeconds: number;
      temporality: 'cumulative' | 'delta';
      resource: Record<string, string>;
    };

export interface RekeyConfig {
  version: 1;
  /** The file it was loaded from (for messages and relative paths). */
  file: string;
  /** sha256 of the source text: plans record which config produced them. */
  digest: string;
  providers: Record<string, ProviderConfig>;
  stores: Record<string, StoreConfig>;
  /** rekey's own state; absent: SQLite `state.db` beside the config file. */
  state?: StateConfig;
  /** Where rekey publishes its events; absent: nowhere. */
  events?: { type: 'eventbridge'; bus: string; region?: string; endpoint?: string };
  /** Where rekey's metrics go; absent: nowhere. */
  metrics?: MetricsConfig;
  /** Compromise events rekey accepts; absent: none. */
  incidents?: IncidentsConfig;
  /** Approvers and the actions that need them; absent: nobody can approve anything. */
  approvals?: ApprovalsConfig;
  policies: Policy[];
}
