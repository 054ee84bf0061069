import { ValidationError } from '../errors.js';

/**
 * A key reference is a URI naming one managed key (all its versions), never a single version.
 * Refs are parsed once at the edge and carried in canonical form afterwards.
 */
export type ProviderType = 'aws-kms' | 'gcp-kms' | 'azure-kv' | 'pkcs11' | 'local';
export const PROVIDER_TYPES: readonly ProviderType[] = ['aws-kms', 'gcp-kms', 'azure-kv', 'pkcs11', 'local'];

export interface AwsKmsRef {
  type: 'aws-kms';
  uri: string;
  partition: string;
  region: string;
  account: string;
  /** `key/<id>` or `alias/<name>` */
  resource: string;
}
export interface GcpKmsRef {
  type: 'gcp-kms';
  uri: string;
  project: string;
  location: string;
  keyRing: string;
  cryptoKey: string;
  /** projects/.../cryptoKeys/k, as the API names it */
  name: string;
}
export interface AzureKvRef {
  type: 'azure-kv';
  uri: string;
  /** host of the vault or managed HSM, e.g. `prod.vault.azure.net` */
  host: string;
  kind: 'vault' | 'managedhsm';
  name: string;
}
export interface Pkcs11Ref {
  type: 'pkcs11';
  uri: string;
  /** decoded path attributes (token, object, id, serial, ...) */
  attributes: Record<string, string>;
  /** decoded query attributes (module-path, pin-source, ...) */
  query: Record<string, string>;
}
export interface LocalRef {
  type: 'local';
  uri: string;
  name: string;
}
export type KeyRef = AwsKmsRef | GcpKmsRef | AzureKvRef | Pkcs11Ref | LocalRef;

const fail = (input: string, why: string): never => {
  throw new ValidationError(`invalid key ref "${input}": ${why}`);
};

