import { CreateQueueCommand, DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import type { JobRecord } from '../../functions/core/jobs/record.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { createTuneKind } from '../../functions/core/tune/jobs.ts';
import { StudyTable, type StudyTableOptions } from '../../functions/core/tune/study-table.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { startRegistryStack, type RegistryStack } from './registry-stack.ts';

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

export async function queueDepth(stack: TuneStack): Promise<number> {
  const out = await stack.registry.sqs.send(new GetQueueAttributesCommand({ QueueUrl: stack.queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return Number(out.Attributes!.ApproximateNumberOfMessages) + Number(out.Attributes!.ApproximateNumberOfMessagesNotVisible);
}

function sqsEvent(messages: { MessageId?: string; ReceiptHandle?: string; Body?: string }[]): SQSEvent {
  return {
    Records: messages.map((m) => ({
      messageId: m.MessageId!,
      receiptHandle: m.ReceiptHandle!,
      body: m.Body!,
      attributes: { ApproximateReceiveCount: '1', SentTimestamp: '0', SenderId: 'test', ApproximateFirstReceiveTimestamp: '0' },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:tune-steps',
      awsRegion: 'us-east-1',
    })),
  };
}

/** 4x4 images whose bright quadrant (by `contrast` over noise of 100) is the class (0..3), as IDX files. */
export function quadrantIdx(rows: number, seed = 5, contrast = 150): { images: Uint8Array; labels: Uint8Array } {
  const random = seededRandom(seed);
  const header = (type: number[], dims: number[]) => {
    const bytes = new Uint8Array(4 + dims.length * 4);
    bytes.set(type);
    const view = new DataView(bytes.buffer);
    dims.forEach((dim, index) => view.setUint32(4 + index * 4, dim));
    return bytes;
  };
  const images = new Uint8Array(16 + rows * 16);
  images.set(header([0, 0, 8, 3], [rows, 4, 4]));
  const labels = new Uint8Array(8 + rows);
  labels.set(header([0, 0, 8, 1], [rows]));
  for (let row = 0; row < rows; row++) {
    const label = row % 4;
    labels[8 + row] = label;
    for (let y = 0; y < 4; y++) {
      for (let x = 0; x < 4; x++) {
        const quadrant = (y >= 2 ? 2 : 0) + (x >= 2 ? 1 : 0);
        images[16 + row * 16 + y * 4 + x] = Math.floor((quadrant === label ? contrast : 0) + random() * 100);
      }
    }
  }
  return { images, labels };
}

/** An MLP over 16 pixels: Mul by 1/255, Gemm to `hidden`, Tanh, Gemm to 4 classes, Softmax. */
export function quadrantMlp(hidden = 64, seed = 9): Uint8Array {
  const random = seededRandom(seed);
  const uniform = (count: number) => Array.from({ length: count }, () => (random() * 2 - 1) * 0.3);
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'quadrant_mlp',
        nodes: [
          node('Mul', ['input', 'scale'], ['scaled']),
          node('Gemm', ['scaled', 'w1', 'b1'], ['h']),
          node('Tanh', ['h'], ['a']),
          node('Gemm', ['a', 'w2', 'b2'], ['logits']),
          node('Softmax', ['logits'], ['probabilities'], { axis: attr.int(-1) }),
        ],
        inputs: [valueInfo('input', 'float32', ['batch', 16])],
        outputs: [valueInfo('probabilities', 'float32', ['batch', 4])],
        initializers: [
          tensorFromFloat32('scale', [], [1 / 255]),
          tensorFromFloat32('w1', [16, hidden], uniform(16 * hidden)),
          tensorFromFloat32('b1', [hidden], new Array(hidden).fill(0)),
          tensorFromFloat32('w2', [hidden, 4], uniform(hidden * 4)),
          tensorFromFloat32('b2', [4], [0, 0, 0, 0]),
        ],
      }),
    }),
  );
}
