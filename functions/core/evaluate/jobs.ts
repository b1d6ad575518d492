import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import * as z from 'zod';
import ort from '../onnx/ort.ts';
import { BadRequestError, ConflictError, HttpError, NotFoundError } from '../platform/errors.ts';
import { keys } from '../artifacts/keys.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { servingSessionOptions, type ModelSessions } from '../serving/model-sessions.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName, compareVersions } from '../artifacts/names.ts';
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

export interface EvaluationJob {
  id: string;
  model: string;
  version: string;
  baseline: string | null;
  dataset: { name: string; sha256: string; rows: number };
  scenarios: Scenario[];
  options: EvaluationOptions;
  steps: EvaluationStep[];
  nextStep: number;
  status: 'queued' | 'running' | 'succeeded' | 'failed';
  createdAt: string;
  updatedAt: string;
  error?: string;
  reportKey?: string;
  reportHtmlKey?: string;
  verdict?: { passed: boolean; reasons: string[] };
}

/** The message that asks a worker to continue a job from `step`. */
export interface StepMessage {
  model: string;
  version: string;
  id: string;
  step: number;
}

export interface EvaluationQueue {
  send(message: StepMessage): Promise<void>;
}

export interface EvaluationServiceOptions {
  store: ModelRepository;
  sessions: ModelSessions;
  queue: EvaluationQueue;
  intraOpThreads?: number | undefined;
  now?: () => Date;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
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

function numeric(dataset: DatasetManifest): boolean {
  return dataset.inputs.length === 1 && dataset.inputs[0]!.datatype !== 'BYTES' && dataset.inputs[0]!.datatype !== 'BOOL';
}

/**
 * Evaluation jobs: planned into steps when created, run step by step by workers (each continuing
 * where the last left off, within its own time limit), and reported when the last step is done.
 * State lives in the bucket under `evals/<model>/<version>/<id>/`: job.json (status, next step),
 * steps/<n>.json (each step's raw results), report.json and report.html.
 */
export class EvaluationService {
  private readonly options: EvaluationServiceOptions;

  constructor(options: EvaluationServiceOptions) {
    this.options = options;
  }

  private now(): Date {
    return (this.options.now ?? (() => new Date()))();
  }

