/**
 * Tuning studies on the job runtime. A study is a `tune` job whose steps are lanes: `parallel`
 * steps, each a worker that asks the study for a trial (conditional writes: no two workers get the
 * same one, never past the budget), runs the objective, reports intermediate values and tells the
 * metrics, and asks again until the study's trial or time budget is spent. A lane out of Lambda time
 * continues in a new invocation. Before each ask a lane fails the trials whose lease ran out (their
 * worker died) and so gives their places back; the scheduled sweep does the same when no lane runs.
 * When the last lane ends, the report is written and, on request, the winner registered.
 */
import { randomBytes } from 'node:crypto';
import * as z from 'zod';
import { BadRequestError, ConflictError } from '../platform/errors.ts';
import { JobCancelledError, JobStepError, LeaseLostError, type JobKind, type StepContext } from '../jobs/kinds.ts';
import type { JobRecord, Json, Placement } from '../jobs/record.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { NAME_PATTERN } from '../artifacts/names.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { checkMetrics, checkParameters, zodRefusal, type ObjectiveDefinition } from './objectives/objective.ts';
import { LAMBDA_PRICE, servingObjective } from './objectives/serving.ts';
import { trainingObjective } from './objectives/training.ts';
import { buildStudyReport, type StudyReport } from './report.ts';
import { renderStudyReportHtml } from './report-html.ts';
import { parseStudyConfig, studyConfigSchema } from './study.ts';
import type { StudyTable } from './study-table.ts';
import type { SearchSpace } from './space.ts';

export const TUNE_KIND = 'tune';
export const OBJECTIVES: ReadonlyMap<string, ObjectiveDefinition> = new Map([servingObjective, trainingObjective].map((o) => [o.type, o]));

/** Trials failing one after another before a lane gives up (the objective cannot run this study). */
export const MAX_CONSECUTIVE_FAILURES = 5;

type Log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

const studyRequestSchema = studyConfigSchema.extend({
  id: z.string().regex(NAME_PATTERN, 'a study id: [a-z0-9][a-z0-9._-]{0,63}').optional(),
  /** `{ "type": "serving" | "training", ...that objective's options }` */
  objective: z.looseObject({ type: z.string() }),
  space: z.unknown().optional(),
  /** Lanes: trials that run at once. */
  parallel: z.number().int().min(1).max(64).default(1),
  /** Register the winning trial's model as a new version (never routed until promoted). */
  register: z.boolean().default(false),
  /** Where the lanes run: Lambda (the default) or the container worker, where the stack runs one (docs/jobs.md, placement). */
  placement: z.enum(['lambda', 'container']).optional(),
});

/** What the tune job runs: the study (its configuration is in the study record) and its objective. */
export interface TuneJobRequest {
  study: string;
  objective: { type: string; options: Json };
  parallel: number;
  register: boolean;
  placement?: Placement;
}

export interface ParsedStudyRequest {
  id: string | undefined;
  config: unknown;
  job: TuneJobRequest;
  space: SearchSpace;
}

/** The objective named in a request, or a 400 that names it and the known ones. */
export function objectiveOf(type: string): ObjectiveDefinition {
  const objective = OBJECTIVES.get(type);
  if (!objective) throw new BadRequestError(`unknown objective '${type.slice(0, 40)}'; known: ${[...OBJECTIVES.keys()].join(', ')}`);
  return objective;
}

/**
 * Checks a POST /v2/studies body: the study configuration (space, samplers, budgets), the objective
 * and its options, and that the space and the metrics are ones the objective knows. Every refusal
 * is a 400 naming what is wrong; nothing is written before all of it passed.
 */
export function parseStudyRequest(body: unknown): ParsedStudyRequest {
  const parsed = studyRequestSchema.safeParse(body);
  if (!parsed.success) throw zodRefusal('study', parsed.error);
  const { id, objective: objectiveBody, parallel, register, placement, ...rest } = parsed.data;
  const objective = objectiveOf(objectiveBody.type);
  const { type: _type, ...optionsBody } = objectiveBody;
  const options = objective.parseOptions(optionsBody);
  const config = { ...rest, space: rest.space ?? objective.defaultSpace(options) };
  const study = parseStudyConfig(config);
  checkParameters(objective, study.space);
  objective.checkSpace?.(study.space, options);
  checkMetrics(objective, [...study.objectives.map((o) => o.metric), ...study.constraints.map((c) => c.metric)]);
  if (register && study.objectives.length > 1) throw new BadRequestError('invalid study: register needs a single objective; a Pareto front has no one winner');
  if (!study.maxTrials && !study.timeBudgetSeconds && study.sampler.type !== 'grid') {
    throw new BadRequestError('invalid study: give maxTrials or timeBudgetSeconds (only a grid ends by itself)');
  }
  return { id, config, job: { study: id ?? '', objective: { type: objective.type, options }, parallel, register, ...(placement ? { placement } : {}) }, space: study.space };
}

