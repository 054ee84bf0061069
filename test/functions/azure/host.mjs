// A stand-in for the Azure Functions Node worker, for tests: run as a child process with the
// app's settings in its environment. Like the real worker it provides the `@azure/functions-core`
// module through which @azure/functions registers each `app.*` function, loads the app's
// package.json `main`, then invokes the registered handlers with real InvocationContext objects
// when the parent asks over IPC. Triggers arrive already decoded, as the host would pass them.
import { readFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const appDir = process.argv[2];
const registrations = new Map();
const systemLogs = [];

const core = {
  version: '3.10.1',
  hostVersion: '4.1040.0',
  setProgrammingModel() {},
  getProgrammingModel() {
    return undefined;
  },
  registerFunction(metadata, callback) {
    registrations.set(metadata.name, { metadata, callback });
    return { dispose: () => registrations.delete(metadata.name) };
  },
  registerHook() {
    return { dispose() {} };
  },
  log(level, category, message) {
    systemLogs.push({ level, category, message });
  },
};

const load = Module._load;
Module._load = function loadWithCore(request, ...rest) {
  if (request === '@azure/functions-core') return core;
  return load.call(this, request, ...rest);
};

const pkg = JSON.parse(readFileSync(join(appDir, 'package.json'), 'utf8'));
await import(pathToFileURL(join(appDir, pkg.main)).href);
const { InvocationContext } = createRequire(join(appDir, 'package.json'))('@azure/functions');

let invocations = 0;
process.on('message', async (msg) => {
  const reg = registrations.get(msg.fn);
  const logs = [];
  if (!reg) {
    process.send({ id: msg.id, ok: false, error: { message: `no function ${msg.fn}` }, logs });
    return;
  }
  const trigger = Object.entries(reg.metadata.bindings).find(([, b]) => b.direction === 'in');
  const context = new InvocationContext({
    invocationId: `inv-${++invocations}`,
    functionName: msg.fn,
    triggerMetadata: msg.triggerMetadata ?? {},
    options: { trigger: { name: trigger[0], ...trigger[1] } },
    logHandler: (level, ...args) => logs.push({ level, message: args.map(String).join(' ') }),
  });
  try {
    const result = await reg.callback(msg.input, context);
    process.send({ id: msg.id, ok: true, result: result ?? null, logs });
  } catch (e) {
    process.send({
      id: msg.id,
      ok: false,
      error: { name: e?.name, code: e?.code ?? null, message: String(e?.message ?? e) },
      logs,
    });
  }
});

process.send({
  ready: true,
  functions: [...registrations.values()].map((r) => r.metadata),
  systemLogs,
});
