import { ConflictError, NotFoundError } from '../platform/errors.ts';
import { assertValidName } from '../artifacts/names.ts';
import type { JobTable } from './job-table.ts';
import { isTerminal, type JobRecord } from './record.ts';

/**
 * Reading and cancelling a job, which need the table only (no queue, no kind): the jobs API
 * function does just this, and the runtime does the same.
 */
export async function readJob(table: JobTable, id: string): Promise<JobRecord> {
  assertValidName(id, 'job id');
  const job = await table.getJob(id);
  if (!job) throw new NotFoundError(`no job '${id}'`);
  return job;
}

/** Cancels a queued or running job: its pending steps do nothing, a running one stops at its next progress report. */
export async function cancelJob(table: JobTable, id: string, now: () => number = Date.now): Promise<JobRecord> {
  for (;;) {
    const job = await readJob(table, id);
    if (job.state === 'cancelled') return job;
    if (isTerminal(job.state)) throw new ConflictError(`job '${id}' has already ended (${job.state}); only a queued or running job can be cancelled`);
    const cancelled = await table.transition(id, ['queued', 'running'], 'cancelled', { error: 'cancelled by request' }, now());
    if (cancelled) return cancelled;
    // It ended, or was cancelled, in between: answer from its new state.
  }
}
