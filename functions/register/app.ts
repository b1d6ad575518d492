import type { S3Event } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { ModelRepository } from '../core/registry/repository.ts';
import { MetricUnit } from '../core/platform/observability.ts';
import { registerUpload, type UploadOutcome } from '../core/registry/register-upload.ts';
import { isPipelineUpload, registerPipelineUpload } from '../core/pipelines/upload.ts';
import { uploadedObjects, type S3ObjectCreatedDetailEvent } from '../adapters/s3-events.ts';

export interface RegisterHandlerDeps {
  store: ModelRepository;
  logger: Logger;
  metrics: Metrics;
  maxModelBytes: number;
  /** Memory of the inference function (the deployment's tier): what a model must fit to be registered. */
  servingMemoryMiB?: number | undefined;
  /**
   * The tier's default quantization policy: started for every new upload (not for versions our own
   * code derived). It never routes traffic; a failure is logged and leaves the registration standing.
   */
  defaultQuantization?: { method: string; start: (model: string, version: string) => Promise<{ job: { job: string }; created: boolean }> } | undefined;
}

/**
 * Uploads under incoming/ (EventBridge "Object Created" in AWS, an S3 notification locally). A
 * rejected upload is an outcome, not a failure; anything else throws, so the event is retried.
 */
export function createRegisterHandler(deps: RegisterHandlerDeps) {
  const { store, logger, metrics } = deps;
  return async function registerHandler(event: S3Event | S3ObjectCreatedDetailEvent): Promise<UploadOutcome[]> {
    const outcomes: UploadOutcome[] = [];
    for (const object of uploadedObjects(event)) {
      const started = performance.now();
      const outcome = isPipelineUpload(object.key)
        ? await registerPipelineUpload(store, object)
        : await registerUpload(store, object, { maxModelBytes: deps.maxModelBytes, servingMemoryMiB: deps.servingMemoryMiB });
      const ms = performance.now() - started;
      switch (outcome.status) {
        case 'registered':
          logger.info('model version registered', { model: outcome.manifest.name, version: outcome.manifest.version, sha256: outcome.manifest.sha256, ms });
          metrics.addMetric('RegisterMs', MetricUnit.Milliseconds, ms);
          if (deps.defaultQuantization && outcome.manifest.lineage === null && outcome.manifest.format === 'onnx') {
            const { name, version } = outcome.manifest;
            try {
              const { job, created } = await deps.defaultQuantization.start(name, version);
              logger.info('default quantization started', { model: name, version, method: deps.defaultQuantization.method, job: job.job, created });
            } catch (error) {
              logger.warn('default quantization not started', { model: name, version, error: (error as Error).message });
            }
          }
          break;
        case 'rejected':
          logger.warn('upload rejected', { key: object.key, reason: outcome.reason, rejectionKey: outcome.rejectionKey });
          metrics.addMetric('UploadsRejected', MetricUnit.Count, 1);
          break;
        default:
          logger.info(`upload ${outcome.status}`, { key: object.key, ...outcome });
      }
      outcomes.push(outcome);
    }
    return outcomes;
  };
}
