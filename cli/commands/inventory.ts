import { accessSync, constants, existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { inventoryFile } from '../../shared/core/cost/fromInventory.js';
import { parseKeyRef } from '../../shared/core/domain/keyRef.js';
import { ConfigError, errorMessage } from '../../shared/core/errors.js';
import { takeInventory } from '../../shared/core/usecases/inventory.js';
import { parseInventoryFile } from '../../shared/cost/estimate.js';
import { liveInventory } from '../../shared/cost/inputs.js';
import { type GlobalOptions, withSession } from '../session.js';

/**
 * `rekey inventory export`: every key of the configured providers, with its versions, in the
 * `rekey-inventory/1` format that `rekey cost estimate`, `explain`, `forecast` and `report cost`
 * read (docs/cost.md). The file is checked against that format before it is written.
 */
export function registerInventory(program: Command, globals: () => GlobalOptions): void {
  const inventory = program
    .command('inventory')
    .description('the keys rekey sees, as a file other tools can read');
  inventory
    .command('export')
    .description('write the inventory (rekey-inventory/1 JSON) that `rekey cost estimate` reads')
    .option('--out <file>', 'write here instead of stdout')
    .option('--latest', 'export the last recorded snapshot instead of listing providers now', false)
    .option(
      '--last-used',
      "ask providers that report it for each key's last use (AWS: GetKeyLastUsage, 5 per second)",
      false,
    )
    .action(async (o: { out?: string; latest: boolean; lastUsed: boolean }) => {
      // Checked before the providers are listed: a bad --out changes nothing, not even the snapshots.
      if (o.out) checkWritableFile(resolve(o.out), '--out');
      await withSession(globals(), async (ctx, out) => {
        let keys: Awaited<ReturnType<typeof liveInventory>>['keys'];
        let takenAt: string;
        if (o.latest) {
          const live = await liveInventory(ctx, { latest: true });
          keys = live.keys;
          takenAt = live.takenAt;
        } else {
          // A fresh listing is recorded, as `rekey plan` records one, so --latest can reuse it.
          const snap = await takeInventory(ctx);
          for (const e of snap.errors) {
            out.note(
              `warning: provider ${e.providerId} could not be listed (${e.message}): its keys are missing`,
            );
          }
          keys = snap.keys;
          takenAt = snap.takenAt;
        }
        const lastUsed = new Map<string, string>();
        if (o.lastUsed) {
          for (const k of keys) {
            const provider = ctx.providers.get(k.providerId);
            if (!provider?.lastUsed || !provider.capabilities().lastUsed) continue;
            try {
              const at = await provider.lastUsed(parseKeyRef(k.ref));
              if (at) lastUsed.set(k.ref, at);
            } catch (e) {
              out.note(`warning: last use of ${k.ref}: ${errorMessage(e)}`);
            }
          }
        }
        const file = inventoryFile(keys, { exportedAt: takenAt, lastUsed });
        const text = `${JSON.stringify(file, null, 2)}\n`;
        // What rekey writes, rekey must read back: check it against the documented format.
        parseInventoryFile(text, 'exported inventory');
        if (o.out) {
          const path = resolve(o.out);
          writeAtomically(path, text);
          out.note(`wrote ${file.keys.length} key(s) to ${path}`);
        } else {
          process.stdout.write(text);
        }
      });
    });
}

/** Writes through a temporary file in the same folder, so a reader never sees half a file. */
export function writeAtomically(path: string, text: string): void {
  const tmp = resolve(dirname(path), `.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new ConfigError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}`, {
      cause: e,
    });
  }
}

/** The file's folder exists and can be written, and the file itself is not a folder. */
export function checkWritableFile(path: string, flag: string): void {
  const dir = dirname(path);
  try {
    if (!statSync(dir).isDirectory()) throw new ConfigError(`${flag} ${path}: ${dir} is not a folder`);
    accessSync(dir, constants.W_OK);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(
      `${flag} ${path}: cannot write in ${dir} (${(e as NodeJS.ErrnoException).code ?? e})`,
    );
  }
  if (existsSync(path) && statSync(path).isDirectory()) throw new ConfigError(`${flag} ${path} is a folder`);
}
