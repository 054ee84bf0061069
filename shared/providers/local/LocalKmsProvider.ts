import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type Database from 'better-sqlite3';
import type { KeyVersion, ManagedKey, VersionState } from '../../core/domain/key.js';
import { type KeyRef, localRef } from '../../core/domain/keyRef.js';
import {
  ConfigError,
  ConflictError,
  NotFoundError,
  ProviderError,
  RekeyError,
  ValidationError,
} from '../../core/errors.js';
import { type Clock, systemClock } from '../../core/ports/Clock.js';
import type {
  KeyCreator,
  KeyProvider,
  ListScope,
  Page,
  ProviderCapabilities,
  RecoveryInfo,
  RewrapItem,
  RewrapItemResult,
  WrapContext,
  Wrapped,
} from '../../core/ports/KeyProvider.js';
import { KEY_BYTES, openMaterial, parseWrappedDek, sealMaterial, unwrapDek, wrapDek } from './envelope.js';
import { type KeyRow, openKeystore, type VersionRow } from './keystore.js';
import { loadMasterKey, MASTER_KEY_BYTES } from './masterKey.js';

export interface LocalKmsOptions {
  /** Configured provider id, e.g. `local-dev`. */
  id: string;
  /** SQLite file, or ':memory:'. */
  keystorePath: string;
  /** 32 bytes. The provider keeps its own copy: the caller may zero this buffer afterwards. */
  masterKey: Buffer;
  clock?: Clock;
  /**
   * How long cached key state is trusted before it is re-read from the keystore, so a disable
   * made by another process is honoured within this delay. Default 1000 ms; 0 re-reads on
   * every call.
   */
  refreshIntervalMs?: number;
  /** How often recorded uses are written to the keystore. Default 5000 ms; always on close. */
  lastUsedFlushMs?: number;
}

export interface LocalKmsOpenOptions extends Omit<LocalKmsOptions, 'masterKey'> {
  /** `env:NAME` or `file:PATH` (see masterKey.ts). */
  masterKeyRef: string;
  /** Relative keystore and key file paths resolve against this directory. */
  baseDir: string;
  env?: NodeJS.ProcessEnv;
}

const DAY_MS = 86_400_000;
const CAPABILITIES: ProviderCapabilities = {
  autoRotation: { minDays: 1, maxDays: 36_500 },
  serverSideRewrap: true,
  choosePrimary: false,
  destroyDelayDays: { min: 0, max: 120 },
  lastUsed: true,
};
const MAX_DEK_BYTES = 65_536;
const VERSION_ID = /^[1-9][0-9]{0,14}$/;

interface CachedVersion {
  id: string;
  state: VersionState;
  /** Decrypted material, loaded on first use and only while the version is enabled. */
  kek: Buffer | null;
}

interface CachedKey {
  enabled: boolean;
  primary: string;
  versions: Map<string, CachedVersion>;
  /** Clock time (ms) when this entry was read from the keystore. */
  readAtMs: number;
}

interface KeySnapshot {
  key: KeyRow;
  versions: VersionRow[];
}

/**
 * A real software KMS for local use, demos and tests: AES-256 key versions sealed at rest
 * under a master key in a SQLite keystore, DEKs wrapped with AES-256-GCM bound to the key,
 * the version and the caller's context.
 *
 * The wrap/unwrap hot path touches the keystore only when its cached view of a key is older
 * than `refreshIntervalMs`; every state change made here refreshes the cache at once.
 */
export class LocalKmsProvider implements KeyProvider, KeyCreator {
  readonly id: string;
  readonly type = 'local' as const;
  private readonly path: string;
  private readonly clock: Clock;
  private readonly refreshMs: number;
  private readonly flushMs: number;
  private readonly master: Buffer;
  private readonly db: Database.Database;
  private readonly cache = new Map<string, CachedKey>();
  private readonly pendingUse = new Map<string, number>();
  private lastFlushMs: number;
  private closed = false;
  private readonly stmt: ReturnType<LocalKmsProvider['prepare']>;

