import { createHash } from 'node:crypto';
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { PolicyError, type PolicyIssue } from '../errors.js';
import { ConfigSchema } from './schema.js';
import type { ApprovalsConfig, RekeyConfig, SigningConfig } from './types.js';

/**
 * Turns the text of a config file into a validated RekeyConfig, or throws one PolicyError that
 * lists every problem found, each at the exact line and column of the offending YAML node.
 * Pure: the caller reads the file; `file` is only used in messages and carried in the result.
 */
export function loadConfig(text: string, file: string): RekeyConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const { line, col } = lines.linePos(offset);
    return { line, column: col };
  };
  const fail = (issues: Omit<PolicyIssue, 'file'>[]): never => {
    throw new PolicyError(
      issues
        .map((i) => ({ file, ...i }))
        .sort((a, b) => a.line - b.line || a.column - b.column || a.path.localeCompare(b.path)),
    );
  };

  if (doc.errors.length > 0) {
    fail(doc.errors.map((e) => ({ ...at(e.pos[0]), path: '', message: `YAML: ${firstLine(e.message)}` })));
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) {
    fail([{ line: 1, column: 1, path: '', message: 'the file is empty: a config starts with "version: 1"' }]);
  }
  if (!isMap(root)) {
    const found = isSeq(root) ? 'a list' : 'a single value';
    fail([
      {
        ...at(root!.range?.[0] ?? 0),
        path: '',
        message: `the file must be a mapping (version, providers, stores, policies), not ${found}`,
      },
    ]);
  }

  // Keys must be plain scalars: a mapping or list used as a key has no place in a config (and
  // would otherwise be stringified with a process warning).
  const badKeys: Omit<PolicyIssue, 'file'>[] = [];
  visit(doc, {
    Pair(_, pair) {
      if (!isScalar(pair.key) || (pair.key.value !== null && typeof pair.key.value === 'object')) {
        const node = pair.key as { range?: [number, number, number] | null } | null;
        badKeys.push({
          ...at(node?.range?.[0] ?? 0),
          path: '',
          message: 'mapping keys must be plain strings',
        });
      }
    },
  });
  if (badKeys.length > 0) fail(badKeys);

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // Aliases to missing anchors and alias bombs surface here, not in doc.errors.
    let offset = 0;
    visit(doc, {
      Alias(_, node) {
        if (node.resolve(doc) === undefined) {
          offset = node.range?.[0] ?? 0;
          return visit.BREAK;
        }
      },
    });
    fail([{ ...at(offset), path: '', message: `YAML: ${firstLine((e as Error).message)}` }]);
  }
  const obj = data as Record<string, unknown>;
  const locate = (path: PropertyKey[], key = false) => at(nodeAt(doc, path, key)?.range?.[0] ?? 0);

  if ('version' in obj && obj.version !== 1) {
    fail([
      {
        ...locate(['version']),
        path: 'version',
        message: `unsupported version ${(JSON.stringify(obj.version) ?? String(obj.version)).slice(0, 40)}: this rekey reads version 1`,
      },
    ]);
  }

  const issues: Omit<PolicyIssue, 'file'>[] = [];
  const parsed = ConfigSchema.safeParse(data);
  if (!parsed.success) {
    for (const iss of parsed.error.issues) {
      for (const d of explain(iss, data))
        issues.push({ ...locate(d.path, d.key), path: formatPath(d.path), message: d.message });
    }
  }
  for (const d of crossReferences(obj))
    issues.push({ ...locate(d.path), path: formatPath(d.path), message: d.message });
  if (issues.length > 0 || !parsed.success) fail(issues);

  const out = parsed.data!;
  return {
    version: 1,
    file,
    digest: createHash('sha256').update(text, 'utf8').digest('hex'),
    providers: out.providers,
    stores: out.stores,
    ...(out.state ? { state: out.state } : {}),
    ...(out.events ? { events: out.events } : {}),
    ...(out.metrics ? { metrics: out.metrics } : {}),
    ...(out.incidents
      ? { incidents: { ...out.incidents, signing: out.incidents.signing as SigningConfig } }
      : {}),
    ...(out.approvals
      ? {
          approvals: {
            ...out.approvals,
            tokens: out.approvals.tokens as SigningConfig | undefined,
          } as ApprovalsConfig,
        }
      : {}),
    policies: out.policies.map((p, index) => ({ ...p, index })),
  };
}

