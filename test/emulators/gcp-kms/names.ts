import { invalid } from './errors.js';

/**
 * Resource names as Cloud KMS spells them. Project ids are 6-30 characters (or a project
 * number); key ring and crypto key ids are 1-63 of [a-zA-Z0-9_-]; version ids are decimal.
 */
const PROJECT = '([a-z][a-z0-9-]{4,28}[a-z0-9]|\\d{1,19})';
const LOCATION = '([a-z0-9-]{1,63})';
const ID = '([a-zA-Z0-9_-]{1,63})';
const RE = {
  location: new RegExp(`^projects/${PROJECT}/locations/${LOCATION}$`),
  keyRing: new RegExp(`^projects/${PROJECT}/locations/${LOCATION}/keyRings/${ID}$`),
  cryptoKey: new RegExp(`^projects/${PROJECT}/locations/${LOCATION}/keyRings/${ID}/cryptoKeys/${ID}$`),
  version: new RegExp(
    `^projects/${PROJECT}/locations/${LOCATION}/keyRings/${ID}/cryptoKeys/${ID}/cryptoKeyVersions/(\\d{1,10})$`,
  ),
  importJob: new RegExp(`^projects/${PROJECT}/locations/${LOCATION}/keyRings/${ID}/importJobs/${ID}$`),
};
export const RESOURCE_ID = /^[a-zA-Z0-9_-]{1,63}$/;

export interface LocationName {
  project: string;
  location: string;
  name: string;
}
export interface KeyRingName extends LocationName {
  keyRing: string;
}
export interface CryptoKeyName extends KeyRingName {
  cryptoKey: string;
}
export interface ImportJobName extends KeyRingName {
  importJob: string;
  ringName: string;
}
export interface VersionName extends CryptoKeyName {
  version: number;
  keyName: string;
}

function need(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(`${field} is required`);
  return value;
}

export function parseLocation(field: string, value: unknown): LocationName {
  const m = RE.location.exec(need(field, value));
  if (!m) throw invalid(`${field}: "${value}" is not a location name (projects/*/locations/*)`);
  return { project: m[1]!, location: m[2]!, name: m[0] };
}

export function parseKeyRing(field: string, value: unknown): KeyRingName {
  const m = RE.keyRing.exec(need(field, value));
  if (!m) throw invalid(`${field}: "${value}" is not a key ring name (projects/*/locations/*/keyRings/*)`);
  return { project: m[1]!, location: m[2]!, keyRing: m[3]!, name: m[0] };
}

export function parseCryptoKey(field: string, value: unknown): CryptoKeyName {
  const m = RE.cryptoKey.exec(need(field, value));
  if (!m) {
    throw invalid(
      `${field}: "${value}" is not a crypto key name (projects/*/locations/*/keyRings/*/cryptoKeys/*)`,
    );
  }
  return { project: m[1]!, location: m[2]!, keyRing: m[3]!, cryptoKey: m[4]!, name: m[0] };
}

export function parseVersion(field: string, value: unknown): VersionName {
  const m = RE.version.exec(need(field, value));
  if (!m) {
    throw invalid(
      `${field}: "${value}" is not a crypto key version name (projects/*/locations/*/keyRings/*/cryptoKeys/*/cryptoKeyVersions/*)`,
    );
  }
  const keyName = `projects/${m[1]}/locations/${m[2]}/keyRings/${m[3]}/cryptoKeys/${m[4]}`;
  return {
    project: m[1]!,
    location: m[2]!,
    keyRing: m[3]!,
    cryptoKey: m[4]!,
    version: Number(m[5]),
    name: m[0],
    keyName,
  };
}

export function parseImportJob(field: string, value: unknown): ImportJobName {
  const m = RE.importJob.exec(need(field, value));
  if (!m) {
    throw invalid(
      `${field}: "${value}" is not an import job name (projects/*/locations/*/keyRings/*/importJobs/*)`,
    );
  }
  return {
    project: m[1]!,
    location: m[2]!,
    keyRing: m[3]!,
    importJob: m[4]!,
    name: m[0],
    ringName: `projects/${m[1]}/locations/${m[2]}/keyRings/${m[3]}`,
  };
}

/** A crypto key or one of its versions (Encrypt accepts either). */
export function parseKeyOrVersion(field: string, value: unknown): CryptoKeyName | VersionName {
  const s = need(field, value);
  return s.includes('/cryptoKeyVersions/') ? parseVersion(field, s) : parseCryptoKey(field, s);
}

/** Locations Cloud KMS serves (a representative subset); others answer NOT_FOUND. */
export const DEFAULT_LOCATIONS = [
  'global',
  'us',
  'europe',
  'asia',
  'us-central1',
  'us-east1',
  'us-east4',
  'us-west1',
  'europe-west1',
  'europe-west2',
  'europe-west3',
  'europe-west4',
  'asia-east1',
  'asia-northeast1',
  'australia-southeast1',
];
