import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { join } from 'node:path';
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { Logger } from '@aws-lambda-powertools/logger';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { createDynamoClient, createS3Client, createSqsClient } from '../../functions/core/aws/clients.ts';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { EvaluationService } from '../../functions/core/evaluate/jobs.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { pipelineSessionLoader } from '../../functions/core/pipelines/session.ts';


/**
 * The evaluate worker on this machine: what Lambda's SQS event source does in AWS (receive, invoke
 * the job runtime's step handler with an SQS event, delete what succeeded), against the local
 * emulators. serverless-offline serves HTTP events only, so the local stack runs this beside it; the
 * tests drive it directly.
 */
export const LOCAL_EVALUATE_QUEUE = 'ai-mass-local-evaluate-steps';
/** The local step queue's visibility timeout, and so the step lease (the stack's queue has 5400 s). */
export const LOCAL_EVALUATE_VISIBILITY_SECONDS = 960;

export async function ensureEvaluateQueue(sqs: SQSClient, name: string, visibilitySeconds = LOCAL_EVALUATE_VISIBILITY_SECONDS): Promise<string> {
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: String(visibilitySeconds) } }));
  return out.QueueUrl!;
}

type WorkerHandler = ReturnType<typeof createJobStepHandler>;

export interface PollOptions {
  sqs: SQSClient;
  queueUrl: string;
  handler: WorkerHandler;
  /** What the handler is told it has left, per invocation; a small value forces one step per invocation. */
  remainingMs?: number;
  waitSeconds?: number;
}

/** Receives and handles one message; false when none came within the wait. */
export async function pollOnce(options: PollOptions): Promise<boolean> {
  const out = await options.sqs.send(
    new ReceiveMessageCommand({ QueueUrl: options.queueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: options.waitSeconds ?? 0 }),
  );
  const message = out.Messages?.[0];
  if (!message) return false;
  const record = { messageId: message.MessageId!, receiptHandle: message.ReceiptHandle!, body: message.Body!, attributes: {}, messageAttributes: {} } as SQSRecord;
  const event: SQSEvent = { Records: [record] };
  const started = Date.now();
  const budget = options.remainingMs ?? 900_000;
  const response = await options.handler(event, { getRemainingTimeInMillis: () => budget - (Date.now() - started) });
  if (!response.batchItemFailures.some((f) => f.itemIdentifier === record.messageId)) {
    await options.sqs.send(new DeleteMessageCommand({ QueueUrl: options.queueUrl, ReceiptHandle: message.ReceiptHandle! }));
  }
  return true;
}

/** Handles messages until the queue stays empty; returns how many invocations ran. */
export async function drainEvaluateQueue(options: PollOptions): Promise<number> {
  let invocations = 0;
  while (await pollOnce(options)) invocations++;
  return invocations;
}

export interface LocalEvaluateWorkerOptions {
  awsEndpoint: string;
  dynamoEndpoint: string;
  bucket: string;
  /** The table of job records (the registry table); default ai-mass-local-registry. */
  table?: string;
  queueName?: string;
  visibilitySeconds?: number;
  cacheDir?: string;
  intraOpThreads?: number;
}

export function createLocalEvaluateWorker(env: LocalEvaluateWorkerOptions) {
  const s3 = createS3Client({ endpoint: env.awsEndpoint });
  const sqs = createSqsClient({ endpoint: env.awsEndpoint });
  const dynamo = createDynamoClient({ endpoint: env.dynamoEndpoint });
  const tableName = env.table ?? 'ai-mass-local-registry';
  const queueName = env.queueName ?? LOCAL_EVALUATE_QUEUE;
  const visibilitySeconds = env.visibilitySeconds ?? LOCAL_EVALUATE_VISIBILITY_SECONDS;
  const store = new ModelRepository({ s3, bucket: env.bucket, cacheDir: env.cacheDir ?? join(process.cwd(), '.local', 'cache') });
  const table = new JobTable(dynamo, tableName);
  const sessions = new ModelSessions({ store, intraOpThreads: env.intraOpThreads, composite: pipelineSessionLoader(store) });
  const logger = new Logger({ serviceName: 'ai-mass-evaluate-local', logLevel: (process.env.EVALUATE_WORKER_LOG_LEVEL ?? 'WARN') as 'WARN' });
  const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
  const queue = new SqsStepQueue(sqs, () => queueName);
  const service = new EvaluationService({ store, sessions, table, queue, visibilitySeconds, intraOpThreads: env.intraOpThreads, log });
  const handler = createJobStepHandler(service.runtime, log);
  return {
    s3,
    sqs,
    dynamo,
    store,
    table,
    service,
    handler,
    /** Creates the table (when missing) and the step queue; returns the queue's URL. */
    async ensureResources(): Promise<string> {
      await createPkSkTable(dynamo, tableName);
      return ensureEvaluateQueue(sqs, queueName, visibilitySeconds);
    },
  };
}

if (import.meta.main) {
  // Long-polls the local stack's evaluate step queue (from .local/stack.json) until interrupted.
  const { localStackFile } = await import('../../functions/cli/context.ts');
  const local = localStackFile();
  if (!local) throw new Error('no .local/stack.json: start the local stack first (npm start)');
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_EC2_METADATA_DISABLED: 'true' });
  const worker = createLocalEvaluateWorker({ awsEndpoint: local.awsEndpoint, dynamoEndpoint: local.dynamoEndpoint, table: local.registryTable, bucket: local.bucket });
  const queueUrl = await worker.ensureResources();
  console.log(`evaluate worker polling ${queueUrl}`);
  for (;;) await pollOnce({ sqs: worker.sqs, queueUrl, handler: worker.handler, waitSeconds: 10 });
}
