import type { Command } from 'commander';
import type { JobView } from '../../core/jobs/record.ts';
import { isValidName } from '../../core/artifacts/names.ts';
import { cliContext, CliError, type CliOptions } from '../context.ts';
import { intervalOption, sleep, timeoutOption } from '../options.ts';
import { ProgressDisplay, type ProgressSnapshot } from '../progress.ts';

interface StatusFlags {
  watch?: boolean;
  interval: number;
  timeout: number;
}

function jobId(id: string): string {
  if (!isValidName(id)) throw new CliError(`invalid job id ${JSON.stringify(id.slice(0, 80))}: must match [a-z0-9][a-z0-9._-]{0,63}`, 2);
  return id;
}

/** The job's own progress when its steps report one, else its steps counted. */
export function snapshotOf(job: JobView): ProgressSnapshot {
  const p = job.progress;
  return p
    ? { label: job.id, state: job.state, done: p.done, total: p.total, ratePerSecond: p.ratePerSecond, stage: p.stage }
    : { label: job.id, state: job.state, done: job.stepsSucceeded + job.stepsFailed, total: job.stepsTotal };
}

/**
 * Follows a job with one progress line until it ends; throws unless it succeeded. Every command
 * that starts a job on the runtime (`mass jobs status --watch`, `mass train --watch`) watches here.
 */
export async function watchJob(read: () => Promise<JobView>, first: JobView, flags: { interval: number; timeout: number }): Promise<JobView> {
  let job = first;
  const display = new ProgressDisplay();
  const started = Date.now();
  display.update(snapshotOf(job));
  while (job.state === 'queued' || job.state === 'running') {
    if (Date.now() - started > flags.timeout * 1000) {
      display.stop();
      throw new CliError(`gave up watching after ${flags.timeout} s; the job goes on: mass jobs status ${job.id}`);
    }
    await sleep(flags.interval);
    job = await read();
    display.update(snapshotOf(job));
  }
  display.stop();
  if (job.state !== 'succeeded') throw new CliError(`job ${job.id} ${job.state}: ${job.error ?? 'no reason recorded'}`);
  return job;
}

export function registerJobsCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();
  const jobs = program.command('jobs').description('follow and cancel jobs of every kind (GET /v2/jobs/{id})');

  jobs
    .command('status')
    .description('print a job; with --watch, follow its progress until it ends')
    .argument('<id>', 'job id')
    .option('--watch', 'show one progress line until the job ends; exit 0 only if it succeeded')
    .addOption(intervalOption('with --watch', 1))
    .addOption(timeoutOption('with --watch', 86_400))
    .action(async (rawId: string, flags: StatusFlags) => {
      const id = jobId(rawId);
      const ctx = cliContext(global());
      const read = async () => JSON.parse(Buffer.from((await ctx.request('GET', `/v2/jobs/${id}`)).bytes).toString('utf8')) as JobView;
      const job = await read();
      if (!flags.watch) {
        console.log(JSON.stringify(job, null, 2));
        return;
      }
      console.log(JSON.stringify((await watchJob(read, job, flags)).result ?? null));
    });

  jobs
    .command('cancel')
    .description('cancel a queued or running job; its running step stops at its next progress report')
    .argument('<id>', 'job id')
    .action(async (rawId: string) => {
      const id = jobId(rawId);
      const { bytes } = await cliContext(global()).request('POST', `/v2/jobs/${id}/cancel`);
      const job = JSON.parse(Buffer.from(bytes).toString('utf8')) as JobView;
      console.log(`job ${job.id} ${job.state}`);
    });
}
