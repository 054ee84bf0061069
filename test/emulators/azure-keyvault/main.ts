import { parseArgs } from 'node:util';
import { startAzureKeyVaultEmulator } from './index.js';

/**
 * `azure-keyvault emulator [--port P] [--vault host]...`: serves each vault on its own port
 * (P, P+1, ...) until SIGINT/SIGTERM. Clients trust the printed CA file (NODE_EXTRA_CA_CERTS).
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8443' },
    vault: { type: 'string', multiple: true },
    latency: { type: 'string' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be an integer 0-65535 (got ${values.port})`);
  process.exit(2);
}
const emu = await startAzureKeyVaultEmulator({
  port,
  ...(values.vault?.length ? { vaults: values.vault } : {}),
  faults: { latencyMs: values.latency ? Number(values.latency) : 0 },
});
for (const [host, url] of Object.entries(emu.endpoints)) console.log(`${host} -> ${url}`);
console.log(`CA certificate: ${emu.caPath}`);
console.log(`Bearer token: ${emu.tokens[0]}; control API under <url>/_emulator/`);
const stop = () => {
  emu.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
