/**
 * One source of truth for what a training request may say (the API, the job's worker, the CLI and
 * the tests parse with these schemas): `finetune`, `distill` or `prune` a registered version on a
 * data set in the bucket. Every object is strict, so a misspelt option is a 400 that names it.
 */
import * as z from 'zod';
import { AUGMENTATIONS } from '../evaluate/augment.ts';
import { NAME_PATTERN } from '../artifacts/names.ts';

export const TRAIN_METHODS = ['finetune', 'distill', 'prune'] as const;
export type TrainMethod = (typeof TRAIN_METHODS)[number];

const name = (what: string) => z.string().regex(NAME_PATTERN, `${what}: [a-z0-9][a-z0-9._-]{0,63}`);
const augmentationKinds = AUGMENTATIONS.map((a) => a.kind) as [(typeof AUGMENTATIONS)[number]['kind'], ...(typeof AUGMENTATIONS)[number]['kind'][]];

export const scheduleSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('constant'), warmupSteps: z.number().int().min(0).optional() }),
  z.strictObject({ kind: z.literal('cosine'), warmupSteps: z.number().int().min(0).optional(), floor: z.number().min(0).optional() }),
  z.strictObject({ kind: z.literal('step'), warmupSteps: z.number().int().min(0).optional(), every: z.number().int().min(1), gamma: z.number().gt(0).max(1) }),
]);

export const optimizerSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('sgd'), momentum: z.number().min(0).lt(1).default(0.9), weightDecay: z.number().min(0).default(0) }),
  z.strictObject({ kind: z.literal('adam'), beta1: z.number().min(0).lt(1).optional(), beta2: z.number().min(0).lt(1).optional(), epsilon: z.number().gt(0).optional(), weightDecay: z.number().min(0).default(0) }),
  z.strictObject({ kind: z.literal('adamw'), beta1: z.number().min(0).lt(1).optional(), beta2: z.number().min(0).lt(1).optional(), epsilon: z.number().gt(0).optional(), weightDecay: z.number().min(0).default(0.01) }),
]);

/** What every method trains with. */
export const trainingSchema = z.strictObject({
  epochs: z.number().int().min(1).max(1000).default(3),
  batchSize: z.number().int().min(1).max(4096).default(64),
  learningRate: z.number().gt(0).max(10).default(0.001),
  schedule: scheduleSchema.default({ kind: 'cosine', warmupSteps: 0 }),
  optimizer: optimizerSchema.default({ kind: 'adam', weightDecay: 0 }),
  /** Cross-entropy label smoothing (classification). */
  labelSmoothing: z.number().min(0).lt(1).default(0),
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(1),
  validationFraction: z.number().min(0).lt(1).default(0.1),
  earlyStopping: z.strictObject({ patience: z.number().int().min(1), minDelta: z.number().min(0).default(0) }).optional(),
  /** Only these parameters train (exact initializer names, or a name prefix such as the head's); default every weight, bias and BN scale/bias. */
  trainable: z.strictObject({ names: z.array(z.string().min(1)).min(1).optional(), prefix: z.string().min(1).optional() }).optional(),
  augmentation: z.strictObject({ kinds: z.array(z.enum(augmentationKinds)).min(1), probability: z.number().gt(0).max(1).default(0.5) }).optional(),
  /** Steps between checkpoints to the bucket: a killed worker loses at most this many. */
  checkpointEvery: z.number().int().min(1).max(100_000).default(200),
});
export type TrainingOptions = z.infer<typeof trainingSchema>;

export const studentSchema = z.discriminatedUnion('kind', [
  /** A registered version (any model) whose input and output match the teacher's. */
  z.strictObject({ kind: z.literal('registered'), model: name('student model name'), version: name('student version') }),
  z.strictObject({ kind: z.literal('mlp'), hidden: z.array(z.number().int().min(1).max(65_536)).min(1).max(16), seed: z.number().int().min(0).optional() }),
  /** A Darknet-style CNN: channel widths x widthMultiplier, `stages` residual blocks per stride-2 stage (default Darknet-53's [1, 2, 8, 8, 4]). */
  z.strictObject({ kind: z.literal('darknet'), widthMultiplier: z.number().gt(0).max(1), stages: z.array(z.number().int().min(0).max(8)).min(1).max(5).optional(), seed: z.number().int().min(0).optional() }),
]);
export type StudentSpecInput = z.infer<typeof studentSchema>;

export const pruningSchema = z.discriminatedUnion('kind', [
  /** Zero the smallest weights: `sparsity` of each layer (scope layer) or of all of them (global). */
  z.strictObject({ kind: z.literal('magnitude'), sparsity: z.number().gt(0).lt(1), scope: z.enum(['layer', 'global']).default('layer'), rounds: z.number().int().min(1).max(20).default(1) }),
  /** Remove `fraction` of the hidden units of every MatMul/Gemm chain and Conv (with its BN and the next layer's inputs). */
  z.strictObject({ kind: z.literal('structured'), fraction: z.number().gt(0).lt(1), rounds: z.number().int().min(1).max(20).default(1) }),
]);
export type PruningOptions = z.infer<typeof pruningSchema>;

const dataset = name('data set name');
/** Where the job runs; default: chosen from its estimated size (docs/training.md, placement). */
const placement = z.enum(['lambda', 'container']).optional();

export const trainRequestSchema = z.discriminatedUnion('method', [
  z.strictObject({ method: z.literal('finetune'), dataset, placement, training: trainingSchema.default(() => trainingSchema.parse({})) }),
  z.strictObject({
    method: z.literal('distill'),
    dataset,
    placement,
    student: studentSchema,
    temperature: z.number().gt(0).max(100).default(4),
    /** Weight of the KL term; 1 - alpha weighs cross-entropy on labels (ignored without labels). */
    alpha: z.number().min(0).max(1).default(0.7),
    training: trainingSchema.default(() => trainingSchema.parse({})),
  }),
  z.strictObject({
    method: z.literal('prune'),
    dataset,
    placement,
    pruning: pruningSchema,
    /** Fine-tuning after each round (its epochs are per round). */
    training: trainingSchema.default(() => trainingSchema.parse({})),
  }),
]);
export type TrainRequest = z.infer<typeof trainRequestSchema>;
export type TrainRequestInput = z.input<typeof trainRequestSchema>;

/** The job's request: what the user asked, and which version it is about. */
export type TrainJobRequest = TrainRequest & { model: string; version: string };
