import { createPublicKey } from 'node:crypto';
import { type KeyRef, parseKeyRef } from '../../core/domain/keyRef.js';
import { ConflictError, NotFoundError, ValidationError } from '../../core/errors.js';
import type { ImportWrapAlgorithm, KeyMaterialSource } from '../../core/ports/KeyProvider.js';
import { APPLICATION, checkName } from './format.js';
import type { Pkcs11Provider } from './Pkcs11Provider.js';
import { destroyQuietly, findAll, type Handle, type Pkcs11, pkcs11js } from './session.js';

/**
 * BYOK from a PKCS#11 token: AES-256 material that lives on the token is wrapped for a cloud
 * KMS inside the token, under the KMS's RSA public key, so it never exists in clear outside
 * the HSM. Two schemes, the ones AWS, Google and Azure all accept:
 *
 * - `rsa-oaep-sha1`: C_WrapKey of the material with CKM_RSA_PKCS_OAEP (SHA-1, MGF1-SHA-1)
 *   under a session object made from the KMS public key;
 * - `rsa-aes-kwp-sha1`: a session AES-256 key is generated, the material is wrapped under it
 *   with AES key wrap with padding (RFC 5649), the session key is wrapped with RSA-OAEP
 *   (SHA-1), and the result is the RSA part followed by the AES part.
 *
 * Session objects (the public key, the ephemeral AES key) are destroyed before the call
 * returns, whatever happens. SoftHSM2 offers OAEP with SHA-1 only, hence SHA-1 throughout.
 *
 * Exportable material is not what rekey's managed keys are (their version keys are never
 * extractable): it is a separate token object made by `generateByokKey`, or any AES-256 key
 * with CKA_EXTRACTABLE true that an HSM administrator made. Refs name it by label:
 * `pkcs11:token=<token>;object=<label>` (plus `id=` when labels repeat).
 */

const P = pkcs11js;
const CKM_AES_KEY_WRAP_PAD = 0x210a;
const CKM_AES_KEY_WRAP_KWP = 0x210b;
/** CKZ_DATA_SPECIFIED: OAEP's label source (empty label). */
const CKZ_DATA_SPECIFIED = 1;
const MIN_RSA_BITS = 2048;

export interface ByokSourceOptions {
  /**
   * RFC 5649 mechanism: `pad` = CKM_AES_KEY_WRAP_PAD (0x210A, PKCS#11 2.40 modules such as
   * SoftHSM 2), `kwp` = CKM_AES_KEY_WRAP_KWP (0x210B, PKCS#11 3.0). Default `pad`.
   */
  wrapMechanism?: 'pad' | 'kwp';
}

/** A KeyMaterialSource that can also make new material (needed to rotate imported keys). */
export interface ByokSource extends KeyMaterialSource {
  generateMaterial(spec: { label: string }): Promise<KeyRef>;
}

const attr = (type: number, value: pkcs11js.Attribute['value']): pkcs11js.Attribute => ({ type, value });

const OAEP_SHA1: pkcs11js.Mechanism = {
  mechanism: P.CKM_RSA_PKCS_OAEP,
  parameter: {
    type: P.CK_PARAMS_RSA_OAEP,
    hashAlg: P.CKM_SHA_1,
    mgf: P.CKG_MGF1_SHA1,
    source: CKZ_DATA_SPECIFIED,
  } as pkcs11js.RsaOAEP,
};

/** The KeyMaterialSource of a PKCS#11 provider's token. */
export function createByokSource(provider: Pkcs11Provider, opts: ByokSourceOptions = {}): ByokSource {
  const kwp: pkcs11js.Mechanism = {
    mechanism: (opts.wrapMechanism ?? 'pad') === 'pad' ? CKM_AES_KEY_WRAP_PAD : CKM_AES_KEY_WRAP_KWP,
  };
  return {
    exportWrapped: (source, wrappingPublicKey, algorithm) =>
      exportWrapped(provider, kwp, source, wrappingPublicKey, algorithm),
    generateMaterial: (spec) => generateByokKey(provider, spec),
  };
}

/**
 * Generates AES-256 BYOK material on the token: a token object labelled `label` (and with
 * CKA_ID = `id` as UTF-8, if given), sensitive (its value can never be read) but extractable
 * (it can be wrapped), usable for nothing else, and without CKA_WRAP_WITH_TRUSTED (so a
 * session key made from a cloud's public key may wrap it). Keep it: re-importing the same
 * material is how an expired or deleted cloud copy comes back.
 */
