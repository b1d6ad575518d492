import type { InferenceSession, Tensor } from '../onnx/ort.ts';
import { BadRequestError, InferenceRuntimeError } from '../platform/errors.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { LoadedModel, ModelSessions } from '../sessions/model-sessions.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { isCanonicalVersion } from '../artifacts/names.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { executePipeline, type ExecutorDeps, type RunnablePipeline } from './executor.ts';
import { readPipelineSpec } from './read.ts';
import { storeResolver } from './registry.ts';
import { stepTargets, type StepTarget } from './spec.ts';
import { executionOrder } from './validate.ts';

/**
 * A pipeline version as a LoadedModel whose `session` runs the executor: what batch scoring and
 * evaluation get from `ModelSessions.get` (through its `composite` option), so they take a pipeline
 * wherever they take a model. Step models load through the same ModelSessions. A step that follows
 * an alias is resolved once, when the pipeline loads: a job scores with one set of versions, and an
 * alias in the middle of a canary (two versions) is refused rather than mixed row by row.
 */
export function pipelineSessionLoader(store: ModelRepository): (manifest: ModelManifest, sessions: ModelSessions) => Promise<LoadedModel> {
  const resolver = storeResolver(store);
  return async (manifest, sessions) => {
    const started = performance.now();
    const spec = await readPipelineSpec(store, manifest);
    const pipeline: RunnablePipeline = { name: manifest.name, version: manifest.version, spec, order: executionOrder(spec) };
    const pinned = new Map<string, ModelManifest>();
    const keyOf = (t: StepTarget) => `${t.model}@${t.version ?? ''}`;
    for (const step of spec.steps) {
      for (const target of stepTargets(step)) {
        if (pinned.has(keyOf(target))) continue;
        let chosen: ModelManifest;
        if (target.version !== undefined && isCanonicalVersion(target.version)) {
          chosen = await store.getManifest(target.model, target.version);
        } else {
          const outcome = await resolver.resolve(target);
          if ('problem' in outcome) throw new BadRequestError(`pipeline '${manifest.name}' version '${manifest.version}' step '${step.id}': model '${target.model}' ${outcome.problem}`);
          if (outcome.manifests.length !== 1) {
            throw new BadRequestError(`pipeline '${manifest.name}' version '${manifest.version}' step '${step.id}' follows '${target.model}' ${target.version ?? '(default route)'}, which routes to versions ${outcome.manifests.map((m) => m.version).join(' and ')}: pin one for batch scoring and evaluation`);
          }
          chosen = outcome.manifests[0]!;
        }
        pinned.set(keyOf(target), chosen);
      }
    }
    const loaded = new Map(await Promise.all([...pinned].map(async ([key, m]) => [key, await sessions.get(m)] as const)));
    const deps: ExecutorDeps = {
      loadModel: (model, version) => Promise.resolve(loaded.get(`${model}@${version ?? ''}`)!),
      runtimeFailure: (model, error) => new InferenceRuntimeError(model.name, model.version, `model '${model.name}' version '${model.version}' failed while running: ${runtimeMessage(error)}`, { cause: error }),
    };
    const session = {
      inputNames: manifest.inputs.map((i) => i.name),
      outputNames: manifest.outputs.map((o) => o.name),
      async run(feeds: Record<string, Tensor>, fetches?: readonly string[]) {
        const run = await executePipeline(pipeline, new Map(Object.entries(feeds)), deps);
        const names = fetches && fetches.length > 0 ? fetches : manifest.outputs.map((o) => o.name);
        return Object.fromEntries(names.map((n) => [n, run.tensors.get(n)!]));
      },
      release: () => Promise.resolve(),
    } as unknown as InferenceSession;
    return {
      name: manifest.name,
      version: manifest.version,
      manifest,
      session,
      inputs: new Map(manifest.inputs.map((i) => [i.name, i] as const)),
      outputs: new Map(manifest.outputs.map((o) => [o.name, o] as const)),
      source: 'bucket',
      artifact: 'onnx',
      bytes: new Uint8Array(0),
      loadMs: performance.now() - started,
    };
  };
}
