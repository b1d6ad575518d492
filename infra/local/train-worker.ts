import { CreateQueueCommand, GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { createJobDeadLetterHandler, createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';
import { trainJobKind } from '../../functions/core/train/jobs.ts';
import { pollSqsQueue, type Trigger } from './triggers.ts';

/**
 * The train kind's worker and dead-letter consumer on this machine (infra/serverless/train.yml in
 * AWS): its step queue and dead-letter queue on the emulator, under the names the train API finds
 * them by, polled as Lambda's event source mappings would. serverless-offline serves the API only.
 */
const VISIBILITY_SECONDS = 960;

export async function startLocalTrainWorker(options: { sqs: SQSClient; dynamo: DynamoDBClient; store: ModelRepository; table: string; prefix: string }): Promise<Trigger[]> {
  const { sqs } = options;
  const queueName = `${options.prefix}-train-steps`;
  const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `${queueName}-dlq` }))).QueueUrl!;
  const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  const queueUrl = (
    await sqs.send(
      new CreateQueueCommand({
        QueueName: queueName,
        Attributes: { VisibilityTimeout: String(VISIBILITY_SECONDS), RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: '5' }) },
      }),
    )
  ).QueueUrl!;
  const runtime = new JobRuntime({
    table: new JobTable(options.dynamo, options.table),
    kinds: new JobKinds([trainJobKind({ store: options.store })]),
    queue: new SqsStepQueue(sqs, () => queueName),
    visibilitySeconds: VISIBILITY_SECONDS,
  });
  const worker = createJobStepHandler(runtime);
  const deadLetters = createJobDeadLetterHandler(runtime);
  // A Lambda's 15 minutes: locally a step runs to its end in one invocation.
  const context = { getRemainingTimeInMillis: () => 900_000 };
  return [await pollSqsQueue({ sqs, queueUrl, handler: (event) => worker(event, context) }), await pollSqsQueue({ sqs, queueUrl: dlqUrl, handler: (event) => deadLetters(event) })];
}
