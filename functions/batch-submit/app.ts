import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context, S3Event, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { BadRequestError, HttpError } from '../core/platform/errors.ts';
import type { BatchService } from '../core/batch/service.ts';
import { keys } from '../core/artifacts/keys.ts';
import { json, jsonBody } from '../adapters/http.ts';
import { parseExactly } from '../core/v2/codec.ts';
import { ApiRouter } from '../adapters/router.ts';
import { uploadedObjects, type S3ObjectCreatedDetailEvent } from '../adapters/s3-events.ts';

type Result = APIGatewayProxyStructuredResultV2;


export interface BatchApiHandlerDeps {
  service: BatchService;
  maxBodyBytes: number;
  logger: Logger;
  metrics: Metrics;
}

/** `POST /v2/batches` submits (202, or 200 for a job that already existed); `GET /v2/batches/{id}` reports. */
export function createBatchApiHandler(deps: BatchApiHandlerDeps) {
  const { service, logger, metrics } = deps;

  const handler = new ApiRouter((level, message, fields) => logger[level](message, fields), metrics)
    .on('POST', '/v2/batches', async ({ event }) => {
      // Inline rows are written out as the input: read exactly, so they are written as they came.
      const body = jsonBody(event, { maxBytes: deps.maxBodyBytes, tooLargeHint: 'upload the rows to the bucket and pass "input"', exactNumbers: true });
      const { job, created } = await service.submit(body, { kind: 'api' });
      logger.info(created ? 'batch job submitted' : 'batch job resubmitted', { job: job.id, shards: job.shards.total });
      return json(created ? 202 : 200, job);
    })
    .on('GET', '/v2/batches/:id', async ({ params }) => json(200, await service.get(params.id!)))
    .handler();

  return async function batchApiHandler(event: APIGatewayProxyEventV2, context?: Context): Promise<Result> {
    logger.resetKeys();
    return handler(event, context);
  };
}

export interface BatchUploadHandlerDeps {
  service: BatchService;
  s3: S3Client;
  logger: Logger;
}

/**
 * Options of an upload to batches/incoming/<job>.jsonl (or .csv, .parquet, .npy, .npz) travel in its
 * object metadata (x-amz-meta-model, -version, -batch-size, -shard-bytes, -format, -csv-header,
 * -worker, -outputs, -output-format, -key-columns, and -columns as JSON: {"input": "column"}).
 */
function jsonMetadata(name: string, value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new BadRequestError(`metadata ${name} must be JSON, got ${JSON.stringify(value.slice(0, 80))}`, { cause: error });
  }
}

export function uploadRequest(key: string, metadata: Record<string, string>): Record<string, unknown> {
  const number = (name: string) => {
    const value = metadata[name];
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n)) throw new BadRequestError(`metadata ${name} must be an integer, got ${JSON.stringify(value)}`);
    return n;
  };
  const request: Record<string, unknown> = {
    model: metadata.model,
    input: key,
    version: metadata.version,
    batch_size: number('batch-size'),
    shard_bytes: number('shard-bytes'),
    format: metadata.format,
    csv_header: metadata['csv-header'] === undefined ? undefined : metadata['csv-header'] === 'true',
    worker: metadata.worker,
    outputs: metadata.outputs?.split(',').map((s) => s.trim()).filter(Boolean),
    output_format: metadata['output-format'],
    key_columns: metadata['key-columns']?.split(',').map((s) => s.trim()).filter(Boolean),
    columns: metadata.columns === undefined ? undefined : jsonMetadata('columns', metadata.columns),
  };
  if (request.model === undefined) throw new BadRequestError('the upload has no x-amz-meta-model metadata naming the model to score with');
  return Object.fromEntries(Object.entries(request).filter(([, v]) => v !== undefined));
}

export function createBatchUploadHandler(deps: BatchUploadHandlerDeps) {
  const { service, s3, logger } = deps;
  return async function batchUploadHandler(event: S3Event | S3ObjectCreatedDetailEvent): Promise<void> {
    for (const { bucket, key } of uploadedObjects(event)) {
      if (!key.startsWith(keys.batchIncomingPrefix) || !/\.(jsonl|csv|parquet|npy|npz)$/.test(key)) {
        logger.warn('ignored upload: not batches/incoming/<job>.jsonl, .csv, .parquet, .npy or .npz', { key });
        continue;
      }
      try {
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        const { job, created } = await service.submit(uploadRequest(key, head.Metadata ?? {}), { kind: 'upload', key });
        logger.info(created ? 'batch job submitted by upload' : 'upload already submitted', { job: job.id, key });
      } catch (error) {
        if (error instanceof HttpError && error.expose) {
          logger.warn('upload refused', { key, error: error.message });
          await service.rejectUpload(key, error.message);
          continue;
        }
        // Anything else is worth S3's retries of the async invocation.
        throw error;
      }
    }
  };
}

export interface BatchSubmitQueueHandlerDeps {
  service: BatchService;
  logger: Logger;
}

/**
 * Messages on the submit queue carry the same body as `POST /v2/batches`. A refused request is
 * logged and dropped (a retry cannot fix it); anything else is reported for SQS to redeliver.
 */
export function createBatchSubmitQueueHandler(deps: BatchSubmitQueueHandlerDeps) {
  const { service, logger } = deps;
  return async function batchSubmitQueueHandler(event: SQSEvent): Promise<SQSBatchResponse> {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      try {
        const body = parseExactly(record.body, 'message body');
        const { job, created } = await service.submit(body, { kind: 'queue', messageId: record.messageId });
        logger.info(created ? 'batch job submitted from the queue' : 'queued submission already exists', { job: job.id, messageId: record.messageId });
      } catch (error) {
        if (error instanceof HttpError && error.expose && error.statusCode !== 503) {
          logger.error('queued submission refused', { messageId: record.messageId, error: error.message });
          continue;
        }
        logger.error('queued submission failed; it will be retried', { messageId: record.messageId, error: error as Error });
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}