function firstLine(s: string): string {
  return s.split('\n', 1)[0]!.trim();
}

type Path = PropertyKey[];
interface Described {
  path: Path;
  message: string;
  /** Point at the key of the last path element rather than its value. */
  key?: boolean;
}

/**
 * The YAML node a path points at, or the nearest one that exists on the way there: the key of a
 * pair whose value is missing, or the enclosing collection of a field that is absent.
 */
function nodeAt(
  doc: Document,
  path: Path,
  wantKey: boolean,
): { range?: [number, number, number] | null } | undefined {
  let node: unknown = doc.contents;
  let best = node as { range?: [number, number, number] | null } | undefined;
  for (let i = 0; i < path.length; i++) {
    if (isAlias(node)) node = node.resolve(doc);
    const seg = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      if (isScalar(pair.key) && pair.key.range) best = pair.key;
      if (wantKey && i === path.length - 1) break;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
    } else {
      break;
    }
    const r = (node as { range?: unknown } | null)?.range;
    if (!r) break;
    best = node as typeof best;
  }
  return best;
}

export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(String(seg))) out += out ? `.${String(seg)}` : String(seg);
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

function valueAt(data: unknown, path: Path): { found: boolean; value?: unknown } {
  let v: unknown = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, seg as string)) return { found: false };
    v = (v as Record<PropertyKey, unknown>)[seg as string];
  }
  return { found: true, value: v };
}

function kindOf(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return `a ${typeof v}`;
}

const EXPECTED: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  record: 'a mapping',
};

const isDefault = (message: string) => /^(Invalid input|Invalid option|Too small|Too big)\b/.test(message);

