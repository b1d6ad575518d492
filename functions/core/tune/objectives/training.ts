/**
 * The training objective: the training engine's hyper-parameters against validation accuracy. Each
 * trial trains the registered version on a data set (read by the evaluation's readers) from its own
 * weights, reports the validation accuracy after every epoch (a pruner may stop it there), and keeps
 * its trained model in the bucket so the winner can be registered.
 *
 * Widths (`width1`..`width3`) search the architecture: a trial with them trains, from a seeded start,
 * an MLP of those hidden widths with the registered model's input and output (the distillation
 * student's builder). Augmentation strengths (`augmentShift` pixels, `augmentRotation` degrees,
 * `augmentNoise` sigma, `augmentBlur` sigma, `augmentBrightness` and `augmentContrast` as the factor's
 * distance from 1; 0 leaves a kind out) augment a share `augmentProbability` of the training rows of
 * an image data set, each by one of the kinds on.
 */
import * as z from 'zod';
import { BadRequestError } from '../../platform/errors.ts';
import { loadDataset, readDatasetManifest } from '../../evaluate/datasets.ts';
import type { Json } from '../../jobs/record.ts';
import { keys } from '../../artifacts/keys.ts';
import { pushModel } from '../../registry/model-push.ts';
import { NAME_PATTERN, VERSION_PATTERN } from '../../artifacts/names.ts';
import { augmentationBatches, type TrainingAugmentation } from '../../train/augment-batches.ts';
import { MAX_STUDENT_PARAMETERS } from '../../train/jobs.ts';
import { runTrainingLoop, validationSplit, type LoopState, type TrainingData } from '../../train/loop.ts';
import { buildMlpStudent, teacherSignature } from '../../train/student.ts';
import type { OptimizerSpec } from '../../train/optimizers.ts';
import { buildTrainingGraph } from '../../train/training-graph.ts';
import { TrainingSession } from '../../train/training-session.ts';
import type { Configuration, SearchSpace } from '../space.ts';
import { checkLabelledReferences, zodRefusal, type ObjectiveDefinition, type PreparedObjective } from './objective.ts';

const WIDTHS = ['width1', 'width2', 'width3'] as const;
const AUGMENT_STRENGTHS = ['augmentShift', 'augmentRotation', 'augmentNoise', 'augmentBlur', 'augmentBrightness', 'augmentContrast'] as const;
export const TRAINING_PARAMETERS = [
  'learningRate', 'optimizer', 'momentum', 'weightDecay', 'batchSize', 'epochs', 'labelSmoothing', 'schedule', 'warmupSteps',
  ...WIDTHS, 'augmentProbability', ...AUGMENT_STRENGTHS,
] as const;
export const TRAINING_METRICS = ['accuracy', 'best_epoch', 'epochs_run', 'final_loss'] as const;

const trainingOptionsSchema = z.strictObject({
  model: z.string().regex(NAME_PATTERN, 'a model name: [a-z0-9][a-z0-9._-]{0,63}'),
  version: z.string().regex(VERSION_PATTERN, 'a version number'),
  /** Labelled rows: a held-out share scores each epoch. */
  dataset: z.string().regex(NAME_PATTERN, 'a data set name: [a-z0-9][a-z0-9._-]{0,63}'),
  validationFraction: z.number().gt(0).lt(1).default(0.2),
  /** Rows of the data set used (the first N); default all. */
  rows: z.number().int().min(2).optional(),
  /** Only initializers whose names start with this train (default: every float initializer on the loss's path). */
  trainablePrefix: z.string().min(1).optional(),
  /** Seeds the split and the batch order: every trial sees the same validation rows. */
  seed: z.number().int().min(0).max(0xffffffff).default(0),
});
export type TrainingOptions = z.infer<typeof trainingOptionsSchema>;

