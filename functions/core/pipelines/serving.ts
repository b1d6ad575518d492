import type { Tensor } from '../onnx/ort.ts';
import { BadRequestError, NotReadyError } from '../platform/errors.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { ortTensor } from '../sessions/model-sessions.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { classCountOf, classify, modelBatches } from '../v2/triton-extensions.ts';
import { DATATYPES, v2DatatypeOf } from '../v2/datatypes.ts';
import type { DecodedInferRequest, InferResponse, ResponseTensor } from '../v2/codec.ts';
import { executePipeline, type ExecutorDeps, type RunnablePipeline } from './executor.ts';
import { readPipelineSpec } from './read.ts';
import { stepTargets } from './spec.ts';
import { executionOrder } from './validate.ts';

/** The request parameter that asks for per-step timings in the response's `parameters`. */
export const TIMINGS_PARAMETER = 'timings';

export interface LoadedPipeline extends RunnablePipeline {
  manifest: ModelManifest;
  loadMs: number;
}

export interface PipelineServingOptions extends ExecutorDeps {
  store: ModelRepository;
}

export interface PipelineInferResult {
  response: InferResponse;
  binaryOutputs: Set<string>;
  model: { name: string; version: string };
}

/**
 * Pipelines on the serving path: a version's spec read once (its sha256 checked), every step's
 * sessions loaded when the pipeline is (so a pre-warmed pipeline answers its first request warm),
 * then each request checked against the pipeline's inputs and run by the executor.
 */
export class PipelineServing {
  private readonly options: PipelineServingOptions;
  private readonly loads = new Map<string, Promise<LoadedPipeline>>();
  private readonly loaded = new Map<string, LoadedPipeline>();

  constructor(options: PipelineServingOptions) {
    this.options = options;
  }

  /** The manifest of a pipeline version already loaded: requests for it need no manifest read. */
  loadedManifest(name: string, version: string): ModelManifest | undefined {
    return this.loaded.get(`${name}/${version}`)?.manifest;
  }

  load(manifest: ModelManifest): Promise<LoadedPipeline> {
    const key = `${manifest.name}/${manifest.version}`;
    let load = this.loads.get(key);
    if (!load) {
      load = this.read(manifest).then(
        (pipeline) => {
          this.loaded.set(key, pipeline);
          return pipeline;
        },
        (error: unknown) => {
          this.loads.delete(key); // a failed load is retried by the next request
          throw error;
        },
      );
      this.loads.set(key, load);
    }
    return load;
  }

  private async read(manifest: ModelManifest): Promise<LoadedPipeline> {
    const started = performance.now();
    const spec = await readPipelineSpec(this.options.store, manifest);
    const pipeline = { name: manifest.name, version: manifest.version, spec, order: executionOrder(spec) };
    await Promise.all(
      spec.steps.flatMap((step) =>
        stepTargets(step).map((t) =>
          this.options.loadModel(t.model, t.version).catch((error: unknown) => {
            throw new NotReadyError(`pipeline '${manifest.name}' version '${manifest.version}' step '${step.id}' cannot be served: ${runtimeMessage(error)}`, { cause: error });
          }),
        ),
      ),
    );
    return { ...pipeline, manifest, loadMs: performance.now() - started };
  }

  async infer(manifest: ModelManifest, request: DecodedInferRequest, stickyKey?: string): Promise<PipelineInferResult> {
    const pipeline = await this.load(manifest);
    const feeds = requestTensors(manifest, request);
    const requested = request.outputs?.length ? request.outputs : manifest.outputs.map((o) => ({ name: o.name, binary: request.binaryDataOutput, parameters: undefined }));
    for (const o of requested) {
      if (!manifest.outputs.some((m) => m.name === o.name)) {
        throw new BadRequestError(`unknown output '${o.name}'; pipeline '${manifest.name}' has outputs: ${manifest.outputs.map((m) => m.name).join(', ')}`);
      }
    }
    const classCounts = new Map(requested.map((o) => [o.name, classCountOf(o.name, o.parameters)] as const));
    const started = performance.now();
    const run = await executePipeline(pipeline, feeds, this.options, stickyKey);
    const totalMs = performance.now() - started;
    const batched = modelBatches(manifest.inputs, manifest.outputs);
    const outputs = requested.map((o): ResponseTensor => {
      const tensor = run.tensors.get(o.name)!;
      const output = { name: o.name, datatype: v2DatatypeOf(tensor.type)!, shape: [...tensor.dims], data: tensor.data as ResponseTensor['data'] };
      const count = classCounts.get(o.name);
      if (count === undefined) return output;
      const classes = classify(output, count, batched, undefined);
      return { name: o.name, datatype: 'BYTES', shape: classes.shape, data: classes.data };
    });
    const timings = request.parameters?.[TIMINGS_PARAMETER] === true;
    return {
      model: { name: manifest.name, version: manifest.version },
      binaryOutputs: new Set(requested.filter((o) => o.binary).map((o) => o.name)),
      response: {
        model_name: manifest.name,
        model_version: manifest.version,
        ...(request.id !== undefined ? { id: request.id } : {}),
        // V2 parameters are flat (string, number, boolean): one key per step and figure.
        ...(timings
          ? {
              parameters: Object.fromEntries([
                ['pipeline_ms', totalMs],
                ...run.timings.flatMap((t) => [
                  [`step_ms.${t.step}`, t.ms],
                  [`step_model.${t.step}`, t.ran.map((r) => `${r.model}:${r.version}`).join(',')],
                ]),
              ]),
            }
          : {}),
        outputs,
      },
    };
  }
}

/** The request's tensors checked against the pipeline's declared inputs, as onnxruntime tensors. */
function requestTensors(manifest: ModelManifest, request: DecodedInferRequest): Map<string, Tensor> {
  const feeds = new Map<string, Tensor>();
  for (const input of request.inputs) {
    const spec = manifest.inputs.find((i) => i.name === input.name);
    if (!spec) throw new BadRequestError(`unknown input '${input.name}'; pipeline '${manifest.name}' has inputs: ${manifest.inputs.map((i) => i.name).join(', ')}`);
    if (input.datatype !== spec.datatype) throw new BadRequestError(`input '${input.name}' has datatype ${input.datatype} but the pipeline expects ${spec.datatype}`);
    const fits = input.shape.length === spec.shape.length && spec.shape.every((d, i) => d < 0 || d === input.shape[i]);
    if (!fits) throw new BadRequestError(`input '${input.name}' has shape [${input.shape.join(',')}] but the pipeline expects [${spec.shape.join(',')}] (-1 is any size)`);
    feeds.set(input.name, ortTensor(DATATYPES[spec.datatype].ort, input.data, input.shape));
  }
  const missing = manifest.inputs.filter((i) => !feeds.has(i.name)).map((i) => i.name);
  if (missing.length > 0) throw new BadRequestError(`missing input${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);
  return feeds;
}
