import type { Tensor } from '../onnx/ort.ts';
import { BadRequestError, HttpError, InferenceRuntimeError, NotReadyError } from '../platform/errors.ts';
import type { LoadedModel } from '../sessions/model-sessions.ts';
import { chooseRoute } from '../registry/routing.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { DATATYPES } from '../v2/datatypes.ts';
import { combineTensors, conditionHolds, conditionValues } from './combine.ts';
import { parseSource, REQUEST_SOURCE, type PipelineSpec, type PipelineStep, type StepTarget } from './spec.ts';
import { stepDependencies } from './validate.ts';

export interface ExecutorDeps {
  /** A step model's session, as a request for that model would get it (versions, aliases, canaries). */
  loadModel(model: string, version: string | undefined, stickyKey?: string): Promise<LoadedModel>;
  /** What a failed session.run means (the serving path's own mapping: 400 for input refusals, else 500). */
  runtimeFailure(model: LoadedModel, error: unknown): Error;
  /** Splitter draws; Math.random by default. */
  random?: () => number;
}

export interface RunnablePipeline {
  name: string;
  version: string;
  spec: PipelineSpec;
  order: readonly string[];
}

export interface StepTiming {
  step: string;
  ms: number;
  /** The model versions the step ran. */
  ran: { model: string; version: string }[];
}

export interface PipelineRun {
  tensors: Map<string, Tensor>;
  timings: StepTiming[];
}

type StepOutputs = Record<string, Tensor>;

/** A step's failure, named by pipeline and step, with the status its cause has. */
function stepError(pipeline: RunnablePipeline, step: string, error: unknown): Error {
  const where = `pipeline '${pipeline.name}' version '${pipeline.version}' step '${step}'`;
  if (error instanceof PipelineStepFailure) return error.error;
  if (error instanceof HttpError && error.statusCode === 400) return new BadRequestError(`${where}: ${error.message}`, { cause: error });
  if (error instanceof HttpError && (error.statusCode === 404 || error.statusCode === 503)) {
    return new NotReadyError(`${where} cannot be served: ${error.message}`, { cause: error });
  }
  const message = error instanceof HttpError && error.expose ? error.message : runtimeMessage(error);
  return new InferenceRuntimeError(pipeline.name, pipeline.version, `${where} failed: ${message}`, { cause: error });
}

/** Carries an already named failure through the steps that depend on it. */
class PipelineStepFailure extends Error {
  readonly error: Error;
  constructor(error: Error) {
    super(error.message);
    this.error = error;
  }
}

function fits(tensor: Tensor, shape: readonly number[]): boolean {
  return tensor.dims.length === shape.length && shape.every((d, i) => d < 0 || d === tensor.dims[i]);
}

async function runModel(deps: ExecutorDeps, target: StepTarget, step: PipelineStep, lookup: (src: string) => Tensor, stickyKey: string | undefined) {
  const model = await deps.loadModel(target.model, target.version, stickyKey);
  const feeds: Record<string, Tensor> = {};
  for (const [input, src] of Object.entries(step.inputs)) {
    const spec = model.inputs.get(input);
    const tensor = lookup(src);
    if (!spec) throw new InferenceRuntimeError(model.name, model.version, `model '${model.name}' version '${model.version}' has no input '${input}' (it has ${[...model.inputs.keys()].join(', ')})`);
    if (DATATYPES[spec.datatype].ort !== tensor.type || !fits(tensor, spec.shape)) {
      throw new InferenceRuntimeError(
        model.name,
        model.version,
        `input '${input}' of model '${model.name}' version '${model.version}' is ${spec.datatype} [${spec.shape.join(',')}], but '${src}' is ${tensor.type} [${tensor.dims.join(',')}]`,
      );
    }
    feeds[input] = tensor;
  }
  try {
    return { model, outputs: (await model.session.run(feeds)) as StepOutputs };
  } catch (error) {
    throw deps.runtimeFailure(model, error);
  }
}

