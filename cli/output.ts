/** Human and machine output. Data goes to stdout; progress and diagnostics to stderr. */
export interface Output {
  json: boolean;
  /** Prints a value as JSON (machine mode) or calls `human` to print text. */
  result(value: unknown, human: () => void): void;
  line(text?: string): void;
  note(text: string): void;
}

export function makeOutput(json: boolean): Output {
  return {
    json,
    result(value, human) {
      if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else human();
    },
    line(text = '') {
      process.stdout.write(`${text}\n`);
    },
    note(text) {
      process.stderr.write(`${text}\n`);
    },
  };
}

/** A plain fixed-width table; cells are truncated to `max` characters. */
export function table(headers: string[], rows: (string | number)[][], max = 80): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => String(c)))].map((r) =>
    r.map((c) => (c.length > max ? `${c.slice(0, max - 1)}…` : c)),
  );
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [fmt(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(fmt)].join('\n');
}
