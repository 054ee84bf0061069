import type { AuditLog } from '../audit/auditLog.js';
import { addDuration, isDuration, parseDuration } from '../domain/duration.js';
import type { KeyVersion, ManagedKey } from '../domain/key.js';
import { type KeyRef, parseKeyRef } from '../domain/keyRef.js';
import {
  ConfigError,
  ConflictError,
  errorMessage,
  IntegrityError,
  NotFoundError,
  ValidationError,
} from '../errors.js';
import { policyFor } from '../policy/match.js';
import type { Clock } from '../ports/Clock.js';
import type {
  ImportWrapAlgorithm,
  KeyMaterialSource,
  KeyProvider,
  ProviderCapabilities,
} from '../ports/KeyProvider.js';
import { ApprovalRequired, consumeApproval, gateAction } from './approvals.js';
import { acquireLease, providerForRef, type RekeyContext } from './context.js';

/**
 * BYOK: key material made in a customer HSM goes into a cloud KMS without ever being in clear
 * outside either. The target hands out an RSA wrapping key and an import token
 * (prepareImport), the source wraps its material under that key inside the HSM
 * (exportWrapped), the target imports the result (importMaterial). The same steps bring a
 * key its first material, a new version (rotation of an imported key), or material it had
 * before (a re-import after expiry or deletion). Every import is audited; key material never
 * appears in the audit log, only refs, the scheme, the version and the expiry.
 */
export interface ImportKeyRequest {
  source: KeyMaterialSource;
  sourceRef: KeyRef;
  target: KeyProvider;
  targetRef: KeyRef;
  /** Wrapping scheme; default: the first one the target accepts. */
  algorithm?: ImportWrapAlgorithm;
  /** When the imported material expires (ISO-8601), where the target supports it. */
  expiresAt?: string;
  /** The material is one the key already has (restore it, or change its expiry). */
  reimport?: boolean;
}

export interface ImportKeyResult {
  targetRef: string;
  sourceRef: string;
  algorithm: ImportWrapAlgorithm;
  version: KeyVersion;
  expiresAt: string | null;
}

/** What importKey needs from the context: the audit log, who acts, and the time. */
export type ByokContext = Pick<RekeyContext, 'actor'> & { audit: AuditLog; clock: Clock };

const STEPS = ['prepareImport', 'exportWrapped', 'importMaterial'] as const;

export async function importKey(ctx: ByokContext, req: ImportKeyRequest): Promise<ImportKeyResult> {
  const { target, targetRef, source, sourceRef } = req;
  const caps = target.capabilities();
  const algorithm = chooseAlgorithm(target, caps, req.algorithm);
  const expiresAt = req.expiresAt === undefined ? undefined : checkExpiry(ctx.clock, req.expiresAt);
  let step: (typeof STEPS)[number] = 'prepareImport';
  let wrapped: Uint8Array | undefined;
  try {
    const params = await target.prepareImport!(targetRef, algorithm);
    if (params.algorithm !== algorithm) {
      throw new IntegrityError(
        `${target.id}: asked for ${algorithm} import parameters for ${targetRef.uri}, got ${params.algorithm}`,
      );
    }
    step = 'exportWrapped';
    wrapped = await source.exportWrapped(sourceRef, params.wrappingPublicKey, algorithm);
    step = 'importMaterial';
    const version = await target.importMaterial!(targetRef, params, wrapped, {
      ...(expiresAt !== undefined ? { expiresAt } : {}),
      ...(req.reimport ? { reimport: true } : {}),
    });
    const result: ImportKeyResult = {
      targetRef: targetRef.uri,
      sourceRef: sourceRef.uri,
      algorithm,
      version,
      expiresAt: version.expiresAt ?? expiresAt ?? null,
    };
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'key.imported',
      target: targetRef.uri,
      details: {
        provider: target.id,
        source: sourceRef.uri,
        algorithm,
        version: version.id,
        expiresAt: result.expiresAt,
        reimport: Boolean(req.reimport),
      },
    });
    return result;
  } catch (e) {
    await ctx.audit.append({
      actor: ctx.actor,
      action: 'key.import_failed',
      target: targetRef.uri,
      details: { provider: target.id, source: sourceRef.uri, algorithm, step, error: errorMessage(e) },
    });
    throw e;
  } finally {
    // Not plaintext (it is wrapped for the KMS), but nothing keeps it longer than needed.
    wrapped?.fill(0);
  }
}

function chooseAlgorithm(
  target: KeyProvider,
  caps: ProviderCapabilities,
  asked: ImportWrapAlgorithm | undefined,
): ImportWrapAlgorithm {
  const offered = caps.import?.algorithms ?? [];
  if (offered.length === 0 || !target.prepareImport || !target.importMaterial) {
    throw new ValidationError(`provider ${target.id} (${target.type}) cannot import key material`);
  }
  if (asked === undefined) return offered[0]!;
  if (!offered.includes(asked)) {
    throw new ValidationError(
      `provider ${target.id} does not accept the ${asked} wrapping scheme (it accepts ${offered.join(', ')})`,
    );
  }
  return asked;
}

