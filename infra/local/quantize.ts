import { CreateQueueCommand, GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';
import { createQuantizeRuntime } from '../../functions/core/quantize/runtime.ts';
import { createQuantizeDeadLetterHandler, createQuantizeWorkerHandler } from '../../functions/quantize/app.ts';
import { pollSqsQueue, type Trigger } from './triggers.ts';

/**
 * The quantize part of the local stack: the step queue and dead-letter queue of
 * infra/serverless/quantize.yml on the emulators, and the worker on them as Lambda's event source
 * would run it, in this process. The API (serverless-offline) sends steps to the queue by name.
 */
export interface LocalQuantize {
  /** Variables for serverless-offline's quantize API. */
  environment: Record<string, string>;
  stop(): Promise<void>;
}

/** As quantize.yml: the visibility (the step lease) is six times the worker's 900 s timeout; more receives than the kind's 3 attempts. */
const VISIBILITY_SECONDS = 5400;
const MAX_RECEIVE_COUNT = 5;

export async function startLocalQuantize(options: { awsEndpoint: string; dynamoEndpoint: string; store: ModelRepository; registryTable: string; prefix: string }): Promise<LocalQuantize> {
  const sqs = createSqsClient({ endpoint: options.awsEndpoint });
  const dynamo = createDynamoClient({ endpoint: options.dynamoEndpoint });
  const stepQueue = `${options.prefix}-quantize-steps`;
  const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `${stepQueue}-dlq` }))).QueueUrl!;
  const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  const queueUrl = (
    await sqs.send(
      new CreateQueueCommand({
        QueueName: stepQueue,
        Attributes: { VisibilityTimeout: String(VISIBILITY_SECONDS), RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: String(MAX_RECEIVE_COUNT) }) },
      }),
    )
  ).QueueUrl!;
  const log = (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => {
    if (level !== 'info') process.stderr.write(`quantize worker: ${message} ${JSON.stringify(fields ?? {})}\n`);
  };
  const { runtime } = createQuantizeRuntime({ store: options.store, dynamo, sqs, table: options.registryTable, stepQueue, visibilitySeconds: VISIBILITY_SECONDS, log });
  const triggers: Trigger[] = [
    await pollSqsQueue({ sqs, queueUrl, handler: createQuantizeWorkerHandler(runtime, log) }),
    await pollSqsQueue({ sqs, queueUrl: dlqUrl, handler: createQuantizeDeadLetterHandler(runtime, log) }),
  ];
  return {
    environment: { QUANTIZE_STEP_QUEUE: stepQueue, QUANTIZE_VISIBILITY_SECONDS: String(VISIBILITY_SECONDS) },
    async stop() {
      await Promise.all(triggers.map((t) => t.stop()));
      sqs.destroy();
      dynamo.destroy();
    },
  };
}
