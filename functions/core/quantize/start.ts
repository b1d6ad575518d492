import type { ModelRepository } from '../registry/repository.ts';
import type { JobRecord } from '../jobs/record.ts';
import type { JobRuntime } from '../jobs/runtime.ts';
import { UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import { jobId, QUANTIZE_KIND } from './jobs.ts';
import { opsetRefusal } from './common.ts';
import { minimumOpset, type QuantizeRequest } from './options.ts';
import { estimatedMemoryMiB } from './quantize-model.ts';

export interface StartQuantizationDeps {
  store: ModelRepository;
  /** The job runtime with the quantize kind: it writes the record and sends the step to the worker's queue. */
  runtime: Pick<JobRuntime, 'submit'>;
  /** The worker's memory; a model whose estimate exceeds it is refused with the container path. */
  workerMemoryMiB: number;
}

/**
 * Starts (or finds) the quantization of one version: refused for a version that is already a
 * variant, whose opset is older than the method needs, or too big for the quantize Lambda (the
 * message names the container path). Used by the
 * API and by a tier's default quantization policy on registration.
 */
export async function startQuantization(
  deps: StartQuantizationDeps,
  name: string,
  version: string,
  request: QuantizeRequest,
): Promise<{ job: JobRecord; created: boolean }> {
  const manifest = await deps.store.getManifest(name, version);
  if (manifest.format === 'pipeline') throw new UnsupportedModelError(`'${name}' version '${version}' is a pipeline; quantize its step models, or its fused version ("fuse": true)`);
  if (manifest.lineage && ['int8-dynamic', 'int8-static', 'fp16'].includes(manifest.lineage.method)) {
    throw new UnsupportedModelError(`model '${name}' version '${version}' is already a ${manifest.lineage.method} variant of version ${manifest.lineage.sourceVersion}; quantize that fp32 version instead`);
  }
  // Refused here, with 422, rather than by the worker after a 202.
  const needsOpset = minimumOpset(request);
  if (manifest.opset < needsOpset) throw new UnsupportedModelError(opsetRefusal(request.method, needsOpset, manifest.opset));
  const needed = estimatedMemoryMiB(manifest.bytes, request.method);
  if (needed > deps.workerMemoryMiB) {
    throw new UnsupportedModelError(
      `model '${name}' version '${version}' is ${(manifest.bytes / 2 ** 20).toFixed(0)} MiB; ${request.method} needs about ${needed} MiB, beyond the quantize Lambda's ${deps.workerMemoryMiB} MiB. ` +
        `Run it on the container path instead: \`mass quantize ${name} --version ${version} --method ${request.method} --local\` in the worker image (infra/gpu-worker), which quantizes in-process and registers the result the same way`,
    );
  }
  // The same request is the same job while it is queued, running or succeeded. A job that ended failed
  // or cancelled stays as it ended (a job ends once); asking again starts a retry under the next id.
  const base = jobId(name, version, request);
  for (let retry = 0; ; retry++) {
    const started = await deps.runtime.submit({
      kind: QUANTIZE_KIND,
      id: retry === 0 ? base : `${base}-r${retry}`,
      request: { model: name, sourceVersion: version, method: request.method, options: request.options },
      parent: { model: name, version },
    });
    if (started.created || (started.job.state !== 'failed' && started.job.state !== 'cancelled')) return started;
  }
}
