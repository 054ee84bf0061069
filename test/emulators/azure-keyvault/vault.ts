import {
  constants,
  createCipheriv,
  createDecipheriv,
  generateKeyPairSync,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { addDuration, durationDays, parseDuration } from '../../../shared/core/domain/duration.js';
import type { SimClock } from '../aws/clock.js';
import { parseTransferBlob, targetKey, unwrapTransferCiphertext } from './byok.js';
import { badParameter, forbidden, KvError, keyNotFound } from './errors.js';
import { type EventSink, type KeyVaultEventType, keyEvent } from './events.js';
import type { QuotaClass } from './faults.js';
import { takeRsaKeyPair } from './rsaPool.js';

export type VaultKind = 'vault' | 'managedhsm';
const KEY_NAME = /^[0-9A-Za-z-]{1,127}$/;
/** Managed HSM keeps at most this many versions of a key (FACTS.md). */
export const MANAGED_HSM_MAX_VERSIONS = 100;
/** Keys per Managed HSM instance (soft-deleted keys count until purged). */
export const MANAGED_HSM_MAX_KEYS = 5000;
const ALL_OPS = ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'];
const RSA_OPS = ALL_OPS;
const EC_OPS = ['sign', 'verify'];
const OCT_OPS = ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'];

interface VersionRec {
  version: string;
  kty: string;
  keySize?: number;
  crv?: string;
  keyOps: string[];
  enabled: boolean;
  nbf?: number;
  exp?: number;
  created: number;
  updated: number;
  tags: Record<string, string>;
  privateKey?: KeyObject;
  publicKey?: KeyObject;
  secret?: Buffer;
  /** Which near-expiry / expired events this version already sent. */
  notified: Set<string>;
}

export interface LifetimeAction {
  trigger: { timeAfterCreate?: string; timeBeforeExpiry?: string };
  action: { type: 'Rotate' | 'Notify' };
}
interface PolicyRec {
  lifetimeActions: LifetimeAction[];
  expiryTime?: string;
  created: number;
  updated: number;
}

interface KeyRec {
  name: string;
  versions: VersionRec[];
  policy?: PolicyRec;
  /** Backs a certificate (Key Vault sets `managed: true`); tests mark keys with markManaged(). */
  managed?: boolean;
  deleted?: { deletedDate: number; scheduledPurgeDate: number };
}

export interface VaultOptions {
  /** The vault's real-looking host, e.g. `prod.vault.azure.net` or `hsm1.managedhsm.azure.net`. */
  host: string;
  subscriptionId: string;
  resourceGroup: string;
  softDeleteRetentionDays: number;
}

const secs = (d: Date) => Math.floor(d.getTime() / 1000);
const b64u = (b: Buffer) => b.toString('base64url');

function fromB64u(field: string, v: unknown): Buffer {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(v))
    throw badParameter(`Property '${field}' must be base64url.`);
  return Buffer.from(v, 'base64url');
}

function isHsmType(kty: string) {
  return kty.endsWith('-HSM');
}

/** One virtual vault or Managed HSM: its keys, their versions and rotation policies. */
export class Vault {
  readonly host: string;
  readonly name: string;
  readonly kind: VaultKind;
  private readonly keys = new Map<string, KeyRec>();

  constructor(
    private readonly opts: VaultOptions,
    private readonly clock: SimClock,
    private readonly sink: EventSink,
  ) {
    this.host = opts.host.toLowerCase();
    const m = /^([a-z0-9-]+)\.(vault|managedhsm)\./.exec(this.host);
    if (!m)
      throw new Error(
        `vault host ${opts.host} must look like <name>.vault.azure.net or <name>.managedhsm.azure.net`,
      );
    this.name = m[1]!;
    this.kind = m[2] === 'managedhsm' ? 'managedhsm' : 'vault';
  }

  get challengeResource(): string {
    return this.kind === 'managedhsm' ? 'https://managedhsm.azure.net' : 'https://vault.azure.net';
  }

  // ---------- lookups ----------

  private live(name: string): KeyRec {
    const k = this.keys.get(name.toLowerCase());
    if (!k || k.deleted) throw keyNotFound(name);
    return k;
  }

  private versionOf(k: KeyRec, version: string): VersionRec {
    if (!version) return k.versions[k.versions.length - 1]!;
    const v = k.versions.find((x) => x.version === version.toLowerCase());
    if (!v) throw keyNotFound(k.name, version);
    return v;
  }

  /** Quota bucket of an operation on this key (null: not a key operation). */
  quotaClass(name: string | undefined, op: string): QuotaClass | null {
    const hsm = this.kind === 'managedhsm';
    if (op === 'createKey' || op === 'rotateKey' || op === 'importKey') {
      const k = name ? this.keys.get(name.toLowerCase()) : undefined;
      const last = k?.versions[k.versions.length - 1];
      return hsm || (last && isHsmType(last.kty)) ? 'createHsm' : 'createSoftware';
    }
    const k = name ? this.keys.get(name.toLowerCase()) : undefined;
    const last = k?.versions[k.versions.length - 1];
    if (!last || !isHsmType(last.kty)) return 'software';
    if (last.kty === 'RSA-HSM' && last.keySize === 3072) return 'hsmRsa3072';
    if (last.kty === 'RSA-HSM' && last.keySize === 4096) return 'hsmRsa4096';
    return 'hsm';
  }

