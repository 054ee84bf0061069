import { parseKeyRef } from '../../core/domain/keyRef.js';
import { ValidationError } from '../../core/errors.js';

/** A Key Vault key event in rekey's neutral shape. */
export interface AzureKeyEvent {
  provider: 'azure-kv';
  /** Canonical ref of the key, e.g. `azure-kv://prod.vault.azure.net/keys/orders`. */
  keyRef: string;
  kind: 'version_created' | 'near_expiry' | 'expired';
  /** The key version the event is about. */
  version?: string;
  /** When the event happened (ISO-8601 UTC). */
  at: string;
  /** Event Grid event id: deduplicate on it (delivery is at least once). */
  eventId: string;
}

const KINDS: Record<string, AzureKeyEvent['kind']> = {
  'Microsoft.KeyVault.KeyNewVersionCreated': 'version_created',
  'Microsoft.KeyVault.KeyNearExpiry': 'near_expiry',
  'Microsoft.KeyVault.KeyExpired': 'expired',
};

const fail = (field: string, why: string): never => {
  throw new ValidationError(`Key Vault event: ${field} ${why}`);
};

function str(o: Record<string, unknown>, field: string, path: string): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0) fail(path, 'must be a non-empty string');
  return v as string;
}

/**
 * Parses one Event Grid event (Event Grid or CloudEvents 1.0 schema) published by Key Vault for a key. Unknown
 * event types, other object types and malformed fields are refused with a ValidationError
 * naming the field. Managed HSM publishes no events, so every ref here is a vault's.
 */
export function parseKeyVaultEvent(input: unknown): AzureKeyEvent {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) fail('event', 'must be an object');
  let e = input as Record<string, unknown>;
  if ('specversion' in e) {
    // CloudEvents 1.0 schema (an Event Grid subscription option): same data, other envelope names.
    if (e.specversion !== '1.0') fail('specversion', 'must be "1.0"');
    e = { id: e.id, topic: e.source, subject: e.subject, eventType: e.type, eventTime: e.time, data: e.data };
  }
  const eventId = str(e, 'id', 'id');
  const eventType = str(e, 'eventType', 'eventType');
  const kind = KINDS[eventType];
  if (!kind)
    fail(
      'eventType',
      `"${eventType.slice(0, 100)}" is not a Key Vault key event (${Object.keys(KINDS).join(', ')})`,
    );
  const eventTime = str(e, 'eventTime', 'eventTime');
  const t = Date.parse(eventTime);
  if (Number.isNaN(t) || !/^\d{4}-\d{2}-\d{2}T/.test(eventTime))
    fail('eventTime', 'must be an ISO-8601 date-time');
  str(e, 'topic', 'topic');
  const subject = str(e, 'subject', 'subject');
  const data = e.data;
  if (data === null || typeof data !== 'object' || Array.isArray(data))
    return fail('data', 'must be an object');
  const d = data as Record<string, unknown>;
  if (d.ObjectType !== 'Key')
    fail('data.ObjectType', `must be "Key" (got ${JSON.stringify(d.ObjectType)?.slice(0, 50)})`);
  const id = str(d, 'Id', 'data.Id');
  const objectName = str(d, 'ObjectName', 'data.ObjectName');
  const vaultName = str(d, 'VaultName', 'data.VaultName');
  let url: URL;
  try {
    url = new URL(id);
  } catch {
    return fail('data.Id', 'must be a key URL');
  }
  if (url.protocol !== 'https:') fail('data.Id', 'must be an https key URL');
  const m = /^\/keys\/([^/]+)(?:\/([^/]+))?\/?$/.exec(url.pathname);
  if (!m) fail('data.Id', 'must look like https://<vault>/keys/<name>/<version>');
  const [, name, idVersion] = m!;
  if (name!.toLowerCase() !== objectName.toLowerCase())
    fail('data.ObjectName', 'does not match the key named in data.Id');
  if (subject.toLowerCase() !== objectName.toLowerCase()) fail('subject', 'does not match data.ObjectName');
  if (url.hostname.split('.')[0] !== vaultName.toLowerCase())
    fail('data.VaultName', 'does not match the host in data.Id');
  let keyRef: string;
  try {
    keyRef = parseKeyRef(`azure-kv://${url.host}/keys/${name}`).uri;
  } catch (err) {
    return fail('data.Id', `does not name a Key Vault key: ${(err as Error).message}`);
  }
  let version: string | undefined = idVersion;
  if (d.Version !== undefined && d.Version !== null && d.Version !== '') {
    if (typeof d.Version !== 'string' || !/^[0-9A-Za-z]{1,64}$/.test(d.Version))
      fail('data.Version', 'must be a key version');
    if (idVersion && idVersion !== d.Version) fail('data.Version', 'does not match the version in data.Id');
    version = d.Version as string;
  }
  for (const f of ['NBF', 'EXP']) {
    const v = d[f];
    if (v !== undefined && v !== null && typeof v !== 'number')
      fail(`data.${f}`, 'must be a number of seconds or null');
  }
  return {
    provider: 'azure-kv',
    keyRef,
    kind: kind!,
    ...(version ? { version } : {}),
    at: new Date(t).toISOString(),
    eventId,
  };
}

/** Event Grid delivers arrays of events; parses each (all or nothing). */
export function parseKeyVaultEvents(input: unknown): AzureKeyEvent[] {
  const list = Array.isArray(input) ? input : [input];
  return list.map((e, i) => {
    try {
      return parseKeyVaultEvent(e);
    } catch (err) {
      if (err instanceof ValidationError && Array.isArray(input)) {
        throw new ValidationError(err.message.replace('Key Vault event:', `Key Vault event [${i}]:`));
      }
      throw err;
    }
  });
}
