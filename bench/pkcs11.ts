/**
 * PKCS#11 on SoftHSM2: rekey's in-HSM re-wrap (the `rekey rewrap` command, 1 and 2 worker
 * processes) against a raw pkcs11js loop of C_UnwrapKey + C_WrapKey + C_DestroyObject in one
 * process, measured in the same run. `node dist/bench/pkcs11.js N` prints one JSON line.
 * Each round also runs the raw loop in two processes at once: how far two busy processes
 * scale on this machine at all, the ceiling of rekey's two-worker figure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import P from 'pkcs11js';
import { parseKeyRef } from '../shared/core/domain/keyRef.js';
import type { DekRecord } from '../shared/core/ports/DekStore.js';
import { Pkcs11Provider } from '../shared/providers/pkcs11/Pkcs11Provider.js';
import { initSoftHsmToken, SOFTHSM_MODULE } from '../shared/providers/pkcs11/softhsm.js';
import { SqliteDekStore } from '../shared/stores/sqlite/SqliteDekStore.js';

const N = Number(process.argv[2] ?? 100_000);
const RAW_N = Math.min(N, 20_000);
const ROUNDS = Number(process.env.REKEY_BENCH_ROUNDS ?? 3);
const BIN = resolve(fileURLToPath(new URL('../../bin/rekey.js', import.meta.url)));
/** `--raw-child N`: one raw loop on the parent's token (its conf and PIN in the environment). */
const RAW_CHILD = process.argv[2] === '--raw-child';
const dir = RAW_CHILD ? '' : mkdtempSync(join(tmpdir(), 'rekey-bench-hsm-'));
const pin = RAW_CHILD ? process.env.REKEY_BENCH_PIN! : randomBytes(9).toString('base64url');
if (!RAW_CHILD) {
  process.env.SOFTHSM2_CONF = initSoftHsmToken(
    join(dir, 'softhsm'),
    'bench',
    pin,
    randomBytes(9).toString('base64url'),
  );
}

type Template = P.Template;
const A = (type: number, value: P.Attribute['value']): P.Attribute => ({ type, value });
const DEK_NO_USE = [P.CKA_SIGN, P.CKA_VERIFY, P.CKA_DERIVE].map((t) => A(t, false));

/**
 * The raw baseline: one session, one process, synchronous calls, nothing else. `templates`
 * 'default' is the loop the target is set against (session keys with the module's defaults);
 * 'rekey' uses the attributes rekey gives its own session objects (not private, no usage but
 * wrap) and a wrapped secret of rekey's payload size, so the two together show how much of
 * the gap is rekey's own code.
 */
function rawLoop(n: number, templates: 'default' | 'rekey'): number {
  const p = new P.PKCS11();
  p.load(SOFTHSM_MODULE);
  p.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  try {
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === 'bench')!;
    const s = p.C_OpenSession(slot, P.CKF_RW_SESSION | P.CKF_SERIAL_SESSION);
    p.C_Login(s, P.CKU_USER, pin);
    const rekeyLike = templates === 'rekey';
    const aes = (extra: Template) =>
      p.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
        A(P.CKA_CLASS, P.CKO_SECRET_KEY),
        A(P.CKA_KEY_TYPE, P.CKK_AES),
        A(P.CKA_VALUE_LEN, 32),
        A(P.CKA_TOKEN, false),
        ...extra,
      ]);
    const kek = rekeyLike
      ? [A(P.CKA_PRIVATE, false), A(P.CKA_SENSITIVE, true), A(P.CKA_EXTRACTABLE, false)]
      : [];
    const kOld = aes([A(P.CKA_WRAP, true), A(P.CKA_UNWRAP, true), ...kek]);
    const kNew = aes([A(P.CKA_WRAP, true), A(P.CKA_UNWRAP, true), ...kek]);
    const mech = { mechanism: P.CKM_AES_KEY_WRAP_PAD };
    const unwrapTemplate: Template = [
      A(P.CKA_CLASS, P.CKO_SECRET_KEY),
      A(P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET),
      A(P.CKA_TOKEN, false),
      A(P.CKA_SENSITIVE, true),
      A(P.CKA_EXTRACTABLE, true),
      ...(rekeyLike ? [A(P.CKA_PRIVATE, false), ...DEK_NO_USE] : []),
    ];
    const wrapped: Buffer[] = [];
    for (let i = 0; i < 512; i++) {
      // rekey wraps a 72-byte payload (DEK, context tag, salt); the default loop an AES-256 key.
      const dek = rekeyLike
        ? p.C_CreateObject(s, [
            A(P.CKA_CLASS, P.CKO_SECRET_KEY),
            A(P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET),
            A(P.CKA_TOKEN, false),
            A(P.CKA_EXTRACTABLE, true),
            A(P.CKA_VALUE, randomBytes(72)),
          ])
        : aes([A(P.CKA_EXTRACTABLE, true)]);
      wrapped.push(Buffer.from(p.C_WrapKey(s, mech, kOld, dek, Buffer.alloc(128))));
      p.C_DestroyObject(s, dek);
    }
    const out = Buffer.alloc(128);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const h = p.C_UnwrapKey(s, mech, kOld, wrapped[i % wrapped.length]!, unwrapTemplate);
      p.C_WrapKey(s, mech, kNew, h, out);
      p.C_DestroyObject(s, h);
    }
    const perSecond = n / ((performance.now() - t0) / 1000);
    p.C_Logout(s);
    p.C_CloseSession(s);
    return perSecond;
  } finally {
    p.C_Finalize();
  }
}

