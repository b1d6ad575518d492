import { GetQueueUrlCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { ModelStore } from '../model-store.ts';
import { UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import type { QuantizeJob, QuantizeJobs } from './jobs.ts';
import { opsetRefusal } from './common.ts';
import { minimumOpset, type QuantizeRequest } from './options.ts';
import { estimatedMemoryMiB } from './quantize-model.ts';

export interface StartQuantizationDeps {
  store: ModelStore;
  jobs: QuantizeJobs;
  /** Hands a job to the worker: an SQS message in AWS, an in-process run locally. */
  dispatch: (job: string) => Promise<void>;
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
): Promise<{ job: QuantizeJob; created: boolean }> {
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
  const started = await deps.jobs.createOrGet(name, version, request);
  if (started.created) await deps.dispatch(started.job.job);
  return started;
}

/** Dispatch through the quantize queue, found by name so serverless-offline needs no CloudFormation reference. */
export function sqsDispatch(sqs: SQSClient, queueName: string): (job: string) => Promise<void> {
  let url: Promise<string> | undefined;
  return async (job: string) => {
    url ??= sqs.send(new GetQueueUrlCommand({ QueueName: queueName })).then((out) => out.QueueUrl!);
    await sqs.send(new SendMessageCommand({ QueueUrl: await url, MessageBody: JSON.stringify({ job }) }));
  };
}
