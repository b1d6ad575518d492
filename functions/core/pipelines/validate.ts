import { BadRequestError } from '../platform/errors.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { TensorMetadata } from '../v2/schemas.ts';
import { parseSource, REQUEST_SOURCE, stepTargets, type PipelineSpec, type PipelineStep, type StepTarget } from './spec.ts';

/**
 * What registration knows of a model a step may run: the versions it resolves to now (a pinned
 * version: itself; an alias: every route with traffic; none: the model's default route), or why it
 * cannot run at all.
 */
export type ResolvedTarget = { manifests: ModelManifest[] } | { problem: string };

export interface PipelineResolver {
  resolve(target: StepTarget): Promise<ResolvedTarget>;
}

/** A spec checked against the registry: its order of execution and every tensor's signature. */
export interface ResolvedPipeline {
  spec: PipelineSpec;
  /** Step ids, each after the steps it reads from. */
  order: string[];
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
  stepOutputs: Record<string, TensorMetadata[]>;
  /** The model versions each step resolved to at registration (lineage, `mass pipeline show`). */
  resolved: Record<string, { model: string; version: string }[]>;
}

const refuse = (step: string | undefined, message: string) =>
  new BadRequestError(step === undefined ? `invalid pipeline: ${message}` : `invalid pipeline: step '${step}': ${message}`);

const shapeText = (shape: readonly number[]) => `[${shape.join(',')}]`;
const signatureText = (t: Pick<TensorMetadata, 'datatype' | 'shape'>) => `${t.datatype} ${shapeText(t.shape)}`;

/** Why a tensor of shape `given` cannot feed one declared `expected` (-1 is any size), or undefined when it can. */
export function shapeContradiction(given: readonly number[], expected: readonly number[]): string | undefined {
  if (given.length !== expected.length) return `rank ${given.length} against rank ${expected.length}`;
  for (let i = 0; i < given.length; i += 1) {
    const g = given[i]!;
    const e = expected[i]!;
    if (g >= 0 && e >= 0 && g !== e) return `dimension ${i} is ${g} against ${e}`;
  }
  return undefined;
}

/** Two signatures of one tensor (canary routes, branches): one that covers both, or the contradiction. */
function mergeShapes(a: readonly number[], b: readonly number[]): number[] | string {
  const problem = shapeContradiction(a, b);
  if (problem) return problem;
  return a.map((d, i) => (d === b[i] ? d : -1));
}

function mergeSignatures(step: string, what: string, lists: { label: string; outputs: TensorMetadata[] }[]): TensorMetadata[] {
  const [first, ...rest] = lists;
  const merged = first!.outputs.map((o) => ({ name: o.name, datatype: o.datatype, shape: [...o.shape] }));
  for (const other of rest) {
    const names = other.outputs.map((o) => o.name).sort().join(', ');
    if (names !== merged.map((o) => o.name).sort().join(', ')) {
      throw refuse(step, `${what} must have the same outputs: ${first!.label} has ${merged.map((o) => o.name).join(', ')}, ${other.label} has ${names}`);
    }
    for (const m of merged) {
      const o = other.outputs.find((x) => x.name === m.name)!;
      if (o.datatype !== m.datatype) throw refuse(step, `output '${m.name}' is ${m.datatype} in ${first!.label} but ${o.datatype} in ${other.label}`);
      const shape = mergeShapes(m.shape, o.shape);
      if (typeof shape === 'string') throw refuse(step, `output '${m.name}' is ${shapeText(m.shape)} in ${first!.label} but ${shapeText(o.shape)} in ${other.label} (${shape})`);
      m.shape = shape;
    }
  }
  return merged;
}

/** The step ids a step reads from (not `$request`). */
export function stepDependencies(step: PipelineStep): string[] {
  const sources = [...Object.values(step.inputs), ...(step.kind === 'switch' ? [step.on] : [])];
  return [...new Set(sources.map((s) => parseSource(s).step).filter((s) => s !== REQUEST_SOURCE))];
}

