import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { composeFrom } from '../shared/compose.js';
import { readConfig } from '../shared/config/readConfig.js';
import { verifyAuditChain } from '../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../shared/core/domain/keyRef.js';
import { ConfigError, errorMessage } from '../shared/core/errors.js';
import type { Plan } from '../shared/core/plan/types.js';
import { ManualClock } from '../shared/core/ports/Clock.js';
import type { DekRecord } from '../shared/core/ports/DekStore.js';
import type { KeyCreator, KeyProvider } from '../shared/core/ports/KeyProvider.js';
import { type ApplyReport, applyPlan } from '../shared/core/usecases/applyPlan.js';
import type { ProgressEvent } from '../shared/core/usecases/context.js';
import { makePlan } from '../shared/core/usecases/planCycle.js';
import { initWorkspace } from './commands/misc.js';
import { type DemoBackendName, demoConfig, startDemoBackend } from './demoBackends.js';

export interface DemoOptions {
  dir: string;
  /** Where the keys live (default: the local KMS). */
  backend?: DemoBackendName;
  keys: number;
  deks: number;
  fresh: boolean;
  onProgress?: (e: ProgressEvent) => void;
  onPlan?: (plan: Plan) => void;
  onStep?: (text: string) => void;
}

export interface DemoReport {
  workspace: string;
  backend: string;
  note?: string;
  keys: number;
  deks: number;
  planId: string;
  plannedActions: number;
  runStatus: ApplyReport['status'];
  rotated: number;
  rewrapped: number;
  verified: number;
  failed: number;
  retired: number;
  destroyAwaitingApproval: number;
  deksNotOnPrimary: number;
  auditRecords: number;
  auditOk: boolean;
  seconds: { seed: number; plan: number; apply: number; verify: number };
  rewrapPerSecond: number;
  report: ApplyReport;
}

const DEMO_FILES = ['rekey.yaml', 'master.key', 'kms.db', 'state.db', 'app.db', 'hsm.pin'];
const DAY = 86_400_000;
const NAMES = ['payments', 'orders', 'users', 'invoices', 'sessions', 'audit-logs', 'backups', 'messages'];
const CLASSES = ['pci', 'pii', 'internal'];
/** Key ages in days; keys older than 200 days were rotated once, at half their age. */
const AGES = [400, 200, 120, 95, 60, 10];

function clearWorkspace(dir: string): void {
  rmSync(join(dir, 'softhsm'), { recursive: true, force: true });
  for (const f of DEMO_FILES) {
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(join(dir, f + suffix), { force: true });
  }
}

/**
 * The whole cycle on the embedded default: a workspace with a local KMS and SQLite, keys of
 * various ages (some overdue, some with older versions), M wrapped DEKs, then inventory ->
 * plan -> rotate -> re-wrap -> verify -> retire -> an independent check that every DEK still
 * unwraps to its original value.
 */
