import { status } from '@grpc/grpc-js';
import { GrpcError } from './errors.js';

/** What a corrupting fault changes in Encrypt / Decrypt responses. */
export type Corruption =
  /** ciphertext_crc32c (Encrypt) or plaintext_crc32c (Decrypt) no longer matches the data. */
  | 'checksum'
  /** one byte of the ciphertext (Encrypt) or plaintext (Decrypt) flipped after the checksum was taken. */
  | 'data'
  /** verified_plaintext_crc32c / verified_additional_authenticated_data_crc32c reported false. */
  | 'unverified';

export interface GcpFaultConfig {
  /**
   * Cryptographic requests (Encrypt, Decrypt) allowed per minute per project and location, as
   * Cloud KMS's default quota (60,000) applies them; null = unlimited. Refills continuously in
   * real time.
   */
  cryptoRequestsPerMinute?: number | null;
  /** Probability (0-1) that any request fails with UNAVAILABLE. */
  unavailableProbability?: number;
  /** Delay before every request is answered, in ms. */
  latencyMs?: number;
  /** Corrupts successful Encrypt/Decrypt responses; null = off. */
  corrupt?: Corruption | null;
  /** How many responses to corrupt before the switch turns itself off; null = until turned off. */
  corruptCount?: number | null;
  /** Seed for the fault dice, so a failing run replays. */
  seed?: number;
}

interface Scripted {
  method: string;
  code: status;
  remaining: number;
}

export const CRYPTO_METHODS = new Set(['Encrypt', 'Decrypt']);

type Config = Required<GcpFaultConfig>;

function defaults(): Config {
  return {
    cryptoRequestsPerMinute: null,
    unavailableProbability: 0,
    latencyMs: 0,
    corrupt: null,
    corruptCount: null,
    seed: 1,
  };
}

/** Quota buckets, dice, scripted failures and the response-corruption switch. */
export class GcpFaults {
  private config: Config = defaults();
  private rand = mulberry32(1);
  private scripted: Scripted[] = [];
  private buckets = new Map<string, { tokens: number; at: number }>();
  /** Faults that fired, by kind (`quota`, `unavailable`, `corrupt`, or a status name). */
  readonly counts: Record<string, number> = {};

  constructor(config: GcpFaultConfig = {}) {
    this.set(config);
  }

  /** Changes part of the configuration; fields left out keep their value. */
  set(config: GcpFaultConfig): void {
    const p = config.unavailableProbability;
    if (p !== undefined && !(p >= 0 && p <= 1))
      throw new RangeError(`unavailableProbability must be between 0 and 1 (got ${p})`);
    if (config.latencyMs !== undefined && !(config.latencyMs >= 0))
      throw new RangeError(`latencyMs must be >= 0 (got ${config.latencyMs})`);
    const rpm = config.cryptoRequestsPerMinute;
    if (rpm !== undefined && rpm !== null && !(rpm > 0))
      throw new RangeError(`cryptoRequestsPerMinute must be > 0 (got ${rpm})`);
    if (config.corrupt !== undefined && config.corrupt !== null) {
      if (!['checksum', 'data', 'unverified'].includes(config.corrupt))
        throw new RangeError(`corrupt must be checksum, data or unverified (got ${config.corrupt})`);
    }
    for (const [k, v] of Object.entries(config)) {
      if (v !== undefined) (this.config as Record<string, unknown>)[k] = v;
    }
    if (config.seed !== undefined) this.rand = mulberry32(config.seed);
    if (rpm !== undefined) this.buckets.clear();
  }

  current(): GcpFaultConfig {
    return { ...this.config };
  }

  reset(): void {
    this.config = defaults();
    this.rand = mulberry32(1);
    this.scripted = [];
    this.buckets.clear();
    for (const k of Object.keys(this.counts)) delete this.counts[k];
  }

  /** The next `count` calls of `method` (e.g. `Encrypt`, or `*`) fail with `code`. */
  failNext(method: string, code: status, count = 1): void {
    this.scripted.push({ method, code, remaining: count });
  }

  latency(): number {
    return this.config.latencyMs;
  }

  /** Throws the fault this request gets, if any. `scope` is `projects/p/locations/l`. */
  check(method: string, scope: string | null): void {
    const s = this.scripted.find((f) => f.remaining > 0 && (f.method === '*' || f.method === method));
    if (s) {
      s.remaining -= 1;
      this.scripted = this.scripted.filter((f) => f.remaining > 0);
      this.count(status[s.code]);
      throw new GrpcError(s.code, `injected fault for ${method}`);
    }
    if (CRYPTO_METHODS.has(method) && scope && !this.take(scope)) {
      this.count('quota');
      throw new GrpcError(
        status.RESOURCE_EXHAUSTED,
        `Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute' of service 'cloudkms.googleapis.com' for ${scope}.`,
      );
    }
    if (this.config.unavailableProbability > 0 && this.rand() < this.config.unavailableProbability) {
      this.count('unavailable');
      throw new GrpcError(status.UNAVAILABLE, 'The service is currently unavailable.');
    }
  }

  /** The corruption to apply to this successful crypto response, if any (consumes one count). */
  corruption(): Corruption | null {
    const c = this.config.corrupt;
    if (!c) return null;
    if (this.config.corruptCount !== null) {
      if (this.config.corruptCount <= 0) return null;
      this.config.corruptCount -= 1;
      if (this.config.corruptCount === 0) {
        this.config.corrupt = null;
        this.config.corruptCount = null;
      }
    }
    this.count('corrupt');
    return c;
  }

  private count(kind: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
  }

  /** Token bucket per project+location: capacity one minute's quota, refilled continuously. */
  private take(scope: string): boolean {
    const rpm = this.config.cryptoRequestsPerMinute;
    if (rpm === null) return true;
    const now = Date.now();
    const b = this.buckets.get(scope) ?? { tokens: rpm, at: now };
    b.tokens = Math.min(rpm, b.tokens + ((now - b.at) / 60_000) * rpm);
    b.at = now;
    this.buckets.set(scope, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** Small seeded PRNG: fault dice must be reproducible, not secure. */
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
