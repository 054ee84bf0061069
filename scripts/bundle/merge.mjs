/**
 * Folds the chunks a function loads at every cold start into its bundle.
 *
 * With code splitting on, esbuild puts code that the bundle shares with a lazily loaded chunk
 * into chunks of their own, one per combination of importers. A cold start then reads, resolves
 * and links each of them: about half a millisecond a file in Node 20, paid up to a dozen times.
 * This second pass bundles the entry and its static chunks into one file, which also exports
 * (under reserved names) what the lazy chunks use, and rebuilds each lazy chunk so that it
 * imports those from the bundle instead. Lazy chunks stay lazy; nothing is loaded twice, since
 * every module still lives in exactly one file.
 */
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';

const posix = (p) => p.split('\\').join('/');
const relImport = (fromFile, toFile) => {
  const r = posix(relative(dirname(fromFile), toFile));
  return r.startsWith('.') ? r : `./${r}`;
};

/**
 * Merges in place. `files` is functionFiles() of the first pass; `settings` the esbuild
 * settings it used. Returns the metafile describing the merged outputs (inputs attributed as
 * before, so size reports and checks of what goes where still hold).
 */
export async function mergeInitChunks({ esbuild, root, metafile, entryKey, files, settings }) {
  const abs = (key) => join(root, key);
  const { init, lazy } = files;
  if (init.length === 1) return metafile;
  const chunks = init.filter((k) => k !== entryKey);
  const reserved = new Map(chunks.map((k, i) => [k, `__rk${i}_`]));
  const entryFile = abs(entryKey);

  // Pass 2a: the entry and its static chunks, as one module.
  const wrapper = join(dirname(entryFile), `.${basename(entryFile, '.mjs')}.merge.mjs`);
  const lines = [`export * from ${JSON.stringify(relImport(wrapper, entryFile))};`];
  for (const k of chunks) {
    const names = metafile.outputs[k].exports;
    if (names.length === 0) continue;
    const list = names.map((n) => `${n} as ${reserved.get(k)}${n}`).join(', ');
    lines.push(`export { ${list} } from ${JSON.stringify(relImport(wrapper, abs(k)))};`);
  }
  writeFileSync(wrapper, `${lines.join('\n')}\n`);
  const merged = `${entryFile}.merged`;
  const keepLazyExternal = {
    name: 'rekey-keep-lazy',
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) =>
        args.kind === 'dynamic-import' ? { path: args.path, external: true } : undefined,
      );
    },
  };
  let r;
  try {
    r = await esbuild.build({
      ...secondPass(root, settings, wrapper, merged),
      external: settings.external,
      plugins: [keepLazyExternal],
    });
  } finally {
    rmSync(wrapper, { force: true });
  }
  replaceWith(merged, entryFile);

  // Pass 2b: each lazy chunk takes what it shared with the entry from the merged bundle.
  const initSet = new Set(init.map(abs));
  const lazyOut = {};
  for (const k of lazy) {
    const file = abs(k);
    const toBundle = relImport(file, entryFile);
    const redirect = {
      name: 'rekey-redirect-init',
      setup(build) {
        build.onResolve({ filter: /.*/ }, (args) => {
          if (args.kind === 'entry-point') return undefined;
          if (args.path === toBundle && args.namespace === 'rekey-init')
            return { path: toBundle, external: true };
          if (!args.path.startsWith('.')) return undefined;
          const target = join(args.resolveDir, args.path);
          if (target === entryFile) return { path: toBundle, external: true };
          if (initSet.has(target)) return { path: target, namespace: 'rekey-init' };
          // Another lazy chunk, or a lazily imported one: stays a file of its own.
          return { path: args.path, external: true };
        });
        build.onLoad({ filter: /.*/, namespace: 'rekey-init' }, (args) => {
          const key = posix(relative(root, args.path));
          const names = metafile.outputs[key].exports;
          const list = names.map((n) => `${reserved.get(key)}${n} as ${n}`).join(', ');
          return { contents: `export { ${list} } from ${JSON.stringify(toBundle)};\n`, loader: 'js' };
        });
      },
    };
    const out = `${file}.merged`;
    const lr = await esbuild.build({ ...secondPass(root, settings, file, out), plugins: [redirect] });
    replaceWith(out, file);
    lazyOut[k] = lr.metafile.outputs[posix(relative(root, out))];
  }
  for (const k of chunks) {
    rmSync(abs(k), { force: true });
    rmSync(`${abs(k)}.map`, { force: true });
  }

  // The metafile, as the first pass would have written it had it made one file.
  const entryOut = r.metafile.outputs[posix(relative(root, merged))];
  const inputs = {};
  for (const k of init) Object.assign(inputs, metafile.outputs[k].inputs);
  const outputs = {};
  for (const [k, o] of Object.entries(metafile.outputs)) {
    if (chunks.includes(k) || chunks.some((c) => k === `${c}.map`)) continue;
    if (k === entryKey) {
      outputs[k] = {
        ...o,
        bytes: entryOut.bytes,
        inputs,
        imports: entryOut.imports.map(fixPath(root, entryFile)),
      };
    } else if (lazyOut[k]) {
      outputs[k] = {
        ...o,
        bytes: lazyOut[k].bytes,
        imports: lazyOut[k].imports.map(fixPath(root, abs(k))),
      };
    } else outputs[k] = o;
  }
  return { ...metafile, outputs };
}

/** esbuild options of a second-pass build: one entry, one ES module out, the first pass's settings. */
function secondPass(root, settings, entry, outfile) {
  return {
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: settings.platform,
    target: settings.target,
    format: 'esm',
    minify: settings.minify,
    legalComments: settings.legalComments,
    sourcemap: settings.sourcemap ? 'external' : false,
    metafile: true,
    logLevel: 'warning',
  };
}

/** Moves a second-pass output (and its map) over the file it replaces. */
function replaceWith(built, file) {
  renameSync(built, file);
  if (existsSync(`${built}.map`)) renameSync(`${built}.map`, `${file}.map`);
}

/** An import of the second pass's output, keyed the way the first pass keys them. */
function fixPath(root, finalFile) {
  return (i) => {
    if (!i.external || !i.path.startsWith('.')) return i;
    return { ...i, path: posix(relative(root, join(dirname(finalFile), i.path))), external: false };
  };
}
