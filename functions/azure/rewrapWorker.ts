import type { InvocationContext } from '@azure/functions';
import { ConflictError } from '../../shared/core/errors.js';
import { runRewrapShard } from '../../shared/core/usecases/scheduled.js';
import { log } from './log.js';
import { invoke } from './runtime.js';

/**
 * Storage Queue trigger: works one re-wrap shard. The host has already decoded the base64
 * message. Returning completes (deletes) the message; throwing makes the host put it back after
 * the visibility timeout, count the attempt, and move it to `<queue>-poison` after
 * `maxDequeueCount` (host.json). A shard another worker holds is thrown back that way too.
 */
export function rewrapWorker(message: unknown, context: InvocationContext) {
  return invoke(context, async ({ ctx }) => {
    const dequeueCount = Number(context.triggerMetadata?.dequeueCount ?? 1);
    const report = await runRewrapShard(ctx, message);
    log(report.status === 'failed' ? 'warn' : 'info', 'rewrap shard', {
      status: report.status,
      job: report.jobId,
      dequeueCount,
      ...report.counts,
      ...(report.jobCompleted ? { jobCompleted: report.jobCompleted } : {}),
    });
    if (report.status === 'busy') {
      throw new ConflictError(`re-wrap shard ${report.jobId} is held by another worker; retry later`);
    }
    // `failed`: the shard ran to its end; the DEKs that failed stay under their old version and
    // are reported in the job. Running it again would not change them, so the message is done.
    return report;
  });
}
