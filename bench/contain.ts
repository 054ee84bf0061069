/**
 * Time to contain: seconds from a `key.compromised` event to the compromised version being
 * disabled, for N DEKs under it (default 100,000), against a raw baseline measured in the same
 * run with the same provider and store: a plain loop that re-wraps the same number of DEKs the
 * same way (unwrap, wrap, unwrap again and compare, compare-and-swap write in pages of 1,000,
 * 32 calls in flight). Three keys are seeded with identical DEK sets: the raw loop runs before
 * and after the incident, and the ratio is taken against their mean, so a machine that speeds
 * up or slows down during the run does not favour either side.
 *
 *   node dist/bench/contain.js [N] [pkcs11|local|both] [HSM_N]
 *
 * Defaults: N = 100,000, both providers; SoftHSM2 takes HSM_N DEKs (default the smaller of N and
 * 20,000), because its PKCS#11 calls through the provider run at a few hundred DEKs per second
 * with verify: full on a small machine, and 100,000 would take the best part of half an hour.
 *
 * Prints one JSON line. Everything runs in this process against local files; nothing listens.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog } from '../shared/core/audit/auditLog.js';
import { type CloudEvent, COMPROMISE_EVENT_TYPE } from '../shared/core/domain/compromiseEvent.js';
import { type KeyRef, parseKeyRef } from '../shared/core/domain/keyRef.js';
import { HmacEventSigner } from '../shared/core/governance/signature.js';
import { loadConfig } from '../shared/core/policy/load.js';
import { systemClock } from '../shared/core/ports/Clock.js';
import type { DekRecord, DekReplacement } from '../shared/core/ports/DekStore.js';
import type { KeyCreator, KeyProvider } from '../shared/core/ports/KeyProvider.js';
import type { RekeyContext } from '../shared/core/usecases/context.js';
import { handleCompromiseEvent, INCIDENT_CONCURRENCY } from '../shared/core/usecases/handleCompromise.js';
import { LocalKmsProvider } from '../shared/providers/local/LocalKmsProvider.js';
import { Pkcs11Provider } from '../shared/providers/pkcs11/Pkcs11Provider.js';
import { initSoftHsmToken, SOFTHSM_MODULE } from '../shared/providers/pkcs11/softhsm.js';
import { SqliteDekStore } from '../shared/stores/sqlite/SqliteDekStore.js';
import { SqliteStateStore } from '../shared/stores/sqlite/SqliteStateStore.js';

const N = Number(process.argv[2] ?? 100_000);
const WHICH = process.argv[3] ?? 'both';
const HSM_N = Number(process.argv[4] ?? Math.min(N, 20_000));
const PAGE = 1000;
const COLUMNS = { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' };
const SOURCE = 'https://bench.rekey.invalid/siem';

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
}, 100);

type Provider = KeyProvider & KeyCreator;

async function seed(provider: Provider, store: SqliteDekStore, name: string, N: number): Promise<KeyRef> {
  const key = await provider.createKey({ name });
  const ref = parseKeyRef(key.ref);
  for (let start = 0; start < N; start += 5000) {
    const batch: DekRecord[] = [];
    for (let i = start; i < Math.min(N, start + 5000); i++) {
      const id = `${name}-${String(i).padStart(8, '0')}`;
      const pt = randomBytes(32);
      const context = { tenant: `t${i % 100}` };
      const w = await provider.wrap(ref, pt, context);
      pt.fill(0);
      batch.push({ id, keyRef: key.ref, version: w.version, wrapped: w.ciphertext, context });
    }
    await store.insertMany(batch);
  }
  return ref;
}

/** The raw baseline: scan, re-wrap with a verifying unwrap, write; nothing else. */
async function rawRewrap(
  provider: Provider,
  store: SqliteDekStore,
  ref: KeyRef,
  from: string,
  N: number,
): Promise<number> {
  const t0 = performance.now();
  let cursor: string | null = null;
  let moved = 0;
  do {
    const page: { items: DekRecord[]; cursor: string | null } = await store.scan(
      { keyRef: ref.uri, versions: [from] },
      cursor,
      PAGE,
    );
    const out: DekReplacement[] = [];
    for (let at = 0; at < page.items.length; at += INCIDENT_CONCURRENCY) {
      const chunk = page.items.slice(at, at + INCIDENT_CONCURRENCY);
      out.push(
        ...(await Promise.all(
          chunk.map(async (d) => {
            const pt = await provider.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context);
            const next = await provider.wrap(ref, pt, d.context);
            const check = await provider.unwrap(ref, next, d.context);
            if (!timingSafeEqual(check, pt)) throw new Error(`baseline: ${d.id} did not verify`);
            pt.fill(0);
            check.fill(0);
            return { id: d.id, expected: d.wrapped, newWrapped: next.ciphertext, newVersion: next.version };
          }),
        )),
      );
    }
    moved += (await store.replaceMany(out)).filter(Boolean).length;
    cursor = page.cursor;
  } while (cursor);
  if (moved !== N) throw new Error(`baseline moved ${moved} of ${N}`);
  return (performance.now() - t0) / 1000;
}

