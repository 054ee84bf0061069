import { afterEach, describe, expect, it } from 'vitest';
import { verifyAuditChain } from '../../../shared/core/audit/auditLog.js';
import { parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import type { RekeyEvent } from '../../../shared/core/ports/EventBus.js';
import type { KeyProvider } from '../../../shared/core/ports/KeyProvider.js';
import { applyPlan } from '../../../shared/core/usecases/applyPlan.js';
import {
  getIncident,
  handleCompromise,
  incidentIdFor,
} from '../../../shared/core/usecases/handleCompromise.js';
import { makePlan } from '../../../shared/core/usecases/planCycle.js';
import { DAY, lostDeks, type TestWorkspace, testWorkspace } from '../../support/workspace.js';

/**
 * Compromise response on the embedded default: a real local KMS, real SQLite DEK and state
 * stores. Each test seeds DEKs under two versions, reports the primary (or an older version)
 * compromised, and checks what happened to keys, DEKs, records and the audit log.
 */
const YAML = `version: 1
providers:
  local: { type: local, masterKey: env:UNUSED }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
  - name: default
    match: { provider: [local] }
    rotate: { every: P90D, window: "Sat 02:00-03:00 UTC" }
    rewrap: { stores: [app], verify: sample(1%), batchSize: 40, rate: 5/s }
`;

let w: TestWorkspace;
afterEach(async () => {
  await w?.close();
});

/** Key `k` with `old` DEKs under version 1 and `recent` under version 2 (the primary). */
async function twoVersions(old: number, recent: number, wrap?: (p: KeyProvider) => KeyProvider) {
  w = await testWorkspace(YAML, wrap);
  const ref = await w.seed('k', old, { ageDays: 100 });
  await w.local.rotate(parseKeyRef(ref));
  await w.seed('k', recent, { prefix: 'new' });
  return ref;
}

describe('handleCompromise', () => {
  it('rotates, moves only the compromised version’s DEKs, disables it and reports the timeline', async () => {
    const ref = await twoVersions(30, 120);
    const events: RekeyEvent[] = [];
    w.ctx.events = { publish: async (e) => void events.push(...e) };
    const report = await handleCompromise(w.ctx, {
      keyRef: ref,
      reason: 'primary material found in a crash dump',
      actor: 'sec-oncall',
      reportedAt: new Date(w.clock.now().getTime() - 60_000).toISOString(),
    });
    expect(report.failures).toEqual([]);
    expect(report).toMatchObject({
      id: incidentIdFor(ref, '2'),
      version: '2',
      status: 'contained',
      previousPrimary: '2',
      newVersion: '3',
      rotation: { from: '2', to: '3', how: 'rotated' },
      stores: { app: { rewrapped: 120, verified: 120, failed: 0 } },
      deksMoved: 120,
      remainingOlderDeks: 30,
      published: true,
    });
    expect(report.timeToContainMs).toBeGreaterThanOrEqual(60_000);
    expect(report.timeline.map((t) => t.step)).toEqual([
      'reported',
      'opened',
      'marked',
      'rotated',
      'rewrapped',
      'disabled',
      'contained',
      'published',
    ]);
    const key = await w.local.getKey(parseKeyRef(ref));
    expect(key.versions.map((v) => [v.id, v.state])).toEqual([
      ['1', 'enabled'],
      ['2', 'disabled'],
      ['3', 'enabled'],
    ]);
    // Version 1's DEKs were left to the normal plan; none was lost.
    expect(await w.store.countByVersion(ref)).toEqual({ '1': 30, '3': 120 });
    expect(await lostDeks(w)).toEqual([]);
    expect(events.map((e) => e.type)).toEqual(['KeyRotated', 'VersionRetired', 'CompromiseContained']);
    expect(events[0]!.detail).toMatchObject({ reason: 'compromise' });
    expect(events[2]!.detail).toMatchObject({ compromisedVersion: '2', newVersion: '3', rewrapped: 120 });
    expect(await getIncident(w.ctx, report.id)).toEqual(report);
    expect((await verifyAuditChain(w.state)).ok).toBe(true);
  });
});
