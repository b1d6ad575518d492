import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { SubscribeCommand } from '@aws-sdk/client-sns';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDynamoClient, createS3Client, createSnsClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { SnsModelEvents, type ModelEvent } from '../../functions/core/registry/events.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { createLocalRegistryResources } from '../../infra/local/registry-resources.ts';

/** Emulators with a bucket, the registry table, the events topic, and a queue subscribed to it. */
export interface RegistryStack {
  emulators: Emulators;
  store: ModelRepository;
  /** A client of the emulated S3 for what a test does to the bucket beside the code under test (the store hands out none). */
  s3: S3Client;
  sqs: SQSClient;
  eventsQueueUrl: string;
  /** Events published so far (drains the subscribed queue). */
  receiveEvents(): Promise<ModelEvent[]>;
  stop(): Promise<void>;
}

export async function startRegistryStack(name: string): Promise<RegistryStack> {
  const emulators = await startEmulators();
  const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  const sns = createSnsClient({ endpoint: emulators.awsEndpoint });
  const sqs = createSqsClient({ endpoint: emulators.awsEndpoint });
  const dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
  const bucket = `${name}-models`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const { table, topicArn } = await createLocalRegistryResources({ dynamo, sns, prefix: name });
  const eventsQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `${name}-events` }))).QueueUrl!;
  const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: eventsQueueUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: queueArn, Attributes: { RawMessageDelivery: 'true' } }));
  const store = new ModelRepository({
    s3,
    bucket,
    cacheDir: await mkdtemp(join(tmpdir(), `${name}-cache-`)),
    registry: new RegistryTable(dynamo, table),
    events: new SnsModelEvents(sns, topicArn),
  });
  return {
    emulators,
    store,
    s3,
    sqs,
    eventsQueueUrl,
    async receiveEvents() {
      const events: ModelEvent[] = [];
      for (;;) {
        const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: eventsQueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
        if (!out.Messages?.length) return events;
        events.push(...out.Messages.map((m) => JSON.parse(m.Body!) as ModelEvent));
      }
    },
    stop: () => emulators.stop(),
  };
}

/** A tiny valid model: y = x * k, elementwise, for x of shape [n, 2]. */
export function scaleModel(k: number, opset = 17, irVersion = 8): Uint8Array {
  return encodeModel(
    model({
      graph: graph({
        name: 'scale',
        nodes: [node('Mul', ['x', 'k'], ['y'])],
        inputs: [valueInfo('x', 'float32', ['n', 2])],
        outputs: [valueInfo('y', 'float32', ['n', 2])],
        initializers: [tensorFromFloat32('k', [2], [k, k])],
      }),
      opset,
      irVersion,
    }),
  );
}