  private get store(): ModelRepository {
    return this.options.store;
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
    const steps = planSteps(scenarios, rows, options);

    const now = this.now();
    const id = request.id !== undefined ? assertValidName(request.id, 'job id') : newJobId(now);
    const job: EvaluationJob = {
      id,
      model,
      version,
      baseline,
      dataset: { name: dataset.name, sha256: dataset.sha256, rows },
      scenarios,
      options,
      steps,
      nextStep: 0,
      status: 'queued',
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
    };
    if (request.id !== undefined) {
      const existing = await this.readJob(model, version, id).catch((error: unknown) => {
        if (error instanceof NotFoundError) return undefined;
        throw error;
      });
      if (existing) {
        const same = JSON.stringify([existing.baseline, existing.dataset, existing.scenarios, existing.options]) === JSON.stringify([baseline, job.dataset, scenarios, options]);
        if (!same) throw new ConflictError(`evaluation '${id}' already exists with a different request`);
        return existing;
      }
    }
    await this.writeJob(job);
    await this.options.queue.send({ model, version, id, step: 0 });
    return job;
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
    const bytes = await this.store.getObjectBytes(keys.evalJob(model, version, id));
    if (!bytes) throw new NotFoundError(`model '${model}' version '${version}' has no evaluation '${id}'`);
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as EvaluationJob;
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

  private async writeJob(job: EvaluationJob): Promise<void> {
    await this.putJson(keys.evalJob(job.model, job.version, job.id), job);
  }

  private async putJson(key: string, value: unknown): Promise<void> {
    await (await this.store.client()).send(new PutObjectCommand({ Bucket: this.store.bucket, Key: key, Body: JSON.stringify(value), ContentType: 'application/json' }));
  }

  /**
   * Runs the job from `message.step` while time allows, then queues the rest. A message for a step
   * already done (a redelivery) does nothing; a step that is retried rewrites the same object.
   */
  async continueJob(message: StepMessage, remainingMs: () => number = () => Infinity): Promise<{ job: EvaluationJob; ran: number }> {
    let job = await this.readJob(message.model, message.version, message.id);
    if (job.status === 'succeeded' || job.status === 'failed' || job.nextStep !== message.step) return { job, ran: 0 };
    let ran = 0;
    try {
      while (job.nextStep < job.steps.length) {
        const step = job.steps[job.nextStep]!;
        if (ran > 0 && remainingMs() < stepBudgetMs(step, job.options, job.baseline !== null)) break;
        job = { ...job, status: 'running', updatedAt: this.now().toISOString() };
        await this.runStep(job, job.nextStep);
        job = { ...job, nextStep: job.nextStep + 1, updatedAt: this.now().toISOString() };
        if (job.nextStep === job.steps.length) {
          const report = await this.readReport(job);
          job = { ...job, status: 'succeeded', ...(report ? { verdict: { passed: report.gate.passed, reasons: report.gate.reasons } } : {}) };
        }
        await this.writeJob(job);
        ran++;
      }
    } catch (error) {
      const message = error instanceof HttpError && error.expose ? error.message : `step ${stepLabel(job.steps[job.nextStep]!)} failed: ${(error as Error).message}`;
      this.options.log?.('error', 'evaluation step failed', { id: job.id, step: job.nextStep, error: (error as Error).message });
      job = { ...job, status: 'failed', error: message, updatedAt: this.now().toISOString() };
      await this.writeJob(job);
      return { job, ran };
    }
    if (job.nextStep < job.steps.length) await this.options.queue.send({ model: job.model, version: job.version, id: job.id, step: job.nextStep });
    return { job, ran };
  }

  /** Runs a job start to end in this process, with no queue in between (local runs, the benchmark). */
  async runToCompletion(model: string, version: string, id: string): Promise<EvaluationJob> {
    for (;;) {
      const job = await this.readJob(model, version, id);
      if (job.status === 'succeeded' || job.status === 'failed') return job;
      await this.continueJob({ model, version, id, step: job.nextStep });
    }
  }

  private async context(job: EvaluationJob) {
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

  private async runStep(job: EvaluationJob, index: number): Promise<void> {
    const step = job.steps[index]!;
    const o = job.options;
    const key = keys.evalStep(job.model, job.version, job.id, index);
    if (step.kind === 'report') {
      await this.writeReport(job);
      return;
    }
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
  }

  private async readSteps(job: EvaluationJob): Promise<StepResult[]> {
    const results: StepResult[] = [];
    for (let i = 0; i < job.steps.length; i++) {
      if (job.steps[i]!.kind === 'report') continue;
      const bytes = await this.store.getObjectBytes(keys.evalStep(job.model, job.version, job.id, i));
      if (!bytes) throw new Error(`step ${i} (${stepLabel(job.steps[i]!)}) has no result`);
      results.push(JSON.parse(Buffer.from(bytes).toString('utf8')) as StepResult);
    }
    return results;
  }

  private async writeReport(job: EvaluationJob): Promise<void> {
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
      steps: await this.readSteps(job),
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
      startedAt: job.createdAt,
      now: this.now(),
    });
    const reportKey = keys.evalReport(job.model, job.version, job.id);
    const reportHtmlKey = keys.evalReportHtml(job.model, job.version, job.id);
    await (await this.store.client()).send(
      new PutObjectCommand({ Bucket: this.store.bucket, Key: reportHtmlKey, Body: renderReportHtml(report), ContentType: 'text/html; charset=utf-8' }),
    );
    // report.json last: latestEvaluationVerdict counts an evaluation once its report.json exists.
    await this.putJson(reportKey, report);
    job.reportKey = reportKey;
    job.reportHtmlKey = reportHtmlKey;
  }

  /** The latest report of each other version of the model on the same data set. */
  private async otherVariants(job: EvaluationJob): Promise<VariantPoint[]> {
    const prefix = `evals/${job.model}/`;
    const latest = new Map<string, string>();
    let token: string | undefined;
    do {
      const page = await (await this.store.client()).send(new ListObjectsV2Command({ Bucket: this.store.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const object of page.Contents ?? []) {
        const match = /^evals\/[^/]+\/([^/]+)\/([^/]+)\/report\.json$/.exec(object.Key ?? '');
        if (!match || match[1] === job.version || match[1] === job.baseline) continue;
        const current = latest.get(match[1]!);
        if (!current || current < object.Key!) latest.set(match[1]!, object.Key!);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
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
