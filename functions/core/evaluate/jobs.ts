import type { ModelRepository } from '../registry/repository.ts';
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import * as z from 'zod';
import ort from '../onnx/ort.ts';
import { BadRequestError, ConflictError, HttpError, NotFoundError } from '../platform/errors.ts';
import type { JobTable } from '../jobs/job-table.ts';
import { JobKinds, JobStepError, type JobKind, type StepContext, type StepOutcome } from '../jobs/kinds.ts';
import { isTerminal, type JobRecord, type JobState, type Json } from '../jobs/record.ts';
import { jobIdForKey, JobRuntime, StepRetryError } from '../jobs/runtime.ts';
import type { StepQueue } from '../jobs/step-queue.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { servingSessionOptions, type ModelSessions } from '../sessions/model-sessions.ts';
import { assertValidName, compareVersions } from '../artifacts/names.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { AUGMENTATIONS, augmentImages, type AugmentationKind } from './augment.ts';
import { loadDataset, matchDatasetToModel, readDatasetManifest, type DatasetManifest, type LoadedDataset } from './datasets.ts';
import { resolvePolicy } from './gate.ts';
import { DEFAULT_BOOTSTRAP } from './metrics.ts';
import { renderReportHtml } from './report-html.ts';
import { buildReport, type EvaluationReport, type StepResult, type VariantPoint } from './report.ts';
import { predictRange, type RowPredictions } from './runner.ts';
import { coldStart, offline, server, singleStream } from './scenarios.ts';

export const SCENARIOS = ['accuracy', 'robustness', 'single-stream', 'offline', 'server', 'cold-start'] as const;
export type Scenario = (typeof SCENARIOS)[number];

const optionsSchema = z.strictObject({
  /** Evaluate only the first `rows` rows. */
  rows: z.number().int().positive().optional(),
  batchSize: z.number().int().min(1).max(4096).default(256),
  /** Rows per accuracy step; one step is the unit of work that must fit in one invocation. */
  chunkRows: z.number().int().min(1).max(1_000_000).default(5000),
  topK: z.number().int().min(1).max(100).default(5),
  output: z.string().min(1).optional(),
  /** Class names in class order, for a model whose label output is a string (label i is class i). */
  classLabels: z.array(z.string()).min(1).max(100_000).optional(),
  bootstrap: z
    .strictObject({
      resamples: z.number().int().min(1).max(10_000).default(DEFAULT_BOOTSTRAP.resamples),
      seed: z.number().int().nonnegative().default(DEFAULT_BOOTSTRAP.seed),
      confidence: z.number().gt(0).lt(1).default(DEFAULT_BOOTSTRAP.confidence),
    })
    .default(DEFAULT_BOOTSTRAP),
  robustnessRows: z.number().int().positive().max(100_000).default(1000),
  singleStreamQueries: z.number().int().positive().max(100_000).default(500),
  singleStreamSeconds: z.number().positive().max(120).default(20),
  offlineBatchSizes: z.array(z.number().int().min(1).max(4096)).min(1).max(8).default([1, 8, 32, 128]),
  offlineSeconds: z.number().positive().max(60).default(2),
  serverRate: z.number().positive().max(10_000).default(50),
  serverSeconds: z.number().positive().max(60).default(5),
  coldStartRepeats: z.number().int().min(1).max(10).default(3),
});
export type EvaluationOptions = z.infer<typeof optionsSchema>;

export const evaluateRequestSchema = z.strictObject({
  /** Client-chosen id, making a retried POST idempotent. */
  id: z.string().optional(),
  dataset: z.string().min(1),
  /** A version to compare with; null for none; absent: the lineage's source, else the version before. */
  baseline: z.string().min(1).nullable().optional(),
  scenarios: z.array(z.enum(SCENARIOS)).min(1).optional(),
  options: optionsSchema.default(optionsSchema.parse({})),
});
export type EvaluateRequest = z.input<typeof evaluateRequestSchema>;

export type EvaluationStep =
  | { kind: 'accuracy'; start: number; end: number }
  | { kind: 'robustness'; augmentation: AugmentationKind; strength: number }
  | { kind: 'cold-start' | 'single-stream' | 'offline' | 'server' | 'report' };

