#!/usr/bin/env node
// Writes schema/rekey-config.schema.json from the zod schema in shared/core/policy/schema.ts.
//
// Usage: node scripts/gen-schema.mjs        (from the repository root)
//
// Node 20 cannot run TypeScript directly, and the full build may be broken by unrelated work in
// progress, so this compiles only schema.ts and what it imports with the project's own tsc into
// node_modules/.cache (where `zod` and `yaml` still resolve), imports the result and writes the
// file. test/unit/policy/schema.test.ts fails whenever the committed file differs from what the
// schema generates, so run this after changing schema.ts and commit both.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'node_modules', '.cache', 'rekey-gen-schema');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const args = [
  tsc,
  '--outDir',
  outDir,
  '--rootDir',
  root,
  '--module',
  'nodenext',
  '--moduleResolution',
  'nodenext',
  '--target',
  'es2022',
  '--lib',
  'es2023',
  '--types',
  'node',
  '--strict',
  '--skipLibCheck',
  join(root, 'shared/core/policy/schema.ts'),
];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error('gen-schema: tsc failed');
  process.exit(r.status ?? 1);
}
// tsc emits ESM only if the nearest package.json says "type": "module".
writeFileSync(join(outDir, 'package.json'), '{ "type": "module" }\n');
const { configJsonSchema, schemaFileText } = await import(
  pathToFileURL(join(outDir, 'shared/core/policy/schema.js')).href
);
const target = join(root, 'schema/rekey-config.schema.json');
mkdirSync(dirname(target), { recursive: true });
writeFileSync(target, schemaFileText(configJsonSchema()));
console.log(`wrote ${target}`);