  constructor(opts: LocalKmsOptions) {
    if (!opts.id) throw new ConfigError('local KMS provider needs an id');
    if (!Buffer.isBuffer(opts.masterKey) || opts.masterKey.length !== MASTER_KEY_BYTES) {
      throw new ConfigError(
        `local KMS provider ${opts.id}: the master key must be exactly ${MASTER_KEY_BYTES} bytes`,
      );
    }
    for (const [field, v] of [
      ['refreshIntervalMs', opts.refreshIntervalMs],
      ['lastUsedFlushMs', opts.lastUsedFlushMs],
    ] as const) {
      if (v !== undefined && !(Number.isFinite(v) && v >= 0)) {
        throw new ConfigError(
          `local KMS provider ${opts.id}: ${field} must be a number of milliseconds >= 0`,
        );
      }
    }
    this.id = opts.id;
    this.path = opts.keystorePath;
    this.clock = opts.clock ?? systemClock;
    this.refreshMs = opts.refreshIntervalMs ?? 1000;
    this.flushMs = opts.lastUsedFlushMs ?? 5000;
    this.master = Buffer.alloc(MASTER_KEY_BYTES);
    opts.masterKey.copy(this.master);
    try {
      this.db = openKeystore(this.path, this.master, this.clock.now().toISOString());
    } catch (e) {
      this.master.fill(0);
      throw e;
    }
    this.stmt = this.prepare();
    this.lastFlushMs = this.clock.now().getTime();
  }

  /** Opens a provider from config: resolves paths against baseDir and loads the master key. */
  static async open(opts: LocalKmsOpenOptions): Promise<LocalKmsProvider> {
    const { masterKeyRef, baseDir, env, ...rest } = opts;
    const keystorePath =
      opts.keystorePath === ':memory:' || isAbsolute(opts.keystorePath)
        ? opts.keystorePath
        : resolve(baseDir, opts.keystorePath);
    const masterKey = loadMasterKey(masterKeyRef, { baseDir, env: env ?? process.env });
    try {
      if (keystorePath !== ':memory:') mkdirSync(dirname(keystorePath), { recursive: true });
      return new LocalKmsProvider({ ...rest, keystorePath, masterKey });
    } finally {
      masterKey.fill(0);
    }
  }

  private prepare() {
    const db = this.db;
    return {
      key: db.prepare('SELECT * FROM keys WHERE name = ?'),
      versions: db.prepare(
        'SELECT key_name, id, state, created_at, destroy_at, compromised FROM versions WHERE key_name = ? ORDER BY id',
      ),
      version: db.prepare(
        'SELECT key_name, id, state, created_at, destroy_at, compromised FROM versions WHERE key_name = ? AND id = ?',
      ),
      material: db.prepare(
        "SELECT material FROM versions WHERE key_name = ? AND id = ? AND state != 'destroyed'",
      ),
      maxVersion: db.prepare('SELECT MAX(id) AS id FROM versions WHERE key_name = ?'),
      insertKey: db.prepare(
        'INSERT INTO keys (name, tags, algorithm, enabled, primary_version, created_at) VALUES (?, ?, ?, 1, 1, ?)',
      ),
      insertVersion: db.prepare(
        "INSERT INTO versions (key_name, id, state, created_at, material) VALUES (?, ?, 'enabled', ?, ?)",
      ),
      setPrimary: db.prepare('UPDATE keys SET primary_version = ? WHERE name = ?'),
      setState: db.prepare('UPDATE versions SET state = ?, destroy_at = ? WHERE key_name = ? AND id = ?'),
      destroy: db.prepare(
        "UPDATE versions SET state = 'destroyed', material = NULL WHERE key_name = ? AND id = ? AND state = 'destroy_scheduled'",
      ),
      setRotation: db.prepare('UPDATE keys SET rotation_period_days = ? WHERE name = ?'),
      setLastUsed: db.prepare(
        'UPDATE keys SET last_used_at = ? WHERE name = ? AND (last_used_at IS NULL OR last_used_at < ?)',
      ),
      page: db.prepare('SELECT name FROM keys WHERE name > ? ORDER BY name LIMIT ?'),
      pagePrefix: db.prepare(
        'SELECT name FROM keys WHERE name > ? AND substr(name, 1, ?) = ? ORDER BY name LIMIT ?',
      ),
    };
  }

