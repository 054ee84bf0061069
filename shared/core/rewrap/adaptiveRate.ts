/**
 * A token bucket whose rate adapts to the provider: additive increase while calls succeed,
 * multiplicative decrease when the provider throttles (AIMD), so concurrent workers converge
 * on the real quota instead of hammering it. With no configured rate it runs unlimited until
 * the first throttle, then starts from the rate it had actually reached.
 */
export interface AdaptiveRateOptions {
  /** Configured ceiling, operations per second; undefined = none. */
  maxPerSecond?: number;
  /** Floor, so a throttling storm never stalls a job completely. Default 1/s. */
  minPerSecond?: number;
  /** Multiplier on throttle. Default 0.7. */
  decrease?: number;
  /** Added per second without a throttle, as a fraction of the ceiling (or of the rate). Default 0.05. */
  increaseFraction?: number;
  nowMs?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export class AdaptiveRate {
  private rate: number | null;
  private tokens = 0;
  private last: number;
  private lastThrottle = -Infinity;
  private lastIncrease: number;
  private readonly max: number | null;
  private readonly min: number;
  private readonly decrease: number;
  private readonly increaseFraction: number;
  private readonly nowMs: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Recent completions, to know the achieved rate when unlimited. */
  private windowStart: number;
  private windowCount = 0;
  /** Smoothed achieved rate (ops/s), and the highest seen: the scale of additive increase. */
  private achieved = 0;
  private peak = 0;
  throttles = 0;

  constructor(o: AdaptiveRateOptions = {}) {
    this.max = o.maxPerSecond && o.maxPerSecond > 0 ? o.maxPerSecond : null;
    this.rate = this.max;
    this.min = o.minPerSecond ?? 1;
    this.decrease = o.decrease ?? 0.7;
    this.increaseFraction = o.increaseFraction ?? 0.05;
    this.nowMs = o.nowMs ?? (() => performance.now());
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
    this.last = this.nowMs();
    this.lastIncrease = this.last;
    this.windowStart = this.last;
    // A small burst: a bucket as deep as a whole second would overrun a provider whose own
    // bucket is shallower.
    this.tokens = this.burst();
  }

  /** Current rate, or null while unlimited. */
  current(): number | null {
    return this.rate;
  }

  private burst(): number {
    return this.rate === null ? Infinity : Math.max(1, this.rate / 20);
  }

  async acquire(n = 1): Promise<void> {
    // A request larger than the bucket is taken in bucket-sized parts.
    while (this.rate !== null && n > this.burst()) {
      const part = Math.max(1, Math.floor(this.burst()));
      await this.acquire(part);
      n -= part;
    }
    for (;;) {
      if (this.rate === null) return;
      const t = this.nowMs();
      this.tokens = Math.min(this.burst(), this.tokens + ((t - this.last) / 1000) * this.rate);
      this.last = t;
      if (this.tokens >= n) {
        this.tokens -= n;
        return;
      }
      await this.sleep(Math.max(1, Math.ceil(((n - this.tokens) / this.rate) * 1000)));
    }
  }

  private sample(t: number): void {
    const span = t - this.windowStart;
    if (span < 250) return;
    const now = (this.windowCount * 1000) / span;
    this.achieved = this.achieved === 0 ? now : 0.5 * this.achieved + 0.5 * now;
    this.peak = Math.max(this.peak, this.achieved);
    this.windowStart = t;
    this.windowCount = 0;
  }

  onSuccess(n = 1): void {
    const t = this.nowMs();
    this.windowCount += n;
    this.sample(t);
    if (this.rate === null) return;
    const ceiling = this.max ?? Infinity;
    if (this.rate >= ceiling) return;
    const since = (t - this.lastIncrease) / 1000;
    if (since >= 0.1 && t - this.lastThrottle > 1000) {
      const step = (this.max ?? Math.max(this.peak, this.rate)) * this.increaseFraction * since;
      this.rate = Math.min(ceiling, this.rate + step);
      this.lastIncrease = t;
    }
  }

  onThrottle(): void {
    const t = this.nowMs();
    this.throttles++;
    // One decrease per burst of throttles: in-flight calls that were already sent throttle too.
    if (t - this.lastThrottle < 200) return;
    this.lastThrottle = t;
    // Unlimited until now: start from what was actually achieved (or, this early, from the
    // count so far over the time so far).
    const elapsed = t - this.windowStart;
    const early = elapsed > 0 ? (this.windowCount * 1000) / elapsed : 0;
    const base = this.rate ?? Math.max(this.achieved || early, this.min * 10);
    this.peak = Math.max(this.peak, base);
    this.rate = Math.max(this.min, base * this.decrease);
    this.tokens = Math.min(this.tokens, this.burst());
    this.lastIncrease = t;
  }
}
