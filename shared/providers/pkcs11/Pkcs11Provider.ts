import type { KeyVersion, ManagedKey } from '../../core/domain/key.js';
import { type KeyRef, parseKeyRef } from '../../core/domain/keyRef.js';
import {
  ConflictError,
  IntegrityError,
  InvariantViolation,
  NotFoundError,
  ProviderError,
  type RekeyError,
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
import { isCkr, PROVIDER, translate } from './errors.js';
import {
  APPLICATION,
  buildPayload,
  CT_HEADER,
  checkName,
  ciphertextAt,
  decodeCiphertext,
  decodeMeta,
  deriveData,
  encodeCiphertext,
  encodeMeta,
  type FamilyMeta,
  openPayload,
  versionId,
} from './format.js';
import { destroyQuietly, findAll, type Handle, type Pkcs11, pkcs11js, TokenSession } from './session.js';

const P = pkcs11js;
const DAY_MS = 86_400_000;
const CKM_AES_KEY_WRAP_PAD = 0x210a;
const CKM_AES_KEY_WRAP_KWP = 0x210b;

export interface Pkcs11ProviderOptions {
  /** Configured provider id, e.g. `vault-hsm`. */
  id: string;
  /** Path of the PKCS#11 module (.so). */
  module: string;
  /** Token label. */
  token: string;
  /** The user PIN, already resolved by the caller (never an `env:`/`file:` reference). */
  pin: string | Buffer;
  /** Sessions kept open at most. Default 4. */
  poolSize?: number;
  /**
   * RFC 5649 key wrap goes by CKM_AES_KEY_WRAP_PAD (0x210A) on PKCS#11 2.40 modules such as
   * SoftHSM 2, and by CKM_AES_KEY_WRAP_KWP (0x210B) on 3.0 modules, where 0x210A means
   * PKCS#7 padding instead. Default `pad`.
   */
  wrapMechanism?: 'pad' | 'kwp';
  clock?: Clock;
  /**
   * How long wrap/unwrap/rewrap trust a key's cached metadata and object handles before
   * reading them again, so a rotation made by another process is seen within this delay.
   * Disabling needs no refresh: the token itself refuses a disabled version. Default 1000 ms;
   * 0 reads on every call.
   */
  refreshIntervalMs?: number;
  /**
   * Derived wrapping keys rewrapMany keeps per session (one per version and context), as
   * session objects. Default 512; 0 derives and destroys one per item.
   */
  derivedKeyCacheSize?: number;
}

/** One item for rewrapMany. */
export type { RewrapItem, RewrapItemResult } from '../../core/ports/KeyProvider.js';

const CAPABILITIES: ProviderCapabilities = {
  serverSideRewrap: true,
  choosePrimary: false,
  destroyDelayDays: { min: 0, max: 120 },
  lastUsed: false,
};

interface CachedFamily {
  fam: Family;
  /** Version key handles found so far. */
  keys: Map<string, Handle>;
  at: number;
}

interface Family {
  meta: FamilyMeta;
  handle: Handle;
  /** Older metadata objects left behind by an interrupted write; removed on the next write. */
  stale: Handle[];
}

const attr = (type: number, value: pkcs11js.Attribute['value']): pkcs11js.Attribute => ({ type, value });

/** Usage flags an AES key of rekey's sets to false, before turning on the one it needs. */
const NO_USE = [
  attr(P.CKA_ENCRYPT, false),
  attr(P.CKA_DECRYPT, false),
  attr(P.CKA_SIGN, false),
  attr(P.CKA_VERIFY, false),
  attr(P.CKA_WRAP, false),
  attr(P.CKA_UNWRAP, false),
  attr(P.CKA_DERIVE, false),
];

/**
 * Usage flags a DEK object (CKK_GENERIC_SECRET) sets to false, so it can be wrapped and nothing
 * else. A generic secret has no encryption or key-wrapping mechanism in PKCS#11; what a token
 * could do with one is an HMAC (sign, verify) or a derivation, and those are what is turned off.
 * Setting the other four too would cost about a tenth of a re-wrap on SoftHSM for nothing.
 */
const DEK_NO_USE = [attr(P.CKA_SIGN, false), attr(P.CKA_VERIFY, false), attr(P.CKA_DERIVE, false)];

/** Unwrapped DEK for unwrap(): readable (its value is read back and checked), private. */
const READABLE_DEK_TEMPLATE: pkcs11js.Template = [
  attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
  attr(P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET),
  attr(P.CKA_TOKEN, false),
  attr(P.CKA_PRIVATE, true),
  attr(P.CKA_SENSITIVE, false),
  attr(P.CKA_EXTRACTABLE, true),
  ...DEK_NO_USE,
];

/**
 * Unwrapped DEK for rewrap: sensitive, so it can only be wrapped again. It is not private: it
 * lives for one C_WrapKey call, its value can never be read either way, and SoftHSM would
 * otherwise encrypt and decrypt it with the token key (about a fifth of a rewrap's cost).
 */
const SEALED_DEK_TEMPLATE: pkcs11js.Template = [
  attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
  attr(P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET),
  attr(P.CKA_TOKEN, false),
  attr(P.CKA_PRIVATE, false),
  attr(P.CKA_SENSITIVE, true),
  attr(P.CKA_EXTRACTABLE, true),
  ...DEK_NO_USE,
];

/**
 * Session objects rewrapMany keeps between batches on one session, so the steady state of a
 * re-wrap is one C_UnwrapKey, one C_WrapKey and one C_DestroyObject per DEK:
 * - per version, a copy of the token key (C_CopyObject with CKA_TOKEN false: still sensitive
 *   and never extractable, and it keeps CKA_DERIVE), because SoftHSM's file store
 *   re-validates a token object on every use and the copy derives about twice as fast;
 * - per version and context digest, the derived wrapping key, in a bounded LRU (contexts are
 *   usually few: tenants, tables). An evicted key is destroyed at once.
 * Every batch first reads CKA_DERIVE of each version it uses from the token object itself;
 * a version that can no longer derive (disabled or scheduled for destruction, by any
 * process) loses its copy and its derived keys before any item is processed, so a cached
 * key never serves a batch that starts after the disable.
 */
class KeyCache {
  private readonly copies = new Map<string, { h: Handle; owned: boolean }>();
  /** Derived keys with the tick of their last use; the least recently used is evicted. */
  private readonly derived = new Map<string, { h: Handle; used: number }>();
  private tick = 0;
  constructor(
    private readonly p: Pkcs11,
    readonly s: Handle,
    /** TokenSession epoch the objects were made in (a login or a lost session ends it). */
    readonly epoch: number,
    private readonly max: number,
  ) {}

  private static vkey(name: string, v: string): string {
    return `${name}\0${v}\0`;
  }

  copyOf(name: string, v: string): Handle | undefined {
    return this.copies.get(KeyCache.vkey(name, v))?.h;
  }

  /** A session copy of a token version key, or the token key itself if the token refuses copies. */
  addCopy(name: string, v: string, tokenKey: Handle): Handle {
    let c: { h: Handle; owned: boolean };
    try {
      c = { h: this.p.C_CopyObject(this.s, tokenKey, [attr(P.CKA_TOKEN, false)]), owned: true };
    } catch {
      // A token that refuses copies (CKA_COPYABLE false) is used directly.
      c = { h: tokenKey, owned: false };
    }
    this.copies.set(KeyCache.vkey(name, v), c);
    return c.h;
  }

  derivedKey(name: string, v: string, digest: string): Handle | undefined {
    const e = this.derived.get(KeyCache.vkey(name, v) + digest);
    if (!e) return undefined;
    // A hit only stamps the entry: no reordering of the map on the per-DEK path.
    e.used = ++this.tick;
    return e.h;
  }

  /** Keeps a derived key; false when the cache holds none (size 0): the caller destroys it. */
  addDerived(name: string, v: string, digest: string, h: Handle): boolean {
    if (this.max <= 0) return false;
    while (this.derived.size >= this.max) {
      // Full: a scan for the least recently used entry (only when contexts outnumber the cache).
      let oldest: string | undefined;
      let min = Number.POSITIVE_INFINITY;
      for (const [k, e] of this.derived) {
        if (e.used < min) {
          min = e.used;
          oldest = k;
        }
      }
      const old = this.derived.get(oldest!)!;
      this.derived.delete(oldest!);
      destroyQuietly(this.p, this.s, old.h);
    }
    this.derived.set(KeyCache.vkey(name, v) + digest, { h, used: ++this.tick });
    return true;
  }

  /** Destroys the copy and derived keys of one version (or of every version of `name`). */
  drop(name: string, v?: string): void {
    const prefix = v === undefined ? `${name}\0` : KeyCache.vkey(name, v);
    for (const [k, e] of this.derived) {
      if (k.startsWith(prefix)) {
        this.derived.delete(k);
        destroyQuietly(this.p, this.s, e.h);
      }
    }
    for (const [k, c] of this.copies) {
      if (k.startsWith(prefix)) {
        this.copies.delete(k);
        if (c.owned) destroyQuietly(this.p, this.s, c.h);
      }
    }
  }

  clear(): void {
    for (const e of this.derived.values()) destroyQuietly(this.p, this.s, e.h);
    for (const c of this.copies.values()) if (c.owned) destroyQuietly(this.p, this.s, c.h);
    this.derived.clear();
    this.copies.clear();
  }
}

/** A context's derivation data, and the same bytes as a string to key derived keys by. */
interface ContextData {
  data: Buffer;
  digest: string;
}

function contextDataOf(ctx: WrapContext): ContextData {
  const data = deriveData(ctx);
  return { data, digest: data.toString('latin1') };
}

/** A cached session key turned out to be gone (logout elsewhere, session lost): redo the batch. */
class StaleKeyCache extends Error {}

const HANDLE_GONE = [
  'CKR_KEY_HANDLE_INVALID',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_WRAPPING_KEY_HANDLE_INVALID',
  'CKR_UNWRAPPING_KEY_HANDLE_INVALID',
];

/**
 * KeyProvider for PKCS#11 tokens (tested on SoftHSM2). A managed key is a family of token
 * objects sharing a CKA_LABEL: one AES-256 key per version plus one private CKO_DATA object
 * holding the metadata (primary, states, dates, tags). DEKs are wrapped with RFC 5649 key
 * wrap under a key derived inside the token from the version key and the wrap context, so
 * unwrap and rewrap with a wrong context fail inside the token. Every module call is
 * synchronous. See docs/pkcs11.md.
 */
export class Pkcs11Provider implements KeyProvider, KeyCreator {
  readonly id: string;
  readonly type = 'pkcs11' as const;
  private readonly opts: Pkcs11ProviderOptions;
  private readonly pin: Buffer;
  private readonly clock: Clock;
  private readonly wrapMech: { id: number; name: string };
  private readonly wrapMechParams: pkcs11js.Mechanism;
  private token: TokenSession | null = null;
  private closed = false;
  private readonly refreshMs: number;
  private readonly cache = new Map<string, CachedFamily>();
  /** rewrapMany's session objects, per session (hex handle). */
  private readonly keyCaches = new Map<string, KeyCache>();
  private readonly keyCacheSize: number;
  private readonly dataMemo = new Map<string, ContextData>();
  /** The same, by object, for frozen contexts (a store hands out one per distinct context). */
  private readonly frozenData = new WeakMap<WrapContext, ContextData>();

  constructor(opts: Pkcs11ProviderOptions) {
    if (!opts.token || Buffer.byteLength(opts.token) > 32) {
      throw new ValidationError(`pkcs11 provider ${opts.id}: token label must be 1-32 bytes`);
    }
    this.id = opts.id;
    this.opts = opts;
    this.pin = Buffer.from(opts.pin);
    this.clock = opts.clock ?? systemClock;
    this.refreshMs = Math.max(0, opts.refreshIntervalMs ?? 1000);
    this.keyCacheSize = Math.max(0, Math.floor(opts.derivedKeyCacheSize ?? 512));
    this.wrapMech =
      (opts.wrapMechanism ?? 'pad') === 'pad'
        ? { id: CKM_AES_KEY_WRAP_PAD, name: 'CKM_AES_KEY_WRAP_PAD' }
        : { id: CKM_AES_KEY_WRAP_KWP, name: 'CKM_AES_KEY_WRAP_KWP' };
    this.wrapMechParams = { mechanism: this.wrapMech.id };
  }

  /** Opens the token now, so a bad module, label, mechanism set or PIN is reported here. */
  static async open(opts: Pkcs11ProviderOptions): Promise<Pkcs11Provider> {
    const p = new Pkcs11Provider(opts);
    try {
      p.session();
    } catch (e) {
      await p.close();
      throw e;
    }
    return p;
  }

  capabilities(): ProviderCapabilities {
    return { ...CAPABILITIES, destroyDelayDays: { ...CAPABILITIES.destroyDelayDays } };
  }

  private session(): TokenSession {
    if (this.closed) throw new ProviderError(PROVIDER, 'CLOSED', `provider ${this.id} is closed`);
    if (!this.token) {
      this.token = TokenSession.open({
        module: this.opts.module,
        token: this.opts.token,
        pin: Buffer.from(this.pin),
        poolSize: Math.max(1, this.opts.poolSize ?? 4),
        mechanisms: [
          { id: P.CKM_AES_KEY_GEN, name: 'CKM_AES_KEY_GEN' },
          { id: P.CKM_AES_CBC_ENCRYPT_DATA, name: 'CKM_AES_CBC_ENCRYPT_DATA' },
          this.wrapMech,
        ],
      });
    }
    return this.token;
  }

  /** Runs `fn` on a session; module errors become ProviderErrors naming `what`. */
  private async run<T>(what: string, fn: (p: Pkcs11, s: Handle) => T): Promise<T> {
    try {
      const t = this.session();
      return await t.run((s) => fn(t.p, s));
    } catch (e) {
      throw translate(e, what);
    }
  }

  /** The label of the token this provider serves. */
  get tokenLabel(): string {
    return this.opts.token;
  }

  /**
   * Runs `fn` on a logged-in session of this provider's token, module errors translated. For
   * companions that work with other objects on the same token (BYOK export, export.ts). `fn`
   * must be synchronous and clean up its own session objects: it may run twice.
   */
  async onToken<T>(what: string, fn: (p: Pkcs11, s: Handle) => T): Promise<T> {
    return this.run(what, fn);
  }

  // ---- refs and metadata -------------------------------------------------------------------

  private nameOf(ref: KeyRef): string {
    if (ref.type !== 'pkcs11')
      throw new ValidationError(`provider ${this.id} (pkcs11) cannot use ref ${ref.uri}`);
    const a = ref.attributes;
    if (a.token !== this.opts.token) {
      throw new ValidationError(
        `ref ${ref.uri} names token "${a.token}", provider ${this.id} serves "${this.opts.token}"`,
      );
    }
    if (a.type !== undefined && a.type !== 'secret-key') {
      throw new ValidationError(`ref ${ref.uri}: rekey keys are secret keys (type=secret-key)`);
    }
    if (!a.object) throw new ValidationError(`ref ${ref.uri}: rekey names PKCS#11 keys by object=, not id=`);
    checkName(a.object);
    const info = this.token?.tokenInfo;
    if (info && a.serial !== undefined && a.serial !== info.serialNumber.trim()) {
      throw new ValidationError(
        `ref ${ref.uri} names serial "${a.serial}", token has "${info.serialNumber.trim()}"`,
      );
    }
    return a.object;
  }

  private refOf(name: string): string {
    return parseKeyRef(
      `pkcs11:token=${encodeURIComponent(this.opts.token)};object=${encodeURIComponent(name)}`,
    ).uri;
  }

  private metaHandles(p: Pkcs11, s: Handle, name?: string): Handle[] {
    const t = [attr(P.CKA_CLASS, P.CKO_DATA), attr(P.CKA_TOKEN, true), attr(P.CKA_APPLICATION, APPLICATION)];
    if (name !== undefined) t.push(attr(P.CKA_LABEL, name));
    return findAll(p, s, t);
  }

  /**
   * Reads a key family's metadata. With `sweep`, versions whose scheduled destruction time
   * has passed are destroyed now (C_DestroyObject) and recorded as destroyed.
   */
  private load(p: Pkcs11, s: Handle, name: string, sweep = true): Family {
    const handles = this.metaHandles(p, s, name);
    if (handles.length === 0) {
      throw new NotFoundError(`pkcs11 key "${name}" not found on token "${this.opts.token}"`);
    }
    let best: Family | null = null;
    const stale: Handle[] = [];
    for (const h of handles) {
      const raw = p.C_GetAttributeValue(s, h, [attr(P.CKA_VALUE, undefined)])[0]!.value;
      const meta = decodeMeta(name, raw);
      if (!best || meta.gen > best.meta.gen) {
        if (best) stale.push(best.handle);
        best = { meta, handle: h, stale };
      } else stale.push(h);
    }
    const fam = best!;
    if (!sweep) return fam;
    const now = this.clock.now();
    const due = fam.meta.versions.filter(
      (v) =>
        v.state === 'destroy_scheduled' &&
        v.destroyAt !== undefined &&
        Date.parse(v.destroyAt) <= now.getTime(),
    );
    if (due.length === 0) return fam;
    this.dropKeyCache(name);
    for (const v of due) {
      for (const h of this.keyHandles(p, s, name, v.id)) p.C_DestroyObject(s, h);
    }
    const ids = new Set(due.map((v) => v.id));
    return this.writeMeta(p, s, fam, {
      ...fam.meta,
      versions: fam.meta.versions.map((v) => (ids.has(v.id) ? { ...v, state: 'destroyed' as const } : v)),
    });
  }

  /**
   * Data objects cannot be modified in place on every token (SoftHSM refuses CKA_VALUE
   * changes), so a write creates the next generation and then destroys the older objects.
   * Readers take the highest generation, so an interrupted write leaves the old or the new
   * state, never a mix.
   */
  private writeMeta(p: Pkcs11, s: Handle, fam: Family | null, next: FamilyMeta): Family {
    const meta = { ...next, gen: fam ? fam.meta.gen + 1 : 0 };
    const value = encodeMeta(meta);
    const h = p.C_CreateObject(s, [
      attr(P.CKA_CLASS, P.CKO_DATA),
      attr(P.CKA_TOKEN, true),
      attr(P.CKA_PRIVATE, true),
      attr(P.CKA_APPLICATION, APPLICATION),
      attr(P.CKA_LABEL, meta.name),
      attr(P.CKA_VALUE, value),
    ]);
    if (fam) for (const old of [fam.handle, ...fam.stale]) destroyQuietly(p, s, old);
    return { meta, handle: h, stale: [] };
  }

  private keyHandles(p: Pkcs11, s: Handle, name: string, v: string): Handle[] {
    return findAll(p, s, [
      attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
      attr(P.CKA_TOKEN, true),
      attr(P.CKA_LABEL, name),
      attr(P.CKA_ID, versionId(name, v)),
    ]);
  }

  /** The token object of one version; NotFoundError if the version is unknown or destroyed. */
  private versionKey(p: Pkcs11, s: Handle, fam: Family, v: string): Handle {
    const name = fam.meta.name;
    const vm = fam.meta.versions.find((x) => x.id === v);
    if (!vm) throw new NotFoundError(`pkcs11 key "${name}" has no version ${v}`);
    if (vm.state === 'destroyed')
      throw new NotFoundError(`version ${v} of pkcs11 key "${name}" was destroyed`);
    const h = this.keyHandles(p, s, name, v)[0];
    if (!h)
      throw new IntegrityError(
        `version ${v} of pkcs11 key "${name}" is recorded but its key object is missing`,
      );
    return h;
  }

  private remember(name: string, fam: Family): CachedFamily {
    const c: CachedFamily = { fam, keys: new Map(), at: performance.now() };
    if (this.refreshMs > 0) this.cache.set(name, c);
    return c;
  }

  /**
   * Runs `fn` with the key's metadata and handles, from the cache when fresh enough. If `fn`
   * trips over something the cache may have got wrong (an unknown version, a vanished
   * object), the key is read again and `fn` runs once more.
   */
  private withFamily<T>(p: Pkcs11, s: Handle, name: string, fn: (c: CachedFamily) => T, sweep = true): T {
    const hit = this.cache.get(name);
    if (!hit || performance.now() - hit.at >= this.refreshMs)
      return fn(this.remember(name, this.load(p, s, name, sweep)));
    try {
      return fn(hit);
    } catch (e) {
      const stale =
        e instanceof NotFoundError ||
        e instanceof IntegrityError ||
        isCkr(e, 'CKR_OBJECT_HANDLE_INVALID', 'CKR_KEY_HANDLE_INVALID');
      if (!stale) throw e;
      this.cache.delete(name);
      return fn(this.remember(name, this.load(p, s, name, sweep)));
    }
  }

  private cachedKey(p: Pkcs11, s: Handle, c: CachedFamily, v: string): Handle {
    let h = c.keys.get(v);
    if (!h) {
      h = this.versionKey(p, s, c.fam, v);
      c.keys.set(v, h);
    }
    return h;
  }

  private toManagedKey(m: FamilyMeta): ManagedKey {
    return {
      ref: this.refOf(m.name),
      providerType: 'pkcs11',
      providerId: this.id,
      name: m.name,
      tags: { ...m.tags },
      protection: 'hsm',
      algorithm: 'AES_256',
      enabled: true,
      primaryVersion: m.primary,
      versions: m.versions.map((v) => ({ ...v })),
      createdAt: m.createdAt,
    };
  }

  // ---- key objects ---------------------------------------------------------------------------

  /** A new AES-256 version key: sensitive, never extractable, usable only to derive wrapping keys. */
  private generateVersion(p: Pkcs11, s: Handle, name: string, v: string): Handle {
    return p.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
      attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
      attr(P.CKA_KEY_TYPE, P.CKK_AES),
      attr(P.CKA_VALUE_LEN, 32),
      attr(P.CKA_TOKEN, true),
      attr(P.CKA_PRIVATE, true),
      attr(P.CKA_SENSITIVE, true),
      attr(P.CKA_EXTRACTABLE, false),
      attr(P.CKA_MODIFIABLE, true),
      attr(P.CKA_LABEL, name),
      attr(P.CKA_ID, versionId(name, v)),
      ...NO_USE.filter((a) => a.type !== P.CKA_DERIVE),
      attr(P.CKA_DERIVE, true),
    ]);
  }

  /** Removes key objects left with this id by an interrupted create or rotate (never recorded). */
  private clearOrphans(p: Pkcs11, s: Handle, name: string, v: string): void {
    for (const h of this.keyHandles(p, s, name, v)) p.C_DestroyObject(s, h);
  }

  /** Session AES key for one context, derived in the token; the caller destroys it. */
  private deriveWrappingKey(p: Pkcs11, s: Handle, versionKey: Handle, data: Buffer): Handle {
    return p.C_DeriveKey(
      s,
      {
        mechanism: P.CKM_AES_CBC_ENCRYPT_DATA,
        parameter: { type: P.CK_PARAMS_AES_CBC, iv: Buffer.alloc(16), data } as pkcs11js.AesCBC,
      },
      versionKey,
      [
        attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
        attr(P.CKA_KEY_TYPE, P.CKK_AES),
        attr(P.CKA_VALUE_LEN, 32),
        attr(P.CKA_TOKEN, false),
        // Not private, like SEALED_DEK_TEMPLATE: sensitive and never extractable, so no call can
        // read it, and SoftHSM would otherwise decrypt it with the token key on every use
        // (about a quarter of a cached key's re-wrap). See docs/pkcs11.md.
        attr(P.CKA_PRIVATE, false),
        attr(P.CKA_SENSITIVE, true),
        attr(P.CKA_EXTRACTABLE, false),
        ...NO_USE.filter((a) => a.type !== P.CKA_WRAP && a.type !== P.CKA_UNWRAP),
        attr(P.CKA_WRAP, true),
        attr(P.CKA_UNWRAP, true),
      ],
    );
  }

  /** C_UnwrapKey into a session object; integrity failures become a clear, permanent error. */
  private unwrapToSession(
    p: Pkcs11,
    s: Handle,
    kw: Handle,
    ct: Buffer,
    readable: boolean,
    what: string,
  ): Handle {
    try {
      return p.C_UnwrapKey(
        s,
        this.wrapMechParams,
        kw,
        ct,
        readable ? READABLE_DEK_TEMPLATE : SEALED_DEK_TEMPLATE,
      );
    } catch (e) {
      if (
        isCkr(
          e,
          'CKR_WRAPPED_KEY_INVALID',
          'CKR_WRAPPED_KEY_LEN_RANGE',
          'CKR_ENCRYPTED_DATA_INVALID',
          'CKR_ENCRYPTED_DATA_LEN_RANGE',
          // SoftHSM 2.6 reports a failed RFC 5649 integrity check this way.
          'CKR_GENERAL_ERROR',
        )
      ) {
        const rv = translate(e, what) as ProviderError;
        throw new ProviderError(
          PROVIDER,
          rv.providerCode,
          `${what}: the wrapped DEK does not authenticate (tampered, wrong context, or wrapped under another key or version)`,
          { cause: e },
        );
      }
      throw e;
    }
  }

  /** In-token rewrap of one item; `keyOf` gives the handle of a source version. */
  private rewrapOne(
    p: Pkcs11,
    s: Handle,
    item: RewrapItem,
    keyOf: (v: string) => Handle,
    toKey: Handle,
    to: string,
    what: string,
  ): Wrapped {
    const ct = decodeCiphertext(item.wrapped.ciphertext, what);
    const data = deriveData(item.ctx);
    const fromKey = keyOf(item.wrapped.version);
    let kOld: Handle | null = null;
    let kNew: Handle | null = null;
    let dek: Handle | null = null;
    try {
      kOld = this.deriveWrappingKey(p, s, fromKey, data);
      dek = this.unwrapToSession(p, s, kOld, ct, false, what);
      kNew = this.deriveWrappingKey(p, s, toKey, data);
      const out = p.C_WrapKey(s, { mechanism: this.wrapMech.id }, kNew, dek, Buffer.alloc(ct.length + 64));
      return { version: to, ciphertext: encodeCiphertext(out) };
    } finally {
      destroyQuietly(p, s, dek);
      destroyQuietly(p, s, kOld);
      destroyQuietly(p, s, kNew);
    }
  }

  // ---- KeyProvider -----------------------------------------------------------------------------

  async listKeys(scope: ListScope, cursor: string | null): Promise<Page<ManagedKey>> {
    const size = Math.min(Math.max(1, scope.pageSize ?? 100), 1000);
    let after = '';
    if (cursor !== null) {
      after = Buffer.from(cursor, 'base64url').toString('utf8');
      if (!after) throw new ValidationError(`pkcs11 listKeys: bad cursor "${cursor}"`);
    }
    return this.run(`list keys on token "${this.opts.token}"`, (p, s) => {
      const names = new Set<string>();
      for (const h of this.metaHandles(p, s)) {
        names.add(p.C_GetAttributeValue(s, h, [attr(P.CKA_LABEL, undefined)])[0]!.value.toString('utf8'));
      }
      const sorted = [...names]
        .filter((n) => n > after && (!scope.namePrefix || n.startsWith(scope.namePrefix)))
        .sort();
      const page = sorted.slice(0, size);
      const items = page.map((n) => this.toManagedKey(this.load(p, s, n).meta));
      const more = sorted.length > size;
      return {
        items,
        cursor: more ? Buffer.from(page[page.length - 1]!, 'utf8').toString('base64url') : null,
      };
    });
  }

  /**
   * The token is the only place rekey sees the key. HSM backups (cloning to a backup HSM, backup
   * tokens, key export under a backup key) happen through the vendor's tools, out of band.
   */
  async recovery(ref: KeyRef): Promise<RecoveryInfo> {
    await this.getKey(ref);
    return {
      locations: [`pkcs11:token=${this.opts.token}`],
      copies: [],
      deletionProtection: `scheduled destruction waits up to ${CAPABILITIES.destroyDelayDays.max} days when a policy sets a delay`,
      notes: ["HSM backups are made with the vendor's tools; confirm a backup or clone of this token exists"],
    };
  }

  async getKey(ref: KeyRef): Promise<ManagedKey> {
    const name = this.nameOf(ref);
    return this.run(`describe pkcs11 key "${name}"`, (p, s) => {
      this.cache.delete(name);
      return this.toManagedKey(this.remember(name, this.load(p, s, name)).fam.meta);
    });
  }

  async createKey(spec: {
    name: string;
    tags?: Record<string, string>;
    algorithm?: ManagedKey['algorithm'];
    createdAt?: string;
  }): Promise<ManagedKey> {
    checkName(spec.name);
    if (spec.algorithm !== undefined && spec.algorithm !== 'AES_256') {
      throw new ValidationError(`pkcs11 keys are AES_256, not ${spec.algorithm}`);
    }
    for (const [k, v] of Object.entries(spec.tags ?? {})) {
      if (typeof v !== 'string')
        throw new ValidationError(`tag "${k}" of key "${spec.name}" must be a string`);
    }
    const at = spec.createdAt ?? this.clock.now().toISOString();
    if (Number.isNaN(Date.parse(at))) throw new ValidationError(`createdAt "${at}" is not a date`);
    const name = spec.name;
    return this.run(`create pkcs11 key "${name}"`, (p, s) => {
      this.cache.delete(name);
      if (this.metaHandles(p, s, name).length > 0) {
        throw new ConflictError(`pkcs11 key "${name}" already exists on token "${this.opts.token}"`);
      }
      this.clearOrphans(p, s, name, '1');
      const h = this.generateVersion(p, s, name, '1');
      try {
        const meta: FamilyMeta = {
          format: 'rekey.pkcs11/1',
          gen: 0,
          name,
          createdAt: at,
          primary: '1',
          tags: { ...(spec.tags ?? {}) },
          versions: [{ id: '1', state: 'enabled', createdAt: at }],
        };
        return this.toManagedKey(this.writeMeta(p, s, null, meta).meta);
      } catch (e) {
        destroyQuietly(p, s, h);
        throw e;
      }
    });
  }

  async rotate(ref: KeyRef): Promise<KeyVersion> {
    const name = this.nameOf(ref);
    return this.run(`rotate pkcs11 key "${name}"`, (p, s) => {
      this.cache.delete(name);
      const fam = this.load(p, s, name);
      const next = String(Math.max(...fam.meta.versions.map((v) => Number(v.id))) + 1);
      this.clearOrphans(p, s, name, next);
      const h = this.generateVersion(p, s, name, next);
      const v: KeyVersion = { id: next, state: 'enabled', createdAt: this.clock.now().toISOString() };
      try {
        this.writeMeta(p, s, fam, { ...fam.meta, primary: next, versions: [...fam.meta.versions, v] });
      } catch (e) {
        destroyQuietly(p, s, h);
        throw e;
      }
      return { ...v };
    });
  }

  async setAutoRotation(ref: KeyRef, periodDays: number | null): Promise<void> {
    this.nameOf(ref);
    if (periodDays !== null) {
      throw new ValidationError(
        `PKCS#11 tokens have no native rotation schedule; rekey rotates ${ref.uri} itself`,
      );
    }
  }

  /** Changes CKA_DERIVE of a version key, then records the state; reverts the flag if recording fails. */
  private setUsable(p: Pkcs11, s: Handle, fam: Family, v: string, usable: boolean, next: FamilyMeta): void {
    const h = this.versionKey(p, s, fam, v);
    const before = p.C_GetAttributeValue(s, h, [attr(P.CKA_DERIVE, undefined)])[0]!.value[0] === 1;
    if (before !== usable) p.C_SetAttributeValue(s, h, [attr(P.CKA_DERIVE, usable)]);
    try {
      this.writeMeta(p, s, fam, next);
    } catch (e) {
      if (before !== usable) p.C_SetAttributeValue(s, h, [attr(P.CKA_DERIVE, before)]);
      throw e;
    }
  }

  async setVersionState(ref: KeyRef, version: string, state: 'enabled' | 'disabled'): Promise<void> {
    const name = this.nameOf(ref);
    if (state !== 'enabled' && state !== 'disabled')
      throw new ValidationError(`unknown version state "${state}"`);
    return this.run(`set version ${version} of pkcs11 key "${name}" ${state}`, (p, s) => {
      this.cache.delete(name);
      this.dropKeyCache(name);
      const fam = this.load(p, s, name);
      const vm = fam.meta.versions.find((v) => v.id === version);
      if (!vm) throw new NotFoundError(`pkcs11 key "${name}" has no version ${version}`);
      if (vm.state === state) return;
      if (vm.state === 'destroyed')
        throw new InvariantViolation(`version ${version} of pkcs11 key "${name}" is destroyed`);
      if (version === fam.meta.primary) {
        throw new InvariantViolation(
          `version ${version} is the primary of pkcs11 key "${name}" and cannot be disabled`,
        );
      }
      if (vm.state === 'destroy_scheduled' && state === 'enabled') {
        throw new InvariantViolation(
          `version ${version} of pkcs11 key "${name}" is scheduled for destruction; cancel it (disable) before enabling`,
        );
      }
      this.setUsable(p, s, fam, version, state === 'enabled', {
        ...fam.meta,
        versions: fam.meta.versions.map((v) =>
          v.id === version
            ? { id: v.id, state, createdAt: v.createdAt, ...(v.compromised ? { compromised: true } : {}) }
            : v,
        ),
      });
    });
  }

  async scheduleDestroy(ref: KeyRef, version: string, days: number): Promise<{ destroyAt: string }> {
    const name = this.nameOf(ref);
    const { min, max } = CAPABILITIES.destroyDelayDays;
    if (!Number.isInteger(days) || days < min || days > max) {
      throw new ValidationError(
        `destroy delay for pkcs11 key "${name}" must be ${min}-${max} whole days, got ${days}`,
      );
    }
    return this.run(`schedule destruction of version ${version} of pkcs11 key "${name}"`, (p, s) => {
      this.cache.delete(name);
      this.dropKeyCache(name);
      const fam = this.load(p, s, name);
      const vm = fam.meta.versions.find((v) => v.id === version);
      if (!vm) throw new NotFoundError(`pkcs11 key "${name}" has no version ${version}`);
      if (vm.state === 'destroyed')
        throw new InvariantViolation(`version ${version} of pkcs11 key "${name}" is destroyed`);
      if (version === fam.meta.primary) {
        throw new InvariantViolation(
          `version ${version} is the primary of pkcs11 key "${name}" and cannot be destroyed`,
        );
      }
      const destroyAt = new Date(this.clock.now().getTime() + days * DAY_MS).toISOString();
      this.setUsable(p, s, fam, version, false, {
        ...fam.meta,
        versions: fam.meta.versions.map((v) =>
          v.id === version ? { ...v, state: 'destroy_scheduled' as const, destroyAt } : v,
        ),
      });
      return { destroyAt };
    });
  }

  async wrap(ref: KeyRef, plaintext: Uint8Array, ctx: WrapContext): Promise<Wrapped> {
    const name = this.nameOf(ref);
    const what = `wrap under pkcs11 key "${name}"`;
    const payload = buildPayload(plaintext, ctx);
    const data = deriveData(ctx);
    try {
      return await this.run(what, (p, s) => {
        const { v, key } = this.withFamily(p, s, name, (c) => ({
          v: c.fam.meta.primary,
          key: this.cachedKey(p, s, c, c.fam.meta.primary),
        }));
        let kw: Handle | null = null;
        let dek: Handle | null = null;
        try {
          kw = this.deriveWrappingKey(p, s, key, data);
          dek = p.C_CreateObject(s, [
            attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
            attr(P.CKA_KEY_TYPE, P.CKK_GENERIC_SECRET),
            attr(P.CKA_TOKEN, false),
            attr(P.CKA_PRIVATE, true),
            attr(P.CKA_SENSITIVE, true),
            attr(P.CKA_EXTRACTABLE, true),
            ...DEK_NO_USE,
            attr(P.CKA_VALUE, payload),
          ]);
          const out = p.C_WrapKey(
            s,
            { mechanism: this.wrapMech.id },
            kw,
            dek,
            Buffer.alloc(payload.length + 64),
          );
          return { version: v, ciphertext: encodeCiphertext(out) };
        } finally {
          destroyQuietly(p, s, dek);
          destroyQuietly(p, s, kw);
        }
      });
    } finally {
      payload.fill(0);
    }
  }

  async unwrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext): Promise<Uint8Array> {
    const name = this.nameOf(ref);
    const what = `unwrap under version ${wrapped.version} of pkcs11 key "${name}"`;
    const ct = decodeCiphertext(wrapped.ciphertext, what);
    const data = deriveData(ctx);
    return this.run(what, (p, s) => {
      const key = this.withFamily(p, s, name, (c) => this.cachedKey(p, s, c, wrapped.version));
      let kw: Handle | null = null;
      let dek: Handle | null = null;
      try {
        kw = this.deriveWrappingKey(p, s, key, data);
        dek = this.unwrapToSession(p, s, kw, ct, true, what);
        const value = p.C_GetAttributeValue(s, dek, [attr(P.CKA_VALUE, undefined)])[0]!.value;
        try {
          return openPayload(value, ctx, what);
        } finally {
          value.fill(0);
        }
      } finally {
        destroyQuietly(p, s, dek);
        destroyQuietly(p, s, kw);
      }
    });
  }

  async rewrap(ref: KeyRef, wrapped: Wrapped, ctx: WrapContext, toVersion?: string): Promise<Wrapped> {
    const name = this.nameOf(ref);
    const what = `rewrap from version ${wrapped.version} of pkcs11 key "${name}"`;
    return this.run(what, (p, s) => {
      return this.withFamily(p, s, name, (c) => {
        const to = toVersion ?? c.fam.meta.primary;
        const toKey = this.cachedKey(p, s, c, to);
        return this.rewrapOne(p, s, { wrapped, ctx }, (v) => this.cachedKey(p, s, c, v), toKey, to, what);
      });
    });
  }

  /**
   * Derivation data of a context, remembered across batches (contexts repeat: tenants,
   * tables). The digest of a context is no secret; the map is bounded and simply emptied
   * when full. Only all-string contexts are remembered, so the JSON key identifies them; a
   * frozen context is remembered by the object itself (it cannot change).
   */
  private contextData(ctx: WrapContext): ContextData {
    const frozen = Object.isFrozen(ctx);
    if (frozen) {
      const hit = this.frozenData.get(ctx);
      if (hit) return hit;
    }
    for (const k in ctx) if (typeof ctx[k] !== 'string') return contextDataOf(ctx);
    const key = JSON.stringify(ctx);
    let d = this.dataMemo.get(key);
    if (!d) {
      d = contextDataOf(ctx);
      if (this.dataMemo.size >= 4096) this.dataMemo.clear();
      this.dataMemo.set(key, d);
    }
    if (frozen) this.frozenData.set(ctx, d);
    return d;
  }

  /** The key cache of session `s`, new if the session's login epoch changed since it was filled. */
  private keyCacheFor(p: Pkcs11, s: Handle): KeyCache {
    const id = s.toString('hex');
    const epoch = this.token?.epoch ?? 0;
    let kc = this.keyCaches.get(id);
    if (kc && kc.epoch !== epoch) {
      kc.clear();
      kc = undefined;
    }
    if (!kc) {
      kc = new KeyCache(p, s, epoch, this.keyCacheSize);
      this.keyCaches.set(id, kc);
    }
    return kc;
  }

  private dropKeyCache(name: string): void {
    for (const kc of this.keyCaches.values()) kc.drop(name);
  }

  /**
   * Destroys the session objects rewrapMany keeps between batches (version key copies and
   * derived wrapping keys). They are also destroyed on close, on any lifecycle change of
   * their key made through this provider, and as soon as the token refuses their version.
   */
  flushKeyCache(): void {
    for (const kc of this.keyCaches.values()) kc.clear();
    this.keyCaches.clear();
  }

  /**
   * Many in-token rewraps in one synchronous loop on one session: the throughput path of the
   * re-wrap engine. A bad item (tampered, wrong context, disabled version) is reported in its
   * result and the others carry on; only a problem with the key or the target version throws.
   * Metadata is trusted for `refreshIntervalMs`; whether a version may be used is read from
   * its token object (CKA_DERIVE) at the start of every batch.
   */
  async rewrapMany(ref: KeyRef, items: RewrapItem[], toVersion?: string): Promise<RewrapItemResult[]> {
    const name = this.nameOf(ref);
    return this.run(`rewrap ${items.length} DEK(s) of pkcs11 key "${name}"`, (p, s) => {
      for (let attempt = 0; ; attempt++) {
        const kc = this.keyCacheFor(p, s);
        try {
          // No sweep: batches (often in worker processes) only read metadata. A version whose
          // destruction is due is already unusable on the token (CKA_DERIVE false).
          return this.withFamily(p, s, name, (c) => this.rewrapBatch(p, s, kc, c, items, toVersion), false);
        } catch (e) {
          if (!(e instanceof StaleKeyCache)) throw e;
          kc.clear();
          this.keyCaches.delete(s.toString('hex'));
          if (attempt > 0) throw e.cause;
        }
      }
    });
  }

  private rewrapBatch(
    p: Pkcs11,
    s: Handle,
    kc: KeyCache,
    c: CachedFamily,
    items: RewrapItem[],
    toVersion: string | undefined,
  ): RewrapItemResult[] {
    const name = c.fam.meta.name;
    const to = toVersion ?? c.fam.meta.primary;
    const target = c.fam.meta.versions.find((v) => v.id === to);
    if (target && target.state !== 'enabled') {
      throw new ProviderError(
        PROVIDER,
        'CKR_KEY_FUNCTION_NOT_PERMITTED',
        `rewrap to version ${to} of pkcs11 key "${name}": the version is ${target.state}`,
      );
    }
    /** Versions checked on the token for this batch: the key to derive from, or why not. */
    const checked = new Map<string, Handle | RekeyError>();
    const versionCopy = (v: string, isTarget: boolean): Handle => {
      let got = checked.get(v);
      if (got === undefined) {
        got = this.usableVersion(p, s, kc, c, v, isTarget);
        checked.set(v, got);
      }
      if (got instanceof Error) throw got;
      return got;
    };
    const toCopy = versionCopy(to, true);
    const wrappingKey = (v: string, copy: Handle, cd: ContextData, temp: Handle[]): Handle => {
      const hit = kc.derivedKey(name, v, cd.digest);
      if (hit) return hit;
      const h = this.deriveWrappingKey(p, s, copy, cd.data);
      if (!kc.addDerived(name, v, cd.digest, h)) temp.push(h);
      return h;
    };
    const mech = this.wrapMechParams;
    const temp: Handle[] = [];
    // The batch's ciphertexts share one buffer: C_WrapKey writes each output in place (after
    // its format byte) and the result is a view, one allocation per batch instead of per DEK.
    let slab = Buffer.alloc(0);
    let at = 0;
    return items.map((item, i): RewrapItemResult => {
      const what = `rewrap item ${i} from version ${item.wrapped.version} of pkcs11 key "${name}"`;
      let dek: Handle | null = null;
      try {
        const ct = decodeCiphertext(item.wrapped.ciphertext, what);
        const data = this.contextData(item.ctx);
        const from = item.wrapped.version;
        const kOld = wrappingKey(from, from === to ? toCopy : versionCopy(from, false), data, temp);
        dek = this.unwrapToSession(p, s, kOld, ct, false, what);
        const kNew = wrappingKey(to, toCopy, data, temp);
        const room = CT_HEADER + ct.length + 64;
        if (slab.length - at < room) {
          slab = Buffer.alloc(room * (items.length - i));
          at = 0;
        }
        const out = p.C_WrapKey(s, mech, kNew, dek, slab.subarray(at + CT_HEADER, at + room));
        const ciphertext = ciphertextAt(slab, at, out.length);
        at += ciphertext.length;
        return { ok: true, wrapped: { version: to, ciphertext } };
      } catch (e) {
        // Lost login or session: let run() log in again and redo the whole (idempotent) batch.
        if (isCkr(e, 'CKR_USER_NOT_LOGGED_IN', 'CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED')) throw e;
        // A cached key (copy or derived) vanished under us: redo the batch once with fresh keys.
        if (isCkr(e, ...HANDLE_GONE)) throw new StaleKeyCache('stale key cache', { cause: e });
        const err: RekeyError = translate(e, what);
        const pe = err instanceof ProviderError ? err : null;
        return {
          ok: false,
          error: {
            code: err.code,
            ...(pe ? { providerCode: pe.providerCode } : {}),
            message: err.message,
            retryable: pe?.retryable ?? false,
          },
        };
      } finally {
        destroyQuietly(p, s, dek);
        for (const h of temp.splice(0)) destroyQuietly(p, s, h);
      }
    });
  }

  /**
   * Checks on the token that version `v` may still derive (CKA_DERIVE of its token object:
   * cleared by a disable or a scheduled destruction, whatever process made it), and returns
   * its session copy. A refused version loses its cached copy and derived keys. For the
   * target, a refusal throws (the whole batch fails); for a source it is returned, and each
   * item under that version reports it.
   */
  private usableVersion(
    p: Pkcs11,
    s: Handle,
    kc: KeyCache,
    c: CachedFamily,
    v: string,
    isTarget: boolean,
  ): Handle | RekeyError {
    const name = c.fam.meta.name;
    try {
      const tokenKey = this.cachedKey(p, s, c, v);
      const derive = p.C_GetAttributeValue(s, tokenKey, [attr(P.CKA_DERIVE, undefined)])[0]!.value;
      if (derive[0] !== 1) {
        kc.drop(name, v);
        throw new ProviderError(
          PROVIDER,
          'CKR_KEY_FUNCTION_NOT_PERMITTED',
          `version ${v} of pkcs11 key "${name}" is disabled on the token`,
        );
      }
      return kc.copyOf(name, v) ?? kc.addCopy(name, v, tokenKey);
    } catch (e) {
      if (isTarget) throw e;
      if (isCkr(e, 'CKR_USER_NOT_LOGGED_IN', 'CKR_SESSION_HANDLE_INVALID', 'CKR_SESSION_CLOSED')) throw e;
      if (isCkr(e, ...HANDLE_GONE)) {
        // The token object is gone (destroyed elsewhere): read the metadata again next time.
        kc.drop(name, v);
        this.cache.delete(name);
      }
      return translate(e, `rewrap from version ${v} of pkcs11 key "${name}"`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flushKeyCache();
    const t = this.token;
    this.token = null;
    t?.closeSync();
    this.pin.fill(0);
  }
}
