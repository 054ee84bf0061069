import { request as httpsRequest } from 'node:https';
import { KeyClient } from '@azure/keyvault-keys';
import {
  AzureKeyVaultProvider,
  type AzureKeyVaultProviderOptions,
} from '../../../shared/providers/azure/AzureKeyVaultProvider.js';
import { StaticTokenCredential } from '../../emulators/azure-keyvault/credential.js';
import {
  type AzureKeyVaultEmulator,
  type AzureKeyVaultEmulatorOptions,
  startAzureKeyVaultEmulator,
} from '../../emulators/azure-keyvault/index.js';
import { makeTestCertificates, type TestCertificates } from '../../support/azureCert.js';

export const VAULT = 'rekey-prod.vault.azure.net';
export const HSM = 'rekey-hsm.managedhsm.azure.net';

let certs: TestCertificates | undefined;
/** One CA per test file: openssl runs once. */
export function certificates(): TestCertificates {
  certs ??= makeTestCertificates();
  return certs;
}

export function emulator(opts: AzureKeyVaultEmulatorOptions = {}): Promise<AzureKeyVaultEmulator> {
  return startAzureKeyVaultEmulator({ vaults: [VAULT, HSM], certificates: certificates(), ...opts });
}

export function provider(
  emu: AzureKeyVaultEmulator,
  opts: Partial<AzureKeyVaultProviderOptions> = {},
): AzureKeyVaultProvider {
  return new AzureKeyVaultProvider({
    id: 'azure-test',
    vaults: [VAULT, HSM],
    endpoints: emu.endpoints,
    credential: new StaticTokenCredential(),
    ca: emu.ca,
    retry: { maxRetries: 0 },
    ...opts,
  });
}

/** The official SDK client against one emulated vault, trusting the test CA. */
export function sdkClient(
  emu: AzureKeyVaultEmulator,
  host: string,
  credential = new StaticTokenCredential(),
  options: Record<string, unknown> = {},
): KeyClient {
  return new KeyClient(emu.endpoints[host]!, credential, {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: emu.ca },
    retryOptions: { maxRetries: 0 },
    ...options,
  });
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { error?: { code: string; message: string }; [k: string]: unknown } | null;
}

/** A plain HTTPS request to the emulator, for protocol details the SDK hides. */
export function raw(
  emu: AzureKeyVaultEmulator,
  host: string,
  method: string,
  path: string,
  opts: { token?: string | null; body?: unknown; hostHeader?: string } = {},
): Promise<RawResponse> {
  const url = new URL(path, emu.endpoints[host]!);
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const token = opts.token === undefined ? emu.tokens[0] : opts.token;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method,
        ca: emu.ca,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...(opts.hostHeader ? { host: opts.hostHeader } : {}),
        },
        servername: 'localhost',
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text ? JSON.parse(text) : null,
          });
        });
      },
    );
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}
