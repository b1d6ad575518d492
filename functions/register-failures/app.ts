import type { S3Event } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { ModelRepository } from '../core/registry/repository.ts';
import { recordRegistrationFailure, type UploadOutcome } from '../core/registry/register-upload.ts';
import { runtimeMessage } from '../core/onnx/runtime-message.ts';
import { uploadedObjects, type S3ObjectCreatedDetailEvent } from '../adapters/s3-events.ts';

/**
 * What Lambda sends an asynchronous invocation's on-failure destination once every retry failed
 * (or the event grew too old): the original event and the last error.
 */
export interface FailedInvocationRecord {
  requestContext?: { condition?: string; approximateInvokeCount?: number };
  requestPayload: S3Event | S3ObjectCreatedDetailEvent;
  responsePayload?: { errorType?: string; errorMessage?: string } | null;
}

export interface RegisterFailureHandlerDeps {
  store: ModelRepository;
  logger: Logger;
}

/**
 * The register function's on-failure destination: every upload in the failed event gets a
 * rejection record saying registration failed on the server, so `mass push` and the uploader get an
 * answer instead of waiting for one that never comes (a crash, a timeout, running out of memory).
 */
export function createRegisterFailureHandler(deps: RegisterFailureHandlerDeps) {
  return async function registerFailureHandler(record: FailedInvocationRecord): Promise<UploadOutcome[]> {
    const error = record.responsePayload;
    const attempts = record.requestContext?.approximateInvokeCount;
    const failure = [
      error?.errorType ?? record.requestContext?.condition ?? 'unknown failure',
      error?.errorMessage ? `: ${runtimeMessage(error.errorMessage)}` : '',
      attempts ? ` (${attempts} attempts)` : '',
    ].join('');
    const outcomes: UploadOutcome[] = [];
    for (const object of uploadedObjects(record.requestPayload)) {
      const outcome = await recordRegistrationFailure(deps.store, object, failure);
      deps.logger.error('registration failed after its retries', { key: object.key, failure, outcome: outcome.status });
      outcomes.push(outcome);
    }
    return outcomes;
  };
}
