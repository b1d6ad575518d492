/**
 * The federation's queues on the local stack: what Lambda's SQS event sources do in AWS for the
 * deadline consumer and the aggregation worker (serverless-offline serves the API's HTTP events
 * only). The queue names are the ones infra/serverless/federated.yml gives the API at stage local.
 */
import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import type { Context } from 'aws-lambda';
import { createDynamoClient, createS3Client, createSqsClient } from '../../functions/core/aws/clients.ts';
import { wireFederation } from '../../functions/core/federated/wiring.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { createDeadlineHandler } from '../../functions/federation/app.ts';
import { pollSqsQueue, type Trigger } from './triggers.ts';

export async function startLocalFederation(options: { awsEndpoint: string; dynamoEndpoint: string; store: ModelRepository; registryTable: string; prefix: string; log?: (line: string) => void }): Promise<Trigger[]> {
  const sqs = createSqsClient({ endpoint: options.awsEndpoint });
  const deadlineQueueName = `${options.prefix}-federation-deadlines`;
  const stepQueueName = `${options.prefix}-federated-round-steps`;
  const deadlineUrl = (await sqs.send(new CreateQueueCommand({ QueueName: deadlineQueueName }))).QueueUrl!;
  const stepUrl = (await sqs.send(new CreateQueueCommand({ QueueName: stepQueueName, Attributes: { VisibilityTimeout: '960' } }))).QueueUrl!;
  const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}) => {
    if (level !== 'info') options.log?.(`federation: ${message} ${JSON.stringify(fields)}`);
  };
  const { service, runtime } = wireFederation({
    dynamo: createDynamoClient({ endpoint: options.dynamoEndpoint }),
    s3: createS3Client({ endpoint: options.awsEndpoint }),
    sqs,
    store: options.store,
    tableName: options.registryTable,
    region: process.env.AWS_REGION ?? 'us-east-1',
    s3Endpoint: options.awsEndpoint,
    deadlineQueueName,
    stepQueueName,
    visibilitySeconds: 960,
    log,
  });
  const steps = createJobStepHandler(runtime, log);
  const roomy = { getRemainingTimeInMillis: () => 900_000 } as Context;
  return [
    await pollSqsQueue({ sqs, queueUrl: deadlineUrl, handler: createDeadlineHandler(service, log), batchSize: 10, waitTimeSeconds: 1 }),
    await pollSqsQueue({ sqs, queueUrl: stepUrl, handler: (event) => steps(event, roomy), batchSize: 1, waitTimeSeconds: 1 }),
  ];
}
