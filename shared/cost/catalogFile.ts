import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { buildCatalog, type PriceCatalog } from '../core/cost/catalog.js';
import { ConfigError, ValidationError } from '../core/errors.js';

/** The shipped catalog, from the source tree, from dist/ after a build, or beside a function bundle. */
export function defaultCatalogPath(): string {
  for (const rel of [
    '../../data/prices/catalog.json',
    '../../../data/prices/catalog.json',
    './data/prices/catalog.json',
    // From a chunk of a bundle (chunks/ beside it), loaded on first use.
    '../data/prices/catalog.json',
  ]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new ConfigError('price catalog data/prices/catalog.json not found next to the package');
}

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, {
      cause: e,
    });
  }
}

/** Loads the catalog (default: the shipped one) and an optional overrides file (YAML or JSON). */
export function loadCatalog(opts: { catalogPath?: string; overridesPath?: string } = {}): PriceCatalog {
  const catalogPath = opts.catalogPath ?? defaultCatalogPath();
  let catalogJson: unknown;
  try {
    catalogJson = JSON.parse(read(catalogPath, 'price catalog'));
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ValidationError(`price catalog ${catalogPath}: not valid JSON (${(e as Error).message})`);
  }
  let overrides: unknown;
  if (opts.overridesPath) {
    try {
      overrides = parseYaml(read(opts.overridesPath, 'price overrides'));
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ValidationError(`price overrides ${opts.overridesPath}: ${(e as Error).message}`);
    }
  }
  try {
    return buildCatalog(catalogJson, overrides);
  } catch (e) {
    if (e instanceof ValidationError) {
      const file = e.message.startsWith('price overrides') ? opts.overridesPath : catalogPath;
      throw new ValidationError(`${file}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}
