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