/** Kahn's order; a cycle is refused with the steps on it. */
export function executionOrder(spec: PipelineSpec): string[] {
  const ids = new Set<string>();
  for (const step of spec.steps) {
    if (ids.has(step.id)) throw refuse(step.id, 'the step id appears twice');
    ids.add(step.id);
  }
  const deps = new Map(spec.steps.map((s) => [s.id, stepDependencies(s)] as const));
  for (const step of spec.steps) {
    for (const [input, src] of [...Object.entries(step.inputs), ...(step.kind === 'switch' ? [['(condition)', step.on] as const] : [])]) {
      const from = parseSource(src).step;
      if (from !== REQUEST_SOURCE && !ids.has(from)) throw refuse(step.id, `input '${input}' reads '${src}' from step '${from}', which does not exist`);
      if (from === step.id) throw refuse(step.id, `input '${input}' reads the step's own output '${src}': the graph has a cycle`);
    }
  }
  const order: string[] = [];
  const remaining = new Map(deps);
  while (remaining.size > 0) {
    const ready = [...remaining].filter(([, d]) => d.every((x) => !remaining.has(x))).map(([id]) => id);
    if (ready.length === 0) {
      throw refuse(undefined, `the graph has a cycle through steps ${[...remaining.keys()].map((s) => `'${s}'`).join(', ')}`);
    }
    for (const id of ready) {
      order.push(id);
      remaining.delete(id);
    }
  }
  return order;
}