export async function generateByokKey(
  provider: Pkcs11Provider,
  spec: { label: string; id?: string },
): Promise<KeyRef> {
  checkName(spec.label);
  if (spec.id !== undefined && (spec.id.length === 0 || Buffer.byteLength(spec.id) > 64)) {
    throw new ValidationError(`BYOK key ${spec.label}: id must be 1-64 bytes`);
  }
  await provider.onToken(`generating BYOK key ${spec.label}`, (p, s) => {
    const taken = findAll(p, s, [attr(P.CKA_TOKEN, true), attr(P.CKA_LABEL, spec.label)]);
    if (taken.length > 0) {
      const managed = findAll(p, s, [
        attr(P.CKA_CLASS, P.CKO_DATA),
        attr(P.CKA_APPLICATION, APPLICATION),
        attr(P.CKA_LABEL, spec.label),
      ]);
      throw new ConflictError(
        managed.length > 0
          ? `token "${provider.tokenLabel}": ${spec.label} is a key rekey manages; BYOK material needs its own label`
          : `token "${provider.tokenLabel}" already has an object labelled ${spec.label}`,
      );
    }
    p.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
      attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
      attr(P.CKA_KEY_TYPE, P.CKK_AES),
      attr(P.CKA_VALUE_LEN, 32),
      attr(P.CKA_TOKEN, true),
      attr(P.CKA_PRIVATE, true),
      attr(P.CKA_SENSITIVE, true),
      attr(P.CKA_EXTRACTABLE, true),
      attr(P.CKA_LABEL, spec.label),
      ...(spec.id !== undefined ? [attr(P.CKA_ID, Buffer.from(spec.id, 'utf8'))] : []),
      attr(P.CKA_ENCRYPT, false),
      attr(P.CKA_DECRYPT, false),
      attr(P.CKA_SIGN, false),
      attr(P.CKA_VERIFY, false),
      attr(P.CKA_WRAP, false),
      attr(P.CKA_UNWRAP, false),
      attr(P.CKA_DERIVE, false),
    ]);
  });
  const id = spec.id !== undefined ? `;id=${encodeURIComponent(spec.id)}` : '';
  return parseKeyRef(
    `pkcs11:token=${encodeURIComponent(provider.tokenLabel)};object=${encodeURIComponent(spec.label)}${id};type=secret-key`,
  );
}

async function exportWrapped(
  provider: Pkcs11Provider,
  kwp: pkcs11js.Mechanism,
  source: KeyRef,
  wrappingPublicKey: Uint8Array,
  algorithm: ImportWrapAlgorithm,
): Promise<Uint8Array> {
  const { label, id } = sourceOf(provider, source);
  if (algorithm !== 'rsa-oaep-sha1' && algorithm !== 'rsa-aes-kwp-sha1') {
    throw new ValidationError(
      `unknown wrapping algorithm "${String(algorithm)}" (expected rsa-oaep-sha1 or rsa-aes-kwp-sha1)`,
    );
  }
  const rsa = rsaPublicKey(wrappingPublicKey);
  const out = await provider.onToken(`exporting ${source.uri} (${algorithm})`, (p, s) => {
    const target = findMaterial(p, s, provider.tokenLabel, label, id, source.uri);
    let pub: Handle | null = null;
    let ephemeral: Handle | null = null;
    try {
      pub = p.C_CreateObject(s, [
        attr(P.CKA_CLASS, P.CKO_PUBLIC_KEY),
        attr(P.CKA_KEY_TYPE, P.CKK_RSA),
        attr(P.CKA_TOKEN, false),
        attr(P.CKA_PRIVATE, false),
        attr(P.CKA_MODULUS, rsa.n),
        attr(P.CKA_PUBLIC_EXPONENT, rsa.e),
        attr(P.CKA_WRAP, true),
        attr(P.CKA_ENCRYPT, false),
        attr(P.CKA_VERIFY, false),
      ]);
      const rsaOut = Buffer.alloc(rsa.bytes);
      if (algorithm === 'rsa-oaep-sha1') return Buffer.from(p.C_WrapKey(s, OAEP_SHA1, pub, target, rsaOut));
      ephemeral = p.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [
        attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
        attr(P.CKA_KEY_TYPE, P.CKK_AES),
        attr(P.CKA_VALUE_LEN, 32),
        attr(P.CKA_TOKEN, false),
        attr(P.CKA_PRIVATE, true),
        attr(P.CKA_SENSITIVE, true),
        attr(P.CKA_EXTRACTABLE, true),
        attr(P.CKA_WRAP, true),
        attr(P.CKA_UNWRAP, false),
        attr(P.CKA_ENCRYPT, false),
        attr(P.CKA_DECRYPT, false),
      ]);
      // 32 bytes of material under RFC 5649: one 8-byte integrity block more.
      const aesPart = Buffer.from(p.C_WrapKey(s, kwp, ephemeral, target, Buffer.alloc(64)));
      const rsaPart = Buffer.from(p.C_WrapKey(s, OAEP_SHA1, pub, ephemeral, rsaOut));
      return Buffer.concat([rsaPart, aesPart]);
    } finally {
      destroyQuietly(p, s, ephemeral);
      destroyQuietly(p, s, pub);
    }
  });
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** The label (and optional CKA_ID) a source ref names, on this provider's token. */
function sourceOf(provider: Pkcs11Provider, source: KeyRef): { label: string; id?: Buffer } {
  if (source.type !== 'pkcs11') {
    throw new ValidationError(`BYOK source ${source.uri} is not a pkcs11: ref (provider ${provider.id})`);
  }
  const a = source.attributes;
  if (a.token !== provider.tokenLabel) {
    throw new ValidationError(
      `BYOK source ${source.uri} names token "${a.token}", provider ${provider.id} serves "${provider.tokenLabel}"`,
    );
  }
  if (a.type !== undefined && a.type !== 'secret-key') {
    throw new ValidationError(`BYOK source ${source.uri}: material is a secret key (type=secret-key)`);
  }
  if (!a.object) throw new ValidationError(`BYOK source ${source.uri}: name the key by object=<label>`);
  return { label: a.object, ...(a.id !== undefined ? { id: Buffer.from(a.id, 'utf8') } : {}) };
}

