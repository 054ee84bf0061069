// Second half of `npm run build`: bundles each cloud's functions (dist/aws, dist/azure, dist/gcp)
// from the per-cloud scripts in scripts/bundle/. Each script exports `bundle({ root })`.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
for (const cloud of ['aws', 'azure', 'gcp']) {
  const file = join(root, 'scripts', 'bundle', `${cloud}.mjs`);
  if (!existsSync(file)) continue;
  const mod = await import(pathToFileURL(file).href);
  await mod.bundle({ root });
}
