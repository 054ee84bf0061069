import type { ManagedKey } from '../domain/key.js';
import type { RekeyContext } from '../usecases/context.js';

/**
 * Versions rekey has marked compromised (records of kind `compromised`, written by compromise
 * handling). Providers may have nowhere to keep the flag, so inventories lay it over the keys
 * they list: plans and compliance reports then see it whatever the provider.
 */
export const COMPROMISED_KIND = 'compromised';

export function compromisedId(keyRef: string, version: string): string {
  return `${keyRef}#${version}`;
}

/** Versions marked compromised, by key ref (for inventories and reports). */
export async function compromisedVersions(ctx: RekeyContext): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  let afterId: string | undefined;
  for (;;) {
    const page = await ctx.state.listRecords(COMPROMISED_KIND, {
      limit: 500,
      ...(afterId ? { afterId } : {}),
    });
    for (const r of page) {
      const { keyRef, version } = r.body as { keyRef: string; version: string };
      if (!out.has(keyRef)) out.set(keyRef, new Set());
      out.get(keyRef)!.add(version);
    }
    if (page.length < 500) break;
    afterId = page[page.length - 1]!.id;
  }
  return out;
}

/** Sets the `compromised` flag on key versions rekey has marked (providers may not store it). */
export function withCompromiseMarks(keys: ManagedKey[], marks: Map<string, Set<string>>): ManagedKey[] {
  if (marks.size === 0) return keys;
  return keys.map((k) => {
    const m = marks.get(k.ref);
    if (!m) return k;
    return { ...k, versions: k.versions.map((v) => (m.has(v.id) ? { ...v, compromised: true } : v)) };
  });
}
