import * as z from '../platform/zod-mini.ts';
import { BadRequestError } from '../platform/errors.ts';
import { V2_DATATYPES } from '../v2/datatypes.ts';

/**
 * A pipeline: models composed into one served model (docs/pipelines.md). Steps name a model and a
 * version or alias, and feed each model input from a source: `$request.<input>` (the pipeline's
 * request) or `<step>.<output>` (another step's output). Four kinds of step:
 *   model     one model (the default kind)
 *   ensemble  the same inputs to several models, their outputs combined (mean, weighted_mean,
 *             majority_vote, concat)
 *   switch    one branch chosen by a condition on a tensor (its argmax, or its value, per row)
 *   splitter  a weighted random branch, sticky per caller by the route-key header
 */

/** Step ids never contain a dot, so `<step>.<output>` splits at its first one. */
export const STEP_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
/** Names of the pipeline's own inputs and outputs (ONNX tensor names are freer; these travel in V2 requests). */
export const TENSOR_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$/;
export const REQUEST_SOURCE = '$request';
export const MAX_STEPS = 32;
export const MAX_BRANCHES = 8;

export const COMBINE_METHODS = ['mean', 'weighted_mean', 'majority_vote', 'concat'] as const;
export const CONDITION_OPS = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte'] as const;

/**
 * The schemas, built on the first parse: every inference function loads this module, and most never
 * serve a pipeline (building them at load was part of each cold start).
 */
function buildSchemas() {
  const name = z.string().check(z.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must match [a-z0-9][a-z0-9._-]{0,63}'));
  const tensorName = z.string().check(z.regex(TENSOR_NAME_PATTERN, 'must match [A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}'));
  const source = z.string().check(z.regex(/^(\$request|[a-z0-9][a-z0-9_-]{0,63})\..+$/, 'must be $request.<input> or <step>.<output>'));

  /** A model and, optionally, a version (pinned) or an alias (followed); none follows the model's default route. */
  const target = {
    model: name,
    version: z.optional(name),
  };

  const stepBase = {
    id: z.string().check(z.regex(STEP_ID_PATTERN, 'must match [a-z0-9][a-z0-9_-]{0,63}')),
    /** Model input name -> source. */
    inputs: z.record(z.string().check(z.minLength(1)), source),
  };

  const modelStep = z.strictObject({ kind: z.literal('model'), ...stepBase, ...target });

  const ensembleStep = z.strictObject({
    kind: z.literal('ensemble'),
    ...stepBase,
    members: z.array(z.strictObject({ ...target, weight: z.optional(z.number().check(z.positive())) })).check(z.minLength(2), z.maxLength(MAX_BRANCHES)),
    combine: z.enum(COMBINE_METHODS),
    /** The member outputs to combine (every member has them); default all. */
    outputs: z.optional(z.array(z.string().check(z.minLength(1))).check(z.minLength(1))),
  });

  const switchStep = z.strictObject({
    kind: z.literal('switch'),
    ...stepBase,
    /** The tensor the condition reads: `$request.<input>` or `<step>.<output>`. */
    on: source,
    /** argmax: the index of each row's highest value (last axis); value: each element itself. */
    reduce: z.enum(['argmax', 'value']),
    cases: z.array(z.strictObject({ op: z.enum(CONDITION_OPS), value: z.number(), ...target })).check(z.minLength(1), z.maxLength(MAX_BRANCHES)),
    default: z.optional(z.strictObject(target)),
  });

  const splitterStep = z.strictObject({
    kind: z.literal('splitter'),
    ...stepBase,
    /** Integer weights in percent adding up to 100. */
    branches: z.array(z.strictObject({ ...target, weight: z.number().check(z.int(), z.minimum(0), z.maximum(100)) })).check(z.minLength(2), z.maxLength(MAX_BRANCHES)),
  });

  const pipelineStepSchema = z.discriminatedUnion('kind', [modelStep, ensembleStep, switchStep, splitterStep]);

  const pipelineSpecSchema = z.strictObject({
    description: z.optional(z.string().check(z.maxLength(1000))),
    inputs: z.array(z.strictObject({ name: tensorName, datatype: z.enum(V2_DATATYPES), shape: z.array(z.number().check(z.int(), z.minimum(-1))) })).check(z.minLength(1)),
    outputs: z.array(z.strictObject({ name: tensorName, source })).check(z.minLength(1)),
    steps: z.array(pipelineStepSchema).check(z.minLength(1), z.maxLength(MAX_STEPS)),
    /** Compile the steps (all plain model steps with pinned versions) into one ONNX model at registration. */
    fuse: z.optional(z.boolean()),
  });
  return { pipelineStepSchema, pipelineSpecSchema };
}

let schemas: ReturnType<typeof buildSchemas> | undefined;

export type PipelineSpec = z.infer<ReturnType<typeof buildSchemas>['pipelineSpecSchema']>;
export type PipelineStep = z.infer<ReturnType<typeof buildSchemas>['pipelineStepSchema']>;
export type StepTarget = { model: string; version?: string | undefined };
export type CombineMethod = (typeof COMBINE_METHODS)[number];
export type ConditionOp = (typeof CONDITION_OPS)[number];

/** The examples docs/pipelines.md shows; a unit test parses and validates each. */
export const PIPELINE_EXAMPLES = {
  chain: {
    description: 'pre-processing, the MNIST classifier, top-3',
    inputs: [{ name: 'image', datatype: 'UINT8', shape: [-1, 28, 28] }],
    outputs: [
      { name: 'labels', source: 'top3.labels' },
      { name: 'scores', source: 'top3.scores' },
    ],
    steps: [
      { id: 'pre', model: 'mnist-pre', version: '1', inputs: { image: '$request.image' } },
      { id: 'classify', model: 'mnist', version: '1', inputs: { input: 'pre.input' } },
      { id: 'top3', model: 'mnist-top3-post', version: '1', inputs: { probabilities: 'classify.probabilities' } },
    ],
  },
  ensemble: {
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 784] }],
    outputs: [{ name: 'probabilities', source: 'vote.probabilities' }],
    steps: [
      {
        id: 'vote',
        kind: 'ensemble',
        combine: 'mean',
        members: [{ model: 'mnist', version: '1' }, { model: 'mnist', version: '2' }],
        inputs: { input: '$request.input' },
      },
    ],
  },
  switch: {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [{ name: 'y', source: 'route.y' }],
    steps: [
      { id: 'gate', model: 'router', version: '1', inputs: { x: '$request.x' } },
      {
        id: 'route',
        kind: 'switch',
        on: 'gate.scores',
        reduce: 'argmax',
        cases: [{ op: 'eq', value: 0, model: 'small', version: '1' }],
        default: { model: 'large', version: 'prod' },
        inputs: { x: '$request.x' },
      },
    ],
  },
  splitter: {
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [{ name: 'y', source: 'ab.y' }],
    steps: [
      {
        id: 'ab',
        kind: 'splitter',
        branches: [{ model: 'scale-a', version: '1', weight: 70 }, { model: 'scale-b', version: '1', weight: 30 }],
        inputs: { x: '$request.x' },
      },
    ],
  },
} as const;