export interface TuneDeps {
  studies: StudyTable;
  store: ModelRepository;
  log?: Log;
  now?: () => number;
}

const exposedNames = new Set(['RangeError', 'TrainingGraphError', 'UnsupportedModelError', 'OnnxFormatError', 'CheckpointFormatError']);

/** A trial's failure as the study shows it: the error's own message when it is meant for the user. */
function trialFailure(error: unknown): string {
  const e = error as { expose?: boolean; name?: string };
  return e.expose || exposedNames.has(e.name ?? '') ? runtimeMessage(error) : `internal error (${e.name ?? 'Error'}); see the worker's logs`;
}

class WorkerStoppingError extends Error {
  override name = 'WorkerStoppingError';
}

/** A promise that rejects once `signal` aborts (never after `dispose`), to race a trial against. */
function whenAborted(signal: AbortSignal): { promise: Promise<never>; dispose(): void } {
  let listener: (() => void) | undefined;
  const promise = new Promise<never>((_resolve, reject) => {
    listener = () => reject(new WorkerStoppingError('the worker is stopping'));
    if (signal.aborted) listener();
    else signal.addEventListener('abort', listener, { once: true });
  });
  return { promise, dispose: () => signal.removeEventListener('abort', listener!) };
}

interface LaneCounts {
  completed: number;
  pruned: number;
  failed: number;
  consecutiveFailures: number;
  lastError?: string;
}

/** The tune kind: lanes of trials, a terminal rule that reads the lanes, and the report at the end. */
export function createTuneKind(deps: TuneDeps): JobKind {
  const log = deps.log ?? (() => undefined);
  const now = deps.now ?? Date.now;

  async function lane(ctx: StepContext) {
    const request = ctx.job.request as unknown as TuneJobRequest;
    const objective = objectiveOf(request.objective.type);
    const prepared = await objective.prepare(request.objective.options, { store: deps.store, job: ctx.job.id });
    const worker = `${ctx.step.name}.${randomBytes(6).toString('hex')}`;
    const counts: LaneCounts = (ctx.checkpoint as unknown as LaneCounts | undefined) ?? { completed: 0, pruned: 0, failed: 0, consecutiveFailures: 0 };
    const { config } = await deps.studies.getStudyRecord(request.study);
    let longest = 0;
    for (;;) {
      const expired = await deps.studies.failExpired(request.study);
      if (expired.length) log('warn', 'trials failed after their lease ran out', { study: request.study, trials: expired });
      // Another trial must fit in what is left of this invocation; otherwise go on in a new one.
      if ((longest > 0 && ctx.remainingMs() < 2 * longest) || ctx.signal.aborted) return { continue: counts as unknown as Json };
      const trial = await deps.studies.ask(request.study, worker);
      if (!trial) break;
      const began = now();
      // The trial's lease is renewed while it runs, so a trial longer than the lease (on the
      // container, with no 15-minute limit) stays this worker's; a dead worker's still runs out.
      const heartbeat = setInterval(() => {
        deps.studies.renew(request.study, trial.number, worker).catch((error: unknown) => log('warn', 'trial lease not renewed', { study: request.study, trial: trial.number, error: (error as Error).message }));
      }, Math.max(1, deps.studies.leaseMs / 3));
      // The worker stopping (the container's SIGTERM) ends the wait for the trial: it is failed at once,
      // its place given back, and the lane goes on from its counts on another worker.
      const stopped = whenAborted(ctx.signal);
      try {
        const outcome = await Promise.race([
          prepared.run(trial.params, trial.number, { report: (step, value) => deps.studies.report(request.study, trial.number, worker, step, value) }),
          stopped.promise,
        ]);
        if ('pruned' in outcome) counts.pruned++;
        else {
          await deps.studies.tell(request.study, trial.number, worker, outcome.metrics);
          counts.completed++;
        }
        counts.consecutiveFailures = 0;
      } catch (error) {
        if (error instanceof WorkerStoppingError) {
          await deps.studies.fail(request.study, trial.number, worker, 'its worker stopped before the trial ended');
          log('warn', 'trial failed: its worker is stopping; the lane goes on elsewhere', { study: request.study, trial: trial.number });
          return { continue: counts as unknown as Json };
        }
        if (error instanceof JobCancelledError || error instanceof LeaseLostError) {
          await deps.studies.fail(request.study, trial.number, worker, `its job stopped: ${(error as Error).message}`);
          throw error;
        }
        if (error instanceof ConflictError) {
          // The trial is no longer this worker's (failed after its lease ran out): it is counted there.
          log('warn', 'trial taken from this worker', { study: request.study, trial: trial.number, error: error.message });
          counts.failed++;
          continue;
        }
        const reason = trialFailure(error);
        log('error', 'trial failed', { study: request.study, trial: trial.number, error: (error as Error).message });
        await deps.studies.fail(request.study, trial.number, worker, reason);
        counts.failed++;
        counts.consecutiveFailures++;
        counts.lastError = `trial ${trial.number}: ${reason}`;
        if (counts.consecutiveFailures >= MAX_CONSECUTIVE_FAILURES) throw new JobStepError(`${counts.consecutiveFailures} trials in a row failed; the last, ${counts.lastError}`);
      } finally {
        clearInterval(heartbeat);
        stopped.dispose();
      }
      longest = Math.max(longest, now() - began);
      const done = counts.completed + counts.pruned;
      await ctx.progress(done, config.maxTrials ?? done, `trial ${trial.number} ${trial.state === 'running' ? 'done' : trial.state}`);
    }
    return { result: counts as unknown as Json };
  }

  return {
    name: TUNE_KIND,
    parseRequest(body) {
      const r = body as Partial<TuneJobRequest> | null;
      if (!r || typeof r.study !== 'string' || !NAME_PATTERN.test(r.study)) throw new BadRequestError('a tune job names its study (start one with POST /v2/studies)');
      const objective = objectiveOf(String(r.objective?.type));
      if (r.placement !== undefined && r.placement !== 'lambda' && r.placement !== 'container') throw new BadRequestError(`placement must be lambda or container, got ${JSON.stringify(r.placement)}`);
      return {
        study: r.study,
        objective: { type: objective.type, options: objective.parseOptions(r.objective!.options) },
        parallel: Number(r.parallel ?? 1),
        register: r.register === true,
        ...(r.placement ? { placement: r.placement } : {}),
      };
    },
    // Where the study asked for; its trials then run there, lane by lane (Lambda unless asked).
    placement: (request) => (request as unknown as TuneJobRequest).placement ?? 'lambda',
    plan: (request) => Array.from({ length: (request as unknown as TuneJobRequest).parallel }, (_, i) => ({ name: `lane-${i}`, handler: 'lane' })),
    steps: { lane },
    maxAttempts: 2,
    // One lane failing leaves the others running: the study ends when every lane has.
    failFast: false,
    terminal: (job, steps) => {
      const results = steps.filter((s) => s.state === 'succeeded').map((s) => s.result as unknown as LaneCounts);
      const completed = results.reduce((a, r) => a + r.completed, 0);
      const study = (job.request as unknown as TuneJobRequest).study;
      const result = { study, completed, report: keys.tuneReport(job.id), reportHtml: keys.tuneReportHtml(job.id) };
      const failedLane = steps.find((s) => s.state === 'failed');
      if (completed === 0) return { state: 'failed', result, error: failedLane ? `lane ${failedLane.name} failed: ${failedLane.lastError ?? 'no reason recorded'}` : 'no trial completed' };
      return { state: failedLane ? 'partial' : 'succeeded', result, ...(failedLane ? { error: `lane ${failedLane.name} failed: ${failedLane.lastError ?? 'no reason recorded'}` } : {}) };
    },
    async onFinished(job) {
      await finishStudy(deps, job);
    },
  };
}