function checkExpiry(clock: Clock, text: string): string {
  const at = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2}))?$/.test(text) || Number.isNaN(at.getTime())) {
    throw new ValidationError(`expiry "${text}" is not an ISO-8601 date or date-time`);
  }
  if (at.getTime() <= clock.now().getTime()) {
    throw new ValidationError(`expiry ${at.toISOString()} is not in the future`);
  }
  return at.toISOString();
}

/** `--expires`: an ISO date-time, or a duration from now (P90D). */
export function expiryFrom(clock: Clock, text: string): string {
  if (isDuration(text)) return addDuration(clock.now(), parseDuration(text)).toISOString();
  return checkExpiry(clock, text);
}

/** The material source of a configured provider (pkcs11 providers are sources). */
export function materialSourceOf(ctx: RekeyContext, providerId: string): KeyMaterialSource {
  const source = ctx.materialSources?.get(providerId);
  if (!source) {
    const p = ctx.providers.get(providerId);
    throw new ConfigError(
      p
        ? `provider "${providerId}" (${p.type}) is not a BYOK material source; pkcs11 providers are`
        : `provider "${providerId}" is not configured in ${ctx.config.file}`,
    );
  }
  return source;
}

/**
 * `rekey byok import`: resolves both refs to their configured providers and imports under the
 * target key's lease, so it never races a rotation or re-wrap of that key.
 */
export async function importKeyByRef(
  ctx: RekeyContext,
  req: {
    from: string;
    to: string;
    fromProvider?: string;
    toProvider?: string;
    algorithm?: ImportWrapAlgorithm;
    expiresAt?: string;
    reimport?: boolean;
  },
): Promise<ImportKeyResult> {
  const src = providerForRef(ctx, req.from, req.fromProvider);
  const dst = providerForRef(ctx, req.to, req.toProvider);
  const source = materialSourceOf(ctx, src.provider.id);
  const lease = `key:${dst.ref.uri}`;
  if (!(await acquireLease(ctx, lease))) {
    throw new ConflictError(`another rekey process holds the lease on ${dst.ref.uri}`);
  }
  try {
    // Dual control: an import may need M-of-N approvals (approvals.require or the key's policy).
    const existing = await dst.provider.getKey(dst.ref).catch((e) => {
      if (e instanceof NotFoundError) return null;
      throw e;
    });
    const policy = existing ? policyFor(ctx.config, existing).policy?.name : undefined;
    const gate = await gateAction(ctx, {
      action: 'import',
      target: dst.ref.uri,
      subject: { from: src.ref.uri },
      reason: `import key material from ${src.ref.uri}`,
      ...(policy ? { policy } : {}),
    });
    if (!gate.allowed) throw new ApprovalRequired(gate.message, gate.request?.id);
    const result = await importKey(ctx, {
      source,
      sourceRef: src.ref,
      target: dst.provider,
      targetRef: dst.ref,
      ...(req.algorithm ? { algorithm: req.algorithm } : {}),
      ...(req.expiresAt !== undefined ? { expiresAt: req.expiresAt } : {}),
      ...(req.reimport ? { reimport: true } : {}),
    });
    if (gate.request) await consumeApproval(ctx, gate.request, `import:${result.version.id}`);
    return result;
  } finally {
    await ctx.state.releaseLease(lease, ctx.instanceId);
  }
}

/** What a plan's rotate action carries for a key with imported material. */
export interface ByokRotation {
  /** Provider id of the material source. */
  source: string;
  algorithm?: ImportWrapAlgorithm;
  /** ISO-8601 duration: the new material expires this long after the import. */
  expiresAfter?: string;
}

/**
 * Rotation of a key with imported material: the source makes new material (labelled after
 * the key and the time), which is imported as the key's new primary version. The caller
 * holds the key's lease.
 */
export async function rotateImportedKey(
  ctx: RekeyContext,
  target: KeyProvider,
  key: ManagedKey,
  byok: ByokRotation,
): Promise<ImportKeyResult> {
  const source = materialSourceOf(ctx, byok.source);
  if (!source.generateMaterial) {
    throw new ConfigError(
      `BYOK source "${byok.source}" cannot make new material, so it cannot rotate ${key.ref}`,
    );
  }
  const now = ctx.clock.now();
  const sourceRef = await source.generateMaterial({ label: materialLabel(key.name, now) });
  const expiresAt = byok.expiresAfter
    ? addDuration(now, parseDuration(byok.expiresAfter)).toISOString()
    : undefined;
  return importKey(ctx, {
    source,
    sourceRef,
    target,
    targetRef: parseKeyRef(key.ref),
    ...(byok.algorithm ? { algorithm: byok.algorithm } : {}),
    ...(expiresAt !== undefined ? { expiresAt } : {}),
  });
}

/** `<key name>-<UTC time>`, in the characters every token accepts in a label. */
export function materialLabel(keyName: string, at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const base = keyName.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return `${(base || 'key').slice(0, 100 - stamp.length - 1)}-${stamp}`;
}
