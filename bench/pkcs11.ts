/**
 * PKCS#11 on SoftHSM2: rekey's in-HSM re-wrap (the `rekey rewrap` command, 1 and 2 worker
 * processes) against a raw pkcs11js loop of C_UnwrapKey + C_WrapKey + C_DestroyObject in one
 * process, measured in the same run. `node dist/bench/pkcs11.js N` prints one JSON line.
 */
import { spawnSync } from 'node:child_process';
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
const BIN = resolve(fileURLToPath(new URL('../../bin/rekey.js', import.meta.url)));
const dir = mkdtempSync(join(tmpdir(), 'rekey-bench-hsm-'));
const pin = randomBytes(9).toString('base64url');
process.env.SOFTHSM2_CONF = initSoftHsmToken(
  join(dir, 'softhsm'),
  'bench',
  pin,
  randomBytes(9).toString('base64url'),
);

/** The raw baseline: one session, one process, synchronous calls, nothing else. */
function rawLoop(): number {
  const p = new P.PKCS11();
  p.load(SOFTHSM_MODULE);
  p.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  try {
    const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.trim() === 'bench')!;
    const s = p.C_OpenSession(slot, P.CKF_RW_SESSION | P.CKF_SERIAL_SESSION);
    p.C_Login(s, P.CKU_USER, pin);
    const aes = (extra: P.Template) =>
      p.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
        { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
        { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
        { type: P.CKA_VALUE_LEN, value: 32 },
        { type: P.CKA_TOKEN, value: false },
        ...extra,
      ]);
    const kOld = aes([
      { type: P.CKA_WRAP, value: true },
      { type: P.CKA_UNWRAP, value: true },
    ]);
    const kNew = aes([
      { type: P.CKA_WRAP, value: true },
      { type: P.CKA_UNWRAP, value: true },
    ]);
    const mech = { mechanism: P.CKM_AES_KEY_WRAP_PAD };
    const unwrapTemplate: P.Template = [
      { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
      { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
      { type: P.CKA_TOKEN, value: false },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: true },
    ];
    const wrapped: Buffer[] = [];
    for (let i = 0; i < 512; i++) {
      const dek = aes([{ type: P.CKA_EXTRACTABLE, value: true }]);
      wrapped.push(Buffer.from(p.C_WrapKey(s, mech, kOld, dek, Buffer.alloc(64))));
      p.C_DestroyObject(s, dek);
    }
    const t0 = performance.now();
    for (let i = 0; i < RAW_N; i++) {
      const h = p.C_UnwrapKey(s, mech, kOld, wrapped[i % wrapped.length]!, unwrapTemplate);
      p.C_WrapKey(s, mech, kNew, h, Buffer.alloc(64));
      p.C_DestroyObject(s, h);
    }
    const perSecond = RAW_N / ((performance.now() - t0) / 1000);
    p.C_Logout(s);
    p.C_CloseSession(s);
    return perSecond;
  } finally {
    p.C_Finalize();
  }
}

async function main() {
  const raw = rawLoop();
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
  const one = timed(1);
  const two = timed(2);
  return {
    scenario: 'pkcs11 in-HSM re-wrap (SoftHSM2)',
    n: N,
    rawLoopPerSecond: Math.round(raw),
    oneWorkerPerSecond: one,
    twoWorkersPerSecond: two,
    oneWorkerOfRaw: Math.round((one / raw) * 100) / 100,
    twoOverOne: Math.round((two / one) * 100) / 100,
  };
}

try {
  process.stdout.write(`${JSON.stringify(await main())}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
