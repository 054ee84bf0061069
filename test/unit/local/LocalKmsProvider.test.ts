import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { localRef, parseKeyRef } from '../../../shared/core/domain/keyRef.js';
import {
  ConfigError,
  ConflictError,
  NotFoundError,
  type ProviderError,
  ValidationError,
} from '../../../shared/core/errors.js';
import { ManualClock } from '../../../shared/core/ports/Clock.js';
import { type LocalKmsOptions, LocalKmsProvider } from '../../../shared/providers/local/LocalKmsProvider.js';

const providers: LocalKmsProvider[] = [];
function make(opts: Partial<LocalKmsOptions> = {}): LocalKmsProvider {
  const p = new LocalKmsProvider({
    id: 'local-unit',
    keystorePath: ':memory:',
    masterKey: randomBytes(32),
    ...opts,
  });
  providers.push(p);
  return p;
}
afterEach(async () => {
  for (const p of providers.splice(0)) await p.close();
});
const root = mkdtempSync(join(tmpdir(), 'rekey-lkp-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ctx = { purpose: 'unit' };
const code = (e: unknown) => (e as ProviderError).providerCode;

describe('LocalKmsProvider', () => {
  it('refuses a master key that is not 32 bytes', () => {
    expect(() => make({ masterKey: randomBytes(16) })).toThrow(ConfigError);
  });

  it('createKey validates its input and refuses duplicates', async () => {
    const p = make();
    await p.createKey({ name: 'a', tags: { team: 'pay' } });
    expect((await p.getKey(localRef('a'))).tags).toEqual({ team: 'pay' });
    await expect(p.createKey({ name: 'a' })).rejects.toBeInstanceOf(ConflictError);
    await expect(p.createKey({ name: 'Bad Name' })).rejects.toBeInstanceOf(ValidationError);
    await expect(p.createKey({ name: 'b', algorithm: 'RSA_2048' })).rejects.toThrow(/only AES_256/);
    await expect(p.createKey({ name: 'c', createdAt: 'yesterday' })).rejects.toBeInstanceOf(ValidationError);
  });

  it('refuses refs of other providers', async () => {
    const p = make();
    const gcp = parseKeyRef('gcp-kms://projects/my-project/locations/global/keyRings/r/cryptoKeys/k');
    await expect(p.getKey(gcp)).rejects.toBeInstanceOf(ValidationError);
  });

  it('names the ref and version when a version does not exist', async () => {
    const p = make();
    const ref = localRef('nv');
    await p.createKey({ name: 'nv' });
    for (const v of ['2', '0', 'abc', '01']) {
      await expect(p.setVersionState(ref, v, 'disabled')).rejects.toThrow(
        new NotFoundError(`key local://nv has no version ${v}`),
      );
    }
    await expect(p.scheduleDestroy(ref, '9', 1)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('refuses a ciphertext whose embedded version differs from the one it is filed under', async () => {
    const p = make();
    const ref = localRef('mismatch');
    await p.createKey({ name: 'mismatch' });
    await p.rotate(ref);
    const w = await p.wrap(ref, randomBytes(32), ctx);
    expect(w.version).toBe('2');
    const e = await p.unwrap(ref, { version: '1', ciphertext: w.ciphertext }, ctx).catch((x: unknown) => x);
    expect(code(e)).toBe('InvalidCiphertext');
    expect((e as ProviderError).retryable).toBe(false);
  });

  it('refuses unusable wrap inputs', async () => {
    const p = make();
    const ref = localRef('inputs');
    await p.createKey({ name: 'inputs' });
    await expect(p.wrap(ref, new Uint8Array(0), ctx)).rejects.toBeInstanceOf(ValidationError);
    await expect(p.wrap(ref, randomBytes(32), { n: 1 as unknown as string })).rejects.toBeInstanceOf(
      ValidationError,
    );
  });

  it('rewraps to an explicit version, and refuses a disabled target', async () => {
    const p = make();
    const ref = localRef('rw');
    await p.createKey({ name: 'rw' });
    const dek = randomBytes(32);
    const w1 = await p.wrap(ref, dek, ctx);
    await p.rotate(ref);
    await p.rotate(ref);
    const to2 = await p.rewrap(ref, w1, ctx, '2');
    expect(to2.version).toBe('2');
    expect(Buffer.from(await p.unwrap(ref, to2, ctx)).equals(dek)).toBe(true);
    await p.setVersionState(ref, '2', 'disabled');
    const e = await p.rewrap(ref, w1, ctx, '2').catch((x: unknown) => x);
    expect(code(e)).toBe('KeyVersionDisabled');
  });

  it('a zero-day destroy delay destroys on the next access', async () => {
    const p = make();
    const ref = localRef('zero');
    await p.createKey({ name: 'zero' });
    await p.rotate(ref);
    await p.scheduleDestroy(ref, '1', 0);
    expect((await p.getKey(ref)).versions[0]!.state).toBe('destroyed');
  });

  it('refuses non-integer or out-of-range auto-rotation periods', async () => {
    const p = make();
    const ref = localRef('period');
    await p.createKey({ name: 'period' });
    for (const bad of [0, 0.5, 36_501, Number.NaN]) {
      await expect(p.setAutoRotation(ref, bad)).rejects.toBeInstanceOf(ValidationError);
    }
    await expect(p.setAutoRotation(localRef('nope'), 30)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('lists by name prefix and validates the page size', async () => {
    const p = make();
    for (const n of ['app-1', 'app-2', 'app-3', 'db-1']) await p.createKey({ name: n });
    const first = await p.listKeys({ namePrefix: 'app-', pageSize: 2 }, null);
    expect(first.items.map((k) => k.name)).toEqual(['app-1', 'app-2']);
    const second = await p.listKeys({ namePrefix: 'app-', pageSize: 2 }, first.cursor);
    expect(second.items.map((k) => k.name)).toEqual(['app-3']);
    expect(second.cursor).toBeNull();
    expect((await p.listKeys({}, null)).items).toHaveLength(4);
    await expect(p.listKeys({ pageSize: 0 }, null)).rejects.toBeInstanceOf(ValidationError);
  });

  it('refuses every call after close', async () => {
    const p = make();
    await p.createKey({ name: 'closing' });
    await p.close();
    const e = await p.getKey(localRef('closing')).catch((x: unknown) => x);
    expect(code(e)).toBe('ProviderClosed');
  });

  it('serves wrap and unwrap from its cache within the refresh interval', async () => {
    // Proof that the hot path does not read the keystore: rows removed behind the provider's
    // back go unnoticed until the interval has passed.
    const clock = new ManualClock('2026-01-01T00:00:00Z');
    const path = join(root, 'cache.db');
    const p = make({ keystorePath: path, clock, refreshIntervalMs: 1000 });
    const ref = localRef('hot');
    await p.createKey({ name: 'hot' });
    const dek = randomBytes(32);
    const w = await p.wrap(ref, dek, ctx);
    await p.unwrap(ref, w, ctx);

    const raw = new Database(path);
    raw.exec("DELETE FROM versions WHERE key_name = 'hot'; DELETE FROM keys WHERE name = 'hot'");
    raw.close();

    clock.advance(999);
    for (let i = 0; i < 100; i++) {
      expect(Buffer.from(await p.unwrap(ref, await p.wrap(ref, dek, ctx), ctx)).equals(dek)).toBe(true);
    }
    clock.advance(1);
    await expect(p.wrap(ref, dek, ctx)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('writes recorded uses to the keystore every lastUsedFlushMs, where another instance sees them', async () => {
    const clock = new ManualClock('2026-01-01T00:00:00Z');
    const path = join(root, 'flush.db');
    const master = randomBytes(32);
    const a = make({ keystorePath: path, masterKey: master, clock, lastUsedFlushMs: 5000 });
    const b = make({ keystorePath: path, masterKey: master, clock });
    const ref = localRef('flushed');
    await a.createKey({ name: 'flushed' });
    clock.advance(1000);
    await a.wrap(ref, randomBytes(32), ctx);
    expect(await b.lastUsed(ref)).toBeNull();
    clock.advance(4000);
    await a.wrap(ref, randomBytes(32), ctx);
    expect(await b.lastUsed(ref)).toBe('2026-01-01T00:00:05.000Z');
  });

  it('refuses negative intervals', () => {
    expect(() => make({ refreshIntervalMs: -1 })).toThrow(/refreshIntervalMs/);
  });

  it('records the schema version in a migrations table', () => {
    const path = join(root, 'schema.db');
    make({ keystorePath: path });
    const raw = new Database(path, { readonly: true });
    const rows = raw.prepare('SELECT version FROM schema_migrations').all();
    const mode = raw.pragma('journal_mode', { simple: true });
    raw.close();
    expect(rows).toEqual([{ version: 1 }]);
    expect(mode).toBe('wal');
  });

  it('refuses a keystore from a newer rekey', async () => {
    const path = join(root, 'newer.db');
    const master = randomBytes(32);
    await make({ keystorePath: path, masterKey: master }).close();
    const raw = new Database(path);
    raw.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (99, '2030-01-01')").run();
    raw.close();
    expect(() => make({ keystorePath: path, masterKey: master })).toThrow(/schema version 99/);
  });
});
