/** A token bucket: at most `ratePerSecond` tokens per second, bursts up to `burst`. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly ratePerSecond: number,
    private readonly burst = Math.max(1, Math.ceil(ratePerSecond)),
    private readonly nowMs: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.tokens = burst;
    this.last = nowMs();
  }

  async take(n = 1): Promise<void> {
    for (;;) {
      const t = this.nowMs();
      this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond);
      this.last = t;
      if (this.tokens >= n) {
        this.tokens -= n;
        return;
      }
      await this.sleep(Math.ceil(((n - this.tokens) / this.ratePerSecond) * 1000));
    }
  }
}