  // ---------- bundles ----------

  private kid(base: string, k: KeyRec, v?: VersionRec): string {
    return v ? `${base}/keys/${k.name}/${v.version}` : `${base}/keys/${k.name}`;
  }

  private attributes(v: VersionRec) {
    return {
      enabled: v.enabled,
      ...(v.nbf !== undefined ? { nbf: v.nbf } : {}),
      ...(v.exp !== undefined ? { exp: v.exp } : {}),
      created: v.created,
      updated: v.updated,
      recoveryLevel: 'Recoverable+Purgeable',
      recoverableDays: this.opts.softDeleteRetentionDays,
      exportable: false,
    };
  }

  private bundle(base: string, k: KeyRec, v: VersionRec) {
    const key: Record<string, unknown> = { kid: this.kid(base, k, v), kty: v.kty, key_ops: v.keyOps };
    if (v.publicKey) {
      const jwk = v.publicKey.export({ format: 'jwk' });
      if (v.kty.startsWith('RSA')) Object.assign(key, { n: jwk.n, e: jwk.e });
      else Object.assign(key, { crv: v.crv, x: jwk.x, y: jwk.y });
    }
    return { key, attributes: this.attributes(v), tags: v.tags, ...(k.managed ? { managed: true } : {}) };
  }

  private deletedBundle(base: string, k: KeyRec, v: VersionRec) {
    return {
      ...this.bundle(base, k, v),
      recoveryId: `${base}/deletedkeys/${k.name}`,
      deletedDate: k.deleted!.deletedDate,
      scheduledPurgeDate: k.deleted!.scheduledPurgeDate,
    };
  }

  // ---------- key management ----------