/**
 * What follows the study's end, once: the winner registered when asked for, report.json and
 * report.html written under the job, and the study taken off the sweep's list. Safe to run again.
 */
export async function finishStudy(deps: TuneDeps, job: JobRecord): Promise<StudyReport> {
  const request = job.request as unknown as TuneJobRequest;
  const objective = objectiveOf(request.objective.type);
  const study = await deps.studies.loadStudy(request.study);
  let registered: { model: string; version: string } | undefined;
  if (request.register) {
    const best = study.bestTrial();
    if (best) registered = await objective.registerWinner(request.objective.options, best, { store: deps.store, job: job.id, study: request.study });
  }
  const report = buildStudyReport({
    study: request.study,
    job: job.id,
    objective: request.objective,
    state: study,
    ...(request.objective.type === 'serving' ? { notes: { lambdaPrice: LAMBDA_PRICE, latency: 'measured on the worker that ran the trial, one request at a time; memoryMiB sets the cost, not the CPU share of the measuring worker' } } : {}),
    ...(registered ? { registered } : {}),
  });
  await deps.store.putObjectBytes(keys.tuneReport(job.id), new TextEncoder().encode(JSON.stringify(report, null, 2)), 'application/json');
  await deps.store.putObjectBytes(keys.tuneReportHtml(job.id), new TextEncoder().encode(renderStudyReportHtml(report)), 'text/html; charset=utf-8');
  await deps.studies.annotate(request.study, { outcome: { report: keys.tuneReport(job.id), reportHtml: keys.tuneReportHtml(job.id), ...(registered ? { registered } : {}) } });
  await deps.studies.deactivate(request.study);
  deps.log?.('info', 'study ended', { study: request.study, job: job.id, trials: report.counts, registered });
  return report;
}
