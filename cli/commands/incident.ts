import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ConfigError, ValidationError } from '../../shared/core/errors.js';
import { extractCloudEvents, type Transport } from '../../shared/core/governance/envelopes.js';
import {
  type CompromiseEventOutcome,
  getIncident,
  handleCompromise,
  handleCompromiseEvent,
  type IncidentReport,
  listIncidents,
} from '../../shared/core/usecases/handleCompromise.js';
import { eventVerifierFromConfig } from '../../shared/governance/signing.js';
import { EXIT } from '../exitCodes.js';
import { type Output, table } from '../output.js';
import { type GlobalOptions, withSession } from '../session.js';

const seconds = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(3)} s`);

export function printIncident(out: Output, r: IncidentReport): void {
  out.line(`Incident ${r.id}: ${r.status}`);
  out.line(`  key        ${r.keyRef} (provider ${r.providerId})`);
  out.line(`  version    ${r.version} (compromised)${r.newVersion ? `; DEKs moved to ${r.newVersion}` : ''}`);
  out.line(`  reason     ${r.reason}`);
  out.line(
    `  reported   ${r.reportedAt} by ${r.reportedBy}${r.origin ? ` (event ${r.origin.eventId} from ${r.origin.source})` : ''}`,
  );
  out.line(`  contained  ${r.containedAt ?? 'not yet'}; time to contain ${seconds(r.timeToContainMs)}`);
  if (r.destroy)
    out.line(
      `  destroy    ${r.destroy.status}${r.destroy.requestId ? ` (request ${r.destroy.requestId})` : ''}${r.destroy.destroyAt ? ` at ${r.destroy.destroyAt}` : ''}`,
    );
  out.line();
  out.line(
    table(
      ['at', 'step', 'detail'],
      r.timeline.map((t) => [t.at, t.step, t.detail]),
      110,
    ),
  );
  const stores = Object.entries(r.stores);
  if (stores.length) {
    out.line();
    out.line(
      table(
        ['store', 'moved', 'verified', 'failed', 'to'],
        stores.map(([id, s]) => [id, s.rewrapped, s.verified, s.failed, s.toVersion ?? '-']),
      ),
    );
  }
  if (r.remainingOlderDeks)
    out.line(
      `${r.remainingOlderDeks} DEK(s) under older, uncompromised versions are left to the next plan (rekey apply).`,
    );
  for (const f of r.failures) out.note(`failure at ${f.at} (${f.step}): ${f.error}`);
}

function actorOf(as: string | undefined): string | undefined {
  return as ?? process.env.REKEY_ACTOR ?? undefined;
}

export function registerIncident(program: Command, globals: () => GlobalOptions): void {
  const incident = program
    .command('incident')
    .description('compromise response: contain a compromised key version');
  incident
    .command('compromise <keyRef>')
    .description(
      'mark a version compromised, rotate now, re-wrap its DEKs first (verified), disable it; re-run to resume',
    )
    .option(
      '--version <id>',
      'the compromised version (default: the primary, or the open incident of the key)',
    )
    .requiredOption('--reason <text>', 'why; recorded in the incident and the audit log')
    .option('--id <incident>', 'incident id (default: derived from key and version, so a re-run resumes it)')
    .option('--provider <id>', 'configured provider id, when several of the same type exist')
    .option('--reported-at <time>', 'when it was reported (ISO-8601); time to contain counts from here')
    .option('--as <identity>', 'who acts (default: $REKEY_ACTOR)')
    .action(
      async (
        keyRef: string,
        o: {
          version?: string;
          reason: string;
          id?: string;
          provider?: string;
          reportedAt?: string;
          as?: string;
        },
      ) => {
        process.exitCode = await withSession(globals(), async (ctx, out) => {
          const report = await handleCompromise(ctx, {
            keyRef,
            reason: o.reason,
            actor: actorOf(o.as) ?? ctx.actor,
            ...(o.version ? { version: o.version } : {}),
            ...(o.id ? { incidentId: o.id } : {}),
            ...(o.provider ? { provider: o.provider } : {}),
            ...(o.reportedAt ? { reportedAt: o.reportedAt } : {}),
          });
          out.result(report, () => printIncident(out, report));
          return report.status === 'contained' ? EXIT.ok : EXIT.failed;
        });
      },
    );
  incident
    .command('show <id>')
    .description('the incident report: timeline, DEKs moved per store, time to contain, failures')
    .action(async (id: string) => {
      await withSession(globals(), async (ctx, out) => {
        const report = await getIncident(ctx, id);
        out.result(report, () => printIncident(out, report));
      });
    });
  incident
    .command('list')
    .description('every incident, newest first')
    .action(async () => {
      await withSession(globals(), async (ctx, out) => {
        const all = await listIncidents(ctx);
        out.result(all, () =>
          out.line(
            all.length
              ? table(
                  ['incident', 'key', 'version', 'status', 'reported', 'time to contain'],
                  all.map((r) => [
                    r.id,
                    r.keyRef,
                    r.version,
                    r.status,
                    r.reportedAt,
                    seconds(r.timeToContainMs),
                  ]),
                )
              : 'No incidents.',
          ),
        );
      });
    });
  incident
    .command('event [file]')
    .description(
      'handle key.compromised CloudEvents from a file or stdin (any supported envelope), as the runtimes do',
    )
    .option('--transport <kind>', 'cloudevents, eventbridge, eventgrid or pubsub (default: detected)')
    .action(async (file: string | undefined, o: { transport?: string }) => {
      const transports = ['cloudevents', 'eventbridge', 'eventgrid', 'pubsub'];
      if (o.transport && !transports.includes(o.transport))
        throw new ValidationError(`--transport must be one of ${transports.join(', ')}`);
      let text: string;
      try {
        text = readFileSync(file ?? 0, 'utf8');
      } catch (e) {
        throw new ConfigError(`cannot read ${file ?? 'stdin'}: ${(e as NodeJS.ErrnoException).code ?? e}`);
      }
      process.exitCode = await withSession(globals(), async (ctx, out) => {
        const verify = await eventVerifierFromConfig(ctx.config, ctx.baseDir);
        const results: CompromiseEventOutcome[] = [];
        for (const x of extractCloudEvents(text, o.transport as Transport | undefined)) {
          results.push(await handleCompromiseEvent(ctx, x.event, { verify }));
        }
        out.result(results, () => {
          for (const r of results) {
            out.line(`event ${r.eventId} from ${r.source}: ${r.outcome}`);
            printIncident(out, r.incident);
          }
        });
        return results.every((r) => r.incident.status === 'contained') ? EXIT.ok : EXIT.failed;
      });
    });
}
