/**
 * The training objective: the training engine's hyper-parameters against validation accuracy. Each
 * trial trains the registered version on a data set (read by the evaluation's readers) from its own
 * weights, reports the validation accuracy after every epoch (a pruner may stop it there), and keeps
 * its trained model in the bucket so the winner can be registered.
 */
import * as z from 'zod';
import { loadDataset, readDatasetManifest } from '../../evaluate/datasets.ts';
import type { Json } from '../../jobs/record.ts';
import { keys } from '../../artifacts/keys.ts';
import { pushModel } from '../../registry/model-push.ts';
import { NAME_PATTERN, VERSION_PATTERN } from '../../artifacts/names.ts';
import { runTrainingLoop, validationSplit, type LoopState, type TrainingData } from '../../train/loop.ts';
import type { OptimizerSpec } from '../../train/optimizers.ts';
import { buildTrainingGraph } from '../../train/training-graph.ts';
import { TrainingSession } from '../../train/training-session.ts';
import type { Configuration } from '../space.ts';
import { checkLabelledReferences, zodRefusal, type ObjectiveDefinition, type PreparedObjective } from './objective.ts';

export const TRAINING_PARAMETERS = ['learningRate', 'optimizer', 'momentum', 'weightDecay', 'batchSize', 'epochs', 'labelSmoothing', 'schedule', 'warmupSteps'] as const;
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

const configurationSchema = z.strictObject({
  learningRate: z.number().positive().default(0.05),
  optimizer: z.enum(['sgd', 'adam', 'adamw']).default('sgd'),
  momentum: z.number().min(0).lt(1).default(0.9),
  weightDecay: z.number().min(0).default(0),
  batchSize: z.number().int().min(1).default(32),
  epochs: z.number().int().min(1).max(1000).default(3),
  labelSmoothing: z.number().min(0).lt(1).default(0),
  schedule: z.enum(['constant', 'cosine']).default('cosine'),
  warmupSteps: z.number().int().min(0).default(0),
});
export type TrainingConfiguration = z.infer<typeof configurationSchema>;

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
  async checkReferences(raw, store) {
    const options = parseTrainingOptions(raw);
    await checkLabelledReferences(store, options, () => `the training objective scores validation accuracy on labelled rows; data set '${options.dataset}' has none`);
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
        const graph = buildTrainingGraph(bytes, {
          loss: { kind: 'cross-entropy', labelSmoothing: c.labelSmoothing },
          ...(options.trainablePrefix ? { trainable: { prefix: options.trainablePrefix } } : {}),
          optimizer: optimizerOf(c),
        });
        const session = await TrainingSession.create(graph);
        try {
          const loop = { epochs: c.epochs, batchSize: c.batchSize, learningRate: c.learningRate, schedule: { kind: c.schedule, warmupSteps: c.warmupSteps }, seed: options.seed, validationFraction: options.validationFraction };
          const rows = data.labels!.length;
          const perEpoch = Math.floor(validationSplit(rows, options.validationFraction, options.seed).train.length / c.batchSize);
          let state: LoopState | undefined;
          let model: Uint8Array | undefined;
          // One epoch per call (the loop stops at the next epoch's first step): its validation
          // accuracy is the intermediate value a pruner judges.
          while (!state?.done) {
            const result = await runTrainingLoop(session, bytes, data, { ...loop, maxStepsThisRun: perEpoch }, state);
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
