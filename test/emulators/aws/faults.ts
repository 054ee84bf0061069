import { AwsError } from './protocol.js';

export type ServiceName = 'kms' | 'sqs' | 'events';

export interface FaultConfig {
  /**
   * Shared request quota for KMS cryptographic operations (Encrypt, Decrypt, ReEncrypt,
   * GenerateDataKey*), per second, as KMS applies one per account and Region. null = unlimited.
   */
  cryptoRequestsPerSecond?: number | null;
  /** Bucket size; defaults to one second's worth of requests. */
  cryptoBurst?: number | null;
  /** Probability (0-1) that any request of a faulted service is refused with a throttling error. */
  throttleProbability?: number;
  /** Probability (0-1) that any request of a faulted service fails with an HTTP 500 internal error. */
  serverErrorProbability?: number;
  /** Delay added before every request of a faulted service is answered, in ms. */
  latencyMs?: number;
  /** Which services the probabilities and latency apply to. Default: KMS only. */
  services?: ServiceName[];
  /** Seed for the fault dice, so a failing run can be replayed. */
  seed?: number;
}

interface ScriptedFault {
  operation: string | '*';
  type: string;
  status: number;
  remaining: number;
}

/** KMS operations that draw from the shared cryptographic quota. */
export const KMS_CRYPTO_OPERATIONS = new Set([
  'Encrypt',
  'Decrypt',
  'ReEncrypt',
  'GenerateDataKey',
  'GenerateDataKeyWithoutPlaintext',
  'GenerateDataKeyPair',
  'GenerateDataKeyPairWithoutPlaintext',
  'GenerateRandom',
  'Sign',
  'Verify',
  'GenerateMac',
  'VerifyMac',
]);

const THROTTLE_TYPE: Record<ServiceName, string> = {
  kms: 'ThrottlingException',
  sqs: 'RequestThrottled',
  events: 'ThrottlingException',
};
const INTERNAL_TYPE: Record<ServiceName, string> = {
  kms: 'KMSInternalException',
  sqs: 'InternalError',
  events: 'InternalException',
};

/** Fault injection: a token bucket for the KMS crypto quota, dice for random faults, scripted failures. */
export class Faults {
  private config: Required<Omit<FaultConfig, 'cryptoRequestsPerSecond' | 'cryptoBurst'>> & {
    cryptoRequestsPerSecond: number | null;
    cryptoBurst: number | null;
  };
  private tokens = 0;
  private refilledAt = 0;
  private rand: () => number;
  private scripted: ScriptedFault[] = [];
  /** How many requests each fault refused, by error type: tests read it to prove faults fired. */
  readonly counts: Record<string, number> = {};

  constructor(config: FaultConfig = {}) {
    this.config = Faults.defaults();
    this.rand = mulberry32(0);
    this.set(config);
  }

  private static defaults() {
    return {
      cryptoRequestsPerSecond: null as number | null,
      cryptoBurst: null as number | null,
      throttleProbability: 0,
      serverErrorProbability: 0,
      latencyMs: 0,
      services: ['kms'] as ServiceName[],
      seed: 1,
    };
  }

  /** Changes part of the configuration; fields left out keep their value. */
  set(config: FaultConfig): void {
    for (const p of ['throttleProbability', 'serverErrorProbability'] as const) {
      const v = config[p];
      if (v !== undefined && !(v >= 0 && v <= 1))
        throw new RangeError(`${p} must be between 0 and 1 (got ${v})`);
    }
    if (config.latencyMs !== undefined && !(config.latencyMs >= 0))
      throw new RangeError('latencyMs must be >= 0');
    const rps = config.cryptoRequestsPerSecond;
    if (rps !== undefined && rps !== null && !(rps > 0))
      throw new RangeError('cryptoRequestsPerSecond must be > 0');
    this.config = {
      ...this.config,
      ...Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)),
    } as typeof this.config;
    if (config.seed !== undefined) this.rand = mulberry32(config.seed);
    if (rps !== undefined || config.cryptoBurst !== undefined) {
      this.tokens = this.capacity();
      this.refilledAt = Date.now();
    }
  }

  /** Back to no faults at all. */
  reset(): void {
    this.config = Faults.defaults();
    this.rand = mulberry32(1);
    this.scripted = [];
    for (const k of Object.keys(this.counts)) delete this.counts[k];
  }

  current(): FaultConfig {
    return { ...this.config, services: [...this.config.services] };
  }

  /**
   * Makes the next `count` requests to `operation` (e.g. `Encrypt`, `SendMessage`, `PutEvents`,
   * or `*`) fail with the given error type.
   */
  failNext(operation: string, type: string, count = 1, status = 400): void {
    this.scripted.push({ operation, type, status, remaining: count });
  }

  latencyFor(service: ServiceName): number {
    return this.config.services.includes(service) ? this.config.latencyMs : 0;
  }

  /** Throws the fault this request should get, if any. Called before the operation runs. */
  check(service: ServiceName, operation: string): void {
    const s = this.scripted.find(
      (f) => f.remaining > 0 && (f.operation === '*' || f.operation === operation),
    );
    if (s) {
      s.remaining--;
      this.scripted = this.scripted.filter((f) => f.remaining > 0);
      this.count(s.type);
      throw new AwsError(s.type, `injected fault for ${operation}`, s.status);
    }
    if (service === 'kms' && KMS_CRYPTO_OPERATIONS.has(operation) && !this.take()) {
      this.count('quota');
      throw new AwsError(
        THROTTLE_TYPE.kms,
        'You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.',
      );
    }
    if (!this.config.services.includes(service)) return;
    if (this.config.throttleProbability > 0 && this.rand() < this.config.throttleProbability) {
      this.count('throttle');
      throw new AwsError(THROTTLE_TYPE[service], 'Rate exceeded');
    }
    if (this.config.serverErrorProbability > 0 && this.rand() < this.config.serverErrorProbability) {
      this.count('serverError');
      throw new AwsError(INTERNAL_TYPE[service], 'We encountered an internal error. Please try again.', 500);
    }
  }

  private count(kind: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
  }

  private capacity(): number {
    const rps = this.config.cryptoRequestsPerSecond;
    return rps === null ? Number.POSITIVE_INFINITY : (this.config.cryptoBurst ?? rps);
  }

  /** Token bucket refilled continuously at the quota rate, in real time (quotas are per real second). */
  private take(): boolean {
    const rps = this.config.cryptoRequestsPerSecond;
    if (rps === null) return true;
    const now = Date.now();
    this.tokens = Math.min(this.capacity(), this.tokens + ((now - this.refilledAt) / 1000) * rps);
    this.refilledAt = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }
}

/** Small seeded PRNG; fault dice must be reproducible, not secure. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
