import { ValidationError } from '../../core/errors.js';
import type { Plan } from '../../core/plan/types.js';
import type { ApplyRun, InventorySnapshot } from '../../core/ports/StateStore.js';
import { requireString, toMillis } from '../sqlite/json.js';

/** The state kept as whole documents found by time: inventory snapshots, plans, runs. */
export type TimedKind = 'inventory' | 'plan' | 'run';

export function positiveInt(n: unknown, field: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 1) {
    throw new ValidationError(`${field} must be a positive integer, got ${String(n)}`);
  }
  return n as number;
}

/**
 * The inventory, plan and run part of a StateStore, for stores that keep each document under
 * its id beside a newest-first time index of the ids (DynamoDB, Azure Table Storage). A store
 * supplies how a document is written, read and listed, and how its errors are translated.
 */
export abstract class TimedDocumentStore {
  protected abstract saveTimed(kind: TimedKind, id: string, ms: number, body: unknown): Promise<void>;
  protected abstract readTimed<T>(kind: TimedKind, id: string): Promise<T | null>;
  /** Ids in the kind's time index, newest first, at most `limit`. */
  protected abstract latestIds(kind: TimedKind, limit: number): Promise<string[]>;
  /** Runs `fn`, turning the backend's errors into rekey's, which name `what`. */
  protected abstract guard<T>(what: string, fn: () => Promise<T>): Promise<T>;

  /** Newest first, by the time index; `limit` bodies at most. */
  private async latestTimed<T>(kind: TimedKind, limit: number): Promise<T[]> {
    const out: T[] = [];
    for (const id of await this.latestIds(kind, limit)) {
      const body = await this.readTimed<T>(kind, id);
      if (body !== null) out.push(body);
    }
    return out;
  }

  async saveInventory(s: InventorySnapshot): Promise<void> {
    const id = requireString(s.id, 'inventory snapshot id');
    const ms = toMillis(s.takenAt, `inventory snapshot ${id} takenAt`);
    await this.guard(`saving inventory snapshot ${id}`, () => this.saveTimed('inventory', id, ms, s));
  }

  async latestInventory(): Promise<InventorySnapshot | null> {
    const [s] = await this.guard('reading latest inventory', () =>
      this.latestTimed<InventorySnapshot>('inventory', 1),
    );
    return s ?? null;
  }

  async savePlan(plan: Plan): Promise<void> {
    const id = requireString(plan.id, 'plan id');
    const ms = toMillis(plan.createdAt, `plan ${id} createdAt`);
    await this.guard(`saving plan ${id}`, () => this.saveTimed('plan', id, ms, plan));
  }

  async getPlan(id: string): Promise<Plan | null> {
    return this.guard(`reading plan ${id}`, () => this.readTimed<Plan>('plan', id));
  }

  async latestPlan(): Promise<Plan | null> {
    const [p] = await this.guard('reading latest plan', () => this.latestTimed<Plan>('plan', 1));
    return p ?? null;
  }

  async saveRun(run: ApplyRun): Promise<void> {
    const id = requireString(run.id, 'run id');
    const ms = toMillis(run.startedAt, `run ${id} startedAt`);
    await this.guard(`saving run ${id}`, () => this.saveTimed('run', id, ms, run));
  }

  async getRun(id: string): Promise<ApplyRun | null> {
    return this.guard(`reading run ${id}`, () => this.readTimed<ApplyRun>('run', id));
  }

  async listRuns(limit: number): Promise<ApplyRun[]> {
    positiveInt(limit, 'listRuns limit');
    return this.guard('listing runs', () => this.latestTimed<ApplyRun>('run', limit));
  }
}
