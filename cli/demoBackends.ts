import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ManualClock } from '../shared/core/ports/Clock.js';
import type { KeyProvider } from '../shared/core/ports/KeyProvider.js';

/**
 * Where the demo's keys live. The local KMS by default; with a flag, a provider rekey talks to
 * for real through its official client, pointed at the bundled emulator (or SoftHSM2). Each
 * backend can move its own notion of "now", so the demo can create keys of various ages.
 */
export interface DemoBackend {
  name: string;
  providerId: string;
  /** The `providers:` entry for the demo config, as YAML lines (two-space indented). */
  providerYaml: string;
  /** Moves the backend's clock (and rekey's) to `at`. */
  setTime(at: Date): void;
  close(): Promise<void>;
  /** Something the user needs to know to keep using the workspace. */
  note?: string;
  /** A provider built here rather than from the config (credentials the config cannot express). */
  provider?: KeyProvider;
}

const EMULATOR_NOTE =
  'the emulator ran inside the demo and stopped with it: its keys are gone, so later commands on this workspace cannot reach them';

export type DemoBackendName = 'local' | 'aws' | 'gcp' | 'hsm' | 'azure';

export async function startDemoBackend(
  name: DemoBackendName,
  clock: ManualClock,
  dir: string,
): Promise<DemoBackend> {
  switch (name) {
    case 'local':
      return {
        name,
        providerId: 'local',
        providerYaml: '  local: { type: local, keystore: kms.db, masterKey: file:master.key }',
        setTime: (at) => clock.set(at),
        close: async () => {},
      };
    case 'aws': {
      // The emulator ships in the package (dist/test/emulators): loaded only for this flag.
      const { startAwsEmulator } = await import('../test/emulators/aws/index.js');
      const emu = await startAwsEmulator({ startTime: clock.now() });
      // Requests are signed but the emulator does not check signatures: never send real keys there.
      process.env.AWS_ACCESS_KEY_ID = 'rekey-demo';
      process.env.AWS_SECRET_ACCESS_KEY = 'rekey-demo';
      delete process.env.AWS_SESSION_TOKEN;
      delete process.env.AWS_PROFILE;
      return {
        name,
        providerId: 'aws',
        providerYaml: `  aws: { type: aws-kms, regions: [us-east-1], endpoint: ${emu.endpoint} }`,
        note: EMULATOR_NOTE,
        setTime: (at) => {
          clock.set(at);
          emu.clock.set(at);
        },
        close: () => emu.close(),
      };
    }
    case 'hsm': {
      // A SoftHSM2 token private to this workspace; the PIN sits in a 0600 file beside it.
      const { initSoftHsmToken, SOFTHSM_MODULE } = await import('../shared/providers/pkcs11/softhsm.js');
      const pin = randomBytes(9).toString('base64url');
      const conf = initSoftHsmToken(
        join(dir, 'softhsm'),
        'rekey-demo',
        pin,
        randomBytes(9).toString('base64url'),
      );
      writeFileSync(join(dir, 'hsm.pin'), pin, { mode: 0o600 });
      process.env.SOFTHSM2_CONF = conf;
      return {
        name,
        providerId: 'hsm',
        providerYaml: `  hsm: { type: pkcs11, module: ${SOFTHSM_MODULE}, token: rekey-demo, pin: file:hsm.pin }`,
        setTime: (at) => clock.set(at),
        close: async () => {},
        note: `the token lives in ${conf}: export SOFTHSM2_CONF=${conf} before running rekey on this workspace`,
      };
    }
    case 'azure': {
      const { startAzureKeyVaultEmulator } = await import('../test/emulators/azure-keyvault/index.js');
      const { StaticTokenCredential } = await import('../test/emulators/azure-keyvault/credential.js');
      const { AzureKeyVaultProvider } = await import('../shared/providers/azure/AzureKeyVaultProvider.js');
      const host = 'rekey-demo.vault.azure.net';
      const emu = await startAzureKeyVaultEmulator({ vaults: [host] });
      emu.clock.set(clock.now());
      // The emulator's token and CA cannot be expressed in a config file: the provider is built here.
      const provider = new AzureKeyVaultProvider({
        id: 'azure',
        vaults: [host],
        endpoints: emu.endpoints,
        credential: new StaticTokenCredential(),
        ca: emu.ca,
      });
      return {
        name,
        providerId: 'azure',
        providerYaml: `  azure: { type: azure-kv, vaults: [${host}], endpoints: { ${host}: "${emu.endpoints[host]}" } }`,
        provider,
        setTime: (at) => {
          clock.set(at);
          emu.clock.set(at);
        },
        close: () => emu.close(),
        note: EMULATOR_NOTE,
      };
    }
    case 'gcp': {
      const { startGcpKmsEmulator } = await import('../test/emulators/gcp-kms/index.js');
      const emu = await startGcpKmsEmulator({ startTime: clock.now() });
      process.env.METADATA_SERVER_DETECTION = 'none';
      return {
        name,
        providerId: 'gcp',
        providerYaml: `  gcp: { type: gcp-kms, projects: [rekey-demo], locations: [europe-west1], keyRings: [demo], endpoint: "${emu.endpoint.host}:${emu.endpoint.port}" }`,
        note: EMULATOR_NOTE,
        setTime: (at) => {
          clock.set(at);
          emu.clock.set(at);
        },
        close: () => emu.close(),
      };
    }
  }
}

/** The demo config for a backend other than local (local uses examples/local.yaml as is). */
export function demoConfig(b: DemoBackend): string {
  return `# rekey demo against ${b.name}
version: 1
providers:
${b.providerYaml}
stores:
  app: { type: sqlite, path: app.db, table: data_keys }
policies:
  - name: default
    match: { provider: [${b.providerId}] }
    rotate: { every: P90D }
    rewrap: { stores: [app], verify: full }
    retire: { disableAfter: P0D, destroyAfter: P180D, approvals: 2 }
`;
}