/** The job kind evaluations run as, and its one step (continued from invocation to invocation). */
export const EVALUATE_KIND = 'evaluate';
const EVALUATION_STEP = 'evaluation';
/** The step queue's visibility timeout: six times the worker's 900 s (AWS's advice for an SQS event source), and so the step lease. */
export const EVALUATE_VISIBILITY_SECONDS = 5400;

/**
 * What an evaluation runs: the request resolved when it was made (the baseline chosen, the data
 * set's version pinned, defaults filled). It is the job record's `request`; its steps are planned
 * from it again wherever they are needed, so the record holds no step list.
 */
const planSchema = z.strictObject({
  id: z.string().min(1),
  model: z.string().min(1),
  version: z.string().min(1),
  baseline: z.string().min(1).nullable(),
  dataset: z.strictObject({ name: z.string().min(1), sha256: z.string().min(1), rows: z.number().int().positive() }),
  scenarios: z.array(z.enum(SCENARIOS)).min(1),
  options: optionsSchema,
});
export type EvaluationPlan = z.infer<typeof planSchema>;

/** What a finished evaluation job holds as its result. */
export interface EvaluationResult {
  reportKey: string;
  reportHtmlKey: string;
  verdict: { passed: boolean; reasons: string[] };
}

/** An evaluation as the per-model routes show it: its plan, its steps, and its job's state. */
export interface EvaluationJob extends EvaluationPlan {
  /** The job record's id: GET /v2/jobs/{job} serves the same job. */
  job: string;
  steps: EvaluationStep[];
  /** Steps done so far. */
  nextStep: number;
  status: JobState;
  createdAt: string;
  updatedAt: string;
  error?: string;
  reportKey?: string;
  reportHtmlKey?: string;
  verdict?: { passed: boolean; reasons: string[] };
}

type Log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;

export interface EvaluationServiceOptions {
  store: ModelRepository;
  sessions: ModelSessions;
  /** Where evaluation jobs live: the job runtime's records in the registry table. */
  table: JobTable;
  /** The evaluate kind's step queue. */
  queue: StepQueue;
  /** The step queue's visibility timeout, which is also the step lease. */
  visibilitySeconds?: number;
  /** Time kept back from an invocation for the checkpoint and the continuation message. */
  reserveMs?: number;
  intraOpThreads?: number | undefined;
  now?: () => Date;
  log?: Log;
}

/** How long a step may take at most, so a worker starts it only with that much time left. */
export function stepBudgetMs(step: EvaluationStep, options: EvaluationOptions, withBaseline: boolean): number {
  const models = withBaseline ? 2 : 1;
  switch (step.kind) {
    case 'single-stream':
      return models * options.singleStreamSeconds * 1000 + 30_000;
    case 'offline':
      return models * options.offlineBatchSizes.length * options.offlineSeconds * 1000 * 2 + 30_000;
    case 'server':
      return models * options.serverSeconds * 1000 * 2 + 30_000;
    default:
      return 60_000;
  }
}

function stepLabel(step: EvaluationStep): string {
  if (step.kind === 'accuracy') return `accuracy rows ${step.start}-${step.end}`;
  if (step.kind === 'robustness') return `robustness ${step.augmentation} ${step.strength}`;
  return step.kind;
}

function newJobId(now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'z').toLowerCase();
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

/**
 * The idempotency key of evaluation `id` of a model version. Evaluation ids are per version (a
 * client may choose one) and sort by time, which the gate relies on; the job's id is derived from
 * this key, so the per-version routes find the job from the path alone.
 */
function evaluationKey(model: string, version: string, id: string): string {
  return `evaluation-${createHash('sha256').update(`${model}\n${version}\n${id}`).digest('hex').slice(0, 48)}`;
}

/** The job id of evaluation `id` of a model version. */
export function evaluationJobId(model: string, version: string, id: string): string {
  return jobIdForKey(EVALUATE_KIND, evaluationKey(model, version, id));
}

function numeric(dataset: DatasetManifest): boolean {
  return dataset.inputs.length === 1 && dataset.inputs[0]!.datatype !== 'BYTES' && dataset.inputs[0]!.datatype !== 'BOOL';
}

