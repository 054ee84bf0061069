import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The dependency rule of the design: shared/core is pure. It may import only itself, a few
 * pure libraries and node:crypto (hashing); never a provider, store, telemetry, runtime, SDK,
 * file system or network module.
 */
const ROOT = resolve(import.meta.dirname, '../..');
const CORE = join(ROOT, 'shared/core');
const ALLOWED_PACKAGES = new Set(['zod', 'yaml', 'picomatch', 'node:crypto']);

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return tsFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(source: string): string[] {
  const out: string[] = [];
  const re =
    /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^import\s+['"]([^'"]+)['"]/gm;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push((m[1] ?? m[2] ?? m[3])!);
  return out;
}

describe('architecture', () => {
  const files = tsFiles(CORE);

  it('finds the core sources', () => {
    expect(files.length).toBeGreaterThan(10);
  });

  it('shared/core imports nothing outside itself but pure allowed packages', () => {
    const violations: string[] = [];
    for (const f of files) {
      for (const spec of importsOf(readFileSync(f, 'utf8'))) {
        if (spec.startsWith('.')) {
          const target = resolve(dirname(f), spec);
          if (!target.startsWith(`${CORE}/`)) violations.push(`${relative(ROOT, f)} -> ${spec}`);
        } else if (!ALLOWED_PACKAGES.has(spec)) {
          violations.push(`${relative(ROOT, f)} -> ${spec}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it('the import scanner catches every import form (so the rule above can fail)', () => {
    const src = [
      "import { a } from '../../providers/x.js';",
      "import type { B } from 'better-sqlite3';",
      "export * from 'node:fs';",
      "const m = await import('node:net');",
      "import 'pg';",
    ].join('\n');
    expect(importsOf(src)).toEqual(['../../providers/x.js', 'better-sqlite3', 'node:fs', 'node:net', 'pg']);
  });

  it('adapters never import the CLI or function runtimes', () => {
    const violations: string[] = [];
    for (const f of tsFiles(join(ROOT, 'shared'))) {
      for (const spec of importsOf(readFileSync(f, 'utf8'))) {
        if (!spec.startsWith('.')) continue;
        const target = relative(ROOT, resolve(dirname(f), spec));
        if (target.startsWith('cli/') || target.startsWith('functions/'))
          violations.push(`${relative(ROOT, f)} -> ${spec}`);
      }
    }
    expect(violations).toEqual([]);
  });
});
