import { parseArgs } from 'node:util';
import { startAwsEmulator } from './index.js';

/** `emulator:aws [--port P] [--account 111122223333]`: runs until SIGINT/SIGTERM. */
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '4566' },
    account: { type: 'string' },
    'crypto-rps': { type: 'string' },
    latency: { type: 'string' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be an integer 0-65535 (got ${values.port})`);
  process.exit(2);
}
const emu = await startAwsEmulator({
  port,
  account: values.account,
  faults: {
    cryptoRequestsPerSecond: values['crypto-rps'] ? Number(values['crypto-rps']) : null,
    latencyMs: values.latency ? Number(values.latency) : 0,
  },
});
console.log(
  `AWS emulator (KMS, SQS, EventBridge) listening on ${emu.endpoint}; control API at ${emu.endpoint}/_emulator/`,
);
const stop = () => {
  emu.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
