/**
 * Placement on the job runtime, for any kind: a toy kind places its large jobs on the container
 * worker; every message of such a job (its first step, a continuation, the step its step enqueues)
 * goes to the container queue, and the container worker (infra/gpu-worker/container-worker.ts, in
 * this process) runs them through the Lambda adapter's step handler; its dead-letter queue is ended
 * there too. A small job stays on its kind's queue.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds, type JobKind } from '../../functions/core/jobs/kinds.ts';
import type { JobRecord } from '../../functions/core/jobs/record.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue, withContainerQueue } from '../../functions/core/jobs/step-queue.ts';
import { ContainerWorker } from '../../infra/gpu-worker/container-worker.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
const TABLE = 'jobs-placement-registry';

let emulators: Emulators;
let sqs: SQSClient;
let runtime: JobRuntime;
const urls: Record<'toy' | 'container' | 'dlq', string> = { toy: '', container: '', dlq: '' };
/** Each step run: its name and whether it resumed from a checkpoint. */
const runs: { step: string; resumed: boolean }[] = [];

/** Places a job by its `size`; its first step continues once, then enqueues a second step. */
const toy: JobKind = {
  name: 'toy',
  parseRequest: (body) => ({ size: (body as { size: number }).size }),
  placement: (request, available) => ((request as { size: number }).size > 10 && available.includes('container') ? 'container' : 'lambda'),
  plan: () => [{ name: 'first', handler: 'first' }],
  steps: {
    async first(ctx) {
      runs.push({ step: 'first', resumed: ctx.checkpoint !== undefined });
      if (ctx.checkpoint === undefined) return { continue: { half: true } };
      return { next: [{ name: 'second', handler: 'second' }] };
    },
    async second() {
      runs.push({ step: 'second', resumed: false });
      return { result: { done: true } };
    },
  },
};

async function depth(url: string): Promise<number> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return Number(out.Attributes!.ApproximateNumberOfMessages) + Number(out.Attributes!.ApproximateNumberOfMessagesNotVisible);
}

async function until(id: string, done: (job: JobRecord) => boolean): Promise<JobRecord> {
  for (let i = 0; i < 300; i++) {
    const job = await runtime.get(id);
    if (done(job)) return job;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`job ${id} did not get there`);
}

beforeAll(async () => {
  emulators = await startEmulators();
  sqs = createSqsClient({ endpoint: emulators.awsEndpoint });
  const dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
  await createPkSkTable(dynamo, TABLE);
  for (const [key, name] of [['toy', 'jp-toy-steps'], ['container', 'jp-container-steps'], ['dlq', 'jp-container-steps-dlq']] as const) {
    urls[key] = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '30' } }))).QueueUrl!;
  }
  runtime = new JobRuntime({
    table: new JobTable(dynamo, TABLE),
    kinds: new JobKinds([toy]),
    queue: new SqsStepQueue(sqs, withContainerQueue('jp-container-steps', () => 'jp-toy-steps')),
    placements: ['lambda', 'container'],
    visibilitySeconds: 30,
    retryDelaySeconds: 0,
  });
});

afterAll(async () => {
  await emulators?.stop();
});

describe('job placement', () => {
  it('keeps a small job on its kind\'s queue', async () => {
    const { job } = await runtime.submit({ kind: 'toy', request: { size: 1 } });
    expect(job.placement).toBe('lambda');
    expect([await depth(urls.toy), await depth(urls.container)]).toEqual([1, 0]);
  });

  it('sends every message of a container-placed job to the container queue, where the container worker runs it to its end', async () => {
    runs.length = 0;
    const { job } = await runtime.submit({ kind: 'toy', request: { size: 100 } });
    expect(job.placement).toBe('container');
    expect(await depth(urls.container)).toBe(1);
    const worker = new ContainerWorker({ sqs, queueUrl: urls.container, runtime, waitTimeSeconds: 1, concurrency: 1 });
    const running = worker.start();
    const ended = await until(job.id, (j) => j.state === 'succeeded');
    await worker.stop(0);
    await running;
    // The continuation and the enqueued step came back on the container queue (the toy queue holds only the small job's step).
    expect(runs).toEqual([{ step: 'first', resumed: false }, { step: 'first', resumed: true }, { step: 'second', resumed: false }]);
    expect(ended).toMatchObject({ state: 'succeeded', placement: 'container', stepsTotal: 2, stepsSucceeded: 2, result: { done: true } });
    expect([await depth(urls.toy), await depth(urls.container)]).toEqual([1, 0]);
  });

  it('ends a step from the container dead-letter queue failed, with the reason', async () => {
    const { job } = await runtime.submit({ kind: 'toy', request: { size: 200 } });
    // As SQS moves a message no delivery could run after maxReceiveCount receives.
    await sqs.send(new SendMessageCommand({ QueueUrl: urls.dlq, MessageBody: JSON.stringify({ job: job.id, step: 'first' }) }));
    await sqs.send(new SendMessageCommand({ QueueUrl: urls.dlq, MessageBody: 'not a step message' }));
    const worker = new ContainerWorker({ sqs, queueUrl: urls.dlq, runtime, deadLetters: true, waitTimeSeconds: 1, concurrency: 1 });
    const running = worker.start();
    const ended = await until(job.id, (j) => j.state === 'failed');
    // Both messages go: the step message ended its job, the other is dropped.
    for (let i = 0; i < 300 && (await depth(urls.dlq)) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    await worker.stop(0);
    await running;
    expect(ended.error).toBe('step first failed: its message went to the dead-letter queue: no delivery could run it');
    expect(await depth(urls.dlq)).toBe(0);
  });

  it('refuses a container placement where the runtime runs none', async () => {
    const lambdaOnly = new JobRuntime({ table: new JobTable(createDynamoClient({ endpoint: emulators.dynamoEndpoint }), TABLE), kinds: new JobKinds([{ ...toy, placement: () => 'container' }]), queue: new SqsStepQueue(sqs, () => 'jp-toy-steps'), visibilitySeconds: 30 });
    await expect(lambdaOnly.submit({ kind: 'toy', request: { size: 1 } })).rejects.toThrow("a toy job cannot be placed on 'container': this stack runs lambda workers only");
  });
});