async function measure(kind: 'pkcs11' | 'local', dir: string, N: number): Promise<Record<string, unknown>> {
  const secret = randomBytes(48);
  let provider: Provider;
  let providerYaml: string;
  if (kind === 'pkcs11') {
    const pin = randomBytes(9).toString('base64url');
    process.env.SOFTHSM2_CONF = initSoftHsmToken(
      join(dir, 'softhsm'),
      'bench',
      pin,
      randomBytes(9).toString('base64url'),
    );
    provider = await Pkcs11Provider.open({ id: 'p', module: SOFTHSM_MODULE, token: 'bench', pin });
    providerYaml = `{ type: pkcs11, module: ${SOFTHSM_MODULE}, token: bench, pin: env:UNUSED }`;
  } else {
    provider = new LocalKmsProvider({
      id: 'p',
      keystorePath: join(dir, 'kms.db'),
      masterKey: randomBytes(32),
    });
    providerYaml = '{ type: local }';
  }
  const store = SqliteDekStore.open({
    id: 'app',
    path: join(dir, 'app.db'),
    table: 'data_keys',
    columns: COLUMNS,
    create: true,
  });
  const state = SqliteStateStore.open(join(dir, 'state.db'));
  try {
    const t0 = performance.now();
    const beforeRef = await seed(provider, store, 'before', N);
    const incRef = await seed(provider, store, 'incident', N);
    const afterRef = await seed(provider, store, 'after', N);
    const seedSeconds = (performance.now() - t0) / 1000;
    const raw = async (ref: KeyRef) => {
      const from = (await provider.getKey(ref)).primaryVersion;
      await provider.rotate(ref);
      return rawRewrap(provider, store, ref, from, N);
    };
    const rawBefore = await raw(beforeRef);

    const config = loadConfig(
      `version: 1
providers:
  p: ${providerYaml}
stores:
  app: { type: sqlite, path: app.db }
incidents:
  sources: [${SOURCE}]
  signing: { hmac: { secretEnv: UNUSED } }
policies:
  - name: bench
    match: { provider: [p] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full, batchSize: ${PAGE} }
`,
      join(dir, 'rekey.yaml'),
    );
    const ctx: RekeyContext = {
      config,
      providers: new Map([['p', provider]]),
      stores: new Map([['app', store]]),
      state,
      audit: new AuditLog(state, systemClock),
      clock: systemClock,
      actor: 'bench',
      instanceId: `bench:${process.pid}`,
    };
    const signer = new HmacEventSigner(secret);
    const reportedAt = Date.now();
    const event: CloudEvent = signer.sign({
      specversion: '1.0',
      type: COMPROMISE_EVENT_TYPE,
      source: SOURCE,
      id: `bench-${reportedAt}`,
      time: new Date(reportedAt).toISOString(),
      datacontenttype: 'application/json',
      data: {
        keyRef: incRef.uri,
        version: (await provider.getKey(incRef)).primaryVersion,
        reason: 'benchmark',
        reportedBy: 'bench',
      },
    });
    const outcome = await handleCompromiseEvent(ctx, event, { verify: signer });
    const inc = outcome.incident;
    if (inc.status !== 'contained' || inc.deksMoved !== N)
      throw new Error(`incident ${inc.status}, moved ${inc.deksMoved}/${N}: ${JSON.stringify(inc.failures)}`);
    const containSeconds = (Date.parse(inc.containedAt!) - reportedAt) / 1000;
    const rawAfter = await raw(afterRef);
    const baselineSeconds = (rawBefore + rawAfter) / 2;
    const step = (name: string) => inc.timeline.find((t) => t.step === name)?.at;
    const since = (at: string | undefined) => (at ? (Date.parse(at) - reportedAt) / 1000 : null);
    return {
      provider: kind === 'pkcs11' ? 'pkcs11 (SoftHSM2)' : 'local',
      n: N,
      seedSeconds: round(seedSeconds),
      rawLoopSeconds: { before: round(rawBefore), after: round(rawAfter) },
      baselineSeconds: round(baselineSeconds),
      baselinePerSecond: Math.round(N / baselineSeconds),
      containSeconds: round(containSeconds),
      containPerSecond: Math.round(N / containSeconds),
      rotatedAfterSeconds: since(step('rotated')),
      rewrappedAfterSeconds: since(step('rewrapped')),
      ratioToBaseline: round(containSeconds / baselineSeconds),
      deksMoved: inc.deksMoved,
    };
  } finally {
    await provider.close?.();
    await store.close?.();
    await state.close?.();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;

async function main() {
  const kinds: ('pkcs11' | 'local')[] =
    WHICH === 'both' ? ['pkcs11', 'local'] : WHICH === 'pkcs11' || WHICH === 'local' ? [WHICH] : [];
  if (kinds.length === 0) throw new Error(`unknown provider "${WHICH}": pkcs11, local or both`);
  const results: Record<string, unknown>[] = [];
  for (const kind of kinds) {
    const dir = mkdtempSync(join(tmpdir(), `rekey-bench-contain-${kind}-`));
    try {
      results.push(await measure(kind, dir, kind === 'pkcs11' ? HSM_N : N));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  clearInterval(sampler);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  return {
    scenario: 'time to contain (key.compromised event -> version disabled)',
    target: 'ratioToBaseline <= 1.25',
    results,
    peakRssMB: Math.round(peakRss / 1048576),
  };
}

process.stdout.write(`${JSON.stringify(await main())}\n`);
