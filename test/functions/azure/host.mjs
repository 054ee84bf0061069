// A stand-in for the Azure Functions Node worker, for tests: run as a child process with the
// app's settings in its environment. Like the real worker it provides the `@azure/functions-core`
// module through which @azure/functions registers each `app.*` function, loads the app's
// package.json `main`, then invokes the registered handlers with real InvocationContext objects
// when the parent asks over IPC. Triggers arrive already decoded, as the host would pass them.
// HTTP-triggered functions are also served the way the host serves them: an HTTP server (on
// 127.0.0.1 only) routes /api/<route> to the handler as an HttpRequest and writes back its answer.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
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
const { InvocationContext, HttpRequest, HttpResponse } = createRequire(join(appDir, 'package.json'))(
  '@azure/functions',
);

let invocations = 0;

function contextFor(fn, reg, triggerMetadata, logs) {
  const trigger = Object.entries(reg.metadata.bindings).find(([, b]) => b.direction === 'in');
  return new InvocationContext({
    invocationId: `inv-${++invocations}`,
    functionName: fn,
    triggerMetadata,
    options: { trigger: { name: trigger[0], ...trigger[1] } },
    logHandler: (level, ...args) => logs.push({ level, message: args.map(String).join(' ') }),
  });
}

/** A route template as the host reads it ({name}, {name:constraint}, {*catchall}), under /api. */
function routeMatcher(template) {
  let re = '^/api';
  for (const part of template.split('/').filter(Boolean)) {
    const all = /^\{\*(\w+)\}$/.exec(part);
    const param = /^\{(\w+)(?::[^}]*)?\??\}$/.exec(part);
    if (all) re += `(?:/(?<${all[1]}>.*))?`;
    else if (param) re += `/(?<${param[1]}>[^/]+)`;
    else re += `/${part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
  }
  return new RegExp(`${re}/?$`, 'i');
}

const httpRoutes = [...registrations.entries()].flatMap(([name, reg]) =>
  Object.values(reg.metadata.bindings)
    .filter((b) => b.type === 'httpTrigger')
    .map((b) => ({
      name,
      reg,
      match: routeMatcher(b.route ?? name),
      methods: (b.methods ?? ['GET', 'POST']).map((m) => m.toUpperCase()),
    })),
);

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
  const method = (req.method ?? 'GET').toUpperCase();
  const route = httpRoutes.find((r) => r.match.test(url.pathname));
  if (!route?.methods.includes(method)) {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  const logs = [];
  const request = new HttpRequest({
    method,
    url: url.href,
    headers,
    body: { bytes: Buffer.concat(chunks) },
    params: { ...(route.match.exec(url.pathname).groups ?? {}) },
  });
  let status = 500;
  let head = {};
  let body = Buffer.alloc(0);
  try {
    const out = await route.reg.callback(request, contextFor(route.name, route.reg, {}, logs));
    const response = out instanceof HttpResponse ? out : new HttpResponse(out ?? {});
    status = response.status ?? 200;
    body = Buffer.from(await response.arrayBuffer());
    response.headers.forEach((v, k) => {
      head[k] = v;
    });
  } catch (e) {
    logs.push({ level: 'error', message: `Executed '${route.name}' (Failed): ${e?.message ?? e}` });
    status = 500;
    head = {};
    body = Buffer.alloc(0);
  }
  // The invocation's logs go to the parent before the answer does.
  await new Promise((resolve) => process.send({ http: true, logs }, resolve));
  res.writeHead(status, head).end(body);
});
const httpPort = httpRoutes.length
  ? await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)))
  : null;
process.on('disconnect', () => server.close());
process.on('message', async (msg) => {
  const reg = registrations.get(msg.fn);
  const logs = [];
  if (!reg) {
    process.send({ id: msg.id, ok: false, error: { message: `no function ${msg.fn}` }, logs });
    return;
  }
  const context = contextFor(msg.fn, reg, msg.triggerMetadata ?? {}, logs);
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
  httpPort,
  systemLogs,
});
