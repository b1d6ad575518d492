import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { createDynamoClient, createSqsClient } from '../aws/clients.ts';
import { JobTable } from '../jobs/job-table.ts';
import { JobKinds } from '../jobs/kinds.ts';
import { JobRuntime } from '../jobs/runtime.ts';
import { SqsStepQueue } from '../jobs/step-queue.ts';
import type { ModelRepository } from '../registry/repository.ts';
import type { QuantizeConfig } from './config.ts';
import { createQuantizeKind } from './jobs.ts';

export interface QuantizeRuntimeOptions {
  store: ModelRepository;
  dynamo: DynamoDBClient;
  sqs: SQSClient;
  /** The registry table, where job records live. */
  table: string;
  /** The step queue's name or URL. */
  stepQueue: string;
  visibilitySeconds: number;
  retryDelaySeconds?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

/** The job runtime with the quantize kind, as the quantize API and worker, the register function's policy and the local stack use it. */
export function createQuantizeRuntime(options: QuantizeRuntimeOptions): { runtime: JobRuntime; table: JobTable } {
  const table = new JobTable(options.dynamo, options.table);
  const log = options.log;
  const runtime = new JobRuntime({
    table,
    kinds: new JobKinds([createQuantizeKind({ store: options.store, ...(log ? { log: (message, fields) => log('info', message, fields ?? {}) } : {}) })]),
    queue: new SqsStepQueue(options.sqs, () => options.stepQueue),
    visibilitySeconds: options.visibilitySeconds,
    ...(options.retryDelaySeconds !== undefined ? { retryDelaySeconds: options.retryDelaySeconds } : {}),
    ...(log ? { log } : {}),
  });
  return { runtime, table };
}

/** The runtime as a function configured by its environment makes it (functions/quantize, the register function's policy). */
export function quantizeRuntimeFromConfig(config: QuantizeConfig, store: ModelRepository, log?: QuantizeRuntimeOptions['log']) {
  return createQuantizeRuntime({
    store,
    dynamo: createDynamoClient({ endpoint: config.dynamoEndpoint }),
    sqs: createSqsClient({ endpoint: config.sqsEndpoint }),
    table: config.table,
    stepQueue: config.stepQueue,
    visibilitySeconds: config.visibilitySeconds,
    ...(log ? { log } : {}),
  });
}
