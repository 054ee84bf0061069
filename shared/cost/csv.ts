import { ValidationError } from '../core/errors.js';

/** RFC 4180 CSV: quoted fields may hold commas, quotes ("") and line breaks; CRLF or LF. */

export interface CsvRecord {
  /** 1-based line where the record starts. */
  line: number;
  fields: string[];
}

/** Parses CSV text record by record. `source` names the input in error messages. */
export function* parseCsv(text: string, source: string): Generator<CsvRecord> {
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  while (i < n) {
    const startLine = line;
    const fields: string[] = [];
    let field = '';
    let col = 1;
    for (;;) {
      if (i < n && text[i] === '"') {
        const quoteLine = line;
        i++;
        for (;;) {
          if (i >= n) {
            throw new ValidationError(
              `${source}: line ${quoteLine}, column ${col}: unterminated quoted field`,
            );
          }
          const c = text[i]!;
          if (c === '"') {
            if (text[i + 1] === '"') {
              field += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === '\n') line++;
          field += c;
          i++;
        }
        if (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
          throw new ValidationError(
            `${source}: line ${line}, column ${col}: unexpected character after a closing quote`,
          );
        }
      } else {
        while (i < n && text[i] !== ',' && text[i] !== '\n' && text[i] !== '\r') {
          if (text[i] === '"') {
            throw new ValidationError(
              `${source}: line ${line}, column ${col}: a quote inside an unquoted field (quote the whole field)`,
            );
          }
          field += text[i];
          i++;
        }
      }
      fields.push(field);
      field = '';
      if (i < n && text[i] === ',') {
        i++;
        col++;
        continue;
      }
      if (text[i] === '\r') i++;
      if (text[i] === '\n') i++;
      line++;
      break;
    }
    if (fields.length === 1 && fields[0] === '') continue; // blank line
    yield { line: startLine, fields };
  }
}

/** One CSV field, quoted only when it must be. */
export function csvField(v: string): string {
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function csvLine(values: string[]): string {
  return `${values.map(csvField).join(',')}\r\n`;
}

/** A CSV file with a header row: rows as records keyed by header, with line numbers for errors. */
export class CsvTable {
  readonly header: string[];
  private readonly lower: Map<string, number>;
  constructor(
    readonly source: string,
    header: CsvRecord,
  ) {
    this.header = header.fields.map((h) => h.trim());
    this.lower = new Map(this.header.map((h, i) => [h.toLowerCase(), i]));
  }

  /** Index of the first of `names` present (case-insensitive), or undefined. */
  find(...names: string[]): number | undefined {
    for (const n of names) {
      const i = this.lower.get(n.toLowerCase());
      if (i !== undefined) return i;
    }
    return undefined;
  }

  require(...names: string[]): number {
    const i = this.find(...names);
    if (i === undefined) {
      throw new ValidationError(`${this.source}: line 1: missing column ${names.join(' or ')}`);
    }
    return i;
  }

  fail(rec: CsvRecord, col: number, message: string): never {
    throw new ValidationError(
      `${this.source}: line ${rec.line}, column ${col + 1} (${this.header[col]}): ${message}`,
    );
  }

  cell(rec: CsvRecord, col: number): string {
    if (rec.fields.length !== this.header.length) {
      throw new ValidationError(
        `${this.source}: line ${rec.line}: ${rec.fields.length} fields, the header has ${this.header.length}`,
      );
    }
    return rec.fields[col]!;
  }
}