/** Finds the material and checks, before anything is wrapped, that it can be exported. */
function findMaterial(
  p: Pkcs11,
  s: Handle,
  token: string,
  label: string,
  id: Buffer | undefined,
  uri: string,
): Handle {
  const found = findAll(p, s, [
    attr(P.CKA_CLASS, P.CKO_SECRET_KEY),
    attr(P.CKA_TOKEN, true),
    attr(P.CKA_LABEL, label),
    ...(id ? [attr(P.CKA_ID, id)] : []),
  ]);
  if (found.length === 0)
    throw new NotFoundError(`BYOK source ${uri}: no secret key labelled ${label} on token "${token}"`);
  if (found.length > 1) {
    throw new ValidationError(
      `BYOK source ${uri}: ${found.length} secret keys are labelled ${label}; add id= to the ref to pick one`,
    );
  }
  const h = found[0]!;
  const [type, len, extractable, trusted] = p.C_GetAttributeValue(s, h, [
    attr(P.CKA_KEY_TYPE, undefined),
    attr(P.CKA_VALUE_LEN, undefined),
    attr(P.CKA_EXTRACTABLE, undefined),
    attr(P.CKA_WRAP_WITH_TRUSTED, undefined),
  ]);
  if (ulong(type!.value) !== P.CKK_AES || ulong(len!.value) !== 32) {
    throw new ValidationError(`BYOK source ${uri}: only AES-256 material can be exported for import`);
  }
  if (!bool(extractable!.value)) {
    throw new ValidationError(
      `BYOK source ${uri} is not extractable (CKA_EXTRACTABLE false): it can never leave this HSM, even wrapped; ` +
        'make BYOK material with generateByokKey (`rekey byok generate`)',
    );
  }
  if (bool(trusted!.value)) {
    throw new ValidationError(
      `BYOK source ${uri} has CKA_WRAP_WITH_TRUSTED: only a CKA_TRUSTED key (set by the security officer) may wrap it, and a cloud's public key is not one`,
    );
  }
  return h;
}

/** Modulus and exponent of an RSA SubjectPublicKeyInfo, refusing anything else or anything short. */
function rsaPublicKey(spki: Uint8Array): { n: Buffer; e: Buffer; bytes: number } {
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  } catch {
    throw new ValidationError('the wrapping public key is not a DER SubjectPublicKeyInfo');
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (key.asymmetricKeyType !== 'rsa' || bits < MIN_RSA_BITS) {
    throw new ValidationError(
      `the wrapping public key must be RSA of at least ${MIN_RSA_BITS} bits (got ${key.asymmetricKeyType} ${bits})`,
    );
  }
  const jwk = key.export({ format: 'jwk' });
  return {
    n: Buffer.from(jwk.n!, 'base64url'),
    e: Buffer.from(jwk.e!, 'base64url'),
    bytes: Math.ceil(bits / 8),
  };
}

function ulong(v: pkcs11js.Attribute['value']): number {
  return Buffer.isBuffer(v) ? v.readUIntLE(0, Math.min(v.length, 6)) : Number(v);
}

function bool(v: pkcs11js.Attribute['value']): boolean {
  return Buffer.isBuffer(v) ? v.some((b) => b !== 0) : Boolean(v);
}
