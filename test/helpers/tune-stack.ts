import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import type { JobRecord } from '../../functions/core/jobs/record.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { createTuneKind } from '../../functions/core/tune/jobs.ts';
import { StudyTable, type StudyTableOptions } from '../../functions/core/tune/study-table.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { startRegistryStack, type RegistryStack } from './registry-stack.ts';
import { queueDepth as messagesOn, sqsEvent } from './job-delivery.ts';

/**
 * The tune kind on the emulators: the registry stack (bucket, registry table), the tune step queue
 * on fauxqs, a job runtime with the tune kind, and deliveries made as the SQS event source makes them.
 */
export interface TuneStack {
  registry: RegistryStack;
  table: string;
  jobs: JobTable;
  studies: StudyTable;
  runtime: JobRuntime;
  queueUrl: string;
  /** A separate worker's view of the studies (its own client), with its own clock or lease. */
  studyTable(options?: StudyTableOptions): StudyTable;
  /** One invocation: receive up to `max` messages and run them; failed ones are left to come back. */
  deliver(max?: number, waitSeconds?: number): Promise<number>;
  /** Invocations until the job ends; `lanes` invocations run side by side each round. */
  runToEnd(job: string, lanes?: number): Promise<JobRecord>;
  stop(): Promise<void>;
}

export const VISIBILITY_SECONDS = 30;

export async function startTuneStack(name: string, options: { leaseMs?: number } = {}): Promise<TuneStack> {
  const registry = await startRegistryStack(name);
  const table = `${name}-registry`;
  const dynamo = createDynamoClient({ endpoint: registry.emulators.dynamoEndpoint });
  const queueUrl = (await registry.sqs.send(new CreateQueueCommand({ QueueName: `${name}-tune-steps`, Attributes: { VisibilityTimeout: String(VISIBILITY_SECONDS) } }))).QueueUrl!;
  const jobs = new JobTable(dynamo, table);
  const studies = new StudyTable(dynamo, table, { leaseMs: options.leaseMs ?? VISIBILITY_SECONDS * 1000 });
  const runtime = new JobRuntime({
    table: jobs,
    kinds: new JobKinds([createTuneKind({ studies, store: registry.store })]),
    queue: new SqsStepQueue(registry.sqs, () => `${name}-tune-steps`),
    visibilitySeconds: VISIBILITY_SECONDS,
    retryDelaySeconds: 0,
    reserveMs: 0,
  });
  const handler = createJobStepHandler(runtime);
  const deliver = async (max = 1, waitSeconds = 0) => {
    const out = await registry.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: max, WaitTimeSeconds: waitSeconds }));
    const messages = out.Messages ?? [];
    if (messages.length === 0) return 0;
    const response = await handler(sqsEvent(messages), { getRemainingTimeInMillis: () => 900_000 });
    const failures = response.batchItemFailures.map((f) => f.itemIdentifier);
    for (const m of messages) if (!failures.includes(m.MessageId!)) await registry.sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle! }));
    return messages.length;
  };
  return {
    registry,
    table,
    jobs,
    studies,
    runtime,
    queueUrl,
    studyTable: (o) => new StudyTable(createDynamoClient({ endpoint: registry.emulators.dynamoEndpoint }), table, o),
    deliver,
    async runToEnd(job, lanes = 1) {
      for (let round = 0; round < 200; round++) {
        const record = await runtime.get(job);
        if (['succeeded', 'failed', 'partial', 'cancelled'].includes(record.state)) return record;
        await Promise.all(Array.from({ length: lanes }, () => deliver(1, 1)));
      }
      throw new Error(`job ${job} did not end`);
    },
    stop: () => registry.stop(),
  };
}

export function queueDepth(stack: TuneStack): Promise<number> {
  return messagesOn(stack.registry.sqs, stack.queueUrl);
}