const FLOATS = new Set(['FP16', 'FP32', 'FP64']);
const INTEGERS = new Set(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64']);

function ensembleOutputs(step: Extract<PipelineStep, { kind: 'ensemble' }>, members: TensorMetadata[]): TensorMetadata[] {
  const names = step.outputs ?? members.map((o) => o.name);
  if (step.combine === 'weighted_mean' && step.members.some((m) => m.weight === undefined)) throw refuse(step.id, 'weighted_mean needs a weight on every member');
  if (step.combine !== 'weighted_mean' && step.members.some((m) => m.weight !== undefined)) throw refuse(step.id, `member weights are for weighted_mean, not ${step.combine}`);
  return names.map((name) => {
    const o = members.find((m) => m.name === name);
    if (!o) throw refuse(step.id, `output '${name}' is not an output of the members (they have ${members.map((m) => m.name).join(', ')})`);
    switch (step.combine) {
      case 'mean':
      case 'weighted_mean':
        if (o.datatype !== 'FP32' && o.datatype !== 'FP64') throw refuse(step.id, `output '${name}' is ${o.datatype}: ${step.combine} combines FP32 or FP64 tensors (majority_vote takes labels)`);
        return { name, datatype: o.datatype, shape: o.shape };
      case 'majority_vote':
        if (FLOATS.has(o.datatype)) {
          if (o.shape.length < 1) throw refuse(step.id, `output '${name}' is a scalar: a vote over scores needs a class axis`);
          return { name, datatype: 'INT64', shape: o.shape.slice(0, -1) };
        }
        if (INTEGERS.has(o.datatype)) return { name, datatype: 'INT64', shape: o.shape };
        throw refuse(step.id, `output '${name}' is ${o.datatype}: majority_vote takes scores (argmax) or integer labels`);
      case 'concat': {
        if (o.shape.length < 1) throw refuse(step.id, `output '${name}' is a scalar: concat joins along the last axis`);
        const last = o.shape.at(-1)!;
        return { name, datatype: o.datatype, shape: [...o.shape.slice(0, -1), last < 0 ? -1 : last * step.members.length] };
      }
    }
  });
}

function targetLabel(t: StepTarget): string {
  return `model '${t.model}'${t.version ? ` version '${t.version}'` : ''}`;
}

/**
 * Checks a pipeline against the registry: ids unique and acyclic, every source known, every model
 * version existing and servable, every connection's datatype equal and shapes compatible (-1 fits
 * any size; two fixed sizes that differ are refused), every model input fed and nothing fed that a
 * model lacks. Each refusal is a 400 naming the step and the tensor.
 */
export async function validatePipeline(spec: PipelineSpec, resolver: PipelineResolver): Promise<ResolvedPipeline> {
  const order = executionOrder(spec);
  const inputNames = new Set<string>();
  for (const input of spec.inputs) {
    if (inputNames.has(input.name)) throw refuse(undefined, `input '${input.name}' is declared twice`);
    inputNames.add(input.name);
  }
  const outputNames = new Set<string>();
  for (const output of spec.outputs) {
    if (outputNames.has(output.name)) throw refuse(undefined, `output '${output.name}' is declared twice`);
    outputNames.add(output.name);
  }
  const byId = new Map(spec.steps.map((s) => [s.id, s] as const));
  // Every target resolved at once: registration reads the registry for all steps in parallel.
  const resolvedTargets = new Map(
    await Promise.all(
      spec.steps.map(async (step) => [step.id, await Promise.all(stepTargets(step).map((t) => resolver.resolve(t)))] as const),
    ),
  );
  const stepOutputs: Record<string, TensorMetadata[]> = {};
  const resolved: Record<string, { model: string; version: string }[]> = {};
  const usedInputs = new Set<string>();

  const sourceSignature = (stepId: string, input: string, src: string): TensorMetadata => {
    const { step, tensor } = parseSource(src);
    if (step === REQUEST_SOURCE) {
      const declared = spec.inputs.find((i) => i.name === tensor);
      if (!declared) throw refuse(stepId, `input '${input}' reads '${src}', but the pipeline declares no input '${tensor}' (it has ${spec.inputs.map((i) => i.name).join(', ')})`);
      usedInputs.add(tensor);
      return declared;
    }
    const out = stepOutputs[step]!.find((o) => o.name === tensor);
    if (!out) throw refuse(stepId, `input '${input}' reads '${src}', but step '${step}' has no output '${tensor}' (it has ${stepOutputs[step]!.map((o) => o.name).join(', ')})`);
    return out;
  };

  for (const id of order) {
    const step = byId.get(id)!;
    const targets = stepTargets(step);
    const lists: { label: string; outputs: TensorMetadata[] }[] = [];
    resolved[id] = [];
    for (const [index, target] of targets.entries()) {
      const outcome = resolvedTargets.get(id)![index]!;
      if ('problem' in outcome) throw refuse(id, `${targetLabel(target)}: ${outcome.problem}`);
      for (const manifest of outcome.manifests) {
        const label = `model '${manifest.name}' version '${manifest.version}'`;
        if (manifest.format !== 'onnx') throw refuse(id, `${label} is a pipeline; a step runs a model (pipelines do not nest)`);
        resolved[id].push({ model: manifest.name, version: manifest.version });
        for (const [input, src] of Object.entries(step.inputs)) {
          const expected = manifest.inputs.find((i) => i.name === input);
          if (!expected) throw refuse(id, `input '${input}' is not an input of ${label} (it has ${manifest.inputs.map((i) => i.name).join(', ')})`);
          const given = sourceSignature(id, input, src);
          if (given.datatype !== expected.datatype) {
            throw refuse(id, `input '${input}' of ${label} is ${expected.datatype}, but '${src}' is ${given.datatype}`);
          }
          const contradiction = shapeContradiction(given.shape, expected.shape);
          if (contradiction) {
            throw refuse(id, `input '${input}' of ${label} is ${signatureText(expected)}, but '${src}' is ${signatureText(given)} (${contradiction})`);
          }
        }
        const unfed = manifest.inputs.filter((i) => !(i.name in step.inputs)).map((i) => i.name);
        if (unfed.length > 0) throw refuse(id, `input${unfed.length > 1 ? 's' : ''} ${unfed.map((n) => `'${n}'`).join(', ')} of ${label} ${unfed.length > 1 ? 'have' : 'has'} no source`);
        lists.push({ label, outputs: manifest.outputs });
      }
    }
    if (step.kind === 'switch') {
      const condition = sourceSignature(id, '(condition)', step.on);
      if (!FLOATS.has(condition.datatype) && !INTEGERS.has(condition.datatype) && condition.datatype !== 'BOOL') {
        throw refuse(id, `the condition '${step.on}' is ${condition.datatype}; a switch reads numbers`);
      }
      if (step.reduce === 'argmax' && condition.shape.length < 1) throw refuse(id, `the condition '${step.on}' is a scalar: argmax needs an axis`);
    }
    if (step.kind === 'splitter') {
      const total = step.branches.reduce((sum, b) => sum + b.weight, 0);
      if (total !== 100) throw refuse(id, `branch weights must add up to 100, got ${total}`);
    }
    const merged = mergeSignatures(id, step.kind === 'model' ? 'the routes of the alias' : 'the branches', lists);
    stepOutputs[id] = step.kind === 'ensemble' ? ensembleOutputs(step, merged) : merged;
  }

  const unused = spec.inputs.filter((i) => !usedInputs.has(i.name)).map((i) => i.name);
  if (unused.length > 0) throw refuse(undefined, `input ${unused.map((n) => `'${n}'`).join(', ')} is declared but no step reads it`);
  const outputs = spec.outputs.map((o) => {
    const { step, tensor } = parseSource(o.source);
    if (step === REQUEST_SOURCE) throw refuse(undefined, `output '${o.name}' must come from a step, not from the request`);
    if (!byId.has(step)) throw refuse(undefined, `output '${o.name}' reads '${o.source}' from step '${step}', which does not exist`);
    const out = stepOutputs[step]!.find((x) => x.name === tensor);
    if (!out) throw refuse(step, `output '${o.name}' reads '${o.source}', but step '${step}' has no output '${tensor}' (it has ${stepOutputs[step]!.map((x) => x.name).join(', ')})`);
    return { name: o.name, datatype: out.datatype, shape: out.shape };
  });
  return {
    spec,
    order,
    inputs: spec.inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape })),
    outputs,
    stepOutputs,
    resolved,
  };
}
