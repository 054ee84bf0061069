#!/usr/bin/env node
// Entry point of the `rekey` command: runs the compiled CLI (npm install builds it).
import { main } from '../dist/cli/main.js';

// A reader that stops early (`rekey audit export | head`) is not an error.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

process.exitCode = await main(process.argv);