export async function runDemo(o: DemoOptions): Promise<DemoReport> {
  const dir = resolve(o.dir);
  if (!Number.isInteger(o.keys) || o.keys < 1 || o.keys > 10_000)
    throw new ConfigError('--keys must be 1..10000');
  if (!Number.isInteger(o.deks) || o.deks < 0 || o.deks > 50_000_000)
    throw new ConfigError('--deks must be 0..50000000');
  if (existsSync(join(dir, 'rekey.yaml'))) {
    if (!o.fresh)
      throw new ConfigError(`${dir} already holds a workspace; pass --fresh to start the demo over`);
    clearWorkspace(dir);
  }
  const step = o.onStep ?? (() => {});
  const { config: configPath } = initWorkspace(dir);
  const realNow = Date.now();
  const clock = new ManualClock(new Date(realNow - 400 * DAY));
  const backend = await startDemoBackend(o.backend ?? 'local', clock, dir);
  if (backend.name !== 'local') writeFileSync(configPath, demoConfig(backend));
  let ctx: Awaited<ReturnType<typeof composeFrom>>;
  try {
    ctx = await composeFrom(readConfig(configPath), {
      clock,
      actor: 'demo',
      createStores: true,
      ...(backend.provider ? { providerOverrides: new Map([[backend.providerId, backend.provider]]) } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    });
  } catch (e) {
    await backend.close();
    throw e;
  }
  // Plaintext DEKs are derived from their id under a per-run secret, so the final check needs no copy of them.
  const secret = randomBytes(32);
  try {
    const provider = ctx.providers.get(backend.providerId) as KeyProvider & KeyCreator;
    const store = ctx.stores.get('app')!;
    const t0 = performance.now();
    step(`seeding ${o.keys} key(s) and ${o.deks} DEK(s) in ${dir}`);
    const perKey = Math.floor(o.deks / o.keys);
    for (let k = 0; k < o.keys; k++) {
      const age = AGES[k % AGES.length]!;
      const name = `${NAMES[k % NAMES.length]}${k >= NAMES.length ? `-${Math.floor(k / NAMES.length)}` : ''}-kek`;
      backend.setTime(new Date(realNow - age * DAY));
      const key = await provider.createKey({
        name,
        tags: { 'data-class': CLASSES[k % CLASSES.length]!, team: 'demo' },
      });
      const ref = parseKeyRef(key.ref);
      const count = perKey + (k < o.deks % o.keys ? 1 : 0);
      const rotatedOnce = age >= 200;
      const firstShare = rotatedOnce ? Math.floor(count / 2) : count;
      await seed(provider, store, ref, key.ref, k, 0, firstShare, secret);
      if (rotatedOnce) {
        backend.setTime(new Date(realNow - (age / 2) * DAY));
        await provider.rotate(ref);
        await seed(provider, store, ref, key.ref, k, firstShare, count, secret);
      }
      await ctx.audit.append({
        actor: 'demo',
        action: 'demo.key_seeded',
        target: key.ref,
        details: { deks: count },
      });
    }
    backend.setTime(new Date(realNow));
    const t1 = performance.now();

    step('inventory and plan');
    const { plan } = await makePlan(ctx);
    o.onPlan?.(plan);
    const t2 = performance.now();

    step('apply: rotate, re-wrap, verify, retire');
    const report = await applyPlan(ctx, plan);
    const t3 = performance.now();

    step('independent check: every DEK unwraps to its original value');
    let verified = 0;
    let mismatched = 0;
    let notOnPrimary = 0;
    for (const key of (await ctx.state.latestInventory())!.keys) {
      const ref = parseKeyRef(key.ref);
      const primary = (await provider.getKey(ref)).primaryVersion;
      let cursor: string | null = null;
      do {
        const page: { items: DekRecord[]; cursor: string | null } = await store.scan(
          { keyRef: key.ref },
          cursor,
          2000,
        );
        for (const d of page.items) {
          if (d.version !== primary) notOnPrimary++;
          const expected = plaintextFor(secret, d.id);
          try {
            const got = await provider.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context);
            if (got.length === expected.length && timingSafeEqual(got, expected)) verified++;
            else mismatched++;
            got.fill(0);
          } catch (e) {
            mismatched++;
            step(`  DEK ${d.id} failed: ${errorMessage(e)}`);
          } finally {
            expected.fill(0);
          }
        }
        cursor = page.cursor;
      } while (cursor !== null);
    }
    const t4 = performance.now();
    const audit = await verifyAuditChain(ctx.state);
    const applySeconds = (t3 - t2) / 1000;
    return {
      workspace: dir,
      backend: backend.name,
      ...(backend.note ? { note: backend.note } : {}),
      keys: o.keys,
      deks: o.deks,
      planId: plan.id,
      plannedActions: plan.actions.length,
      runStatus: report.status,
      rotated: report.totals.rotated,
      rewrapped: report.totals.rewrapped,
      verified,
      failed: report.totals.failed + mismatched,
      retired: report.totals.retired,
      destroyAwaitingApproval: report.totals.awaitingApproval,
      deksNotOnPrimary: notOnPrimary,
      auditRecords: audit.records,
      auditOk: audit.ok,
      seconds: {
        seed: round((t1 - t0) / 1000),
        plan: round((t2 - t1) / 1000),
        apply: round(applySeconds),
        verify: round((t4 - t3) / 1000),
      },
      rewrapPerSecond: applySeconds > 0 ? Math.round(report.totals.rewrapped / applySeconds) : 0,
      report,
    };
  } finally {
    secret.fill(0);
    await ctx.close();
    await backend.close();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;

function plaintextFor(secret: Buffer, id: string): Buffer {
  return createHmac('sha256', secret).update(id).digest();
}

async function seed(
  provider: KeyProvider,
  store: { insertMany(r: DekRecord[]): Promise<void> },
  ref: ReturnType<typeof parseKeyRef>,
  keyRef: string,
  k: number,
  from: number,
  to: number,
  secret: Buffer,
): Promise<void> {
  const BATCH = 5000;
  // Wraps run a few at a time: remote providers (emulators) are latency-bound, not CPU-bound.
  const IN_FLIGHT = 16;
  for (let start = from; start < to; start += BATCH) {
    const end = Math.min(to, start + BATCH);
    const batch: DekRecord[] = new Array(end - start);
    let next = start;
    const worker = async () => {
      while (next < end) {
        const i = next++;
        const id = `k${String(k).padStart(3, '0')}-dek-${String(i).padStart(8, '0')}`;
        const context = { tenant: `t${i % 50}`, purpose: 'demo' };
        const pt = plaintextFor(secret, id);
        try {
          const w = await provider.wrap(ref, pt, context);
          batch[i - start] = { id, keyRef, version: w.version, wrapped: w.ciphertext, context };
        } finally {
          pt.fill(0);
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    await store.insertMany(batch);
  }
}