  capabilities(): ProviderCapabilities {
    return {
      ...CAPABILITIES,
      autoRotation: { ...CAPABILITIES.autoRotation! },
      destroyDelayDays: { ...CAPABILITIES.destroyDelayDays },
    };
  }

  // ---- inventory -------------------------------------------------------------------------

  async listKeys(scope: ListScope, cursor: string | null): Promise<Page<ManagedKey>> {
    return this.guard(() => {
      const pageSize = scope?.pageSize ?? 100;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
        throw new ValidationError(`listKeys pageSize must be an integer from 1 to 1000, got ${pageSize}`);
      }
      if (cursor !== null && typeof cursor !== 'string')
        throw new ValidationError('listKeys cursor must be a string or null');
      const after = cursor ?? '';
      const prefix = scope?.namePrefix;
      const rows = (
        prefix
          ? this.stmt.pagePrefix.all(after, prefix.length, prefix, pageSize + 1)
          : this.stmt.page.all(after, pageSize + 1)
      ) as { name: string }[];
      const names = rows.slice(0, pageSize).map((r) => r.name);
      const nowMs = this.nowMs();
      const items: ManagedKey[] = [];
      for (const name of names) {
        const snap = this.refresh(name, nowMs);
        // Deleted between the page query and now: not an error, just gone.
        if (snap) items.push(this.toManagedKey(snap));
      }
      return { items, cursor: rows.length > pageSize ? names[names.length - 1]! : null };
    });
  }

  async getKey(ref: KeyRef): Promise<ManagedKey> {
    return this.guard(() => {
      const name = this.nameOf(ref);
      const snap = this.refresh(name, this.nowMs());
      if (!snap) throw this.keyNotFound(name);
      return this.toManagedKey(snap);
    });
  }

  async createKey(spec: {
    name: string;
    tags?: Record<string, string>;
    algorithm?: ManagedKey['algorithm'];
    createdAt?: string;
  }): Promise<ManagedKey> {
    return this.guard(() => {
      const name = localRef(spec.name).name;
      if (spec.algorithm !== undefined && spec.algorithm !== 'AES_256') {
        throw new ValidationError(
          `local key ${name}: algorithm ${spec.algorithm} is not supported (only AES_256)`,
        );
      }
      const tags = spec.tags ?? {};
      for (const [k, v] of Object.entries(tags)) {
        if (typeof v !== 'string')
          throw new ValidationError(`local key ${name}: tag "${k}" must be a string`);
      }
      let createdAt = this.clock.now().toISOString();
      if (spec.createdAt !== undefined) {
        const t = Date.parse(spec.createdAt);
        if (Number.isNaN(t))
          throw new ValidationError(`local key ${name}: createdAt "${spec.createdAt}" is not a date`);
        createdAt = new Date(t).toISOString();
      }
      this.db
        .transaction(() => {
          if (this.stmt.key.get(name)) throw new ConflictError(`key local://${name} already exists`);
          this.stmt.insertKey.run(name, JSON.stringify(tags), 'AES_256', createdAt);
          this.insertVersion(name, 1, createdAt);
        })
        .immediate();
      const snap = this.refresh(name, this.nowMs());
      if (!snap) throw this.keyNotFound(name);
      return this.toManagedKey(snap);
    });
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  async rotate(ref: KeyRef): Promise<KeyVersion> {
    return this.guard(() => {
      const name = this.nameOf(ref);
      const at = this.clock.now().toISOString();
      const id = this.db.transaction(() => this.rotateInTx(name, at)).immediate();
      this.refresh(name, this.nowMs());
      return { id: String(id), state: 'enabled', createdAt: at };
    });
  }

  async setAutoRotation(ref: KeyRef, periodDays: number | null): Promise<void> {
    this.guard(() => {
      const name = this.nameOf(ref);
      const { minDays, maxDays } = CAPABILITIES.autoRotation!;
      if (
        periodDays !== null &&
        (!Number.isInteger(periodDays) || periodDays < minDays || periodDays > maxDays)
      ) {
        throw new ValidationError(
          `local://${name}: auto-rotation period must be a whole number of days from ${minDays} to ${maxDays}, got ${periodDays}`,
        );
      }
      const res = this.stmt.setRotation.run(periodDays, name);
      if (res.changes === 0) throw this.keyNotFound(name);
      this.refresh(name, this.nowMs());
    });
  }

  async setVersionState(ref: KeyRef, version: string, state: 'enabled' | 'disabled'): Promise<void> {
    this.guard(() => {
      const name = this.nameOf(ref);
      if (state !== 'enabled' && state !== 'disabled') {
        throw new ValidationError(
          `local://${name}: version state must be enabled or disabled, got ${String(state)}`,
        );
      }
      const nowMs = this.nowMs();
      this.db
        .transaction(() => {
          this.maintainInTx(name, nowMs);
          const { key, v } = this.readVersion(name, version);
          if (v.state === state) return;
          if (v.state === 'destroyed')
            throw this.refused(name, version, 'is destroyed; its material is gone');
          if (state === 'disabled' && String(key.primary_version) === version) {
            throw this.refused(name, version, 'is the primary and cannot be disabled; rotate first');
          }
          if (state === 'enabled' && v.state !== 'disabled') {
            throw this.refused(
              name,
              version,
              `is ${v.state} and cannot be enabled${v.state === 'destroy_scheduled' ? ' (restore it to disabled first)' : ''}`,
            );
          }
          // destroy_scheduled -> disabled cancels the scheduled destruction.
          this.stmt.setState.run(state, null, name, v.id);
        })
        .immediate();
      this.refresh(name, nowMs);
    });
  }

  /** One keystore file on this machine: its copies are whatever file backups the operator makes. */
  async recovery(ref: KeyRef): Promise<RecoveryInfo> {
    await this.getKey(ref);
    return {
      locations: [`file:${this.path}`],
      copies: [],
      deletionProtection: `scheduled destruction waits up to ${CAPABILITIES.destroyDelayDays.max} days when a policy sets a delay`,
      notes: ['back up the keystore file together with its master key; either alone recovers nothing'],
    };
  }

  async scheduleDestroy(ref: KeyRef, version: string, days: number): Promise<{ destroyAt: string }> {
    return this.guard(() => {
      const name = this.nameOf(ref);
      const { min, max } = CAPABILITIES.destroyDelayDays;
      if (typeof days !== 'number' || !Number.isFinite(days) || days < min || days > max) {
        throw new ValidationError(
          `local://${name}: destroy delay must be from ${min} to ${max} days, got ${days}`,
        );
      }
      const nowMs = this.nowMs();
      const destroyAt = this.db
        .transaction(() => {
          this.maintainInTx(name, nowMs);
          const { key, v } = this.readVersion(name, version);
          if (String(key.primary_version) === version) {
            throw this.refused(name, version, 'is the primary and cannot be destroyed; rotate first');
          }
          if (v.state === 'destroyed') throw this.refused(name, version, 'is already destroyed');
          // Idempotent: a second request keeps the first schedule.
          if (v.state === 'destroy_scheduled') return v.destroy_at!;
          const at = new Date(nowMs + Math.round(days * DAY_MS)).toISOString();
          this.stmt.setState.run('destroy_scheduled', at, name, v.id);
          return at;
        })
        .immediate();
      this.refresh(name, nowMs);
      return { destroyAt };
    });
  }

  // ---- crypto ------------------------------------------------------------------------------

  async wrap(ref: KeyRef, plaintext: Uint8Array, ctx: WrapContext): Promise<Wrapped> {
    return this.guard(() => {
      const name = this.nameOf(ref);
      checkDek(name, plaintext);
      const nowMs = this.nowMs();
      const entry = this.entry(name, nowMs);
      if (!entry.enabled) throw new ProviderError(this.id, 'KeyDisabled', `key local://${name} is disabled`);
      const v = entry.versions.get(entry.primary)!;
      const ciphertext = wrapDek(this.kekOf(name, v), name, v.id, plaintext, ctx ?? {});
      this.touch(name, nowMs);
      return { version: v.id, ciphertext };
    });
  }

  async unwrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext): Promise<Uint8Array> {
    return this.guard(() => this.unwrapSync(ref, wrapped, ctx));
  }

  async rewrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext, toVersion?: string): Promise<Wrapped> {
    return this.guard(() => {
      const name = this.nameOf(ref);
      const dek = this.unwrapSync(ref, wrapped, ctx);
      try {
        const nowMs = this.nowMs();
        const entry = this.entry(name, nowMs);
        const target = toVersion ?? entry.primary;
        const v = this.usableVersion(name, target, nowMs);
        const ciphertext = wrapDek(this.kekOf(name, v), name, v.id, dek, ctx ?? {});
        return { version: v.id, ciphertext };
      } finally {
        dek.fill(0);
      }
    });
  }

  /**
   * Many re-wraps in one synchronous loop: one lookup of the target version, no per-item promise.
   * A bad item (tampered, wrong context, unusable source version) is reported in its result and
   * the others carry on; an unusable target fails the whole call.
   */
  async rewrapMany(ref: KeyRef, items: RewrapItem[], toVersion?: string): Promise<RewrapItemResult[]> {
    return this.guard(() => {
      const name = this.nameOf(ref);
      const nowMs = this.nowMs();
      const entry = this.entry(name, nowMs);
      const target = this.usableVersion(name, toVersion ?? entry.primary, nowMs);
      const kek = this.kekOf(name, target);
      let used = false;
      const results = items.map((item): RewrapItemResult => {
        let dek: Buffer | undefined;
        try {
          dek = this.open(name, nowMs, item.wrapped, item.ctx);
          used = true;
          const ciphertext = wrapDek(kek, name, target.id, dek, item.ctx ?? {});
          return { ok: true, wrapped: { version: target.id, ciphertext } };
        } catch (e) {
          if (!(e instanceof RekeyError)) throw e;
          const pe = e instanceof ProviderError ? e : null;
          return {
            ok: false,
            error: {
              code: e.code,
              ...(pe ? { providerCode: pe.providerCode } : {}),
              message: e.message,
              retryable: pe?.retryable ?? false,
            },
          };
        } finally {
          dek?.fill(0);
        }
      });
      if (used) this.touch(name, nowMs);
      return results;
    });
  }

  async lastUsed(ref: KeyRef): Promise<string | null> {
    return this.guard(() => {
      const name = this.nameOf(ref);
      const row = this.stmt.key.get(name) as KeyRow | undefined;
      if (!row) throw this.keyNotFound(name);
      const pending = this.pendingUse.get(name);
      const stored = row.last_used_at ? Date.parse(row.last_used_at) : null;
      const latest = Math.max(pending ?? -Infinity, stored ?? -Infinity);
      return Number.isFinite(latest) ? new Date(latest).toISOString() : null;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      this.flushUses(this.nowMs());
    } finally {
      this.closed = true;
      for (const e of this.cache.values()) zeroKeks(e);
      this.cache.clear();
      this.master.fill(0);
      this.db.close();
    }
  }

  // ---- internals ---------------------------------------------------------------------------

  private unwrapSync(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext): Buffer {
    const name = this.nameOf(ref);
    const nowMs = this.nowMs();
    this.entry(name, nowMs); // NotFoundError for an unknown key comes before any parsing
    const out = this.open(name, nowMs, wrapped, ctx);
    this.touch(name, nowMs);
    return out;
  }

  /** Unwraps one DEK of a key known to exist; the caller records the use. */
  private open(name: string, nowMs: number, wrapped: Wrapped, ctx: WrapContext): Buffer {
    const parsed = wrapped && typeof wrapped === 'object' ? parseWrappedDek(wrapped.ciphertext) : null;
    if (!parsed || parsed.version !== wrapped.version) throw this.invalidCiphertext(name);
    const v = this.usableVersion(name, parsed.version, nowMs);
    const out = unwrapDek(this.kekOf(name, v), name, parsed, ctx ?? {});
    if (!out) throw this.invalidCiphertext(name);
    return out;
  }

  /**
   * The cached version, ready to use. A miss or a refusal re-reads the keystore once first:
   * another process may have rotated or re-enabled, or a scheduled destruction may be due.
   */
  private usableVersion(name: string, id: string, nowMs: number): CachedVersion {
    const cached = this.cache.get(name);
    const fresh = !cached || !this.isCurrent(cached, nowMs);
    let entry = fresh ? this.load(name, nowMs) : cached;
    let v = entry.versions.get(id);
    if (!fresh && (v?.state !== 'enabled' || !entry.enabled)) {
      entry = this.load(name, nowMs);
      v = entry.versions.get(id);
    }
    if (!v) throw new NotFoundError(`key local://${name} has no version ${id}`);
    if (!entry.enabled) throw new ProviderError(this.id, 'KeyDisabled', `key local://${name} is disabled`);
    if (v.state !== 'enabled') {
      const code =
        v.state === 'disabled'
          ? 'KeyVersionDisabled'
          : v.state === 'destroy_scheduled'
            ? 'KeyVersionPendingDestruction'
            : 'KeyVersionDestroyed';
      throw new ProviderError(this.id, code, `version ${id} of key local://${name} is ${v.state}`);
    }
    return v;
  }

  /** The cached view of a key, re-read if older than the refresh interval. */
  private entry(name: string, nowMs: number): CachedKey {
    const e = this.cache.get(name);
    return e && this.isCurrent(e, nowMs) ? e : this.load(name, nowMs);
  }

  private isCurrent(e: CachedKey, nowMs: number): boolean {
    return nowMs - e.readAtMs < this.refreshMs && nowMs >= e.readAtMs;
  }

  private load(name: string, nowMs: number): CachedKey {
    this.refresh(name, nowMs);
    const e = this.cache.get(name);
    if (!e) throw this.keyNotFound(name);
    return e;
  }

  /**
   * Reads a key from the keystore, first applying what time has made due (destruction of
   * versions past their destroyAt, automatic rotation), and replaces the cache entry. Keeps
   * decrypted material of versions that are still enabled; wipes the rest.
   */
  private refresh(name: string, nowMs: number): KeySnapshot | null {
    let snap = this.readSnapshot(name);
    if (snap && this.isMaintenanceDue(snap, nowMs)) {
      this.db.transaction(() => this.maintainInTx(name, nowMs)).immediate();
      snap = this.readSnapshot(name);
    }
    const old = this.cache.get(name);
    if (!snap) {
      if (old) zeroKeks(old);
      this.cache.delete(name);
      return null;
    }
    const versions = new Map<string, CachedVersion>();
    for (const row of snap.versions) {
      const id = String(row.id);
      const prev = old?.versions.get(id);
      const kek = row.state === 'enabled' ? (prev?.kek ?? null) : null;
      if (prev?.kek && !kek) prev.kek.fill(0);
      versions.set(id, { id, state: row.state, kek });
    }
    if (old) {
      for (const [id, prev] of old.versions) if (!versions.has(id)) prev.kek?.fill(0);
    }
    this.cache.set(name, {
      enabled: snap.key.enabled === 1,
      primary: String(snap.key.primary_version),
      versions,
      readAtMs: nowMs,
    });
    return snap;
  }

  private readSnapshot(name: string): KeySnapshot | null {
    const key = this.stmt.key.get(name) as KeyRow | undefined;
    if (!key) return null;
    return { key, versions: this.stmt.versions.all(name) as VersionRow[] };
  }

  private isMaintenanceDue(snap: KeySnapshot, nowMs: number): boolean {
    if (snap.versions.some((v) => v.state === 'destroy_scheduled' && Date.parse(v.destroy_at!) <= nowMs))
      return true;
    return this.rotationDue(snap, nowMs);
  }

  private rotationDue(snap: KeySnapshot, nowMs: number): boolean {
    const period = snap.key.rotation_period_days;
    if (!period) return false;
    const primary = snap.versions.find((v) => v.id === snap.key.primary_version);
    return primary !== undefined && Date.parse(primary.created_at) + period * DAY_MS <= nowMs;
  }

  /** Runs inside a write transaction, so two processes never both rotate for the same period. */
  private maintainInTx(name: string, nowMs: number): void {
    const snap = this.readSnapshot(name);
    if (!snap) return;
    for (const v of snap.versions) {
      if (v.state === 'destroy_scheduled' && Date.parse(v.destroy_at!) <= nowMs)
        this.stmt.destroy.run(name, v.id);
    }
    if (this.rotationDue(snap, nowMs)) this.rotateInTx(name, new Date(nowMs).toISOString());
  }

  private rotateInTx(name: string, at: string): number {
    if (!this.stmt.key.get(name)) throw this.keyNotFound(name);
    const { id: max } = this.stmt.maxVersion.get(name) as { id: number | null };
    const id = (max ?? 0) + 1;
    this.insertVersion(name, id, at);
    this.stmt.setPrimary.run(id, name);
    return id;
  }

  private insertVersion(name: string, id: number, at: string): void {
    const material = randomBytes(KEY_BYTES);
    try {
      this.stmt.insertVersion.run(name, id, at, sealMaterial(this.master, name, String(id), material));
    } finally {
      material.fill(0);
    }
  }

  private readVersion(name: string, version: string): { key: KeyRow; v: VersionRow } {
    const key = this.stmt.key.get(name) as KeyRow | undefined;
    if (!key) throw this.keyNotFound(name);
    const v = VERSION_ID.test(String(version))
      ? (this.stmt.version.get(name, Number(version)) as VersionRow | undefined)
      : undefined;
    if (!v) throw new NotFoundError(`key local://${name} has no version ${String(version)}`);
    return { key, v };
  }

  /** Decrypted material of an enabled version, unsealed on first use and kept in memory. */
  private kekOf(name: string, v: CachedVersion): Buffer {
    if (v.kek) return v.kek;
    const row = this.stmt.material.get(name, Number(v.id)) as { material: Buffer | null } | undefined;
    if (!row?.material) {
      throw new ProviderError(
        this.id,
        'KeyVersionDestroyed',
        `version ${v.id} of key local://${name} has no material`,
      );
    }
    const kek = openMaterial(this.master, name, v.id, row.material);
    if (!kek) {
      throw new ProviderError(
        this.id,
        'KeystoreCorrupt',
        `sealed material of version ${v.id} of key local://${name} in keystore ${this.path} does not authenticate`,
      );
    }
    v.kek = kek;
    return kek;
  }

  private touch(name: string, nowMs: number): void {
    this.pendingUse.set(name, nowMs);
    if (nowMs - this.lastFlushMs < this.flushMs) return;
    try {
      this.flushUses(nowMs);
    } catch {
      // Bookkeeping must not fail a wrap that succeeded (e.g. the keystore is busy with
      // another process): the uses stay pending and go out with a later flush or on close.
    }
  }

  private flushUses(nowMs: number): void {
    this.lastFlushMs = nowMs;
    if (this.pendingUse.size === 0) return;
    const uses = [...this.pendingUse];
    this.db.transaction(() => {
      for (const [name, ms] of uses) {
        const iso = new Date(ms).toISOString();
        this.stmt.setLastUsed.run(iso, name, iso);
      }
    })();
    for (const [name, ms] of uses) if (this.pendingUse.get(name) === ms) this.pendingUse.delete(name);
  }

  private toManagedKey(snap: KeySnapshot): ManagedKey {
    const { key } = snap;
    const primary = String(key.primary_version);
    const versions: KeyVersion[] = snap.versions.map((r) => ({
      id: String(r.id),
      state: r.state,
      createdAt: r.created_at,
      ...(r.compromised ? { compromised: true } : {}),
      ...(r.state === 'destroy_scheduled' && r.destroy_at ? { destroyAt: r.destroy_at } : {}),
    }));
    const out: ManagedKey = {
      ref: `local://${key.name}`,
      providerType: 'local',
      providerId: this.id,
      name: key.name,
      tags: JSON.parse(key.tags) as Record<string, string>,
      protection: 'software',
      algorithm: 'AES_256',
      enabled: key.enabled === 1,
      primaryVersion: primary,
      versions,
      createdAt: key.created_at,
    };
    if (key.rotation_period_days) {
      const p = versions.find((v) => v.id === primary);
      out.autoRotation = {
        periodDays: key.rotation_period_days,
        ...(p
          ? {
              nextRotationAt: new Date(
                Date.parse(p.createdAt) + key.rotation_period_days * DAY_MS,
              ).toISOString(),
            }
          : {}),
      };
    }
    return out;
  }

  private nameOf(ref: KeyRef): string {
    if (ref?.type !== 'local') {
      throw new ValidationError(
        `local KMS provider ${this.id} cannot manage key ref ${ref?.uri ?? String(ref)}`,
      );
    }
    return ref.name;
  }

  private nowMs(): number {
    return this.clock.now().getTime();
  }

  private keyNotFound(name: string): NotFoundError {
    return new NotFoundError(`key local://${name} not found in keystore ${this.path}`);
  }

  private invalidCiphertext(name: string): ProviderError {
    return new ProviderError(
      this.id,
      'InvalidCiphertext',
      `ciphertext cannot be unwrapped under key local://${name} with this context`,
    );
  }

  private refused(name: string, version: string, why: string): ProviderError {
    return new ProviderError(
      this.id,
      'FailedPrecondition',
      `version ${version} of key local://${name} ${why}`,
    );
  }

  /** Runs a synchronous body, translating keystore errors into ProviderError at this boundary. */
  private guard<T>(fn: () => T): T {
    if (this.closed)
      throw new ProviderError(this.id, 'ProviderClosed', `local KMS provider ${this.id} is closed`);
    try {
      return fn();
    } catch (e) {
      if (e instanceof RekeyError) throw e;
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('SQLITE_')) {
        const busy = code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
        throw new ProviderError(this.id, code, `keystore ${this.path}: ${(e as Error).message}`, {
          retryable: busy,
          cause: e,
        });
      }
      throw e;
    }
  }
}

function checkDek(name: string, dek: Uint8Array): void {
  if (!(dek instanceof Uint8Array))
    throw new ValidationError(`wrap under local://${name}: plaintext must be bytes`);
  if (dek.length === 0 || dek.length > MAX_DEK_BYTES) {
    throw new ValidationError(
      `wrap under local://${name}: plaintext must be 1 to ${MAX_DEK_BYTES} bytes, got ${dek.length}`,
    );
  }
}

function zeroKeks(e: CachedKey): void {
  for (const v of e.versions.values()) {
    v.kek?.fill(0);
    v.kek = null;
  }
}
