import type { Command } from 'commander';
import { ConfigError } from '../../shared/core/errors.js';
import type { ImportWrapAlgorithm } from '../../shared/core/ports/KeyProvider.js';
import { expiryFrom, importKeyByRef, materialSourceOf } from '../../shared/core/usecases/byok.js';
import { type GlobalOptions, withSession } from '../session.js';

const ALGORITHMS: readonly ImportWrapAlgorithm[] = ['rsa-aes-kwp-sha1', 'rsa-oaep-sha1'];

interface ImportOptions {
  from: string;
  to: string;
  fromProvider?: string;
  toProvider?: string;
  algorithm?: string;
  expires?: string;
  reimport?: boolean;
}

/** `rekey byok`: bring key material from an HSM into a cloud KMS (docs/byok.md). */
export function registerByok(program: Command, globals: () => GlobalOptions): void {
  const byok = program
    .command('byok')
    .description('bring your own key: import HSM-made key material into a cloud KMS');
  byok
    .command('import')
    .description(
      'wrap key material inside the HSM under the target KMS wrapping key and import it (first material, new version, or --reimport)',
    )
    .requiredOption('--from <ref>', 'material on a PKCS#11 token, e.g. pkcs11:token=prod;object=byok-orders')
    .requiredOption('--to <ref>', 'target key, e.g. aws-kms://arn:aws:kms:eu-west-1:111122223333:key/<id>')
    .option('--from-provider <id>', 'configured provider of --from, when several pkcs11 providers exist')
    .option('--to-provider <id>', 'configured provider of --to, when several of its type exist')
    .option(
      '--algorithm <scheme>',
      `wrapping scheme: ${ALGORITHMS.join(' or ')} (default: the target's first)`,
    )
    .option(
      '--expires <when>',
      'material expiry: ISO-8601 date-time or a duration from now (P90D); default: never',
    )
    .option('--reimport', 'the key already had this material: restore it, or change its expiry', false)
    .action(async (o: ImportOptions) => {
      if (o.algorithm !== undefined && !ALGORITHMS.includes(o.algorithm as ImportWrapAlgorithm)) {
        throw new ConfigError(`--algorithm must be ${ALGORITHMS.join(' or ')}, got "${o.algorithm}"`);
      }
      await withSession(globals(), async (ctx, out) => {
        const r = await importKeyByRef(ctx, {
          from: o.from,
          to: o.to,
          ...(o.fromProvider ? { fromProvider: o.fromProvider } : {}),
          ...(o.toProvider ? { toProvider: o.toProvider } : {}),
          ...(o.algorithm ? { algorithm: o.algorithm as ImportWrapAlgorithm } : {}),
          ...(o.expires ? { expiresAt: expiryFrom(ctx.clock, o.expires) } : {}),
          ...(o.reimport ? { reimport: true } : {}),
        });
        out.result(r, () => {
          out.line(`imported ${r.sourceRef} into ${r.targetRef} with ${r.algorithm}`);
          out.line(
            `  version ${r.version.id}${r.expiresAt ? `, expires ${r.expiresAt}` : ', does not expire'}`,
          );
        });
      });
    });
  byok
    .command('generate')
    .description('make exportable AES-256 material on a PKCS#11 token (sensitive, extractable only wrapped)')
    .requiredOption('--provider <id>', 'configured pkcs11 provider')
    .requiredOption('--label <label>', 'CKA_LABEL of the new key: 1-100 letters, digits, ".", "_", "-"')
    .action(async (o: { provider: string; label: string }) => {
      await withSession(globals(), async (ctx, out) => {
        const source = materialSourceOf(ctx, o.provider);
        if (!source.generateMaterial)
          throw new ConfigError(`provider "${o.provider}" cannot make BYOK material`);
        const ref = await source.generateMaterial({ label: o.label });
        await ctx.audit.append({
          actor: ctx.actor,
          action: 'byok.material_generated',
          target: ref.uri,
          details: { provider: o.provider },
        });
        out.result({ ref: ref.uri }, () => out.line(`generated ${ref.uri}`));
      });
    });
}