/** A failed evaluation step's reason, for the job's error: a refusal as it is, anything else with the step it broke. */
function stepFailure(step: EvaluationStep, error: unknown): JobStepError {
  const reason = error instanceof HttpError && error.expose ? error.message : `${stepLabel(step)} failed: ${runtimeMessage(error)}`;
  return new JobStepError(reason, { cause: error });
}

/**
 * Evaluation jobs on the job runtime (docs/jobs.md): a job of kind `evaluate` with one step that
 * runs the planned evaluation steps in order while the invocation's time allows, then checkpoints
 * the next one and continues in a new invocation. Its state (progress, result, error) is the job
 * record in the registry table; the artifacts live in the bucket under
 * `evals/<model>/<version>/<id>/`: steps/<n>.json (each step's raw results), report.json and report.html.
 */
export class EvaluationService {
  private readonly options: EvaluationServiceOptions;
  /** The runtime that submits and runs evaluation jobs; its worker is `createJobStepHandler(service.runtime)`. */
  readonly runtime: JobRuntime;

  constructor(options: EvaluationServiceOptions) {
    this.options = options;
    this.runtime = new JobRuntime({
      table: options.table,
      kinds: new JobKinds([this.jobKind()]),
      queue: options.queue,
      visibilitySeconds: options.visibilitySeconds ?? EVALUATE_VISIBILITY_SECONDS,
      reserveMs: options.reserveMs ?? 15_000,
      now: () => this.now().getTime(),
      ...(options.log ? { log: options.log } : {}),
    });
  }

  private now(): Date {
    return (this.options.now ?? (() => new Date()))();
  }

  private get store(): ModelRepository {
    return this.options.store;
  }

  private jobKind(): JobKind {
    return {
      name: EVALUATE_KIND,
      parseRequest: (body) => {
        const parsed = planSchema.safeParse(body);
        if (!parsed.success) throw new BadRequestError(`invalid evaluation plan: ${z.prettifyError(parsed.error)}`);
        return parsed.data as unknown as Json;
      },
      plan: () => [{ name: EVALUATION_STEP, handler: EVALUATION_STEP }],
      steps: { [EVALUATION_STEP]: (ctx) => this.runSteps(ctx) },
    };
  }

  async create(model: string, version: string, body: unknown): Promise<EvaluationJob> {
    assertValidName(model, 'model name');
    assertValidName(version, 'version');
    const parsed = evaluateRequestSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new BadRequestError(`invalid evaluation request${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message ?? 'malformed'}`);
    }
    const request = parsed.data;
    const candidate = await this.store.getManifest(model, version);
    const dataset = await readDatasetManifest(this.store, request.dataset);
    matchDatasetToModel(dataset, candidate);

