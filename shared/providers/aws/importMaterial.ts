import {
  GetParametersForImportCommand,
  ImportKeyMaterialCommand,
  type ImportType,
  type KeyMetadata,
} from '@aws-sdk/client-kms';
import type { KeyVersion } from '../../core/domain/key.js';
import type { AwsKmsRef } from '../../core/domain/keyRef.js';
import { ProviderError, ValidationError } from '../../core/errors.js';
import type { ImportParameters, ImportWrapAlgorithm } from '../../core/ports/KeyProvider.js';
import type { KmsAccess } from './aliasChain.js';

/**
 * BYOK into AWS KMS: GetParametersForImport hands out an RSA wrapping key and an import token
 * (valid 24 hours), ImportKeyMaterial takes the wrapped material. A key with EXTERNAL origin
 * starts in PendingImport; the first import enables it. Later imports either bring back
 * material the key already had (after it expired or was deleted) or add new material, which
 * RotateKeyOnDemand then makes current: a new version. See docs/byok.md.
 */
export type WrappingKeySpec = 'RSA_2048' | 'RSA_3072' | 'RSA_4096';

const AWS_ALGORITHM: Record<ImportWrapAlgorithm, 'RSAES_OAEP_SHA_1' | 'RSA_AES_KEY_WRAP_SHA_1'> = {
  'rsa-oaep-sha1': 'RSAES_OAEP_SHA_1',
  'rsa-aes-kwp-sha1': 'RSA_AES_KEY_WRAP_SHA_1',
};

/** Refuses keys AWS (or rekey's AES-256 sources) cannot import into, naming the reason. */
export function checkImportTarget(providerId: string, md: KeyMetadata, what: 'prepare' | 'import'): void {
  if (md.Origin !== 'EXTERNAL') {
    throw new ValidationError(
      `${providerId}: key ${md.Arn} has origin ${md.Origin}; AWS KMS imports material only into keys created with Origin EXTERNAL`,
    );
  }
  if (md.KeySpec !== 'SYMMETRIC_DEFAULT') {
    throw new ValidationError(
      `${providerId}: key ${md.Arn} is ${md.KeySpec}; rekey imports AES-256 material into symmetric keys only`,
    );
  }
  if (md.KeyState !== 'Enabled' && md.KeyState !== 'PendingImport') {
    throw new ProviderError(
      providerId,
      'KMSInvalidStateException',
      `${providerId}: key ${md.Arn} is ${md.KeyState}; material can be ${what === 'prepare' ? 'prepared for' : 'imported into'} Enabled or PendingImport keys only`,
    );
  }
}

export async function prepareImport(
  access: KmsAccess,
  r: AwsKmsRef,
  md: KeyMetadata,
  algorithm: ImportWrapAlgorithm,
  wrappingKeySpec: WrappingKeySpec,
): Promise<ImportParameters> {
  const awsAlgorithm = AWS_ALGORITHM[algorithm];
  if (!awsAlgorithm) {
    throw new ValidationError(
      `${access.providerId}: unknown wrapping algorithm "${algorithm}" (expected ${Object.keys(AWS_ALGORITHM).join(' or ')})`,
    );
  }
  checkImportTarget(access.providerId, md, 'prepare');
  const out = await access.call(`GetParametersForImport ${md.Arn}`, () =>
    access.client(r.region).send(
      new GetParametersForImportCommand({
        KeyId: md.Arn!,
        WrappingAlgorithm: awsAlgorithm,
        WrappingKeySpec: wrappingKeySpec,
      }),
    ),
  );
  if (!out.ImportToken || !out.PublicKey) {
    throw new ProviderError(
      access.providerId,
      'MalformedResponse',
      `GetParametersForImport ${md.Arn}: no import token or public key`,
    );
  }
  return {
    importToken: Buffer.from(out.ImportToken).toString('base64'),
    wrappingPublicKey: Uint8Array.from(out.PublicKey),
    algorithm,
    expiresAt: out.ParametersValidTo ? out.ParametersValidTo.toISOString() : null,
  };
}

export interface ImportPlan {
  /** Omitted for the first material (AWS then defaults to NEW_KEY_MATERIAL). */
  importType?: ImportType;
  /** NEW_KEY_MATERIAL on a key with material: RotateKeyOnDemand makes it current afterwards. */
  rotate: boolean;
}

/**
 * What an import into this key means: its first material; the material it already had (a key
 * left PendingImport by expiry or deletion, or `reimport` to change the expiry); or, for an
 * enabled key, new material that becomes a new version.
 */
export function importPlanFor(md: KeyMetadata, reimport: boolean): ImportPlan {
  if (!md.CurrentKeyMaterialId) return { rotate: false };
  if (reimport || md.KeyState === 'PendingImport')
    return { importType: 'EXISTING_KEY_MATERIAL', rotate: false };
  return { importType: 'NEW_KEY_MATERIAL', rotate: true };
}

export async function importMaterial(
  access: KmsAccess,
  r: AwsKmsRef,
  md: KeyMetadata,
  params: ImportParameters,
  wrapped: Uint8Array,
  opts: { expiresAt?: string; reimport?: boolean },
): Promise<{ materialId: string; plan: ImportPlan; validTo?: Date }> {
  checkImportTarget(access.providerId, md, 'import');
  let validTo: Date | undefined;
  if (opts.expiresAt !== undefined) {
    validTo = new Date(opts.expiresAt);
    if (Number.isNaN(validTo.getTime())) {
      throw new ValidationError(`${access.providerId}: expiresAt "${opts.expiresAt}" is not a date`);
    }
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(params.importToken)) {
    throw new ValidationError(
      `${access.providerId}: the import token is not base64 (it comes from prepareImport)`,
    );
  }
  const plan = importPlanFor(md, Boolean(opts.reimport));
  const out = await access.call(`ImportKeyMaterial ${md.Arn}`, () =>
    access.client(r.region).send(
      new ImportKeyMaterialCommand({
        KeyId: md.Arn!,
        ImportToken: Buffer.from(params.importToken, 'base64'),
        EncryptedKeyMaterial: wrapped,
        ...(validTo
          ? { ExpirationModel: 'KEY_MATERIAL_EXPIRES', ValidTo: validTo }
          : { ExpirationModel: 'KEY_MATERIAL_DOES_NOT_EXPIRE' }),
        ...(plan.importType ? { ImportType: plan.importType } : {}),
      }),
    ),
  );
  const materialId = out.KeyMaterialId ?? (await access.describe(r.region, md.Arn!)).CurrentKeyMaterialId;
  if (!materialId) {
    throw new ProviderError(
      access.providerId,
      'MalformedResponse',
      `ImportKeyMaterial ${md.Arn}: no KeyMaterialId`,
    );
  }
  return { materialId, plan, ...(validTo ? { validTo } : {}) };
}

/** The version an import produced when no rotation was needed (first or existing material). */
export function importedVersion(md: KeyMetadata, materialId: string, validTo: Date | undefined): KeyVersion {
  return {
    id: materialId,
    state: 'enabled',
    createdAt: (md.CreationDate ?? new Date()).toISOString(),
    ...(validTo ? { expiresAt: validTo.toISOString() } : {}),
  };
}
