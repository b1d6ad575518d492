/**
 * The federation on the emulators: the registry stack (S3, DynamoDB, SNS), the deadline queue and the
 * aggregation job's step queue on fauxqs, the service and its handlers as the Lambda functions wire
 * them, and a fetch that sends /v2/federations requests to the API handler and everything else (the
 * pre-signed S3 URLs) over HTTP to the emulator.
 */
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSEvent } from 'aws-lambda';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import type { FederationTable } from '../../functions/core/federated/federation-table.ts';
import type { FederationService } from '../../functions/core/federated/rounds.ts';
import { wireFederation } from '../../functions/core/federated/wiring.ts';
import type { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { createDeadlineHandler, createFederationApiHandler } from '../../functions/federation/app.ts';
import { apiEvent } from './batch-stack.ts';
import { startRegistryStack, type RegistryStack } from './registry-stack.ts';
import { sqsEvent } from './job-delivery.ts';

export interface FederationStack extends RegistryStack {
  table: FederationTable;
  service: FederationService;
  runtime: JobRuntime;
  /** fetch for FederationClient: the API in process, S3 URLs over HTTP. */
  fetch: typeof fetch;
  /** Delivers the deadline messages that are due (one receive). */
  deliverDeadlines(waitSeconds?: number): Promise<number>;
  /** Delivers the aggregation steps waiting (until the queue is empty). */
  runSteps(): Promise<number>;
  /** Moves the service's clock forward. */
  advanceClock(ms: number): void;
}

const quiet = () => undefined;

export async function startFederationStack(name: string): Promise<FederationStack> {
  process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
  const stack = await startRegistryStack(name);
  const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
  const tableName = stack.store.registry!.tableName;
  const sqs = stack.sqs;
  const deadlineQueue = `${name}-federation-deadlines`;
  const stepQueue = `${name}-federated-round-steps`;
  const deadlineUrl = (await sqs.send(new CreateQueueCommand({ QueueName: deadlineQueue }))).QueueUrl!;
  const stepUrl = (await sqs.send(new CreateQueueCommand({ QueueName: stepQueue, Attributes: { VisibilityTimeout: '60' } }))).QueueUrl!;
  let offset = 0;
  const now = () => Date.now() + offset;
  const { table, service, runtime } = wireFederation({ dynamo, s3: stack.s3, sqs, store: stack.store, tableName, region: 'us-east-1', s3Endpoint: stack.emulators.awsEndpoint, deadlineQueueName: deadlineQueue, stepQueueName: stepQueue, visibilitySeconds: 60, now });
  const api = createFederationApiHandler({ service, log: quiet });
  const deadlines = createDeadlineHandler(service, quiet);
  const steps = createJobStepHandler(runtime);
  const context = { getRemainingTimeInMillis: () => 900_000 } as Context;

  const apiFetch: typeof fetch = async (input, init) => {
    const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    if (!url.pathname.startsWith('/v2/federations')) return fetch(input, init);
    const method = init?.method ?? 'GET';
    const event = apiEvent(method, url.pathname, typeof init?.body === 'string' ? init.body : undefined);
    event.headers = { ...event.headers, ...(init?.headers as Record<string, string>) };
    const out = await api(event, context);
    return new Response(out.body as string, { status: out.statusCode ?? 200, headers: out.headers as Record<string, string> });
  };

  async function deliver(queueUrl: string, handler: (event: SQSEvent) => Promise<{ batchItemFailures: { itemIdentifier: string }[] }>, waitSeconds: number): Promise<number> {
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: waitSeconds }));
    const messages = out.Messages ?? [];
    if (!messages.length) return 0;
    const response = await handler(sqsEvent(messages));
    const failed = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    for (const m of messages) if (!failed.has(m.MessageId!)) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle! }));
    if (failed.size) throw new Error(`${failed.size} message(s) failed on ${queueUrl}`);
    return messages.length;
  }

  return {
    ...stack,
    table,
    service,
    runtime,
    fetch: apiFetch,
    deliverDeadlines: (waitSeconds = 0) => deliver(deadlineUrl, deadlines, waitSeconds),
    async runSteps() {
      let total = 0;
      for (let n = await deliver(stepUrl, (event) => steps(event, context), 0); n > 0; n = await deliver(stepUrl, (event) => steps(event, context), 0)) total += n;
      return total;
    },
    advanceClock(ms: number) {
      offset += ms;
    },
  };
}

export type { SQSClient };