  private newVersion(spec: {
    kty: string;
    keySize?: number;
    crv?: string;
    keyOps?: string[];
    enabled?: boolean;
    nbf?: number;
    exp?: number;
    tags?: Record<string, string>;
    created: number;
  }): VersionRec {
    const { kty } = spec;
    const rec: VersionRec = {
      version: randomBytes(16).toString('hex'),
      kty,
      keyOps: spec.keyOps ?? [],
      enabled: spec.enabled ?? true,
      created: spec.created,
      updated: spec.created,
      tags: spec.tags ?? {},
      notified: new Set(),
      ...(spec.nbf !== undefined ? { nbf: spec.nbf } : {}),
      ...(spec.exp !== undefined ? { exp: spec.exp } : {}),
    };
    if (kty === 'RSA' || kty === 'RSA-HSM') {
      const size = spec.keySize ?? 2048;
      if (![2048, 3072, 4096].includes(size))
        throw badParameter(`Invalid key_size ${size} for ${kty}: 2048, 3072 or 4096.`);
      const { privateKey, publicKey } = takeRsaKeyPair(size);
      Object.assign(rec, { keySize: size, privateKey, publicKey });
      if (!spec.keyOps) rec.keyOps = [...RSA_OPS];
    } else if (kty === 'EC' || kty === 'EC-HSM') {
      const crv = spec.crv ?? 'P-256';
      const named: Record<string, string> = {
        'P-256': 'prime256v1',
        'P-384': 'secp384r1',
        'P-521': 'secp521r1',
        'P-256K': 'secp256k1',
      };
      if (!named[crv]) throw badParameter(`Invalid curve ${crv}.`);
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: named[crv]! });
      Object.assign(rec, { crv, privateKey, publicKey });
      if (!spec.keyOps) rec.keyOps = [...EC_OPS];
    } else if (kty === 'oct-HSM' || kty === 'oct') {
      const size = spec.keySize ?? 256;
      if (![128, 192, 256].includes(size))
        throw badParameter(`Invalid key_size ${size} for ${kty}: 128, 192 or 256.`);
      Object.assign(rec, { keySize: size, secret: randomBytes(size / 8) });
      if (!spec.keyOps) rec.keyOps = [...OCT_OPS];
    } else {
      throw badParameter(`Invalid kty '${kty}'.`);
    }
    for (const op of rec.keyOps)
      if (!ALL_OPS.includes(op) && op !== 'import') throw badParameter(`Invalid key_ops value '${op}'.`);
    return rec;
  }

  private allowedKty(kty: unknown): string {
    if (typeof kty !== 'string') throw badParameter("Property 'kty' is required.");
    const vaultTypes = ['RSA', 'RSA-HSM', 'EC', 'EC-HSM'];
    const hsmTypes = ['RSA-HSM', 'EC-HSM', 'oct-HSM'];
    const allowed = this.kind === 'managedhsm' ? hsmTypes : vaultTypes;
    if (!allowed.includes(kty)) {
      throw badParameter(
        `Key type '${kty}' is not supported by ${this.kind === 'managedhsm' ? 'Managed HSM' : 'Key Vault'} (supported: ${allowed.join(', ')}).`,
      );
    }
    return kty;
  }

  private addVersion(k: KeyRec, v: VersionRec, cause: 'create' | 'rotate'): void {
    if (this.kind === 'managedhsm' && k.versions.length >= MANAGED_HSM_MAX_VERSIONS) {
      throw badParameter(
        `Key ${k.name} has reached the maximum of ${MANAGED_HSM_MAX_VERSIONS} versions per key in a Managed HSM.`,
      );
    }
    k.versions.push(v);
    void cause;
    this.emit('Microsoft.KeyVault.KeyNewVersionCreated', k, v);
  }

  private applyPolicyExpiry(k: KeyRec, created: number): number | undefined {
    if (!k.policy?.expiryTime) return undefined;
    return secs(addDuration(new Date(created * 1000), parseDuration(k.policy.expiryTime)));
  }

  createKey(base: string, name: string, body: Record<string, unknown>) {
    if (!KEY_NAME.test(name))
      throw badParameter(`Key name '${name}' is invalid: 1-127 letters, digits and dashes.`);
    const kty = this.allowedKty(body.kty);
    const attrs = (body.attributes ?? {}) as Record<string, unknown>;
    const tags = validateTags(body.tags);
    const keyOps = body.key_ops === undefined ? undefined : validateOps(body.key_ops);
    if (keyOps?.includes('import')) {
      // A key exchange key for BYOK: an RSA-HSM key whose only operation is import.
      if (kty !== 'RSA-HSM' || keyOps.length !== 1)
        throw badParameter(
          "A key with key_ops 'import' is a key exchange key: kty must be RSA-HSM and 'import' its only operation.",
        );
    }
    const existing = this.keys.get(name.toLowerCase());
    if (existing?.deleted) {
      throw new KvError(
        409,
        'Conflict',
        `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`,
      );
    }
    if (!existing && this.kind === 'managedhsm' && this.keys.size >= MANAGED_HSM_MAX_KEYS) {
      throw badParameter(`The Managed HSM holds the maximum of ${MANAGED_HSM_MAX_KEYS} keys.`);
    }
    const k: KeyRec = existing ?? { name, versions: [] };
    const created = secs(this.clock.now());
    const v = this.newVersion({
      kty,
      ...(typeof body.key_size === 'number' ? { keySize: body.key_size } : {}),
      ...(typeof body.crv === 'string' ? { crv: body.crv } : {}),
      ...(keyOps ? { keyOps } : {}),
      ...(typeof attrs.enabled === 'boolean' ? { enabled: attrs.enabled } : {}),
      ...(typeof attrs.nbf === 'number' ? { nbf: attrs.nbf } : {}),
      ...(typeof attrs.exp === 'number' ? { exp: attrs.exp } : {}),
      tags,
      created,
    });
    if (v.exp === undefined) {
      const exp = this.applyPolicyExpiry(k, created);
      if (exp !== undefined) v.exp = exp;
    }
    this.addVersion(k, v, 'create');
    if (!existing) this.keys.set(name.toLowerCase(), k);
    return this.bundle(base, k, v);
  }

  /**
   * Import (PUT /keys/{name}) of a BYOK key transfer blob in key.key_hsm: the blob names a key
   * exchange key of this vault (RSA-HSM, key_ops ['import'], enabled, not expired) and carries
   * the target wrapped with CKM_RSA_AES_KEY_WRAP. An existing name gets a new version. Every
   * problem with the blob answers 400 BadParameter and creates nothing.
   */
  importKey(base: string, name: string, body: Record<string, unknown>) {
    if (!KEY_NAME.test(name))
      throw badParameter(`Key name '${name}' is invalid: 1-127 letters, digits and dashes.`);
    const jwk = body.key as Record<string, unknown> | undefined;
    if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk))
      throw badParameter("Property 'key' is required.");
    const kty = this.allowedKty(jwk.kty);
    if (jwk.key_hsm === undefined || jwk.key_hsm === null) {
      throw badParameter(
        'Imports of plain JSON web keys are not supported by the emulator; it imports BYOK transfer blobs (key.key_hsm).',
      );
    }
    if (!isHsmType(kty))
      throw badParameter(`A key transfer blob imports as RSA-HSM, EC-HSM or oct-HSM, not '${kty}'.`);
    const attrs = (body.attributes ?? {}) as Record<string, unknown>;
    for (const f of ['nbf', 'exp'] as const) {
      if (attrs[f] !== undefined && attrs[f] !== null && typeof attrs[f] !== 'number')
        throw badParameter(`Property 'attributes.${f}' must be a number.`);
    }
    const tags = validateTags(body.tags);
    const keyOps = jwk.key_ops === undefined || jwk.key_ops === null ? undefined : validateOps(jwk.key_ops);
    for (const op of keyOps ?? []) {
      if (!ALL_OPS.includes(op)) throw badParameter(`Invalid key_ops value '${op}' for an imported key.`);
    }
    const existing = this.keys.get(name.toLowerCase());
    if (existing?.deleted) {
      throw new KvError(
        409,
        'Conflict',
        `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`,
      );
    }
    if (!existing && this.kind === 'managedhsm' && this.keys.size >= MANAGED_HSM_MAX_KEYS) {
      throw badParameter(`The Managed HSM holds the maximum of ${MANAGED_HSM_MAX_KEYS} keys.`);
    }
    const blob = parseTransferBlob(fromB64u('key.key_hsm', jwk.key_hsm));
    const kek = this.keyExchangeKey(base, blob.kid);
    const plain = unwrapTransferCiphertext(kek.privateKey!, kek.keySize! / 8, blob.ciphertext, blob.kid);
    const target = targetKey(kty, plain);
    const created = secs(this.clock.now());
    const v: VersionRec = {
      version: randomBytes(16).toString('hex'),
      kty,
      keyOps: keyOps ?? [...(kty === 'oct-HSM' ? OCT_OPS : kty === 'EC-HSM' ? EC_OPS : RSA_OPS)],
      enabled: typeof attrs.enabled === 'boolean' ? attrs.enabled : true,
      created,
      updated: created,
      tags,
      notified: new Set(),
      ...(typeof attrs.nbf === 'number' ? { nbf: attrs.nbf } : {}),
      ...(typeof attrs.exp === 'number' ? { exp: attrs.exp } : {}),
    };
    if (target.kty === 'oct-HSM') Object.assign(v, { keySize: target.keySize, secret: target.secret });
    else if (target.kty === 'RSA-HSM')
      Object.assign(v, {
        keySize: target.keySize,
        privateKey: target.privateKey,
        publicKey: target.publicKey,
      });
    else Object.assign(v, { crv: target.crv, privateKey: target.privateKey, publicKey: target.publicKey });
    const k: KeyRec = existing ?? { name, versions: [] };
    if (v.exp === undefined) {
      const exp = this.applyPolicyExpiry(k, created);
      if (exp !== undefined) v.exp = exp;
    }
    try {
      this.addVersion(k, v, 'create');
    } catch (e) {
      v.secret?.fill(0);
      throw e;
    }
    if (!existing) this.keys.set(name.toLowerCase(), k);
    return this.bundle(base, k, v);
  }

  /** The key exchange key a transfer blob names, checked to be usable for an import now. */
  private keyExchangeKey(base: string, kid: string): VersionRec {
    let url: URL;
    try {
      url = new URL(kid);
    } catch {
      throw badParameter(`The key transfer blob kid '${kid}' is not a key identifier.`);
    }
    const here = [this.host, new URL(base).host.toLowerCase()];
    const m = /^\/keys\/([^/]+)(?:\/([^/]*))?\/?$/.exec(url.pathname);
    if (url.protocol !== 'https:' || !here.includes(url.host.toLowerCase()) || !m) {
      throw badParameter(
        `The key transfer blob kid '${kid}' does not name a key of this ${this.kind === 'managedhsm' ? 'Managed HSM' : 'vault'}; the key exchange key must be in the same place as the imported key.`,
      );
    }
    const k = this.keys.get(m[1]!.toLowerCase());
    const latest =
      !k || k.deleted
        ? undefined
        : m[2]
          ? k.versions.find((x) => x.version === m[2]!.toLowerCase())
          : k.versions[k.versions.length - 1];
    if (!latest) throw badParameter(`The key exchange key '${kid}' was not found in this key vault.`);
    if (latest.kty !== 'RSA-HSM' || !latest.keyOps.includes('import')) {
      throw badParameter(
        `Key '${kid}' is not a key exchange key: it must be RSA-HSM with key_ops ['import'].`,
      );
    }
    if (!latest.enabled) throw badParameter(`The key exchange key '${kid}' is disabled.`);
    const nowS = secs(this.clock.now());
    if (latest.exp !== undefined && nowS > latest.exp) {
      throw badParameter(
        `The key exchange key '${kid}' expired at ${new Date(latest.exp * 1000).toISOString()}; create a new one and wrap the key again.`,
      );
    }
    if (latest.nbf !== undefined && nowS < latest.nbf)
      throw badParameter(`The key exchange key '${kid}' is not valid yet.`);
    return latest;
  }

  getKey(base: string, name: string, version: string) {
    const k = this.live(name);
    return this.bundle(base, k, this.versionOf(k, version));
  }

  updateKey(base: string, name: string, version: string, body: Record<string, unknown>) {
    const k = this.live(name);
    const v = this.versionOf(k, version);
    const attrs = (body.attributes ?? {}) as Record<string, unknown>;
    if (attrs.enabled !== undefined && typeof attrs.enabled !== 'boolean')
      throw badParameter("Property 'attributes.enabled' must be a boolean.");
    for (const f of ['nbf', 'exp'] as const) {
      if (attrs[f] !== undefined && attrs[f] !== null && typeof attrs[f] !== 'number')
        throw badParameter(`Property 'attributes.${f}' must be a number.`);
    }
    const tags = body.tags === undefined ? undefined : validateTags(body.tags);
    const keyOps = body.key_ops === undefined ? undefined : validateOps(body.key_ops);
    if (typeof attrs.enabled === 'boolean') v.enabled = attrs.enabled;
    if (typeof attrs.nbf === 'number') v.nbf = attrs.nbf;
    if (typeof attrs.exp === 'number') {
      v.exp = attrs.exp;
      v.notified.clear();
    }
    if (tags) v.tags = tags;
    if (keyOps) v.keyOps = keyOps;
    v.updated = secs(this.clock.now());
    return this.bundle(base, k, v);
  }

  rotateKey(base: string, name: string) {
    const k = this.live(name);
    return this.bundle(base, k, this.rotateNow(k, secs(this.clock.now())));
  }

  private rotateNow(k: KeyRec, created: number): VersionRec {
    const last = k.versions[k.versions.length - 1]!;
    const v = this.newVersion({
      kty: last.kty,
      ...(last.keySize !== undefined ? { keySize: last.keySize } : {}),
      ...(last.crv !== undefined ? { crv: last.crv } : {}),
      keyOps: [...last.keyOps],
      tags: { ...last.tags },
      created,
    });
    const exp = this.applyPolicyExpiry(k, created);
    if (exp !== undefined) v.exp = exp;
    this.addVersion(k, v, 'rotate');
    return v;
  }

  private list<T>(
    items: T[],
    base: string,
    path: string,
    query: URLSearchParams,
    apiVersion: string,
    keyOf: (t: T) => string,
  ) {
    const max = query.get('maxresults');
    let size = 25;
    if (max !== null) {
      size = Number(max);
      if (!Number.isInteger(size) || size < 1 || size > 25)
        throw badParameter('maxresults must be an integer between 1 and 25.');
    }
    const token = query.get('$skiptoken');
    let start = 0;
    if (token !== null) {
      let after: string;
      try {
        after = Buffer.from(token, 'base64url').toString('utf8');
      } catch {
        throw badParameter('Invalid $skiptoken.');
      }
      start = items.findIndex((t) => keyOf(t) > after);
      if (start === -1) start = items.length;
    }
    const page = items.slice(start, start + size);
    const more = start + size < items.length;
    const next = more
      ? `${base}${path}?api-version=${apiVersion}&$skiptoken=${b64u(Buffer.from(keyOf(page[page.length - 1]!)))}&maxresults=${size}`
      : null;
    return { page, nextLink: next };
  }

  listKeys(base: string, query: URLSearchParams, apiVersion: string) {
    const keys = [...this.keys.values()]
      .filter((k) => !k.deleted)
      .sort((a, b) => cmp(a.name.toLowerCase(), b.name.toLowerCase()));
    const { page, nextLink } = this.list(keys, base, '/keys', query, apiVersion, (k) => k.name.toLowerCase());
    return {
      value: page.map((k) => {
        const v = k.versions[k.versions.length - 1]!;
        return {
          kid: this.kid(base, k),
          attributes: this.attributes(v),
          tags: v.tags,
          ...(k.managed ? { managed: true } : {}),
        };
      }),
      nextLink,
    };
  }

  listVersions(base: string, name: string, query: URLSearchParams, apiVersion: string) {
    const k = this.live(name);
    // Creation order; the token names the position so equal timestamps page stably.
    const indexed = k.versions.map((v, i) => ({ v, pos: String(i).padStart(6, '0') }));
    const { page, nextLink } = this.list(
      indexed,
      base,
      `/keys/${k.name}/versions`,
      query,
      apiVersion,
      (x) => x.pos,
    );
    return {
      value: page.map(({ v }) => ({
        kid: this.kid(base, k, v),
        attributes: this.attributes(v),
        tags: v.tags,
      })),
      nextLink,
    };
  }

  // ---------- rotation policy ----------

  private policyBody(base: string, k: KeyRec) {
    const id = `${base}/keys/${k.name}/rotationpolicy`;
    if (!k.policy) {
      // Without a policy, Key Vault answers with its default: notify 30 days before expiry.
      return {
        id,
        lifetimeActions: [{ trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } }],
        attributes: {},
      };
    }
    return {
      id,
      lifetimeActions: k.policy.lifetimeActions,
      attributes: {
        ...(k.policy.expiryTime ? { expiryTime: k.policy.expiryTime } : {}),
        created: k.policy.created,
        updated: k.policy.updated,
      },
    };
  }

  getRotationPolicy(base: string, name: string) {
    return this.policyBody(base, this.live(name));
  }

  updateRotationPolicy(base: string, name: string, body: Record<string, unknown>) {
    const k = this.live(name);
    const attrs = (body.attributes ?? {}) as Record<string, unknown>;
    let expiryDays: number | undefined;
    let expiryTime: string | undefined;
    if (attrs.expiryTime !== undefined && attrs.expiryTime !== null) {
      expiryTime = String(attrs.expiryTime);
      expiryDays = days('attributes.expiryTime', expiryTime);
      if (expiryDays < 28)
        throw badParameter(`attributes.expiryTime '${expiryTime}' must be at least 28 days (P28D).`);
    }
    const raw = body.lifetimeActions ?? [];
    if (!Array.isArray(raw)) throw badParameter("Property 'lifetimeActions' must be an array.");
    const actions: LifetimeAction[] = raw.map((a: unknown, i: number) => {
      const where = `lifetimeActions[${i}]`;
      const o = (a ?? {}) as { trigger?: Record<string, unknown>; action?: Record<string, unknown> };
      const rawType = String(o.action?.type ?? '');
      const type =
        rawType.toLowerCase() === 'rotate' ? 'Rotate' : rawType.toLowerCase() === 'notify' ? 'Notify' : null;
      if (!type) throw badParameter(`${where}.action.type '${rawType}' must be Rotate or Notify.`);
      const tac = o.trigger?.timeAfterCreate;
      const tbe = o.trigger?.timeBeforeExpiry;
      if ((tac === undefined || tac === null) === (tbe === undefined || tbe === null)) {
        throw badParameter(`${where}.trigger needs exactly one of timeAfterCreate and timeBeforeExpiry.`);
      }
      if (type === 'Notify' && tac != null)
        throw badParameter(`${where}: a Notify action takes timeBeforeExpiry only.`);
      const trigger: LifetimeAction['trigger'] = {};
      if (tac != null) {
        const d = days(`${where}.trigger.timeAfterCreate`, String(tac));
        if (d < 7)
          throw badParameter(`${where}.trigger.timeAfterCreate '${tac}' must be at least 7 days (P7D).`);
        if (expiryDays !== undefined && d > expiryDays - 7) {
          throw badParameter(
            `${where}.trigger.timeAfterCreate '${tac}' must be at least 7 days before expiryTime '${expiryTime}'.`,
          );
        }
        trigger.timeAfterCreate = String(tac);
      }
      if (tbe != null) {
        const d = days(`${where}.trigger.timeBeforeExpiry`, String(tbe));
        if (d < 7)
          throw badParameter(`${where}.trigger.timeBeforeExpiry '${tbe}' must be at least 7 days (P7D).`);
        if (expiryDays !== undefined && d > expiryDays - 7) {
          throw badParameter(
            `${where}.trigger.timeBeforeExpiry '${tbe}' must leave at least 7 days after creation within expiryTime '${expiryTime}'.`,
          );
        }
        trigger.timeBeforeExpiry = String(tbe);
      }
      return { trigger, action: { type } };
    });
    if (actions.filter((a) => a.action.type === 'Rotate').length > 1)
      throw badParameter('At most one Rotate lifetime action is allowed.');
    const rotateBeforeExpiry = actions.some((a) => a.action.type === 'Rotate' && a.trigger.timeBeforeExpiry);
    if (rotateBeforeExpiry && expiryDays === undefined) {
      throw badParameter('A Rotate action with timeBeforeExpiry needs attributes.expiryTime.');
    }
    const now = secs(this.clock.now());
    k.policy = {
      // An empty list restores the default policy (notify 30 days before expiry).
      lifetimeActions:
        actions.length > 0
          ? actions
          : [{ trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } }],
      ...(expiryTime ? { expiryTime } : {}),
      created: k.policy?.created ?? now,
      updated: now,
    };
    return this.policyBody(base, k);
  }

  // ---------- crypto ----------

  crypto(
    base: string,
    name: string,
    version: string,
    op: 'wrapKey' | 'unwrapKey' | 'encrypt' | 'decrypt',
    body: Record<string, unknown>,
  ) {
    const k = this.live(name);
    const v = this.versionOf(k, version);
    if (!v.enabled) throw forbidden(`Operation ${op} is not allowed on a disabled key.`);
    const nowS = secs(this.clock.now());
    if (op === 'wrapKey' || op === 'encrypt') {
      if (v.exp !== undefined && nowS > v.exp)
        throw forbidden(`Operation ${op} is not allowed on an expired key.`);
      if (v.nbf !== undefined && nowS < v.nbf)
        throw forbidden(`Operation ${op} is not allowed on a key that is not yet valid.`);
    }
    if (!v.keyOps.includes(op)) throw forbidden(`Operation ${op} is not permitted on this key.`);
    const alg = body.alg;
    if (typeof alg !== 'string') throw badParameter("Property 'alg' is required.");
    const value = fromB64u('value', body.value);
    const kid = this.kid(base, k, v);
    const forward = op === 'wrapKey' || op === 'encrypt';
    if (v.kty.startsWith('RSA')) {
      const hash = alg === 'RSA-OAEP' ? 'sha1' : alg === 'RSA-OAEP-256' ? 'sha256' : null;
      if (!hash)
        throw badParameter(
          `Algorithm '${alg}' is not supported for ${v.kty} keys by this emulator (RSA-OAEP, RSA-OAEP-256).`,
        );
      const params = { oaepHash: hash, padding: constants.RSA_PKCS1_OAEP_PADDING };
      try {
        const out = forward
          ? publicEncrypt({ key: v.publicKey!, ...params }, value)
          : privateDecrypt({ key: v.privateKey!, ...params }, value);
        return { kid, value: b64u(out) };
      } catch {
        throw badParameter(
          forward
            ? 'The value is too long for the key.'
            : 'Decryption failed: the ciphertext is not valid for this key.',
        );
      } finally {
        value.fill(0);
      }
    }
    if (v.kty.startsWith('oct')) {
      const bits = v.keySize!;
      if (op === 'wrapKey' || op === 'unwrapKey') {
        if (alg !== `A${bits}KW`)
          throw badParameter(
            `Algorithm '${alg}' is not valid for a ${bits}-bit oct-HSM key (use A${bits}KW).`,
          );
        if (value.length < 16 || value.length % 8 !== 0)
          throw badParameter('The value must be a multiple of 8 bytes, at least 16.');
        const iv = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');
        try {
          const c = forward
            ? createCipheriv(`id-aes${bits}-wrap`, v.secret!, iv)
            : createDecipheriv(`id-aes${bits}-wrap`, v.secret!, iv);
          const out = Buffer.concat([c.update(value), c.final()]);
          return { kid, value: b64u(out) };
        } catch {
          throw badParameter('Unwrap failed: the wrapped key is not valid for this key.');
        } finally {
          value.fill(0);
        }
      }
      if (alg !== `A${bits}GCM`)
        throw badParameter(
          `Algorithm '${alg}' is not supported for ${bits}-bit oct-HSM encrypt/decrypt by this emulator (A${bits}GCM).`,
        );
      const aad = body.aad === undefined ? undefined : fromB64u('aad', body.aad);
      try {
        if (forward) {
          const iv = randomBytes(12);
          const c = createCipheriv(`aes-${bits}-gcm` as 'aes-256-gcm', v.secret!, iv);
          if (aad) c.setAAD(aad);
          const out = Buffer.concat([c.update(value), c.final()]);
          return {
            kid,
            value: b64u(out),
            iv: b64u(iv),
            tag: b64u(c.getAuthTag()),
            ...(aad ? { aad: b64u(aad) } : {}),
          };
        }
        const iv = fromB64u('iv', body.iv);
        const tag = fromB64u('tag', body.tag);
        const d = createDecipheriv(`aes-${bits}-gcm` as 'aes-256-gcm', v.secret!, iv);
        if (aad) d.setAAD(aad);
        d.setAuthTag(tag);
        const out = Buffer.concat([d.update(value), d.final()]);
        return { kid, value: b64u(out) };
      } catch (e) {
        if (e instanceof KvError) throw e;
        throw badParameter('Decryption failed: the ciphertext does not authenticate.');
      } finally {
        value.fill(0);
      }
    }
    throw badParameter(`Operation ${op} is not supported for ${v.kty} keys.`);
  }

  // ---------- soft delete ----------

  deleteKey(base: string, name: string) {
    const k = this.live(name);
    const now = this.clock.now();
    k.deleted = {
      deletedDate: secs(now),
      scheduledPurgeDate: secs(new Date(now.getTime() + this.opts.softDeleteRetentionDays * 86_400_000)),
    };
    return this.deletedBundle(base, k, k.versions[k.versions.length - 1]!);
  }

  private deleted(name: string): KeyRec {
    const k = this.keys.get(name.toLowerCase());
    if (!k?.deleted) throw new KvError(404, 'KeyNotFound', `Deleted Key not found: ${name}`);
    return k;
  }

  getDeletedKey(base: string, name: string) {
    const k = this.deleted(name);
    return this.deletedBundle(base, k, k.versions[k.versions.length - 1]!);
  }

  listDeletedKeys(base: string, query: URLSearchParams, apiVersion: string) {
    const keys = [...this.keys.values()]
      .filter((k) => k.deleted)
      .sort((a, b) => cmp(a.name.toLowerCase(), b.name.toLowerCase()));
    const { page, nextLink } = this.list(keys, base, '/deletedkeys', query, apiVersion, (k) =>
      k.name.toLowerCase(),
    );
    return {
      value: page.map((k) => {
        const v = k.versions[k.versions.length - 1]!;
        return {
          kid: this.kid(base, k),
          attributes: this.attributes(v),
          tags: v.tags,
          recoveryId: `${base}/deletedkeys/${k.name}`,
          deletedDate: k.deleted!.deletedDate,
          scheduledPurgeDate: k.deleted!.scheduledPurgeDate,
        };
      }),
      nextLink,
    };
  }

  recoverKey(base: string, name: string) {
    const k = this.deleted(name);
    delete k.deleted;
    return this.bundle(base, k, k.versions[k.versions.length - 1]!);
  }

  purgeKey(name: string): void {
    const k = this.deleted(name);
    for (const v of k.versions) v.secret?.fill(0);
    this.keys.delete(k.name.toLowerCase());
  }

  // ---------- the clock ----------

  /** Runs what fell due: automatic rotations, expiry notifications, purges of soft-deleted keys. */
  tick(): void {
    const nowMs = this.clock.nowMs();
    const nowS = Math.floor(nowMs / 1000);
    for (const k of [...this.keys.values()]) {
      if (k.deleted) {
        if (k.deleted.scheduledPurgeDate <= nowS) this.keys.delete(k.name.toLowerCase());
        continue;
      }
      this.autoRotate(k, nowMs);
      for (const v of k.versions) {
        if (v.exp === undefined || !v.enabled) continue;
        const notifyBefore =
          k.policy?.lifetimeActions.find((a) => a.action.type === 'Notify')?.trigger.timeBeforeExpiry ??
          'P30D';
        const nearAt = v.exp * 1000 - durationDays(parseDuration(notifyBefore)) * 86_400_000;
        if (nowMs >= nearAt && !v.notified.has('near')) {
          v.notified.add('near');
          this.emit('Microsoft.KeyVault.KeyNearExpiry', k, v);
        }
        if (nowS >= v.exp && !v.notified.has('expired')) {
          v.notified.add('expired');
          this.emit('Microsoft.KeyVault.KeyExpired', k, v);
        }
      }
    }
  }

  private autoRotate(k: KeyRec, nowMs: number): void {
    const rotate = k.policy?.lifetimeActions.find((a) => a.action.type === 'Rotate');
    if (!rotate) return;
    // Catch up one rotation at a time, each dated when it fell due, as the service would have.
    for (let guard = 0; guard < 10_000; guard++) {
      const last = k.versions[k.versions.length - 1]!;
      let dueMs: number;
      if (rotate.trigger.timeAfterCreate) {
        dueMs = addDuration(
          new Date(last.created * 1000),
          parseDuration(rotate.trigger.timeAfterCreate),
        ).getTime();
      } else {
        if (last.exp === undefined) return;
        dueMs = last.exp * 1000 - durationDays(parseDuration(rotate.trigger.timeBeforeExpiry!)) * 86_400_000;
      }
      if (dueMs > nowMs) return;
      try {
        this.rotateNow(k, Math.floor(dueMs / 1000));
      } catch {
        return; // e.g. the Managed HSM version limit: the service stops rotating
      }
    }
  }

  private emit(type: KeyVaultEventType, k: KeyRec, v: VersionRec): void {
    // Managed HSM publishes no Event Grid events (FACTS.md).
    if (this.kind === 'managedhsm') return;
    this.sink.publish(
      keyEvent({
        type,
        subscriptionId: this.opts.subscriptionId,
        resourceGroup: this.opts.resourceGroup,
        vaultName: this.name,
        vaultHost: this.host,
        keyName: k.name,
        version: v.version,
        ...(v.nbf !== undefined ? { nbf: v.nbf } : {}),
        ...(v.exp !== undefined ? { exp: v.exp } : {}),
        at: this.clock.now(),
      }),
    );
  }

  /** Makes a key look like one that backs a certificate (the emulator has no certificates API). */
  markManaged(name: string): void {
    this.live(name).managed = true;
  }

  /**
   * Tests: a copy of an oct key version's secret (the latest without `version`), null if it
   * has none, so a test can prove an import brought exactly the bytes it wrapped.
   */
  materialOf(name: string, version?: string): Buffer | null {
    const k = this.keys.get(name.toLowerCase());
    const v = version ? k?.versions.find((x) => x.version === version.toLowerCase()) : k?.versions.at(-1);
    return v?.secret ? Buffer.from(v.secret) : null;
  }

  /** Versions of a key (tests inspect counts without going through HTTP). */
  versionCount(name: string): number {
    return this.keys.get(name.toLowerCase())?.versions.length ?? 0;
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function days(field: string, text: string): number {
  let d: number;
  try {
    d = durationDays(parseDuration(text));
  } catch {
    throw badParameter(`${field} '${text}' is not an ISO-8601 duration.`);
  }
  return d;
}

function validateTags(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw badParameter("Property 'tags' must be an object.");
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length > 15) throw badParameter('At most 15 tags are allowed.');
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw badParameter(`Tag '${k}' must have a string value.`);
    if (k.length > 512 || v.length > 256) throw badParameter(`Tag '${k}' is too long.`);
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

function validateOps(raw: unknown): string[] {
  if (!Array.isArray(raw) || raw.some((x) => typeof x !== 'string'))
    throw badParameter("Property 'key_ops' must be an array of strings.");
  return raw as string[];
}
