import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSEvent } from 'aws-lambda';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';
import { createTuneKind } from '../../functions/core/tune/jobs.ts';
import { StudyTable } from '../../functions/core/tune/study-table.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';

/**
 * The tune worker and sweep on this machine: what Lambda's SQS event source and the schedule do in
 * AWS, against the local emulators. serverless-offline serves the studies API; this runs the lanes.
 */
export async function startLocalTuneWorker(options: { sqs: SQSClient; dynamo: DynamoDBClient; table: string; store: ModelRepository; queueName: string; log: (line: string) => void }): Promise<{ stop(): Promise<void> }> {
  const visibilitySeconds = 960;
  const queueUrl = (await options.sqs.send(new CreateQueueCommand({ QueueName: options.queueName, Attributes: { VisibilityTimeout: String(visibilitySeconds) } }))).QueueUrl!;
  const studies = new StudyTable(options.dynamo, options.table, { leaseMs: visibilitySeconds * 1000 });
  const log = (level: string, message: string, fields: Record<string, unknown>) => {
    if (level !== 'info') options.log(`tune worker: ${message} ${JSON.stringify(fields)}`);
  };
  const runtime = new JobRuntime({
    table: new JobTable(options.dynamo, options.table),
    kinds: new JobKinds([createTuneKind({ studies, store: options.store, log })]),
    queue: new SqsStepQueue(options.sqs, () => options.queueName),
    visibilitySeconds,
    log,
  });
  const handler = createJobStepHandler(runtime, log);
  let running = true;
  let lastSweep = 0;
  const loop = (async () => {
    while (running) {
      try {
        if (Date.now() - lastSweep > 60_000) {
          lastSweep = Date.now();
          await studies.sweep();
        }
        const out = await options.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 1 }));
        const message = out.Messages?.[0];
        if (!message) continue;
        const event = { Records: [{ messageId: message.MessageId!, receiptHandle: message.ReceiptHandle!, body: message.Body! }] } as SQSEvent;
        const started = Date.now();
        const response = await handler(event, { getRemainingTimeInMillis: () => 900_000 - (Date.now() - started) });
        if (response.batchItemFailures.length === 0) await options.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle! }));
      } catch (error) {
        options.log(`tune worker: ${(error as Error).message}`);
      }
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}
