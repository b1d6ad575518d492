import { randomBytes } from 'node:crypto';
import { BadRequestError, ConflictError, NotFoundError } from '../platform/errors.ts';
import type { JobTable } from '../jobs/job-table.ts';
import type { JobRecord, Json, Placement } from '../jobs/record.ts';
import type { JobRuntime } from '../jobs/runtime.ts';
import { isValidName } from '../artifacts/names.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { objectiveOf, parseStudyRequest, TUNE_KIND, type TuneJobRequest } from './jobs.ts';
import { parseStudyConfig, type StudyConfig } from './study.ts';
import type { StoredTrial, StudyTable } from './study-table.ts';

/** Canonical JSON, keys sorted: a retried start compares equal whatever order its fields came in. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));

/**
 * POST /v2/studies: checks the whole request (400 naming what is wrong, nothing written), records
 * the study, and submits its tune job (keyed by the study id). The same request again with the same
 * id gives the same study and job; the same id with another request is a 409.
 */
export async function startStudy(deps: { studies: StudyTable; runtime: JobRuntime; store: ModelRepository }, body: unknown): Promise<{ id: string; job: JobRecord; created: boolean }> {
  const parsed = parseStudyRequest(body);
  await objectiveOf(parsed.job.objective.type).checkReferences(parsed.job.objective.options, deps.store, parsed.space);
  const id = parsed.id ?? `s-${randomBytes(8).toString('hex')}`;
  const request: TuneJobRequest = { ...parsed.job, study: id };
  // A study asking for the container worker where the stack runs none is refused before it is written.
  await deps.runtime.place(TUNE_KIND, request as unknown as Json);
  const extra = { objective: request.objective, parallel: request.parallel, register: request.register, ...(request.placement ? { placement: request.placement } : {}) };
  let created = true;
  try {
    await deps.studies.createStudy(id, parsed.config, extra);
  } catch (error) {
    if (!(error instanceof ConflictError)) throw error;
    const existing = await deps.studies.getStudyRecord(id);
    if (canonical(existing.config) !== canonical(parseStudyConfig(parsed.config)) || canonical(existing.extra) !== canonical(extra)) {
      throw new ConflictError(`study '${id}' already exists with another configuration`);
    }
    created = false;
  }
  const model = (request.objective.options as { model: string; version: string });
  const { job } = await deps.runtime.submit({ kind: TUNE_KIND, key: `study-${id}`, request: request as unknown as Json, parent: { model: model.model, version: model.version } });
  await deps.studies.annotate(id, { job: job.id });
  return { id, job, created };
}

export interface StudyView {
  id: string;
  state: JobRecord['state'] | 'unknown';
  job?: string;
  /** Where its trials run: lambda or container (the job's placement). */
  placement?: Placement;
  created: string;
  objective: unknown;
  objectives: StudyConfig['objectives'];
  constraints: StudyConfig['constraints'];
  sampler: StudyConfig['sampler'];
  pruner: StudyConfig['pruner'];
  budget: { maxTrials?: number; timeBudgetSeconds?: number; deadline?: string };
  counts: Record<StoredTrial['state'], number> & { total: number };
  best?: Pick<StoredTrial, 'number' | 'params' | 'metrics'>;
  paretoFront?: Pick<StoredTrial, 'number' | 'params' | 'metrics'>[];
  trials: Pick<StoredTrial, 'number' | 'state' | 'params' | 'metrics' | 'intermediate' | 'error'>[];
  progress?: JobRecord['progress'];
  error?: string;
  outcome?: { report: string; reportHtml: string; registered?: { model: string; version: string } };
  links: { self: string; job?: string };
}

/** GET /v2/studies/{id}: the study, its trials, the best so far (or the front), and its job's state. */
export async function readStudy(deps: { studies: StudyTable; jobs: JobTable }, id: string): Promise<StudyView> {
  if (!isValidName(id)) throw new BadRequestError(`study id '${id.slice(0, 80)}' must match [a-z0-9][a-z0-9._-]{0,63}`);
  const record = await deps.studies.getStudyRecord(id).catch((error: unknown) => {
    if (error instanceof NotFoundError) throw new NotFoundError(`no study '${id}'`);
    throw error;
  });
  // The job first: once it has ended, every trial was told before it did, so the trials read next are
  // final (read the other way round, a job that ends between the reads shows with a trial missing).
  const job = record.job ? await deps.jobs.getJob(record.job) : undefined;
  const study = await deps.studies.loadStudy(id);
  const trials = study.trials as StoredTrial[];
  const counts = { running: 0, complete: 0, pruned: 0, failed: 0, total: trials.length };
  for (const t of trials) counts[t.state]++;
  const brief = (t: { number: number; params: StoredTrial['params']; metrics?: Record<string, number> }) => ({ number: t.number, params: t.params, ...(t.metrics ? { metrics: t.metrics } : {}) });
  const single = study.config.objectives.length === 1;
  const best = single ? study.bestTrial() : undefined;
  const c = record.config;
  return {
    id,
    state: job?.state ?? 'unknown',
    ...(record.job ? { job: record.job } : {}),
    ...(job?.placement ? { placement: job.placement } : {}),
    created: record.created,
    objective: record.extra?.objective,
    objectives: c.objectives,
    constraints: c.constraints,
    sampler: c.sampler,
    pruner: c.pruner,
    budget: {
      ...(c.maxTrials !== undefined ? { maxTrials: c.maxTrials } : {}),
      ...(c.timeBudgetSeconds !== undefined ? { timeBudgetSeconds: c.timeBudgetSeconds } : {}),
      ...(record.deadline !== undefined ? { deadline: new Date(record.deadline).toISOString() } : {}),
    },
    counts,
    ...(best ? { best: brief(best) } : {}),
    ...(single ? {} : { paretoFront: study.paretoFront().map(brief) }),
    trials: trials.map((t) => ({ number: t.number, state: t.state, params: t.params, ...(t.metrics ? { metrics: t.metrics } : {}), intermediate: t.intermediate, ...(t.error ? { error: t.error } : {}) })),
    ...(job?.progress ? { progress: job.progress } : {}),
    ...(job?.error ? { error: job.error } : {}),
    ...(record.outcome ? { outcome: record.outcome } : {}),
    links: { self: `/v2/studies/${id}`, ...(record.job ? { job: `/v2/jobs/${record.job}` } : {}) },
  };
}
