import { join } from 'node:path';
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { Logger } from '@aws-lambda-powertools/logger';
import { createS3Client, createSqsClient } from '../../functions/core/clients.ts';
import { EvaluationService } from '../../functions/core/evaluate/jobs.ts';
import { SqsEvaluationQueue } from '../../functions/core/evaluate/queue.ts';
import { ModelSessions } from '../../functions/core/model-sessions.ts';
import { pipelineSessionLoader } from '../../functions/core/pipeline/session.ts';
import { ModelStore } from '../../functions/core/model-store.ts';
import { createEvaluateWorkerHandler } from '../../functions/evaluate/app.ts';

/**
 * The evaluate worker on this machine: what Lambda's SQS event source does in AWS (receive, invoke
 * the handler with an SQS event, delete what succeeded), against the local emulator. serverless-offline
 * serves HTTP events only, so the local stack runs this beside it; the tests drive it directly.
 */
export const LOCAL_EVALUATE_QUEUE = 'ai-mass-local-evaluate.fifo';

export async function ensureEvaluateQueue(sqs: SQSClient, name: string): Promise<string> {
  const out = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { FifoQueue: 'true', VisibilityTimeout: '960' } }));
  return out.QueueUrl!;
}

type WorkerHandler = ReturnType<typeof createEvaluateWorkerHandler>;

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
  const record = { messageId: message.MessageId!, receiptHandle: message.ReceiptHandle!, body: message.Body! } as SQSRecord;
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

export function createLocalEvaluateWorker(env: { awsEndpoint: string; bucket: string; queueName?: string; cacheDir?: string; intraOpThreads?: number }) {
  const s3 = createS3Client({ endpoint: env.awsEndpoint });
  const sqs = createSqsClient({ endpoint: env.awsEndpoint });
  const store = new ModelStore({ s3, bucket: env.bucket, cacheDir: env.cacheDir ?? join(process.cwd(), '.local', 'cache') });
  const queue = new SqsEvaluationQueue(sqs, env.queueName ?? LOCAL_EVALUATE_QUEUE);
  const sessions = new ModelSessions({ store, intraOpThreads: env.intraOpThreads, composite: pipelineSessionLoader(store) });
  const service = new EvaluationService({ store, sessions, queue, intraOpThreads: env.intraOpThreads });
  const logger = new Logger({ serviceName: 'ai-mass-evaluate-local', logLevel: (process.env.EVALUATE_WORKER_LOG_LEVEL ?? 'WARN') as 'WARN' });
  const handler = createEvaluateWorkerHandler({ service, logger });
  return { s3, sqs, store, queue, service, handler };
}

if (import.meta.main) {
  // Long-polls the local stack's evaluate queue (from .local/stack.json) until interrupted.
  const { localStackFile } = await import('../../functions/cli/context.ts');
  const local = localStackFile();
  if (!local) throw new Error('no .local/stack.json: start the local stack first (npm start)');
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_EC2_METADATA_DISABLED: 'true' });
  const worker = createLocalEvaluateWorker({ awsEndpoint: local.awsEndpoint, bucket: local.bucket });
  const queueUrl = await ensureEvaluateQueue(worker.sqs, LOCAL_EVALUATE_QUEUE);
  console.log(`evaluate worker polling ${queueUrl}`);
  for (;;) await pollOnce({ sqs: worker.sqs, queueUrl, handler: worker.handler, waitSeconds: 10 });
}