const AWS_ARN =
  /^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b):kms:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):(key\/(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|alias\/[A-Za-z0-9/_-]{1,250})$/;
// GCP resource ids: project ids 6-30 chars; ring/key ids [a-zA-Z0-9_-]{1,63}.
const GCP_NAME =
  /^projects\/([a-z][a-z0-9-]{4,28}[a-z0-9]|\d{1,19})\/locations\/([a-z0-9-]{1,63})\/keyRings\/([A-Za-z0-9_-]{1,63})\/cryptoKeys\/([A-Za-z0-9_-]{1,63})$/;
const AZURE_HOST =
  /^([a-z0-9](?:[a-z0-9-]{1,22}[a-z0-9]))\.(vault|managedhsm)\.(azure\.net|azure\.cn|usgovcloudapi\.net|microsoftazure\.de)(?::\d{1,5})?$/;
// Azure key names: 1-127 alphanumerics and dashes.
const AZURE_KEY = /^[0-9A-Za-z-]{1,127}$/;
const LOCAL_NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;

// RFC 7512 attribute names this parser accepts; anything else is rejected, not ignored.
const PKCS11_PATH_ATTRS = new Set([
  'token',
  'manufacturer',
  'serial',
  'model',
  'library-manufacturer',
  'library-description',
  'library-version',
  'object',
  'type',
  'id',
  'slot-description',
  'slot-manufacturer',
  'slot-id',
]);
const PKCS11_QUERY_ATTRS = new Set(['pin-source', 'pin-value', 'module-name', 'module-path']);
const PKCS11_TYPES = new Set(['public', 'private', 'cert', 'secret-key', 'data']);
// pk11-pchar / pk11-qchar: unreserved, pct-encoded and a few sub-delims (RFC 7512 sec. 2.3).
const PK11_PCHAR = /^(?:[A-Za-z0-9\-._~:[\]@!$'()*+,=&]|%[0-9A-Fa-f]{2})*$/;
const PK11_QCHAR = /^(?:[A-Za-z0-9\-._~:[\]@!$'()*+,=/?|]|%[0-9A-Fa-f]{2})*$/;

function pctDecode(input: string, s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return fail(input, `bad percent-encoding in "${s}"`);
  }
}

/** Encodes a pkcs11 attribute value: everything outside unreserved characters is %XX. */
function pctEncode(s: string): string {
  return Array.from(new TextEncoder().encode(s))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
}

function parsePkcs11(input: string): Pkcs11Ref {
  const body = input.slice('pkcs11:'.length);
  const qAt = body.indexOf('?');
  const pathPart = qAt === -1 ? body : body.slice(0, qAt);
  const queryPart = qAt === -1 ? '' : body.slice(qAt + 1);
  const attributes: Record<string, string> = {};
  const query: Record<string, string> = {};
  if (pathPart.length > 0) {
    for (const seg of pathPart.split(';')) {
      const eq = seg.indexOf('=');
      if (eq <= 0) fail(input, `path attribute "${seg}" is not name=value`);
      const name = seg.slice(0, eq);
      const raw = seg.slice(eq + 1);
      if (!PKCS11_PATH_ATTRS.has(name)) fail(input, `unknown path attribute "${name}"`);
      if (!PK11_PCHAR.test(raw))
        fail(input, `attribute "${name}" has characters that must be percent-encoded, or a bad %XX escape`);
      if (name in attributes) fail(input, `attribute "${name}" appears twice`);
      attributes[name] = pctDecode(input, raw);
    }
  }
  if (queryPart.length > 0) {
    for (const seg of queryPart.split('&')) {
      const eq = seg.indexOf('=');
      if (eq <= 0) fail(input, `query attribute "${seg}" is not name=value`);
      const name = seg.slice(0, eq);
      const raw = seg.slice(eq + 1);
      if (!PKCS11_QUERY_ATTRS.has(name)) fail(input, `unknown query attribute "${name}"`);
      if (!PK11_QCHAR.test(raw))
        fail(
          input,
          `query attribute "${name}" has characters that must be percent-encoded, or a bad %XX escape`,
        );
      if (name in query) fail(input, `query attribute "${name}" appears twice`);
      query[name] = pctDecode(input, raw);
    }
  }
  if ('pin-value' in query)
    fail(input, 'pin-value is refused: give the PIN through an env var or file, never in a ref');
  if (!attributes.token) fail(input, 'a token attribute is required');
  if (!attributes.object && !attributes.id) fail(input, 'an object or id attribute is required');
  if (
    attributes.type !== undefined &&
    attributes.type !== 'secret-key' &&
    !PKCS11_TYPES.has(attributes.type)
  ) {
    fail(input, `unknown type "${attributes.type}"`);
  }
  const order = [...PKCS11_PATH_ATTRS].filter((a) => a in attributes);
  const canonicalPath = order.map((a) => `${a}=${pctEncode(attributes[a]!)}`).join(';');
  const qOrder = [...PKCS11_QUERY_ATTRS].filter((a) => a in query);
  const canonicalQuery = qOrder.map((a) => `${a}=${pctEncode(query[a]!)}`).join('&');
  const uri = `pkcs11:${canonicalPath}${canonicalQuery ? `?${canonicalQuery}` : ''}`;
  return { type: 'pkcs11', uri, attributes, query };
}

/** Parses and validates a key ref, returning its canonical form. Throws ValidationError. */
export function parseKeyRef(input: string): KeyRef {
  if (typeof input !== 'string' || input.length === 0) fail(String(input), 'empty');
  if (input.length > 2048) fail(input.slice(0, 64), 'longer than 2048 characters');
  if (/\s/.test(input)) fail(input, 'contains whitespace');
  if (input.startsWith('pkcs11:')) return parsePkcs11(input);
  const m = /^([a-z0-9-]+):\/\/(.*)$/.exec(input);
  if (!m) return fail(input, 'expected <scheme>://... or pkcs11:...');
  const scheme = m[1]!;
  const rest = m[2]!;
  switch (scheme) {
    case 'aws-kms': {
      const a = AWS_ARN.exec(rest);
      if (!a)
        fail(
          input,
          'expected aws-kms://arn:<partition>:kms:<region>:<12-digit account>:key/<id> or alias/<name>',
        );
      const [, partition, region, account, resource] = a!;
      if (resource!.startsWith('alias/aws/'))
        fail(input, 'AWS managed aliases (alias/aws/*) cannot be managed');
      return {
        type: 'aws-kms',
        uri: `aws-kms://${rest}`,
        partition: partition!,
        region: region!,
        account: account!,
        resource: resource!,
      };
    }
    case 'gcp-kms': {
      const g = GCP_NAME.exec(rest);
      if (!g) fail(input, 'expected gcp-kms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>');
      const [, project, location, keyRing, cryptoKey] = g!;
      return {
        type: 'gcp-kms',
        uri: `gcp-kms://${rest}`,
        project: project!,
        location: location!,
        keyRing: keyRing!,
        cryptoKey: cryptoKey!,
        name: rest,
      };
    }
    case 'azure-kv': {
      const slash = rest.indexOf('/');
      if (slash === -1) fail(input, 'expected azure-kv://<vault>.vault.azure.net/keys/<name>');
      const host = rest.slice(0, slash).toLowerCase();
      const path = rest.slice(slash);
      const h = AZURE_HOST.exec(host);
      if (!h) fail(input, `"${host}" is not a Key Vault or Managed HSM host`);
      const k = /^\/keys\/([^/]+)\/?$/.exec(path);
      if (!k) fail(input, 'path must be /keys/<name> (a ref names the key, not a version)');
      if (!AZURE_KEY.test(k![1]!)) fail(input, `key name "${k![1]}" must be 1-127 letters, digits or dashes`);
      const kind = h![2] === 'managedhsm' ? 'managedhsm' : 'vault';
      return { type: 'azure-kv', uri: `azure-kv://${host}/keys/${k![1]}`, host, kind, name: k![1]! };
    }
    case 'local': {
      if (!LOCAL_NAME.test(rest))
        fail(input, 'local key names are 1-128 of [a-z0-9._-], starting with a letter or digit');
      return { type: 'local', uri: `local://${rest}`, name: rest };
    }
    default:
      return fail(input, `unknown scheme "${scheme}" (expected one of ${PROVIDER_TYPES.join(', ')})`);
  }
}

export function isKeyRef(input: string): boolean {
  try {
    parseKeyRef(input);
    return true;
  } catch {
    return false;
  }
}

/** Canonical string form; parse(format(r)) round-trips. */
export function formatKeyRef(ref: KeyRef): string {
  return ref.uri;
}

export function localRef(name: string): LocalRef {
  return parseKeyRef(`local://${name}`) as LocalRef;
}
