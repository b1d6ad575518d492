/**
 * The federation's parts wired together, once for the Lambda handlers, the local stack and the
 * tests: the records, the service, and the job runtime that runs the aggregation kind.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { JobTable } from '../jobs/job-table.ts';
import { JobKinds } from '../jobs/kinds.ts';
import { JobRuntime } from '../jobs/runtime.ts';
import { SqsStepQueue } from '../jobs/step-queue.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { federatedRoundKind } from './aggregation.ts';
import { sqsDeadlineQueue } from './deadline-queue.ts';
import { FederationTable } from './federation-table.ts';
import { s3Presigner } from './presign.ts';
import { FederationService } from './rounds.ts';

type Log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;

export interface FederationWiring {
  dynamo: DynamoDBClient;
  s3: S3Client;
  sqs: SQSClient;
  store: ModelRepository;
  tableName: string;
  region: string;
  /** Path-style endpoint for pre-signed URLs (the emulators). */
  s3Endpoint?: string | undefined;
  deadlineQueueName: string;
  stepQueueName: string;
  visibilitySeconds: number;
  now?: () => number;
  log?: Log;
}

export function wireFederation(options: FederationWiring) {
  const log: Log = options.log ?? (() => undefined);
  const table = new FederationTable(options.dynamo, options.tableName);
  const kinds = new JobKinds();
  const runtime = new JobRuntime({
    table: new JobTable(options.dynamo, options.tableName),
    kinds,
    queue: new SqsStepQueue(options.sqs, () => options.stepQueueName),
    visibilitySeconds: options.visibilitySeconds,
    log: (level, message, fields) => log(level, message, fields),
  });
  const service = new FederationService({
    table,
    store: options.store,
    presigner: s3Presigner({ bucket: options.store.bucket, region: options.region, endpoint: options.s3Endpoint, credentials: () => options.s3.config.credentials() }),
    deadlines: sqsDeadlineQueue(options.sqs, options.deadlineQueueName),
    submitJob: (submission) => runtime.submit(submission),
    ...(options.now ? { now: options.now } : {}),
    log,
  });
  kinds.register(federatedRoundKind(() => ({ table, store: options.store, service, log })));
  return { table, service, runtime };
}
