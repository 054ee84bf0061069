import type { KeyMetadata, KMSClient } from '@aws-sdk/client-kms';
import type { KeyVersion, VersionState } from '../../core/domain/key.js';
import { IntegrityError, NotFoundError } from '../../core/errors.js';
import { globMatcher } from '../../core/policy/glob.js';

/**
 * Keys AWS KMS cannot rotate (asymmetric, HMAC, or symmetric keys the configuration says to
 * rotate by a new key) are rotated the way AWS recommends for them: create a new key with the
 * same spec, usage, description, policy and tags, then move the alias to it. The logical key is
 * the alias; its versions are the keys the alias has pointed to, oldest first.
 *
 * The history lives on the keys themselves, so it survives without rekey's own state:
 * - the new key carries `rekey:previous-key` = the ARN of the key it replaced;
 * - the replaced key carries `rekey:superseded-by` = the ARN of its successor, which also lets
 *   inventory leave it out of the key list (it is a version, not a key).
 */
export const TAG_PREVIOUS = 'rekey:previous-key';
export const TAG_SUPERSEDED = 'rekey:superseded-by';
export const CHAIN_TAGS: ReadonlySet<string> = new Set([TAG_PREVIOUS, TAG_SUPERSEDED]);

/** Longest history walked; a longer chain is reported rather than followed forever. */
const MAX_CHAIN = 1000;

const KEY_ARN = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):key\/(.+)$/;

/** What the alias-chain code needs from the provider: its clients and error translation. */
export interface KmsAccess {
  readonly providerId: string;
  client(region: string): KMSClient;
  /** Runs one SDK call, translating its failure into the core's errors. */
  call<T>(what: string, run: () => Promise<T>): Promise<T>;
  describe(region: string, keyId: string): Promise<KeyMetadata>;
  tags(region: string, arn: string): Promise<Record<string, string>>;
  aliases(region: string, keyId: string): Promise<string[]>;
}

/** One key of an alias's history. `md` is absent when the key no longer exists (deleted). */
export interface ChainLink {
  arn: string;
  md?: KeyMetadata;
  tags: Record<string, string>;
}

export function parseKeyArn(arn: string): { region: string; account: string; keyId: string } | null {
  const m = KEY_ARN.exec(arn);
  return m ? { region: m[2]!, account: m[3]!, keyId: m[4]! } : null;
}

/** Tags without the chain's own bookkeeping: what a successor key inherits. */
export function userTags(tags: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(tags)) if (!CHAIN_TAGS.has(k)) out[k] = v;
  return out;
}

/**
 * Whether the key behind an alias is managed as an alias chain: it already is one (it carries
 * `rekey:previous-key`), AWS cannot rotate it (asymmetric, HMAC), or the configuration lists one
 * of its aliases for rotation by a new key. A key without an alias never is.
 */
export function isAliasManaged(
  md: KeyMetadata,
  aliases: string[],
  tags: Record<string, string>,
  newKeyAliases: string[],
): boolean {
  if (aliases.length === 0) return false;
  if (tags[TAG_PREVIOUS]) return true;
  if ((md.KeySpec ?? 'SYMMETRIC_DEFAULT') !== 'SYMMETRIC_DEFAULT') return true;
  return aliases.some((a) => newKeyAliases.some((g) => globMatcher(g)(a.replace(/^alias\//, ''))));
}

/**
 * The keys an alias has pointed to, oldest first, ending with `head` (the current target).
 * Follows `rekey:previous-key` back until a key without one or a deleted key. A link that
 * leaves the head's Region or account, or a loop, is an IntegrityError: the tags were edited.
 */
export async function walkChain(access: KmsAccess, region: string, head: ChainLink): Promise<ChainLink[]> {
  const links: ChainLink[] = [head];
  const seen = new Set([head.arn]);
  const at = parseKeyArn(head.arn);
  let cur = head;
  for (let i = 0; i < MAX_CHAIN; i++) {
    const prev = cur.tags[TAG_PREVIOUS];
    if (!prev) return links.reverse();
    const p = parseKeyArn(prev);
    if (!p || !at || p.region !== at.region || p.account !== at.account) {
      throw new IntegrityError(
        `${access.providerId}: key ${cur.arn} names ${prev} as its previous key (tag ${TAG_PREVIOUS}), ` +
          `which is not a key ARN in ${at?.region ?? region} of account ${at?.account ?? '?'}; fix or remove the tag`,
      );
    }
    if (seen.has(prev)) {
      throw new IntegrityError(
        `${access.providerId}: the ${TAG_PREVIOUS} tags starting at ${head.arn} form a loop at ${prev}`,
      );
    }
    seen.add(prev);
    let link: ChainLink;
    try {
      const md = await access.describe(region, prev);
      link = { arn: md.Arn!, md, tags: await access.tags(region, md.Arn!) };
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      // Deleted: the history stops here; older keys (if any) were deleted before it.
      links.push({ arn: prev, tags: {} });
      return links.reverse();
    }
    links.push(link);
    cur = link;
  }
  throw new IntegrityError(
    `${access.providerId}: the alias history of ${head.arn} is longer than ${MAX_CHAIN} keys`,
  );
}

/** A chain link as a version of the logical key. */
export function versionOfLink(link: ChainLink, next: ChainLink | undefined): KeyVersion {
  const created = link.md?.CreationDate ?? next?.md?.CreationDate ?? new Date(0);
  const v: KeyVersion = { id: link.arn, state: linkState(link), createdAt: created.toISOString() };
  if (v.state === 'destroy_scheduled' && link.md?.DeletionDate)
    v.destroyAt = link.md.DeletionDate.toISOString();
  return v;
}

function linkState(link: ChainLink): VersionState {
  switch (link.md?.KeyState) {
    case undefined:
      return 'destroyed';
    case 'Enabled':
      return 'enabled';
    case 'PendingDeletion':
    case 'PendingReplicaDeletion':
      return 'destroy_scheduled';
    default:
      // Disabled, PendingImport (imported material gone), Unavailable...: cannot decrypt now.
      return 'disabled';
  }
}