/** One zod issue -> messages a person can act on, at the node they concern. */
function explain(iss: z.core.$ZodIssue, data: unknown): Described[] {
  const path = iss.path as Path;
  const last = path[path.length - 1];
  const here = valueAt(data, path);
  switch (iss.code) {
    case 'unrecognized_keys':
      return iss.keys.map((k) => ({ path: [...path, k], key: true, message: `unknown field "${k}"` }));
    case 'invalid_key': {
      const why = iss.issues[0]?.message ?? iss.message;
      return [
        {
          path,
          key: true,
          message: `invalid id "${String(last)}": ${why}`,
        },
      ];
    }
    case 'invalid_union': {
      const options = (iss as { options?: unknown[] }).options;
      if ((iss as { discriminator?: string }).discriminator && options) {
        const list = options.map(String).join(', ');
        return [
          here.found
            ? {
                path,
                message: `unknown ${String(last)} ${JSON.stringify(here.value)}: expected one of ${list}`,
              }
            : { path, message: `missing required field "${String(last)}" (one of ${list})` },
        ];
      }
      return [{ path, message: iss.message }];
    }
    default:
      break;
  }
  if (!here.found && (iss.code === 'invalid_type' || iss.code === 'invalid_value')) {
    const hint = path.length === 1 && last === 'version' ? ': a config starts with "version: 1"' : '';
    return [{ path, message: `missing required field "${String(last)}"${hint}` }];
  }
  if (!isDefault(iss.message)) return [{ path, message: iss.message }];
  switch (iss.code) {
    case 'invalid_type':
      return [
        { path, message: `expected ${EXPECTED[iss.expected] ?? iss.expected}, got ${kindOf(here.value)}` },
      ];
    case 'invalid_value':
      return [{ path, message: `must be one of ${iss.values.map(String).join(', ')}` }];
    case 'too_small':
    case 'too_big': {
      const bound = iss.code === 'too_small' ? iss.minimum : iss.maximum;
      const word = iss.code === 'too_small' ? 'at least' : 'at most';
      if (iss.origin === 'array') return [{ path, message: `must list ${word} ${String(bound)} item(s)` }];
      if (iss.origin === 'string') {
        return [
          {
            path,
            message:
              iss.code === 'too_small' ? 'must not be empty' : `must be ${word} ${String(bound)} characters`,
          },
        ];
      }
      return [{ path, message: `must be ${word} ${String(bound)}` }];
    }
    default:
      return [{ path, message: iss.message }];
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** References between sections, and policy name uniqueness: checked even when other fields are wrong. */
function crossReferences(data: Record<string, unknown>): Described[] {
  const out: Described[] = [];
  const providers = isObject(data.providers) ? Object.keys(data.providers) : undefined;
  const stores = isObject(data.stores)
    ? Object.keys(data.stores)
    : data.stores === undefined
      ? []
      : undefined;
  const policies = Array.isArray(data.policies) ? data.policies : [];
  const names = new Map<string, number>();
  const refs = (list: unknown, known: string[] | undefined, what: string, path: Path) => {
    if (!known || !Array.isArray(list)) return;
    list.forEach((v, k) => {
      if (typeof v === 'string' && !known.includes(v)) {
        const has = known.length > 0 ? `configured: ${known.join(', ')}` : `no ${what}s are configured`;
        out.push({ path: [...path, k], message: `unknown ${what} "${v}" (${has})` });
      }
    });
  };
  const approvals = isObject(data.approvals) ? data.approvals : undefined;
  const approverCount = Array.isArray(approvals?.approvers) ? new Set(approvals.approvers).size : 0;
  policies.forEach((p, i) => {
    if (!isObject(p)) return;
    // Approvals a policy asks for must be grantable by the configured approvers.
    const wants: [Path, number][] = [];
    if (isObject(p.approvals)) {
      const q = typeof p.approvals.quorum === 'number' ? p.approvals.quorum : approvals?.quorum;
      wants.push([['policies', i, 'approvals'], typeof q === 'number' ? q : 2]);
    }
    if (isObject(p.onCompromise) && p.onCompromise.destroy === true)
      wants.push([['policies', i, 'onCompromise', 'destroy'], 1]);
    for (const [path, quorum] of wants) {
      if (!approvals) {
        out.push({ path, message: 'needs approvers: add a top-level approvals block (approvers, quorum)' });
      } else if (approverCount > 0 && quorum > approverCount) {
        out.push({
          path,
          message: `needs ${quorum} approval(s) but approvals.approvers names ${approverCount}`,
        });
      }
    }
    if (typeof p.name === 'string') {
      const first = names.get(p.name);
      if (first === undefined) names.set(p.name, i);
      else
        out.push({
          path: ['policies', i, 'name'],
          message: `duplicate policy name "${p.name}" (also policies[${first}])`,
        });
    }
    if (isObject(p.match))
      refs(p.match.provider, providers, 'provider', ['policies', i, 'match', 'provider']);
    if (isObject(p.rewrap)) refs(p.rewrap.stores, stores, 'store', ['policies', i, 'rewrap', 'stores']);
    if (isObject(p.byok) && typeof p.byok.source === 'string' && providers) {
      const src = p.byok.source;
      const pc = (data.providers as Record<string, unknown>)[src];
      if (!providers.includes(src)) {
        out.push({
          path: ['policies', i, 'byok', 'source'],
          message: `unknown provider "${src}" (configured: ${providers.join(', ') || 'none'})`,
        });
      } else if (isObject(pc) && typeof pc.type === 'string' && pc.type !== 'pkcs11') {
        out.push({
          path: ['policies', i, 'byok', 'source'],
          message: `provider "${src}" is ${pc.type}; a BYOK source is a pkcs11 provider (its HSM makes and exports the material)`,
        });
      }
    }
  });
  return out;
}
