import { parseArgs } from 'node:util';
import { startGcpKmsEmulator } from './index.js';

/** `emulator:gcp [--port P] [--control-port C] [--crypto-rpm N] [--latency MS]`: runs until SIGINT/SIGTERM. */
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8085' },
    'control-port': { type: 'string', default: '0' },
    'crypto-rpm': { type: 'string' },
    latency: { type: 'string' },
  },
});
const portOf = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`--${name} must be an integer 0-65535 (got ${v})`);
    process.exit(2);
  }
  return n;
};
const emu = await startGcpKmsEmulator({
  port: portOf('port', values.port),
  controlPort: portOf('control-port', values['control-port']),
  faults: {
    cryptoRequestsPerMinute: values['crypto-rpm'] ? Number(values['crypto-rpm']) : null,
    latencyMs: values.latency ? Number(values.latency) : 0,
  },
});
console.log(
  `Cloud KMS emulator (gRPC) listening on ${emu.endpoint.host}:${emu.endpoint.port}; control API at ${emu.controlUrl}/`,
);
const stop = () => {
  emu.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