const width = z.number().int().min(1).max(4096).optional();
const parameterSchema = z.strictObject({
  learningRate: z.number().positive().default(0.05),
  optimizer: z.enum(['sgd', 'adam', 'adamw']).default('sgd'),
  momentum: z.number().min(0).lt(1).default(0.9),
  weightDecay: z.number().min(0).default(0),
  batchSize: z.number().int().min(1).default(32),
  epochs: z.number().int().min(1).max(1000).default(3),
  labelSmoothing: z.number().min(0).lt(1).default(0),
  schedule: z.enum(['constant', 'cosine']).default('cosine'),
  warmupSteps: z.number().int().min(0).default(0),
  width1: width,
  width2: width,
  width3: width,
  augmentProbability: z.number().gt(0).max(1).default(0.5),
  augmentShift: z.number().int().min(0).max(8).default(0),
  augmentRotation: z.number().min(0).max(90).default(0),
  augmentNoise: z.number().min(0).max(1).default(0),
  augmentBlur: z.number().min(0).max(3).default(0),
  augmentBrightness: z.number().min(0).lt(1).default(0),
  augmentContrast: z.number().min(0).lt(1).default(0),
});
const configurationSchema = parameterSchema.superRefine((c, ctx) => {
  if (c.width2 !== undefined && c.width1 === undefined) ctx.addIssue({ code: 'custom', path: ['width2'], message: 'needs width1 (widths fill the hidden layers from the first)' });
  if (c.width3 !== undefined && c.width2 === undefined) ctx.addIssue({ code: 'custom', path: ['width3'], message: 'needs width2 (widths fill the hidden layers from the first)' });
});
export type TrainingConfiguration = z.infer<typeof configurationSchema>;

/** The hidden widths a configuration asks for, in order; empty to train the registered model itself. */
export const hiddenWidths = (c: TrainingConfiguration): number[] => [c.width1, c.width2, c.width3].filter((w): w is number => w !== undefined);

/** The augmentation a configuration asks for, or undefined when every strength is 0. */
export function trainingAugmentation(c: TrainingConfiguration): TrainingAugmentation | undefined {
  const strengths: NonNullable<TrainingAugmentation['strengths']> = {};
  if (c.augmentShift > 0) strengths.shift = [c.augmentShift];
  if (c.augmentRotation > 0) strengths.rotation = [c.augmentRotation];
  if (c.augmentNoise > 0) strengths.noise = [c.augmentNoise];
  if (c.augmentBlur > 0) strengths.blur = [c.augmentBlur];
  if (c.augmentBrightness > 0) strengths.brightness = [1 - c.augmentBrightness, 1 + c.augmentBrightness];
  if (c.augmentContrast > 0) strengths.contrast = [1 - c.augmentContrast, 1 + c.augmentContrast];
  const kinds = Object.keys(strengths) as (keyof typeof strengths)[];
  return kinds.length > 0 ? { kinds, probability: c.augmentProbability, strengths } : undefined;
}

/**
 * Every end of a numeric range and every choice must be a value the training engine accepts, and
 * the widths and augmentation parameters must make sense together; a 400 names the parameter.
 */
export function checkTrainingSpace(space: SearchSpace, options: TrainingOptions): void {
  const fail = (name: string, message: string) => {
    throw new BadRequestError(`invalid search space: parameter '${name}': ${message}`);
  };
  for (const [name, p] of Object.entries(space.parameters)) {
    const field = parameterSchema.shape[name as keyof typeof parameterSchema.shape];
    const values = p.type === 'categorical' ? p.choices : [p.low, p.high];
    for (const value of values) {
      const parsed = field.safeParse(value);
      if (!parsed.success) fail(name, `${JSON.stringify(value)} is not accepted: ${parsed.error.issues[0]!.message}`);
    }
  }
  const present = (name: string) => name in space.parameters;
  if (present('width2') && !present('width1')) fail('width2', 'needs width1 in the space (widths fill the hidden layers from the first)');
  if (present('width3') && !present('width2')) fail('width3', 'needs width2 in the space (widths fill the hidden layers from the first)');
  if (present('width1') && options.trainablePrefix) fail('width1', 'widths build a new MLP; trainablePrefix selects weights of the registered model, so give one or the other');
  if (present('augmentProbability') && !AUGMENT_STRENGTHS.some(present)) fail('augmentProbability', `needs an augmentation strength in the space (${AUGMENT_STRENGTHS.join(', ')})`);
}

