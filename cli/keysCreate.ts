import type { Composed } from '../shared/compose.js';
import type { ManagedKey } from '../shared/core/domain/key.js';
import { ConfigError, ValidationError } from '../shared/core/errors.js';
import type { KeyCreator, KeyProvider } from '../shared/core/ports/KeyProvider.js';

function isCreator(p: KeyProvider): p is KeyProvider & KeyCreator {
  return typeof (p as Partial<KeyCreator>).createKey === 'function';
}

export async function createKey(
  ctx: Composed,
  name: string,
  opts: { provider?: string; tag: string[] },
): Promise<ManagedKey> {
  const tags: Record<string, string> = {};
  for (const t of opts.tag) {
    const eq = t.indexOf('=');
    if (eq <= 0) throw new ValidationError(`--tag "${t}" must be key=value`);
    tags[t.slice(0, eq)] = t.slice(eq + 1);
  }
  const candidates = [...ctx.providers.values()].filter((p) =>
    opts.provider ? p.id === opts.provider : true,
  );
  const provider = candidates.filter(isCreator)[0];
  if (!provider) {
    throw new ConfigError(
      opts.provider
        ? `provider ${opts.provider} cannot create keys`
        : 'no configured provider can create keys',
    );
  }
  const key = await provider.createKey({ name, tags });
  await ctx.audit.append({ actor: ctx.actor, action: 'key.created', target: key.ref, details: { tags } });
  return key;
}