    const baseline = request.baseline === undefined ? await this.defaultBaseline(candidate) : request.baseline;
    if (baseline !== null) {
      if (baseline === version) throw new BadRequestError(`baseline must be another version than the candidate '${version}'`);
      matchDatasetToModel(dataset, await this.store.getManifest(model, assertValidName(baseline, 'version')));
    }
    const scenarios: Scenario[] = request.scenarios ?? [...SCENARIOS].filter((s) => s !== 'robustness' || dataset.image !== undefined);
    const options = request.options;
    if (dataset.labels === 'none' && baseline === null && scenarios.some((s) => s === 'accuracy' || s === 'robustness')) {
      throw new BadRequestError(`data set '${dataset.name}' has no labels (neither label nor target); give a baseline version to measure agreement with`);
    }
    if (scenarios.includes('robustness')) {
      if (!dataset.image) throw new BadRequestError(`data set '${dataset.name}' has no image layout, so the robustness scenario cannot augment it`);
      if (dataset.labels !== 'label') throw new BadRequestError(`the robustness scenario needs class labels; data set '${dataset.name}' has ${dataset.labels === 'none' ? 'none' : 'regression targets'}`);
      if (!numeric(dataset)) throw new BadRequestError(`the robustness scenario needs one numeric image input; data set '${dataset.name}' has ${dataset.inputs.length}`);
    }
    if (options.output !== undefined && !candidate.outputs.some((o) => o.name === options.output)) {
      throw new BadRequestError(`model '${model}' version '${version}' has no output '${options.output}'; it has: ${candidate.outputs.map((o) => o.name).join(', ')}`);
    }
    const rows = Math.min(options.rows ?? dataset.rows, dataset.rows);
    const id = request.id !== undefined ? assertValidName(request.id, 'job id') : newJobId(this.now());
    const plan: EvaluationPlan = { id, model, version, baseline, dataset: { name: dataset.name, sha256: dataset.sha256, rows }, scenarios, options };
    try {
      // The same id and request again (a retried POST) gives the job back as it is now.
      const { job } = await this.runtime.submit({ kind: EVALUATE_KIND, key: evaluationKey(model, version, id), request: plan, parent: { model, version } });
      return this.view(job);
    } catch (error) {
      if (error instanceof ConflictError) throw new ConflictError(`evaluation '${id}' already exists with a different request`, { cause: error });
      throw error;
    }
  }

  /** The version this one is compared with by default: the one it was derived from, else the one before. */
  private async defaultBaseline(candidate: ModelManifest): Promise<string | null> {
    const versions = await this.store.listVersions(candidate.name);
    if (candidate.lineage && versions.includes(candidate.lineage.sourceVersion)) return candidate.lineage.sourceVersion;
    const earlier = versions.filter((v) => compareVersions(v, candidate.version) < 0);
    return earlier.at(-1) ?? null;
  }

  async readJob(model: string, version: string, id: string): Promise<EvaluationJob> {
    assertValidName(model, 'model name');
    assertValidName(version, 'version');
    assertValidName(id, 'job id');
    const job = await this.options.table.getJob(evaluationJobId(model, version, id));
    if (!job || job.kind !== EVALUATE_KIND) throw new NotFoundError(`model '${model}' version '${version}' has no evaluation '${id}'`);
    return this.view(job);
  }

  /** The job record as an evaluation: steps planned from its request, done steps from its progress. */
  private view(job: JobRecord): EvaluationJob {
    const plan = job.request as unknown as EvaluationPlan;
    const steps = planSteps(plan.scenarios, plan.dataset.rows, plan.options);
    const result = job.result as unknown as EvaluationResult | undefined;
    return {
      ...plan,
      job: job.id,
      steps,
      nextStep: job.state === 'succeeded' ? steps.length : Math.min(job.progress?.done ?? 0, steps.length),
      status: job.state,
      createdAt: job.created,
      updatedAt: job.updated,
      ...(job.error ? { error: job.error } : {}),
      ...(result ? { reportKey: result.reportKey, reportHtmlKey: result.reportHtmlKey, verdict: result.verdict } : {}),
    };
  }

  async readReport(job: EvaluationJob): Promise<EvaluationReport | undefined> {
    if (!job.reportKey) return undefined;
    const bytes = await this.store.getObjectBytes(job.reportKey);
    return bytes ? (JSON.parse(Buffer.from(bytes).toString('utf8')) as EvaluationReport) : undefined;
  }

  async readReportHtml(job: EvaluationJob): Promise<string | undefined> {
    if (!job.reportHtmlKey) return undefined;
    const bytes = await this.store.getObjectBytes(job.reportHtmlKey);
    return bytes ? Buffer.from(bytes).toString('utf8') : undefined;
  }

  /** Status for the API: progress while running, the report once done. */
  async status(model: string, version: string, id: string) {
    const job = await this.readJob(model, version, id);
    const report = job.status === 'succeeded' ? await this.readReport(job) : undefined;
    return {
      id: job.id,
      job: job.job,
      model: job.model,
      version: job.version,
      baseline: job.baseline,
      dataset: job.dataset.name,
      status: job.status,
      progress: {
        done: job.nextStep,
        total: job.steps.length,
        ...(job.nextStep < job.steps.length ? { next: stepLabel(job.steps[job.nextStep]!) } : {}),
      },
      createdAt: job.createdAt,
      updatedAt: job.updatedAt,
      ...(job.error ? { error: job.error } : {}),
      ...(job.verdict ? { verdict: job.verdict } : {}),
      ...(job.reportKey ? { reportKey: job.reportKey, reportHtmlKey: job.reportHtmlKey } : {}),
      ...(report ? { report } : {}),
    };
  }

  private async putJson(key: string, value: unknown): Promise<void> {
    await this.store.objects.put(key, JSON.stringify(value), { contentType: 'application/json' });
  }

  /**
   * The evaluation step: runs the planned steps from the checkpoint on while the invocation's time
   * allows (each step at least once per invocation), then checkpoints the next one. A step that runs
   * again (a redelivery, a retry) rewrites the same objects.
   */
  private async runSteps(ctx: StepContext): Promise<StepOutcome> {
    const plan = ctx.job.request as unknown as EvaluationPlan;
    const steps = planSteps(plan.scenarios, plan.dataset.rows, plan.options);
    let next = Math.min((ctx.checkpoint as { next?: number } | undefined)?.next ?? 0, steps.length - 1);
    let result: EvaluationResult | undefined;
    await ctx.progress(next, steps.length, stepLabel(steps[next]!));
    for (let ran = 0; next < steps.length; ran++) {
      const step = steps[next]!;
      if (ran > 0 && ctx.remainingMs() < stepBudgetMs(step, plan.options, plan.baseline !== null)) return { continue: { next } };
      try {
        result = await this.runStep(plan, ctx.job.created, next);
      } catch (error) {
        throw stepFailure(step, error);
      }
      next++;
      await ctx.progress(next, steps.length, next < steps.length ? stepLabel(steps[next]!) : undefined);
    }
    // The report is the last step, so it ran in this invocation.
    if (!result) throw new Error(`evaluation ${plan.id} ended without its report`);
    return { result: result as unknown as Json };
  }

  /**
   * Runs a job start to end in this process (local runs, the tests without a queue, the benchmark):
   * the runtime's own step runner, given all the time it asks for, retried as a redelivery would be.
   */
  async runToCompletion(model: string, version: string, id: string): Promise<EvaluationJob> {
    for (let round = 0; round < 10; round++) {
      const job = await this.readJob(model, version, id);
      if (isTerminal(job.status)) return job;
      try {
        await this.runtime.runStep({ job: job.job, step: EVALUATION_STEP }, { remainingMs: () => Number.POSITIVE_INFINITY });
      } catch (error) {
        if (!(error instanceof StepRetryError)) throw error;
      }
    }
    throw new Error(`evaluation '${id}' of model '${model}' version '${version}' did not end in 10 rounds`);
  }

  private async context(job: EvaluationPlan) {
    const candidateManifest = await this.store.getManifest(job.model, job.version);
    const baselineManifest = job.baseline !== null ? await this.store.getManifest(job.model, job.baseline) : undefined;
    const datasetManifest = await readDatasetManifest(this.store, job.dataset.name);
    if (datasetManifest.sha256 !== job.dataset.sha256) throw new ConflictError(`data set '${job.dataset.name}' changed while evaluation '${job.id}' ran`);
    const dataset = await loadDataset(this.store, datasetManifest);
    const { batchable } = matchDatasetToModel(datasetManifest, candidateManifest);
    const candidate = await this.options.sessions.get(candidateManifest);
    const baseline = baselineManifest ? await this.options.sessions.get(baselineManifest) : undefined;
    const output = job.options.output ?? candidateManifest.outputs[0]!.name;
    return { candidateManifest, baselineManifest, datasetManifest, dataset, batchable, candidate, baseline, output };
  }

  /** Runs step `index` of the plan and stores its results; the report step returns the job's result. */
  private async runStep(job: EvaluationPlan, startedAt: string, index: number): Promise<EvaluationResult | undefined> {
    const steps = planSteps(job.scenarios, job.dataset.rows, job.options);
    const step = steps[index]!;
    const o = job.options;
    const key = keys.evalStep(job.model, job.version, job.id, index);
    if (step.kind === 'report') return this.writeReport(job, steps, startedAt);
    const ctx = await this.context(job);
    const cand = ctx.candidate.session;
    const base = ctx.baseline?.session;
    const batchSize = ctx.batchable ? o.batchSize : 1;
    let result: StepResult;
    const rss = () => process.resourceUsage().maxRSS * 1024;
    switch (step.kind) {
      case 'accuracy': {
        const range = await predictRange(ctx.dataset, step.start, step.end, cand, base, { batchSize, topK: o.topK, output: ctx.output, classLabels: o.classLabels });
        result = { kind: 'accuracy', start: step.start, end: step.end, result: range, maxRssBytes: rss() };
        break;
      }
      case 'robustness': {
        const rows = Math.min(o.robustnessRows, job.dataset.rows);
        const column = ctx.dataset.columns[0]!;
        const source = (column.data as Float32Array).subarray(0, rows * column.rowSize);
        const augmented = augmentImages(source, rows, ctx.datasetManifest.image!, step.augmentation, step.strength, o.bootstrap.seed + index);
        const range = await predictRange(ctx.dataset, 0, rows, cand, base, {
          batchSize,
          topK: 1,
          output: ctx.output,
          classLabels: o.classLabels,
          override: new Map([[column.name, augmented]]),
        });
        const counts = (p: RowPredictions) => ({ errors: p.errors, inferences: p.inferences, failures: p.failures });
        result = {
          kind: 'robustness',
          augmentation: step.augmentation,
          strength: step.strength,
          rows,
          candidateTop1: range.candidate.ranked!.map((r) => r[0] ?? -1),
          ...(range.baseline ? { baselineTop1: range.baseline.ranked!.map((r) => r[0] ?? -1) } : {}),
          candidateErrors: counts(range.candidate),
          ...(range.baseline ? { baselineErrors: counts(range.baseline) } : {}),
          maxRssBytes: rss(),
        };
        break;
      }
      case 'cold-start': {
        const measure = async (manifest: ModelManifest) =>
          coldStart((await this.store.getModelBytes(manifest)).bytes, servingSessionOptions(this.options.intraOpThreads), ctx.dataset, o.coldStartRepeats);
        const candidate = await measure(ctx.candidateManifest);
        const baseline = ctx.baselineManifest ? await measure(ctx.baselineManifest) : undefined;
        result = { kind: 'cold-start', candidate, ...(baseline ? { baseline } : {}), maxRssBytes: rss() };
        break;
      }
      case 'single-stream': {
        const { results, speedup } = await singleStream(base ? [cand, base] : [cand], ctx.dataset, {
          queries: o.singleStreamQueries,
          maxSeconds: o.singleStreamSeconds,
        });
        const [candidate, baseline] = results;
        result = { kind: 'single-stream', candidate: candidate!, ...(baseline ? { baseline } : {}), ...(speedup ? { speedup } : {}), maxRssBytes: rss() };
        break;
      }
      case 'offline': {
        const sizes = ctx.batchable ? o.offlineBatchSizes : [1];
        const [candidate, baseline] = await offline(base ? [cand, base] : [cand], ctx.dataset, { batchSizes: sizes, secondsPerBatchSize: o.offlineSeconds });
        result = { kind: 'offline', candidate: candidate!, ...(baseline ? { baseline } : {}), maxRssBytes: rss() };
        break;
      }
      case 'server': {
        const run = (s: typeof cand) => server(s, ctx.dataset, { rate: o.serverRate, seconds: o.serverSeconds, seed: o.bootstrap.seed });
        const candidate = await run(cand);
        const baseline = base ? await run(base) : undefined;
        result = { kind: 'server', candidate, ...(baseline ? { baseline } : {}), maxRssBytes: rss() };
        break;
      }
    }
    await this.putJson(key, result);
    return undefined;
  }

  private async readSteps(job: EvaluationPlan, steps: readonly EvaluationStep[]): Promise<StepResult[]> {
    const results: StepResult[] = [];
    for (let i = 0; i < steps.length; i++) {
      if (steps[i]!.kind === 'report') continue;
      const bytes = await this.store.getObjectBytes(keys.evalStep(job.model, job.version, job.id, i));
      if (!bytes) throw new Error(`step ${i} (${stepLabel(steps[i]!)}) has no result`);
      results.push(JSON.parse(Buffer.from(bytes).toString('utf8')) as StepResult);
    }
    return results;
  }

  private async writeReport(job: EvaluationPlan, steps: readonly EvaluationStep[], startedAt: string): Promise<EvaluationResult> {
    const candidate = await this.store.getManifest(job.model, job.version);
    const baseline = job.baseline !== null ? await this.store.getManifest(job.model, job.baseline) : undefined;
    const datasetManifest = await readDatasetManifest(this.store, job.dataset.name);
    const dataset: LoadedDataset | undefined = datasetManifest.labels === 'label' ? await loadDataset(this.store, datasetManifest) : undefined;
    const { policy, source } = await resolvePolicy(this.store, candidate);
    const report = buildReport({
      id: job.id,
      candidate,
      baseline,
      dataset: datasetManifest,
      rows: job.dataset.rows,
      labels: dataset?.labels,
      scenarios: job.scenarios,
      options: job.options as unknown as Record<string, unknown> & EvaluationOptions,
      steps: await this.readSteps(job, steps),
      policy,
      policySource: source,
      otherVariants: await this.otherVariants(job),
      environment: {
        node: process.version,
        onnxruntime: (ort.env as { versions?: { common?: string } }).versions?.common ?? null,
        cpus: availableParallelism(),
        intraOpThreads: this.options.intraOpThreads ?? availableParallelism(),
        lambdaMemoryMb: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ? Number(process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE) : null,
      },
      startedAt,
      now: this.now(),
    });
    const reportKey = keys.evalReport(job.model, job.version, job.id);
    const reportHtmlKey = keys.evalReportHtml(job.model, job.version, job.id);
    await this.store.objects.put(reportHtmlKey, renderReportHtml(report), { contentType: 'text/html; charset=utf-8' });
    // report.json last: latestEvaluationVerdict counts an evaluation once its report.json exists.
    await this.putJson(reportKey, report);
    return { reportKey, reportHtmlKey, verdict: { passed: report.gate.passed, reasons: report.gate.reasons } };
  }

  /** The latest report of each other version of the model on the same data set. */
  private async otherVariants(job: EvaluationPlan): Promise<VariantPoint[]> {
    const prefix = `evals/${job.model}/`;
    const latest = new Map<string, string>();
    for (const key of await this.store.objects.list(prefix)) {
      const match = /^evals\/[^/]+\/([^/]+)\/([^/]+)\/report\.json$/.exec(key);
      if (!match || match[1] === job.version || match[1] === job.baseline) continue;
      const current = latest.get(match[1]!);
      if (!current || current < key) latest.set(match[1]!, key);
    }
    const points: VariantPoint[] = [];
    for (const [version, reportKey] of [...latest].sort((a, b) => compareVersions(a[0], b[0])).slice(-20)) {
      const bytes = await this.store.getObjectBytes(reportKey);
      if (!bytes) continue;
      const report = JSON.parse(Buffer.from(bytes).toString('utf8')) as EvaluationReport;
      if (report.dataset.sha256 !== job.dataset.sha256) continue;
      points.push({
        version,
        top1: report.candidate.classification?.top1.value ?? null,
        p50Ms: report.candidate.singleStream?.p50 ?? null,
        sizeBytes: report.candidate.sizeBytes,
        reportKey,
      });
    }
    return points;
  }
}

export function planSteps(scenarios: readonly Scenario[], rows: number, options: EvaluationOptions): EvaluationStep[] {
  const steps: EvaluationStep[] = [];
  // Robustness compares with clean accuracy on the same rows, so it brings the accuracy pass along.
  if (scenarios.includes('accuracy') || scenarios.includes('robustness')) {
    for (let start = 0; start < rows; start += options.chunkRows) steps.push({ kind: 'accuracy', start, end: Math.min(rows, start + options.chunkRows) });
  }
  if (scenarios.includes('robustness')) {
    for (const a of AUGMENTATIONS) for (const strength of a.strengths) steps.push({ kind: 'robustness', augmentation: a.kind, strength });
  }
  for (const kind of ['cold-start', 'single-stream', 'offline', 'server'] as const) if (scenarios.includes(kind)) steps.push({ kind });
  steps.push({ kind: 'report' });
  return steps;
}