/** The largest value a numeric parameter can take in the space (a categorical one's largest choice). */
function highest(space: SearchSpace, name: string): number | undefined {
  const p = space.parameters[name];
  if (!p) return undefined;
  return p.type === 'categorical' ? Math.max(...p.choices.map(Number)) : p.high;
}

function parseTrainingOptions(input: unknown): TrainingOptions {
  const parsed = trainingOptionsSchema.safeParse(input);
  if (!parsed.success) throw zodRefusal('training objective', parsed.error);
  return parsed.data;
}

export function trainingConfiguration(params: Configuration): TrainingConfiguration {
  const parsed = configurationSchema.safeParse(params);
  if (!parsed.success) throw zodRefusal('training configuration', parsed.error);
  return parsed.data;
}

const optimizerOf = (c: TrainingConfiguration): OptimizerSpec =>
  c.optimizer === 'sgd' ? { kind: 'sgd', momentum: c.momentum, weightDecay: c.weightDecay } : { kind: c.optimizer, weightDecay: c.weightDecay };

/** The first `rows` rows of a data set's columns and labels (views, no copy). */
function firstRows(data: TrainingData, rows: number): TrainingData {
  return {
    columns: data.columns.map((c) => ({ ...c, data: (c.data as Float32Array).subarray(0, rows * c.rowSize) as never })),
    labels: data.labels?.subarray(0, rows),
  };
}