/** The raw loop in `k` processes at once; their summed rate. */
async function rawInParallel(n: number, k: number): Promise<number> {
  const rates = await Promise.all(
    Array.from(
      { length: k },
      () =>
        new Promise<number>((resolve, reject) => {
          const c = spawn(process.execPath, [fileURLToPath(import.meta.url), '--raw-child', String(n)], {
            env: { ...process.env, REKEY_BENCH_PIN: pin },
            stdio: ['ignore', 'pipe', 'inherit'],
          });
          let out = '';
          c.stdout.on('data', (d) => {
            out += d;
          });
          c.on('exit', (code) =>
            code === 0 ? resolve(Number(out)) : reject(new Error(`raw child exit ${code}`)),
          );
        }),
    ),
  );
  return rates.reduce((a, b) => a + b, 0);
}

const median = (xs: number[]) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
};
const r2 = (x: number) => Math.round(x * 100) / 100;

async function main() {
  writeFileSync(join(dir, 'hsm.pin'), pin, { mode: 0o600 });
  writeFileSync(
    join(dir, 'rekey.yaml'),
    `version: 1
providers:
  hsm: { type: pkcs11, module: ${SOFTHSM_MODULE}, token: bench, pin: file:hsm.pin }
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
`,
  );
  const provider = await Pkcs11Provider.open({ id: 'hsm', module: SOFTHSM_MODULE, token: 'bench', pin });
  const key = await provider.createKey({ name: 'bench-kek' });
  const ref = parseKeyRef(key.ref);
  const store = SqliteDekStore.open({
    id: 'app',
    path: join(dir, 'app.db'),
    table: 'data_keys',
    columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
    create: true,
  });
  for (let start = 0; start < N; start += 5000) {
    const batch: DekRecord[] = [];
    for (let i = start; i < Math.min(N, start + 5000); i++) {
      const ctx = { tenant: `t${i % 50}` };
      const w = await provider.wrap(ref, randomBytes(32), ctx);
      batch.push({
        id: `d${String(i).padStart(8, '0')}`,
        keyRef: key.ref,
        version: w.version,
        wrapped: w.ciphertext,
        context: ctx,
      });
    }
    await store.insertMany(batch);
  }
  await store.close?.();
  await provider.close();
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, '--config', join(dir, 'rekey.yaml'), ...args], {
      encoding: 'utf8',
      env: process.env,
    });
    if (r.status !== 0) throw new Error(`rekey ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  const timed = (workers: number) => {
    cli('keys', 'rotate', key.ref);
    const out = JSON.parse(
      cli('--json', '-q', 'rewrap', key.ref, '--verify', 'none', '--workers', String(workers)),
    );
    if (out.totals.rewrapped !== N) throw new Error(`re-wrapped ${out.totals.rewrapped}/${N}`);
    return out.perSecond as number;
  };
  // The machine's speed drifts by tens of percent over seconds, so every rekey run is
  // bracketed by raw loops and compared with their mean, over several rounds.
  const rounds: { raw: number; rawRekeyTemplates: number; rawTwo: number; one: number; two: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const before = rawLoop(RAW_N, 'default');
    const one = timed(1);
    const mid = rawLoop(RAW_N, 'default');
    const two = timed(2);
    const rawTwo = await rawInParallel(RAW_N, 2);
    const after = rawLoop(RAW_N, 'default');
    const rawRekeyTemplates = rawLoop(RAW_N, 'rekey');
    rounds.push({ raw: (before + mid + after) / 3, rawRekeyTemplates, rawTwo, one, two });
  }
  return {
    scenario: 'pkcs11 in-HSM re-wrap (SoftHSM2)',
    n: N,
    rounds: ROUNDS,
    rawLoopPerSecond: Math.round(median(rounds.map((x) => x.raw))),
    rawLoopRekeyTemplatesPerSecond: Math.round(median(rounds.map((x) => x.rawRekeyTemplates))),
    oneWorkerPerSecond: Math.round(median(rounds.map((x) => x.one))),
    twoWorkersPerSecond: Math.round(median(rounds.map((x) => x.two))),
    // Per round, each run against the raw loops around it; the median round is reported.
    oneWorkerOfRaw: r2(median(rounds.map((x) => x.one / x.raw))),
    oneWorkerOfRawRekeyTemplates: r2(median(rounds.map((x) => x.one / x.rawRekeyTemplates))),
    twoOverOne: r2(median(rounds.map((x) => x.two / x.one))),
    // Two raw loops at once over one (same round): what two processes get on this machine.
    rawTwoOverOne: r2(median(rounds.map((x) => x.rawTwo / x.raw))),
    perRound: rounds.map((x) => ({
      oneWorkerOfRaw: r2(x.one / x.raw),
      twoOverOne: r2(x.two / x.one),
      rawTwoOverOne: r2(x.rawTwo / x.raw),
    })),
  };
}

if (RAW_CHILD) {
  process.stdout.write(`${rawLoop(Number(process.argv[3]), 'default')}\n`);
} else {
  try {
    process.stdout.write(`${JSON.stringify(await main())}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
