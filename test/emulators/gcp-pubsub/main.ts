import { parseArgs } from 'node:util';
import { startPubSubEmulator } from './index.js';

/**
 * `node dist/test/emulators/gcp-pubsub/main.js [--port P] [--control-port C] [--time-scale S]`:
 * a Pub/Sub emulator on 127.0.0.1 until SIGINT/SIGTERM. Point clients at it with
 * PUBSUB_EMULATOR_HOST=127.0.0.1:P.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8085' },
    'control-port': { type: 'string' },
    'time-scale': { type: 'string', default: '1' },
    'push-concurrency': { type: 'string', default: '8' },
  },
});
const intArg = (name: string, v: string | undefined, min: number, max: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`--${name} must be an integer ${min}-${max} (got ${v})`);
    process.exit(2);
  }
  return n;
};
const timeScale = Number(values['time-scale']);
if (!(timeScale > 0)) {
  console.error(`--time-scale must be a number > 0 (got ${values['time-scale']})`);
  process.exit(2);
}
const emu = await startPubSubEmulator({
  port: intArg('port', values.port, 0, 65535),
  ...(values['control-port'] !== undefined
    ? { controlPort: intArg('control-port', values['control-port'], 0, 65535) }
    : {}),
  timeScale,
  pushConcurrency: intArg('push-concurrency', values['push-concurrency'], 1, 1000),
});
console.log(
  `Pub/Sub emulator (gRPC) listening on ${emu.host}${emu.controlUrl ? `; control API at ${emu.controlUrl}/` : ''}`,
);
const stop = () => {
  emu.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
