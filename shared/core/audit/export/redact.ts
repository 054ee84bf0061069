/**
 * Audit records never hold key material, but exports go to systems with wider access than the
 * state store, so any details field whose name says it could hold a secret is dropped on the
 * way out, at any depth. Names are split into words (camelCase, snake_case, kebab-case, dots)
 * and compared word by word, so `keyMaterial` and `pin_source` go while `spinner` stays.
 */
const SENSITIVE_WORDS = new Set([
  'material',
  'plaintext',
  'pin',
  'secret',
  'password',
  'passphrase',
  'passwd',
  'privatekey',
  'credential',
  'credentials',
]);
const SENSITIVE_PAIRS = [
  ['private', 'key'],
  ['plain', 'text'],
];

export function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

export function isSensitiveName(name: string): boolean {
  const w = words(name);
  if (w.some((x) => SENSITIVE_WORDS.has(x))) return true;
  return SENSITIVE_PAIRS.some(([a, b]) => w.some((x, i) => x === a && w[i + 1] === b));
}

export interface Redacted<T> {
  value: T;
  /** Dotted paths of the fields removed. */
  removed: string[];
}

function walk(v: unknown, path: string, removed: string[]): unknown {
  if (Array.isArray(v)) return v.map((x, i) => walk(x, `${path}[${i}]`, removed));
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const p = path ? `${path}.${k}` : k;
      if (isSensitiveName(k)) {
        removed.push(p);
        continue;
      }
      // defineProperty, so a field named `__proto__` stays a field and never becomes a prototype.
      Object.defineProperty(out, k, {
        value: walk(x, p, removed),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return v;
}

/** A copy of `details` without sensitive-looking fields, and the paths it dropped. */
export function redactDetails(details: Record<string, unknown>): Redacted<Record<string, unknown>> {
  const removed: string[] = [];
  const value = walk(details, '', removed) as Record<string, unknown>;
  return { value, removed };
}
