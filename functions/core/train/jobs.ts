/**
 * The `train` job kind on the job runtime: fine-tuning, distillation and pruning of a registered
 * version on a data set in the bucket. One step runs the phases (one training run, or one per
 * pruning round) and saves the loop's state to the bucket every `checkpointEvery` steps and at each
 * epoch's end, under `jobs/<job>/train/phase-<n>/`; a later invocation (a continuation, or the
 * redelivery after a killed worker) continues from the newest one, so at most one checkpoint
 * interval is lost. The result is registered as a new version with lineage, which is never routed
 * until it is promoted.
 */
import * as z from 'zod';
import ort, { type InferenceSession } from '../onnx/ort.ts';
import { BadRequestError } from '../platform/errors.ts';
import { loadDataset, matchDatasetToModel, readDatasetManifest, type DatasetManifest } from '../evaluate/datasets.ts';
import type { JobKind, StepContext, StepOutcome } from '../jobs/kinds.ts';
import { JobStepError } from '../jobs/kinds.ts';
import type { Json } from '../jobs/record.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { pushModel } from '../registry/model-push.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { decodeModel } from '../onnx/model-proto.ts';
import { UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import { augmentationBatches, chainBatches } from './augment-batches.ts';
import { decodeCheckpoint, encodeCheckpoint } from './checkpoint.ts';
import { argmaxLabels, distillationLoss, pipelineTeacherSignatureOf, Teacher, teacherBatches } from './distill.ts';
import { darknetParameters } from '../onnx/darknet.ts';
import { TrainingGraphError } from './gradients.ts';
import { runTrainingLoop, type LoopOptions, type LoopState, type TrainingData } from './loop.ts';
import type { LossTerm } from './losses.ts';
import { applyMask, keepFraction, magnitudePrune, structuredPrune, unitChains } from './prune.ts';
import { buildMlpStudent, buildStudent, darknetInputProblem, defaultTrainable, teacherSignature, type TeacherSignature } from './student.ts';
import { trainRequestSchema, type TrainJobRequest, type TrainRequest } from './options.ts';
import { buildTrainingGraph, type TrainingGraph } from './training-graph.ts';
import { TrainingSession } from './training-session.ts';

export const TRAIN_KIND = 'train';

const jobRequestSchema = z.intersection(trainRequestSchema, z.object({ model: z.string(), version: z.string() }));

/** The request a train job stores: the user's request, parsed with its defaults, and the version it is about. */
export function parseTrainJobRequest(body: unknown): TrainJobRequest {
  const parsed = jobRequestSchema.safeParse(body);
  if (!parsed.success) throw new BadRequestError(`invalid train request: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** Objects of one job under the DESIGN's `jobs/<job>/...`. */
export const trainKeys = {
  phaseStart: (job: string, phase: number) => `jobs/${job}/train/phase-${phase}/start.onnx`,
  phaseCheckpoint: (job: string, phase: number) => `jobs/${job}/train/phase-${phase}/checkpoint.bin`,
  phaseResult: (job: string, phase: number) => `jobs/${job}/train/phase-${phase}/result.onnx`,
  phaseSummary: (job: string, phase: number) => `jobs/${job}/train/phase-${phase}/summary.json`,
};

/** 100 M FP32 parameters: 400 MB, which with optimizer state and gradients fills the worker's 3 GB. */
export const MAX_STUDENT_PARAMETERS = 100_000_000;

const phaseCount = (request: TrainRequest) => (request.method === 'prune' ? request.pruning.rounds : 1);

function outputClasses(manifest: ModelManifest): number | undefined {
  const last = manifest.outputs[0]?.shape.at(-1);
  return last !== undefined && last > 0 ? last : undefined;
}

function lossTerms(request: TrainRequest, labelled: boolean, targets: boolean): LossTerm[] {
  if (request.method === 'distill') return distillationLoss({ temperature: request.temperature, alpha: request.alpha }, labelled);
  if (targets) return [{ kind: 'mse' }];
  return [{ kind: 'cross-entropy', labelSmoothing: request.training.labelSmoothing }];
}

function trainingGraph(bytes: Uint8Array, request: TrainRequest, labelled: boolean, targets: boolean): TrainingGraph {
  const { trainable, optimizer } = request.training;
  return buildTrainingGraph(bytes, {
    loss: lossTerms(request, labelled, targets),
    trainable: trainable ?? { names: defaultTrainable(bytes) },
    optimizer,
  });
}

async function asUnsupportedAsync<T>(what: string, build: () => Promise<T>): Promise<T> {
  try {
    return await build();
  } catch (error) {
    if (error instanceof TrainingGraphError) throw new UnsupportedModelError(`${what}: ${error.message}`);
    throw error;
  }
}

/** Refusals of a model the engine cannot train, as 422 naming the op or the reason. */
function asUnsupported<T>(what: string, build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (error instanceof TrainingGraphError || error instanceof RangeError) throw new UnsupportedModelError(`${what}: ${error.message}`);
    throw error;
  }
}

export interface TrainDeps {
  store: ModelRepository;
  /** Jobs estimated larger than this (estimateTrainingSize) go to the container worker where the stack runs one; unset: none does unless asked. */
  containerThreshold?: number;
  sessionOptions?: InferenceSession.SessionOptions;
  /** Keep this much of an invocation's time for the last checkpoint (default 20 s). */
  pauseMarginMs?: number;
  /** Seconds between progress writes (default 2). */
  progressSeconds?: number;
  log?: (message: string, fields: Record<string, unknown>) => void;
  /** Called after each checkpoint is stored (the tests kill a worker there). */
  onCheckpointStored?: (job: string, phase: number, state: LoopState) => Promise<void> | void;
}

/**
 * Everything that can be checked before a job exists: the version, the data set (known, matching
 * the model's inputs, with labels the model's classes can hold), the options against the data set,
 * the student, and a dry build of the training graph (an unsupported op is a 422 naming it).
 */
export async function validateTrainSubmission(store: ModelRepository, model: string, version: string, request: TrainRequest): Promise<void> {
  const manifest = await store.getManifest(model, version);
  const dataset = await readDatasetManifest(store, request.dataset);
  matchDatasetToModel(dataset, manifest);
  const labelled = dataset.labels === 'label';
  const targets = dataset.labels === 'target';
  if (request.method !== 'distill' && !labelled && !targets) {
    throw new BadRequestError(`data set '${dataset.name}' has no labels or targets; ${request.method} needs them (distill can use unlabelled rows)`);
  }
  if (request.method === 'distill' && targets) throw new BadRequestError(`data set '${dataset.name}' has regression targets; distill needs class labels or none`);
  const classes = outputClasses(manifest);
  if (labelled && dataset.classes !== undefined && classes !== undefined && dataset.classes > classes) {
    throw new BadRequestError(`data set '${dataset.name}' has labels up to ${dataset.classes - 1}, but model '${model}' version '${version}' has ${classes} classes`);
  }
  const { training } = request;
  if (training.augmentation && !dataset.image) throw new BadRequestError(`training.augmentation needs an image data set; '${dataset.name}' has no image layout`);
  if (training.augmentation && dataset.inputs.length !== 1) throw new BadRequestError(`training.augmentation needs a data set with one input; '${dataset.name}' has ${dataset.inputs.length}`);
  const trainRows = dataset.rows - Math.round(dataset.rows * training.validationFraction);
  if (trainRows < training.batchSize) {
    throw new BadRequestError(`training.batchSize ${training.batchSize} is larger than the ${trainRows} training rows of data set '${dataset.name}' (after the validation split)`);
  }
  if (training.earlyStopping && training.validationFraction === 0) throw new BadRequestError('training.earlyStopping needs a validationFraction above 0');
  // A pipeline can teach (through the pipeline executor); it has no graph of its own to train.
  const pipeline = manifest.format === 'pipeline';
  if (pipeline && request.method !== 'distill') throw new UnsupportedModelError(`'${model}' version '${version}' is a pipeline; it can only teach (method distill), not be trained by ${request.method}`);
  const bytes = pipeline ? undefined : (await store.getModelBytes(manifest)).bytes;
  let trained = bytes;
  if (request.method === 'distill') {
    const signature = bytes ? asUnsupported(`model '${model}' version '${version}' cannot teach`, () => teacherSignature(bytes)) : await asUnsupportedAsync(`pipeline '${model}' version '${version}' cannot teach`, () => pipelineTeacherSignatureOf(store, manifest));
    if (request.student.kind === 'registered') {
      const student = await store.getManifest(request.student.model, request.student.version);
      matchDatasetToModel(dataset, student);
      if (student.outputs[0]?.name !== signature.outputName || outputClasses(student) !== signature.classes) {
        throw new BadRequestError(`student '${student.name}' version '${student.version}' must output '${signature.outputName}' with ${signature.classes} classes like its teacher`);
      }
      trained = (await store.getModelBytes(student)).bytes;
    } else if (request.student.kind === 'mlp') {
      const spec = request.student;
      const parameters = mlpParameters(signature, spec.hidden);
      if (parameters > MAX_STUDENT_PARAMETERS) throw new BadRequestError(`student.hidden [${spec.hidden.join(', ')}] makes ${parameters} parameters; at most ${MAX_STUDENT_PARAMETERS} (a student is meant to be smaller than its teacher)`);
      trained = asUnsupported('student', () => buildMlpStudent(signature, spec.hidden));
    } else {
      const problem = darknetInputProblem(signature, request.student.stages);
      if (problem) throw new UnsupportedModelError(problem);
      trained = bytes; // The thin Darknet is built on the worker (it measures statistics); the teacher's graph is checked here.
    }
  }
  if (request.method === 'prune' && request.pruning.kind === 'structured' && unitChains(decodeModel(bytes!)).length === 0) {
    throw new UnsupportedModelError(`model '${model}' version '${version}' has no hidden units to prune: no MatMul, Gemm or Conv feeds another through per-channel ops only`);
  }
  if (trained) asUnsupported(`model '${model}' version '${version}' cannot be trained`, () => trainingGraph(trained, request, labelled, targets));
}

function mlpParameters(signature: TeacherSignature, hidden: readonly number[]): number {
  const sizes = [signature.inputDims.reduce((a, b) => a * b, 1), ...hidden, signature.classes];
  return sizes.slice(1).reduce((n, width, i) => n + (sizes[i] as number) * width + width, 0);
}

/** Elements of a model's float initializers: its weights, biases and statistics. */
function parameterCount(bytes: Uint8Array): number {
  const initializers = decodeModel(bytes).graph?.initializer ?? [];
  return initializers.filter((t) => t.dataType === 1 || t.dataType === 10 || t.dataType === 11).reduce((n, t) => n + (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1), 0);
}

/**
 * A train job's size for its placement: parameters trained x training rows x epochs x phases (a
 * forward and a backward pass per parameter and row). A Darknet student is estimated from its
 * teacher, its widths times the multiplier (so its parameters times its square).
 */
export async function estimateTrainingSize(store: ModelRepository, request: TrainJobRequest): Promise<number> {
  const manifest = await store.getManifest(request.model, request.version);
  const dataset = await readDatasetManifest(store, request.dataset);
  let parameters: number;
  if (request.method === 'distill') {
    const { student } = request;
    if (student.kind === 'registered') parameters = parameterCount((await store.getModelBytes(await store.getManifest(student.model, student.version))).bytes);
    else if (student.kind === 'mlp') parameters = mlpParameters(await signatureOf(store, manifest), student.hidden);
    else parameters = darknetParameters({ widthMultiplier: student.widthMultiplier, stages: student.stages, classes: (await signatureOf(store, manifest)).classes });
  } else parameters = parameterCount((await store.getModelBytes(manifest)).bytes);
  const trainRows = dataset.rows - Math.round(dataset.rows * request.training.validationFraction);
  return parameters * trainRows * request.training.epochs * phaseCount(request);
}

/** What a student of this teacher (a model or a pipeline version) must take and give. */
async function signatureOf(store: ModelRepository, manifest: ModelManifest): Promise<TeacherSignature> {
  return manifest.format === 'pipeline' ? pipelineTeacherSignatureOf(store, manifest) : teacherSignature((await store.getModelBytes(manifest)).bytes);
}

/** Labels outside the model's classes are refused: the loss would read them as all-zero targets. */
function validateLabels(data: TrainingData, classes: number, dataset: string): void {
  if (!data.labels) return;
  for (let row = 0; row < data.labels.length; row++) {
    const label = data.labels[row] as number;
    if (!(label >= 0 && label < classes)) throw new JobStepError(`data set '${dataset}' row ${row} has label ${label}; the model has classes 0..${classes - 1}`);
  }
}

interface Phase {
  index: number;
  start: Uint8Array;
  masks?: Map<string, Uint8Array>;
  report?: Json;
}

async function getBytes(store: ModelRepository, key: string): Promise<Uint8Array | undefined> {
  return store.getObjectBytes(key);
}

/** The model phase `index` starts from: the source, a student, or the previous phase's result pruned one round further. */
async function phaseStart(deps: TrainDeps, job: string, request: TrainJobRequest, index: number, source: Uint8Array | undefined, signature: TeacherSignature | undefined, original: Map<string, number>): Promise<Phase> {
  if (request.method === 'finetune') return { index, start: source! };
  if (request.method === 'distill') {
    // Stored once: a Darknet student measures statistics as it is built, and a resumed job must start from the same one.
    const stored = await getBytes(deps.store, trainKeys.phaseStart(job, index));
    if (stored) return { index, start: stored };
    const { student } = request;
    const seed = student.kind !== 'registered' && student.seed !== undefined ? { seed: student.seed } : {};
    const start =
      student.kind === 'registered'
        ? (await deps.store.getModelBytes(await deps.store.getManifest(student.model, student.version))).bytes
        : await buildStudent(signature!, student.kind === 'mlp' ? { kind: 'mlp', hidden: student.hidden, ...seed } : { kind: 'darknet', widthMultiplier: student.widthMultiplier, ...(student.stages ? { stages: student.stages } : {}), ...seed });
    await deps.store.putObjectBytes(trainKeys.phaseStart(job, index), start);
    return { index, start };
  }
  // Pruning is deterministic from the previous phase's result, so a resumed phase finds the same model and masks.
  const previous = index === 0 ? source! : await getBytes(deps.store, trainKeys.phaseResult(job, index - 1));
  if (!previous) throw new Error(`phase ${index - 1} of job ${job} has no result`);
  const round = (index + 1) / request.pruning.rounds;
  if (request.pruning.kind === 'magnitude') {
    const pruned = magnitudePrune(previous, { sparsity: request.pruning.sparsity * round, scope: request.pruning.scope });
    return { index, start: pruned.bytes, masks: pruned.masks, report: { sparsity: pruned.zeroed / pruned.total, zeroed: pruned.zeroed, weights: pruned.total } };
  }
  if (original.size === 0) for (const chain of unitChains(decodeModel(source!))) original.set(chain.producer.name || (chain.producer.input?.[1] as string), chain.width);
  const pruned = structuredPrune(previous, { keep: keepFraction(1 - request.pruning.fraction * round, original) });
  return { index, start: pruned.bytes, report: { layers: pruned.layers, parametersBefore: pruned.parametersBefore, parametersAfter: pruned.parametersAfter } };
}

function lineageOptions(request: TrainJobRequest, job: string, summary: Record<string, Json>): Record<string, unknown> {
  const { model: _model, version: _version, method: _method, placement: _placement, ...hyperParameters } = request;
  return { job, source: { model: request.model, version: request.version }, dataset: request.dataset, hyperParameters, ...summary };
}

/** Registers the result once: a redelivered step finds the version its first run registered. */
async function registerOnce(store: ModelRepository, job: string, request: TrainJobRequest, bytes: Uint8Array, summary: Record<string, Json>): Promise<string> {
  for (const version of (await store.listVersions(request.model)).reverse()) {
    const manifest = await store.getManifest(request.model, version).catch(() => undefined);
    if (manifest?.lineage?.options?.job === job) return version;
  }
  const manifest = await pushModel(store, {
    name: request.model,
    bytes,
    notes: `${request.method} of version ${request.version} on data set ${request.dataset} (job ${job}); not routed until evaluated and promoted`,
    lineage: { sourceVersion: request.version, method: request.method, options: lineageOptions(request, job, summary) },
  });
  return manifest.version;
}

/** The one step of a train job: every phase, continued across invocations from the bucket's checkpoints. */
export async function runTrainStep(deps: TrainDeps, ctx: StepContext): Promise<StepOutcome> {
  const job = ctx.job.id;
  const request = parseTrainJobRequest(ctx.job.request);
  const manifest = await deps.store.getManifest(request.model, request.version);
  // A pipeline version only teaches: it runs through the pipeline executor and has no bytes to train.
  const pipeline = manifest.format === 'pipeline';
  const source = pipeline ? undefined : (await deps.store.getModelBytes(manifest)).bytes;
  const signature = request.method === 'distill' ? await signatureOf(deps.store, manifest) : undefined;
  const datasetManifest: DatasetManifest = await readDatasetManifest(deps.store, request.dataset);
  const loaded = await loadDataset(deps.store, datasetManifest);
  const classes = outputClasses(manifest) ?? datasetManifest.classes ?? 0;
  let data: TrainingData = { columns: loaded.columns, labels: loaded.labels, targets: loaded.targets };
  validateLabels(data, classes, request.dataset);
  const labelled = data.labels !== undefined;
  const targets = !labelled && data.targets !== undefined;
  const { training } = request;
  const rows = datasetManifest.rows;
  const original = new Map<string, number>();
  let teacher: Teacher | undefined;
  let precomputed: Float32Array | undefined;
  if (request.method === 'distill') {
    teacher = pipeline ? await Teacher.fromPipeline(deps.store, manifest, deps.sessionOptions?.intraOpNumThreads) : await Teacher.create(source!, deps.sessionOptions);
    if (!training.augmentation || !labelled) precomputed = await teacher.logitsForAll(data, rows);
    // Without labels, validation scores agreement with the teacher (its argmax as the label).
    if (!labelled) data = { columns: data.columns, labels: argmaxLabels(precomputed!, teacher.classes) };
  }
  const margin = deps.pauseMarginMs ?? 20_000;
  const phases = phaseCount(request);
  const stepsPerPhase = Math.floor((rows - Math.round(rows * training.validationFraction)) / training.batchSize) * training.epochs;
  const totalSamples = phases * stepsPerPhase * training.batchSize;
  const progressEvery = (deps.progressSeconds ?? 2) * 1000;
  try {
    let phase = 0;
    while (phase < phases && (await getBytes(deps.store, trainKeys.phaseResult(job, phase)))) phase++;
    for (; phase < phases; phase++) {
      const current = await phaseStart(deps, job, request, phase, source, signature, original);
      const graph = asUnsupported('training graph', () => trainingGraph(current.start, request, labelled, targets));
      const session = await TrainingSession.create(graph, deps.sessionOptions);
      try {
        const checkpointBytes = await getBytes(deps.store, trainKeys.phaseCheckpoint(job, phase));
        const resume = checkpointBytes ? decodeCheckpoint(checkpointBytes) : undefined;
        let lastReport = 0;
        let lastLoss = Number.NaN;
        let lastScore: number | undefined;
        const report = async (step: number, epoch: number, force: boolean) => {
          if (!force && Date.now() - lastReport < progressEvery) return;
          lastReport = Date.now();
          const stage = `phase ${phase + 1}/${phases} epoch ${Math.min(epoch + 1, training.epochs)}/${training.epochs} step ${step}/${stepsPerPhase} loss ${lastLoss.toPrecision(4)}${lastScore !== undefined ? ` val ${lastScore.toFixed(4)}` : ''}`;
          // done and total in samples over every phase: the runtime's rate is then samples per second.
          await ctx.progress((phase * stepsPerPhase + step) * training.batchSize, totalSamples, stage);
        };
        const imageInput = datasetManifest.image && training.augmentation ? datasetManifest.inputs[0]!.name : undefined;
        const options: LoopOptions = {
          epochs: training.epochs,
          batchSize: training.batchSize,
          learningRate: training.learningRate,
          schedule: training.schedule,
          seed: training.seed,
          validationFraction: training.validationFraction,
          ...(training.earlyStopping ? { earlyStopping: training.earlyStopping } : {}),
          checkpointEvery: training.checkpointEvery,
          prepareBatch: chainBatches(
            imageInput && training.augmentation ? augmentationBatches(training.augmentation, imageInput, datasetManifest.image!, training.seed) : undefined,
            teacher ? teacherBatches(teacher, request.method === 'distill' ? request.temperature : 1, training.augmentation ? undefined : precomputed) : undefined,
          ),
          ...(current.masks
            ? {
                afterStep: (s: TrainingSession) => {
                  for (const [name, mask] of current.masks!) if (graph.trainable.includes(name)) applyMask(s.value(name) as Float32Array, mask);
                },
              }
            : {}),
          // Out of time on Lambda, or a container told to stop: checkpoint, and another worker goes on from there.
          shouldPause: () => ctx.remainingMs() < margin || ctx.signal.aborted,
          onProgress: async (p) => {
            lastLoss = p.loss;
            if (p.validationScore !== undefined && !Number.isNaN(p.validationScore)) lastScore = p.validationScore;
            await report(p.step, p.epoch, p.validationScore !== undefined);
          },
          onCheckpoint: async (state) => {
            await deps.store.putObjectBytes(trainKeys.phaseCheckpoint(job, phase), encodeCheckpoint(state));
            await deps.onCheckpointStored?.(job, phase, state);
          },
        };
        const result = await runTrainingLoop(session, current.start, data, options, resume);
        if (!result.state.done) {
          deps.log?.('train step out of time; continues', { job, phase, step: result.state.step });
          return { continue: { phase, step: result.state.step } };
        }
        const last = result.state.history.at(-1);
        const summary = {
          phase,
          steps: result.state.step,
          epochs: result.state.history.length,
          finalLoss: last?.meanLoss ?? null,
          ...(labelled ? { validationAccuracy: result.state.bestScore } : targets ? { validationMse: result.state.bestScore === null ? null : -result.state.bestScore } : {}),
          ...(current.report !== undefined ? { pruning: current.report } : {}),
        };
        await deps.store.putObjectBytes(trainKeys.phaseSummary(job, phase), new TextEncoder().encode(JSON.stringify(summary)), 'application/json');
        await deps.store.putObjectBytes(trainKeys.phaseResult(job, phase), result.model);
      } finally {
        await session.release();
      }
    }
  } finally {
    await teacher?.release();
  }
  const finalPhase = phaseCount(request) - 1;
  const bytes = (await getBytes(deps.store, trainKeys.phaseResult(job, finalPhase)))!;
  const summaries: Json[] = [];
  for (let p = 0; p <= finalPhase; p++) summaries.push(JSON.parse(Buffer.from((await getBytes(deps.store, trainKeys.phaseSummary(job, p)))!).toString('utf8')) as Json);
  const last = summaries.at(-1) as Record<string, Json>;
  // The result must load before it is registered.
  const check = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  await check.release();
  const summary: Record<string, Json> = {
    finalLoss: last.finalLoss ?? null,
    ...('validationAccuracy' in last ? { validationAccuracy: last.validationAccuracy ?? null } : {}),
    ...('validationMse' in last ? { validationMse: last.validationMse ?? null } : {}),
    ...(request.method === 'distill' ? { teacher: { model: request.model, version: request.version }, student: request.student as unknown as Json, labelled } : {}),
    ...(summaries.length > 1 || request.method === 'prune' ? { phases: summaries } : {}),
  };
  const version = await registerOnce(deps.store, job, request, bytes, summary);
  deps.log?.('train job registered its result', { job, model: request.model, version });
  await ctx.progress(totalSamples, totalSamples, `registered version ${version}`);
  return { result: { model: request.model, version, method: request.method, dataset: request.dataset, ...summary } };
}

/** The kind as the runtime runs it: one step, retried up to three times, each retry resuming from the bucket. */
export function trainJobKind(deps: TrainDeps): JobKind {
  return {
    name: TRAIN_KIND,
    parseRequest: (body) => parseTrainJobRequest(body) as unknown as Json,
    // Asked for, or by the estimated size; the container worker only where the stack runs one.
    async placement(body, available) {
      const request = parseTrainJobRequest(body);
      if (request.placement) return request.placement;
      if (!available.includes('container') || deps.containerThreshold === undefined) return 'lambda';
      return (await estimateTrainingSize(deps.store, request)) > deps.containerThreshold ? 'container' : 'lambda';
    },
    plan: () => [{ name: 'train', handler: 'train' }],
    steps: { train: (ctx) => runTrainStep(deps, ctx) },
    maxAttempts: 3,
  };
}

export type { TrainJobRequest };
