import { createRequire } from 'node:module';
import type cliProgress from 'cli-progress';
import type { ProgressEvent } from '../shared/core/usecases/context.js';

/** cli-progress, loaded when a bar is first drawn: quiet runs and pipes never need it. */
let barModule: typeof cliProgress | undefined;
const bars = (): typeof cliProgress => {
  barModule ??= createRequire(import.meta.url)('cli-progress') as typeof cliProgress;
  return barModule;
};

/**
 * Progress for long work: a bar on an interactive terminal, a plain line every few seconds
 * otherwise (CI logs, pipes). Always on stderr so stdout stays clean for --json.
 */
export function progressReporter(opts: { quiet: boolean }): {
  onProgress: (e: ProgressEvent) => void;
  stop(): void;
} {
  if (opts.quiet) return { onProgress: () => {}, stop: () => {} };
  const tty = Boolean(process.stderr.isTTY);
  let bar: cliProgress.SingleBar | null = null;
  let barKey = '';
  let lastLine = 0;
  let barStart = 0;
  const rateOf = (done: number) => {
    const secs = (Date.now() - barStart) / 1000;
    return secs > 0 ? Math.round(done / secs) : 0;
  };
  const stopBar = () => {
    bar?.stop();
    bar = null;
    barKey = '';
  };
  return {
    onProgress(e) {
      switch (e.kind) {
        case 'inventory':
          process.stderr.write(`inventory: ${e.providerId}: ${e.keys} key(s)\n`);
          return;
        case 'action_start':
          stopBar();
          process.stderr.write(`[${e.index + 1}/${e.total}] ${e.type} ${e.keyRef}\n`);
          return;
        case 'action_end':
          stopBar();
          if (e.status !== 'done')
            process.stderr.write(`[${e.index + 1}/${e.total}] ${e.type}: ${e.status}\n`);
          return;
        case 'rewrap': {
          const key = `${e.keyRef}|${e.storeId}`;
          if (tty) {
            if (barKey !== key) {
              stopBar();
              const { SingleBar, Presets } = bars();
              bar = new SingleBar(
                {
                  format:
                    '  re-wrap {store} [{bar}] {value}/{total} DEKs {percentage}% eta {eta_formatted} failed {failed}',
                  stream: process.stderr,
                },
                Presets.shades_classic,
              );
              bar.start(Math.max(e.total, e.done), 0, { store: e.storeId, failed: 0, rate: 0 });
              barKey = key;
              barStart = Date.now();
            }
            bar!.setTotal(Math.max(e.total, e.done));
            bar!.update(e.done, { failed: e.failed, rate: rateOf(e.done) });
          } else {
            if (barKey !== key) {
              barKey = key;
              barStart = Date.now();
            }
            const now = Date.now();
            if (now - lastLine > 2000 || e.done >= e.total) {
              lastLine = now;
              process.stderr.write(
                `  re-wrap ${e.storeId}: ${e.done}/${e.total} DEKs, ${rateOf(e.done)}/s, ${e.failed} failed\n`,
              );
            }
          }
          return;
        }
      }
    },
    stop: stopBar,
  };
}
