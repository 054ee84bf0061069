/**
 * The emulator's notion of "now". It runs with real time (so long polls and visibility timeouts
 * behave) plus an offset that tests move forward to make scheduled work fall due: automatic
 * rotations, key deletions, on-demand rotations that take a while.
 */
export class SimClock {
  private offsetMs = 0;
  private frozenAt: number | null = null;
  private readonly listeners: Array<() => void> = [];

  constructor(start?: Date | string) {
    if (start !== undefined) this.set(start);
  }

  now(): Date {
    return new Date(this.nowMs());
  }

  nowMs(): number {
    return (this.frozenAt ?? Date.now()) + this.offsetMs;
  }

  advance(ms: number): Date {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`clock can only move forward (got ${ms} ms)`);
    this.offsetMs += ms;
    this.fire();
    return this.now();
  }

  advanceDays(days: number): Date {
    return this.advance(days * 86_400_000);
  }

  /** Jumps to an absolute instant (forward or backward: tests may want both). */
  set(at: Date | string): Date {
    const t = new Date(at).getTime();
    if (Number.isNaN(t)) throw new RangeError(`not a date: ${String(at)}`);
    this.offsetMs = t - (this.frozenAt ?? Date.now());
    this.fire();
    return this.now();
  }

  /** Stops time at the current instant until thaw(); advance() and set() still work. */
  freeze(): void {
    if (this.frozenAt === null) {
      const now = this.nowMs();
      this.frozenAt = Date.now();
      this.offsetMs = now - this.frozenAt;
    }
  }

  thaw(): void {
    if (this.frozenAt !== null) {
      const now = this.nowMs();
      this.frozenAt = null;
      this.offsetMs = now - Date.now();
    }
  }

  /** Called after every jump so services can run what fell due. */
  onJump(fn: () => void): void {
    this.listeners.push(fn);
  }

  private fire(): void {
    for (const fn of this.listeners) fn();
  }
}