function switchTarget(step: Extract<PipelineStep, { kind: 'switch' }>, condition: Tensor): StepTarget {
  const values = conditionValues(condition, step.reduce);
  if (values.length === 0) throw new BadRequestError(`the condition '${step.on}' is empty`);
  const branch = (v: number) => {
    const index = step.cases.findIndex((c) => conditionHolds(c.op, v, c.value));
    return index >= 0 ? index : step.default ? step.cases.length : -1;
  };
  const chosen = values.map(branch);
  const missing = chosen.indexOf(-1);
  if (missing >= 0) throw new BadRequestError(`no case matches ${step.reduce} ${values[missing]} of '${step.on}' (row ${missing}) and the switch has no default`);
  if (chosen.some((c) => c !== chosen[0])) {
    throw new BadRequestError(`the rows of '${step.on}' choose different branches (row 0 ${branchName(chosen[0]!, step)}, row ${chosen.findIndex((c) => c !== chosen[0])} ${branchName(chosen.find((c) => c !== chosen[0])!, step)}): send them in separate requests`);
  }
  return chosen[0]! < step.cases.length ? step.cases[chosen[0]!]! : step.default!;
}

const branchName = (index: number, step: Extract<PipelineStep, { kind: 'switch' }>) => (index < step.cases.length ? `case ${index}` : 'default');

async function runStep(deps: ExecutorDeps, step: PipelineStep, lookup: (src: string) => Tensor, stickyKey: string | undefined): Promise<{ outputs: StepOutputs; ran: LoadedModel[] }> {
  switch (step.kind) {
    case 'model': {
      const { model, outputs } = await runModel(deps, step, step, lookup, stickyKey);
      return { outputs, ran: [model] };
    }
    case 'switch': {
      const { model, outputs } = await runModel(deps, switchTarget(step, lookup(step.on)), step, lookup, stickyKey);
      return { outputs, ran: [model] };
    }
    case 'splitter': {
      const index = Number(chooseRoute(step.branches.map((b, i) => ({ version: String(i), weight: b.weight })), stickyKey, deps.random));
      const { model, outputs } = await runModel(deps, step.branches[index]!, step, lookup, stickyKey);
      return { outputs, ran: [model] };
    }
    case 'ensemble': {
      const runs = await Promise.all(step.members.map((m) => runModel(deps, m, step, lookup, stickyKey)));
      const names = step.outputs ?? Object.keys(runs[0]!.outputs);
      const outputs: StepOutputs = {};
      for (const name of names) {
        const combined = combineTensors(step.combine, runs.map((r) => r.outputs[name]!), step.members.map((m) => m.weight ?? 1));
        if (typeof combined === 'string') throw new Error(`output '${name}': ${combined}`);
        outputs[name] = combined;
      }
      return { outputs, ran: runs.map((r) => r.model) };
    }
  }
}

/**
 * Runs a pipeline on tensors already checked against its inputs. Each step starts as soon as the
 * steps it reads from are done, so independent steps run concurrently; tensors pass from step to
 * step as the runtime returned them (no copy, no re-encoding). A failure names its step.
 */
export async function executePipeline(pipeline: RunnablePipeline, request: ReadonlyMap<string, Tensor>, deps: ExecutorDeps, stickyKey?: string): Promise<PipelineRun> {
  const byId = new Map(pipeline.spec.steps.map((s) => [s.id, s] as const));
  const results = new Map<string, StepOutputs>();
  const timings: StepTiming[] = [];
  const lookup = (src: string): Tensor => {
    const { step, tensor } = parseSource(src);
    const found = step === REQUEST_SOURCE ? request.get(tensor) : results.get(step)?.[tensor];
    if (!found) throw new InferenceRuntimeError(pipeline.name, pipeline.version, `'${src}' was not produced`);
    return found;
  };
  const running = new Map<string, Promise<void>>();
  for (const id of pipeline.order) {
    const step = byId.get(id)!;
    const after = stepDependencies(step).map((d) => running.get(d)!);
    running.set(
      id,
      Promise.all(after).then(async () => {
        const started = performance.now();
        try {
          const { outputs, ran } = await runStep(deps, step, lookup, stickyKey);
          results.set(id, outputs);
          timings.push({ step: id, ms: performance.now() - started, ran: ran.map((m) => ({ model: m.name, version: m.version })) });
        } catch (error) {
          throw new PipelineStepFailure(stepError(pipeline, id, error));
        }
      }),
    );
  }
  try {
    await Promise.all(running.values());
  } catch (error) {
    throw error instanceof PipelineStepFailure ? error.error : error;
  }
  const tensors = new Map<string, Tensor>();
  for (const output of pipeline.spec.outputs) tensors.set(output.name, lookup(output.source));
  timings.sort((a, b) => pipeline.order.indexOf(a.step) - pipeline.order.indexOf(b.step));
  return { tensors, timings };
}