/** Every model a step may run, in order: one for a model step, the members or branches otherwise. */
export function stepTargets(step: PipelineStep): StepTarget[] {
  switch (step.kind) {
    case 'model': return [{ model: step.model, version: step.version }];
    case 'ensemble': return step.members;
    case 'switch': return [...step.cases, ...(step.default ? [step.default] : [])];
    case 'splitter': return step.branches;
  }
}

/** `$request.x` -> { step: '$request', tensor: 'x' }; `a.b.c` -> { step: 'a', tensor: 'b.c' }. */
export function parseSource(value: string): { step: string; tensor: string } {
  const dot = value.indexOf('.');
  return { step: value.slice(0, dot), tensor: value.slice(dot + 1) };
}

/**
 * A spec as a user wrote it: a step without `kind` is a model step. Refused with the path of the
 * first problem (`steps.1.inputs`), as a 400.
 */
export function parsePipelineSpec(raw: unknown): PipelineSpec {
  const normalized =
    raw && typeof raw === 'object' && Array.isArray((raw as { steps?: unknown }).steps)
      ? { ...raw, steps: ((raw as { steps: unknown[] }).steps).map((s) => (s && typeof s === 'object' && !('kind' in s) ? { kind: 'model', ...s } : s)) }
      : raw;
  const parsed = (schemas ??= buildSchemas()).pipelineSpecSchema.safeParse(normalized);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const at = issue.path.length ? ` at ${issue.path.join('.')}` : '';
    const stepIndex = issue.path[0] === 'steps' && typeof issue.path[1] === 'number' ? issue.path[1] : undefined;
    const stepId = stepIndex !== undefined ? (normalized as { steps: { id?: unknown }[] }).steps[stepIndex]?.id : undefined;
    throw new BadRequestError(`invalid pipeline${typeof stepId === 'string' ? ` (step ${JSON.stringify(stepId.slice(0, 64))})` : ''}${at}: ${issue.message}`);
  }
  return parsed.data;
}
