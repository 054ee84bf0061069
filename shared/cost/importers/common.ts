import { LineCounter, parseDocument } from 'yaml';
import type { RequestClass, UsageCounter } from '../../core/cost/types.js';
import { ValidationError } from '../../core/errors.js';

/** What every importer returns: usage counters per key (or resource) per class per month. */
export interface ImportResult {
  usage: UsageCounter[];
  /** Rows read that carry no per-key request usage (storage lines, other services, no key). */
  skipped: number;
  /** Rows accepted with a caveat, or skipped for a reason worth telling. At most 20 kept. */
  warnings: string[];
}

export class UsageAccumulator {
  private readonly m = new Map<string, UsageCounter>();
  skipped = 0;
  readonly warnings: string[] = [];
  constructor(private readonly source: string) {}

  add(ref: string, cls: RequestClass, count: number, period: string, version?: string): void {
    const k = `${ref}\u0000${version ?? ''}\u0000${cls}\u0000${period}`;
    const u = this.m.get(k);
    if (u) u.count += count;
    else
      this.m.set(k, { ref, class: cls, count, period, source: this.source, ...(version ? { version } : {}) });
  }

  warn(message: string): void {
    if (this.warnings.length < 20) this.warnings.push(message);
  }

  result(): ImportResult {
    return { usage: [...this.m.values()], skipped: this.skipped, warnings: this.warnings };
  }
}

/** Reads a stream (file, S3 body, HTTP response) into text for an importer. */
export async function readText(stream: AsyncIterable<string | Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let out = '';
  for await (const chunk of stream)
    out += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
  return out + decoder.decode();
}

/** YYYY-MM of an ISO timestamp or date, or undefined. */
export function monthOf(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{4})-(\d{2})-\d{2}/.exec(value);
  if (m && Number(m[2]) >= 1 && Number(m[2]) <= 12) return `${m[1]}-${m[2]}`;
  const us = /^(\d{1,2})\/\d{1,2}\/(\d{4})/.exec(value); // Azure exports: MM/DD/YYYY
  if (us && Number(us[1]) >= 1 && Number(us[1]) <= 12) return `${us[2]}-${us[1]!.padStart(2, '0')}`;
  return undefined;
}

export const awsRef = (arn: string): string | undefined =>
  /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(arn) ? `aws-kms://${arn}` : undefined;

/** GCP key (version) name, with or without the //cloudkms.googleapis.com/ prefix. */
export function gcpRef(name: string): { ref: string; version?: string } | undefined {
  const m =
    /^(?:\/\/cloudkms\.googleapis\.com\/)?(projects\/[^/]+\/locations\/[^/]+\/keyRings\/[^/]+\/cryptoKeys\/[^/]+)(?:\/cryptoKeyVersions\/([^/]+))?$/.exec(
      name,
    );
  if (!m) return undefined;
  return m[2] ? { ref: `gcp-kms://${m[1]}`, version: m[2] } : { ref: `gcp-kms://${m[1]}` };
}

/** Azure key id https://<vault>.vault.azure.net/keys/<name>[/<version>]. */
export function azureRef(id: string): { ref: string; version?: string } | undefined {
  const m = /^https:\/\/([^/]+)\/keys\/([^/?]+)(?:\/([^/?]+))?\/?(?:\?.*)?$/i.exec(id);
  if (!m) return undefined;
  const ref = `azure-kv://${m[1]!.toLowerCase()}/keys/${m[2]}`;
  return m[3] ? { ref, version: m[3] } : { ref };
}

/** Property at a dotted path, or undefined. */
export function at(obj: unknown, path: string): unknown {
  let cur: unknown = obj;
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

/** line:column of a character offset. */
export function lineCol(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: offset - last };
}

/** Parses a JSON document, turning a syntax error into one naming line and column. */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const pos = /position (\d+)/.exec(String((e as Error).message));
    const where = pos ? lineCol(text, Number(pos[1])) : undefined;
    throw new ValidationError(
      `${source}: ${where ? `line ${where.line}, column ${where.column}: ` : ''}not valid JSON (${(e as Error).message})`,
    );
  }
}

/**
 * Where an element of a JSON document starts (line and column), for error messages about
 * records inside one big document. Only called on the error path: it re-parses with positions.
 */
export function locate(text: string, path: (string | number)[]): string {
  try {
    const lc = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lc });
    const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
    if (node?.range) {
      const p = lc.linePos(node.range[0]);
      return `line ${p.line}, column ${p.col}`;
    }
  } catch {
    // fall through: the path alone still names the record
  }
  return path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
}

/**
 * Records of a log export: a JSON array, an object holding an array (`Records`, `records`,
 * `entries`), or JSON lines. Yields each record with a function that locates a field of it.
 */
export function* logRecords(
  text: string,
  source: string,
  arrayKeys: string[],
): Generator<{ rec: unknown; where: (field: string) => string }> {
  const trimmed = text.trimStart();
  const first = trimmed[0];
  const asDocument = first === '[' || (first === '{' && !isJsonLines(trimmed, arrayKeys));
  if (asDocument) {
    const doc = parseJson(text, source);
    let arr: unknown[] | undefined;
    let prefix: (string | number)[] = [];
    if (Array.isArray(doc)) arr = doc;
    else {
      for (const k of arrayKeys) {
        const v = (doc as Record<string, unknown>)[k];
        if (Array.isArray(v)) {
          arr = v;
          prefix = [k];
          break;
        }
      }
    }
    if (!arr)
      throw new ValidationError(
        `${source}: expected a JSON array or an object with ${arrayKeys.join(' or ')}[]`,
      );
    for (let i = 0; i < arr.length; i++) {
      const path = [...prefix, i];
      const label = `${prefix.length ? `${prefix[0]}` : ''}[${i}]`;
      yield {
        rec: arr[i],
        where: (field) => `${source}: ${label} (${locate(text, path)}), column ${field}`,
      };
    }
    return;
  }
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    if (!l) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(l);
    } catch (e) {
      const pos = /position (\d+)/.exec(String((e as Error).message));
      throw new ValidationError(
        `${source}: line ${i + 1}${pos ? `, column ${Number(pos[1]) + 1}` : ''}: not valid JSON (${(e as Error).message})`,
      );
    }
    // A JSON-lines file of batches (Azure storage exports: one {"records": [...]} per line).
    const inner = arrayKeys.map((k) => at(rec, k)).find(Array.isArray) as unknown[] | undefined;
    if (inner) {
      for (let j = 0; j < inner.length; j++) {
        yield { rec: inner[j], where: (field) => `${source}: line ${i + 1}, record ${j}, column ${field}` };
      }
      continue;
    }
    yield { rec, where: (field) => `${source}: line ${i + 1}, column ${field}` };
  }
}

function isJsonLines(text: string, arrayKeys: string[]): boolean {
  const nl = text.indexOf('\n');
  if (nl === -1) return false;
  const firstLine = text.slice(0, nl).trim();
  try {
    const v = JSON.parse(firstLine);
    // A one-line document holding the array is still a document if it is the whole text.
    return !(arrayKeys.some((k) => Array.isArray(at(v, k))) && text.slice(nl).trim() === '');
  } catch {
    return false;
  }
}

export function fail(where: string, message: string): never {
  throw new ValidationError(`${where}: ${message}`);
}
