import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import type { DekRecord } from '../../shared/core/ports/DekStore.js';
import { LocalKmsProvider } from '../../shared/providers/local/LocalKmsProvider.js';
import { SqliteDekStore } from '../../shared/stores/sqlite/SqliteDekStore.js';

/**
 * SIGKILL a real `rekey rewrap` process at random points, over and over, resuming each time;
 * then every DEK must unwrap to its original plaintext. Bounded: 20 kills, then one clean run.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/rekey.js');
const DEKS = 50_000;
const KILLS = 20;
const dir = mkdtempSync(join(tmpdir(), 'rekey-kill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = (...args: string[]) =>
  spawnSync(process.execPath, [BIN, '--config', join(dir, 'rekey.yaml'), ...args], { encoding: 'utf8' });

async function openLocal() {
  return LocalKmsProvider.open({
    id: 'local',
    keystorePath: join(dir, 'kms.db'),
    masterKeyRef: 'file:master.key',
    baseDir: dir,
    refreshIntervalMs: 0,
  });
}

describe('kill -9 during re-wrap, then resume', () => {
  it(`survives ${KILLS} SIGKILLs over ${DEKS} DEKs with every DEK intact`, async () => {
    expect(spawnSync(process.execPath, [BIN, 'init', '--dir', dir]).status).toBe(0);
    expect(cli('keys', 'create', 'k').status).toBe(0);
    const secret = randomBytes(32);
    const plaintext = (id: string) => createHmac('sha256', secret).update(id).digest();
    const ref = parseKeyRef('local://k');
    const local = await openLocal();
    const store = SqliteDekStore.open({
      id: 'app',
      path: join(dir, 'app.db'),
      table: 'data_keys',
      columns: { id: 'id', key: 'kek_ref', version: 'kek_version', wrapped: 'wrapped_dek', context: 'aad' },
    });
    for (let start = 0; start < DEKS; start += 5000) {
      const batch: DekRecord[] = [];
      for (let i = start; i < start + 5000; i++) {
        const id = `dek-${String(i).padStart(6, '0')}`;
        const w = await local.wrap(ref, plaintext(id), { row: id });
        batch.push({ id, keyRef: ref.uri, version: w.version, wrapped: w.ciphertext, context: { row: id } });
      }
      await store.insertMany(batch);
    }
    await local.close();
    expect(cli('keys', 'rotate', 'local://k').status).toBe(0);

    const progress: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      // Rate-limited so the job outlives the kills; each run resumes the same deterministic job.
      const child = spawn(
        process.execPath,
        [
          BIN,
          '--config',
          join(dir, 'rekey.yaml'),
          '-q',
          'rewrap',
          'local://k',
          '--verify',
          'none',
          '--batch',
          '200',
          '--rate',
          '2000',
        ],
        { stdio: 'ignore' },
      );
      await new Promise((r) => setTimeout(r, 400 + Math.random() * 1000));
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      progress.push((await store.countByVersion('local://k'))['2'] ?? 0);
    }
    // Kills landed mid-job (work left after the last one), many runs moved DEKs before dying,
    // and progress never went backwards.
    expect(progress[progress.length - 1]).toBeLessThan(DEKS);
    expect(new Set(progress).size).toBeGreaterThan(5);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);

    const final = cli('--json', 'rewrap', 'local://k', '--verify', 'full');
    expect(final.status, final.stderr).toBe(0);
    expect(JSON.parse(final.stdout).totals.failed).toBe(0);
    expect(await store.countByVersion('local://k')).toEqual({ '2': DEKS });

    const check = await openLocal();
    let bad = 0;
    let cursor: string | null = null;
    do {
      const page: { items: DekRecord[]; cursor: string | null } = await store.scan(
        { keyRef: 'local://k' },
        cursor,
        5000,
      );
      for (const d of page.items) {
        const got = await check.unwrap(ref, { version: d.version, ciphertext: d.wrapped }, d.context);
        if (!Buffer.from(got).equals(plaintext(d.id))) bad++;
      }
      cursor = page.cursor;
    } while (cursor);
    await check.close();
    await store.close?.();
    expect(bad).toBe(0);
    // The takeovers of dead runs' leases are on the record.
    const audit = cli('audit', 'verify');
    expect(audit.status).toBe(0);
  }, 240_000);
});
