import { KvError } from './errors.js';

/**
 * The quota bucket a request draws from. Key Vault counts transactions per vault in 10-second
 * windows, with separate limits by key type and for key creation (FACTS.md).
 */
export type QuotaClass = 'software' | 'hsm' | 'hsmRsa3072' | 'hsmRsa4096' | 'createSoftware' | 'createHsm';

/** Per vault per 10 s, from the Key Vault service limits. */
export const VAULT_QUOTA_PER_10S: Record<QuotaClass, number> = {
  software: 4000,
  hsm: 2000,
  hsmRsa3072: 500,
  hsmRsa4096: 250,
  createSoftware: 20,
  createHsm: 10,
};
const WINDOW_MS = 10_000;

export interface AzureFaultConfig {
  /** Enforce the per-vault 10-second quotas. Default false (tests opt in). */
  quota?: boolean;
  /** Overrides for the quota numbers (a storm test uses small ones). */
  quotaPer10s?: Partial<Record<QuotaClass, number>>;
  /** Probability (0-1) that a request is refused with 429 Throttled. */
  throttleProbability?: number;
  /** Probability (0-1) that a request fails with 503 ServiceUnavailable. */
  unavailableProbability?: number;
  /** Delay before every answer, in ms. */
  latencyMs?: number;
  /** Retry-After on 429 answers, in seconds (Key Vault sends whole seconds). Default 1. */
  retryAfterSeconds?: number;
  /**
   * Also send `x-ms-retry-after-ms` with this value on 429 answers. Key Vault does not; the
   * Azure SDK prefers it over Retry-After, so tests can retry quickly. Default: not sent.
   */
  retryAfterMs?: number | null;
  /** Seed for the fault dice. */
  seed?: number;
}

interface Scripted {
  operation: string;
  status: number;
  code: string;
  remaining: number;
}

/** Fault injection for one emulator: 10-second quota windows per vault, dice, scripted failures. */
export class AzureFaults {
  private config: Required<Omit<AzureFaultConfig, 'quotaPer10s' | 'retryAfterMs'>> & {
    quotaPer10s: Record<QuotaClass, number>;
    retryAfterMs: number | null;
  };
  private windows = new Map<string, { start: number; used: number }>();
  private scripted: Scripted[] = [];
  private rand: () => number;
  /** Requests refused, by reason: tests read it to prove a fault fired. */
  readonly counts: Record<string, number> = {};

  constructor(config: AzureFaultConfig = {}) {
    this.config = AzureFaults.defaults();
    this.rand = mulberry32(1);
    this.set(config);
  }

  private static defaults() {
    return {
      quota: false,
      quotaPer10s: { ...VAULT_QUOTA_PER_10S },
      throttleProbability: 0,
      unavailableProbability: 0,
      latencyMs: 0,
      retryAfterSeconds: 1,
      retryAfterMs: null as number | null,
      seed: 1,
    };
  }

  set(config: AzureFaultConfig): void {
    for (const p of ['throttleProbability', 'unavailableProbability'] as const) {
      const v = config[p];
      if (v !== undefined && !(v >= 0 && v <= 1)) throw new RangeError(`${p} must be between 0 and 1`);
    }
    const { quotaPer10s, ...rest } = config;
    this.config = {
      ...this.config,
      ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
      quotaPer10s: { ...this.config.quotaPer10s, ...(quotaPer10s ?? {}) },
    } as typeof this.config;
    if (config.seed !== undefined) this.rand = mulberry32(config.seed);
    if (quotaPer10s !== undefined || config.quota !== undefined) this.windows.clear();
  }

  reset(): void {
    this.config = AzureFaults.defaults();
    this.rand = mulberry32(1);
    this.scripted = [];
    this.windows.clear();
    for (const k of Object.keys(this.counts)) delete this.counts[k];
  }

  get latencyMs(): number {
    return this.config.latencyMs;
  }

  /** The next `count` requests of `operation` (e.g. `wrapKey`, `getKey`, `*`) fail with this status and code. */
  failNext(operation: string, status: number, code: string, count = 1): void {
    this.scripted.push({ operation, status, code, remaining: count });
  }

  /** Throws the fault this request gets, if any. */
  check(vault: string, operation: string, quotaClass: QuotaClass | null): void {
    const s = this.scripted.find(
      (f) => f.remaining > 0 && (f.operation === '*' || f.operation === operation),
    );
    if (s) {
      s.remaining -= 1;
      this.scripted = this.scripted.filter((f) => f.remaining > 0);
      this.count(`scripted:${s.code}`);
      if (s.status === 429) throw this.throttled(`injected fault for ${operation}`);
      throw new KvError(s.status, s.code, `Injected fault for ${operation}.`);
    }
    if (this.config.quota && quotaClass !== null && !this.take(vault, quotaClass)) {
      this.count('quota');
      throw this.throttled(
        `Too many requests from the vault for ${quotaClass} operations within 10 seconds (limit ${this.config.quotaPer10s[quotaClass]}).`,
      );
    }
    if (this.config.throttleProbability > 0 && this.rand() < this.config.throttleProbability) {
      this.count('throttle');
      throw this.throttled('Too many requests.');
    }
    if (this.config.unavailableProbability > 0 && this.rand() < this.config.unavailableProbability) {
      this.count('unavailable');
      throw new KvError(
        503,
        'ServiceUnavailable',
        'The service is temporarily unavailable. Try again later.',
      );
    }
  }

  private throttled(reason: string): KvError {
    const headers: Record<string, string> = { 'Retry-After': String(this.config.retryAfterSeconds) };
    if (this.config.retryAfterMs !== null) headers['x-ms-retry-after-ms'] = String(this.config.retryAfterMs);
    return new KvError(
      429,
      'Throttled',
      `Request was not processed because too many requests were received. ${reason}`,
      headers,
    );
  }

  private take(vault: string, cls: QuotaClass): boolean {
    const key = `${vault}\u0000${cls}`;
    const now = Date.now();
    let w = this.windows.get(key);
    if (!w || now - w.start >= WINDOW_MS) {
      w = { start: now, used: 0 };
      this.windows.set(key, w);
    }
    if (w.used >= this.config.quotaPer10s[cls]) return false;
    w.used += 1;
    return true;
  }

  private count(kind: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
  }
}

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