export const trainingObjective: ObjectiveDefinition = {
  type: 'training',
  metrics: TRAINING_METRICS,
  parameters: TRAINING_PARAMETERS,
  parseOptions: (input) => parseTrainingOptions(input) as unknown as Json,
  checkSpace: (space, raw) => checkTrainingSpace(space, parseTrainingOptions(raw)),
  async checkReferences(raw, store, space) {
    const options = parseTrainingOptions(raw);
    const { manifest, dataset } = await checkLabelledReferences(store, options, () => `the training objective scores validation accuracy on labelled rows; data set '${options.dataset}' has none`);
    const augmented = AUGMENT_STRENGTHS.find((name) => name in space.parameters);
    if (augmented && (!dataset.image || dataset.inputs.length !== 1)) {
      throw new BadRequestError(`invalid search space: parameter '${augmented}' augments images; data set '${dataset.name}' ${dataset.image ? `has ${dataset.inputs.length} inputs` : 'has no image layout'}`);
    }
    if ('width1' in space.parameters) {
      let signature;
      try {
        signature = teacherSignature((await store.getModelBytes(manifest)).bytes);
      } catch (error) {
        throw new BadRequestError(`invalid search space: parameter 'width1' builds an MLP with the input and output of model '${options.model}' version '${options.version}', which cannot size one: ${(error as Error).message}`, { cause: error });
      }
      const sizes = [signature.inputDims.reduce((a, b) => a * b, 1), ...WIDTHS.map((w) => highest(space, w)).filter((w): w is number => w !== undefined), signature.classes];
      const parameters = sizes.slice(1).reduce((n, w, i) => n + sizes[i]! * w + w, 0);
      if (parameters > MAX_STUDENT_PARAMETERS) throw new BadRequestError(`invalid search space: the widest MLP of the space (${sizes.join('-')}) has ${parameters} parameters; at most ${MAX_STUDENT_PARAMETERS}`);
    }
  },
  defaultSpace: () => ({
    parameters: {
      learningRate: { type: 'float', low: 0.001, high: 0.3, log: true },
      momentum: { type: 'float', low: 0, high: 0.95 },
      weightDecay: { type: 'float', low: 0.00001, high: 0.01, log: true },
      batchSize: { type: 'categorical', choices: [16, 32, 64] },
      labelSmoothing: { type: 'float', low: 0, high: 0.2 },
    },
  }),

  async prepare(raw, context): Promise<PreparedObjective> {
    const options = parseTrainingOptions(raw);
    const manifest = await context.store.getManifest(options.model, options.version);
    const datasetManifest = await readDatasetManifest(context.store, options.dataset);
    const [{ bytes }, dataset] = await Promise.all([context.store.getModelBytes(manifest), loadDataset(context.store, datasetManifest)]);
    const data = firstRows(dataset, Math.min(options.rows ?? datasetManifest.rows, datasetManifest.rows));

    return {
      async run(params, trialNumber, io) {
        const c = trainingConfiguration(params);
        const widths = hiddenWidths(c);
        // A trial with widths trains a fresh MLP of the model's signature; one without fine-tunes the model.
        const start = widths.length > 0 ? buildMlpStudent(teacherSignature(bytes), widths, options.seed) : bytes;
        const augmentation = trainingAugmentation(c);
        const imageInput = datasetManifest.image && datasetManifest.inputs.length === 1 ? datasetManifest.inputs[0]!.name : undefined;
        if (augmentation && !imageInput) throw new BadRequestError(`augmentation needs an image data set with one input; '${options.dataset}' is not one`);
        const prepareBatch = augmentation ? augmentationBatches(augmentation, imageInput!, datasetManifest.image!, options.seed) : undefined;
        const graph = buildTrainingGraph(start, {
          loss: { kind: 'cross-entropy', labelSmoothing: c.labelSmoothing },
          ...(options.trainablePrefix ? { trainable: { prefix: options.trainablePrefix } } : {}),
          optimizer: optimizerOf(c),
        });
        const session = await TrainingSession.create(graph);
        try {
          const loop = { epochs: c.epochs, batchSize: c.batchSize, learningRate: c.learningRate, schedule: { kind: c.schedule, warmupSteps: c.warmupSteps }, seed: options.seed, validationFraction: options.validationFraction, ...(prepareBatch ? { prepareBatch } : {}) };
          const rows = data.labels!.length;
          const perEpoch = Math.floor(validationSplit(rows, options.validationFraction, options.seed).train.length / c.batchSize);
          let state: LoopState | undefined;
          let model: Uint8Array | undefined;
          // One epoch per call (the loop stops at the next epoch's first step): its validation
          // accuracy is the intermediate value a pruner judges.
          while (!state?.done) {
            const result = await runTrainingLoop(session, start, data, { ...loop, maxStepsThisRun: perEpoch }, state);
            state = result.state;
            model = result.model;
            const accuracy = 100 * state.history.at(-1)!.validationScore;
            if ((await io.report(state.history.length - 1, accuracy)).prune) return { pruned: true };
          }
          const best = state.history.reduce((a, b) => (b.validationScore > a.validationScore ? b : a));
          const artifact = keys.tuneTrialModel(context.job, trialNumber);
          await context.store.putObjectBytes(artifact, model!);
          return {
            metrics: { accuracy: 100 * best.validationScore, best_epoch: best.epoch, epochs_run: state.history.length, final_loss: state.history.at(-1)!.meanLoss },
            artifact,
          };
        } finally {
          await session.release();
        }
      },
    };
  },

  async registerWinner(raw, trial, context) {
    const options = parseTrainingOptions(raw);
    const bytes = await context.store.getObjectBytes(keys.tuneTrialModel(context.job, trial.number));
    if (!bytes) throw new Error(`the winning trial ${trial.number} of study '${context.study}' left no model in the bucket`);
    for (const version of (await context.store.listVersions(options.model)).reverse()) {
      const manifest = await context.store.getManifest(options.model, version).catch(() => undefined);
      if (manifest?.lineage?.method === 'tune' && manifest.lineage.options?.study === context.study) return { model: options.model, version };
    }
    const source = await context.store.getManifest(options.model, options.version);
    const manifest = await pushModel(context.store, {
      name: options.model,
      bytes,
      tier: source.tier,
      notes: `training search winner of study ${context.study} (trial ${trial.number}); not routed until evaluated and promoted`,
      lineage: { sourceVersion: options.version, method: 'tune', options: { study: context.study, job: context.job, trial: trial.number, dataset: options.dataset, ...trainingConfiguration(trial.params) } },
    });
    return { model: options.model, version: manifest.version };
  },
};
