import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ChangeMessageVisibilityCommand, CreateQueueCommand, DeleteMessageCommand, GetQueueAttributesCommand, PurgeQueueCommand, ReceiveMessageCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { SQSBatchResponse } from 'aws-lambda';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds, JobStepError, type JobKind, type StepContext } from '../../functions/core/jobs/kinds.ts';
import type { JobRecord, Json } from '../../functions/core/jobs/record.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { createJobDeadLetterHandler, createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { deliverStep, sqsEvent } from '../helpers/job-delivery.ts';

// The job runtime on the emulators: dynalite holds the records, fauxqs delivers the steps, the real
// SDK talks to both, and Powertools' BatchProcessor turns each delivery into a partial-batch response.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
const VISIBILITY_SECONDS = 2;
const MAX_RECEIVE_COUNT = 5;

let emulators: Emulators;
let sqs: SQSClient;
let dynamo: DynamoDBClient;
let queueUrl: string;
let dlqUrl: string;
let table: JobTable;
let runtime: JobRuntime;

/** What the toy kinds did, per test. */
let log: { counted: number[]; runs: number; finished: string[]; gate?: Promise<void>; onItem?: (job: JobRecord, item: number) => Promise<void> };

/** Sums 0..n-1 one item at a time, checkpointing when the invocation's time is up. */
const counting: JobKind = {
  name: 'count',
  parseRequest(body) {
    const n = (body as { n?: unknown })?.n;
    if (!Number.isInteger(n) || (n as number) < 1) throw new JobStepError('n must be a positive integer');
    return { n: n as number };
  },
  plan: () => [{ name: 'sum', handler: 'sum' }],
  steps: {
    async sum(ctx: StepContext) {
      log.runs++;
      await log.gate;
      const { n } = ctx.job.request as { n: number };
      let { next, sum } = (ctx.checkpoint as { next: number; sum: number } | undefined) ?? { next: 0, sum: 0 };
      log.counted.push(next);
      while (next < n) {
        if (ctx.remainingMs() <= 0) return { continue: { next, sum } };
        sum += next;
        next += 1;
        await log.onItem?.(ctx.job, next);
        await ctx.progress(next, n, 'summing');
      }
      return { result: { sum } };
    },
  },
  async onFinished(job) {
    log.finished.push(job.id);
  },
};

const failing: JobKind = {
  name: 'fail',
  parseRequest: (body) => body as Json,
  plan: () => [{ name: 'main', handler: 'main' }],
  maxAttempts: 3,
  steps: {
    async main() {
      log.runs++;
      throw new JobStepError('the toy step always fails');
    },
  },
};

/** Three parallel parts, part-1 always failing: the job ends partial with the other two's results. */
const fanning: JobKind = {
  name: 'fan',
  parseRequest: (body) => body as Json,
  plan: () => [0, 1, 2].map((i) => ({ name: `part-${i}`, handler: 'part', input: i })),
  maxAttempts: 2,
  failFast: false,
  terminal: (_job, steps) => ({
    state: steps.some((s) => s.state === 'failed') ? 'partial' : 'succeeded',
    result: steps.filter((s) => s.state === 'succeeded').map((s) => s.result!),
  }),
  steps: {
    async part(ctx) {
      log.runs++;
      if (ctx.input === 1) throw new JobStepError('part 1 cannot be done');
      return { result: (ctx.input as number) * 10 };
    },
  },
};

/** Runs until the runtime has renewed its lease three times, then looks whether its message is visible. */
const slow: JobKind = {
  name: 'slow',
  parseRequest: (body) => body as Json,
  plan: () => [{ name: 'long', handler: 'long' }],
  steps: {
    async long(ctx) {
      const leases = new Set<number>([ctx.step.leaseUntil]);
      while (leases.size < 4) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        leases.add((await table.getStep(ctx.job.id, 'long'))!.leaseUntil);
      }
      const visible = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 0 }));
      return { result: { renewals: leases.size - 1, visibleWhileRunning: visible.Messages?.length ?? 0 } };
    },
  },
};

/** A Lambda context whose remaining time runs out after `calls` looks (deterministic, no clock). */
function budget(calls: number) {
  let left = calls;
  return { getRemainingTimeInMillis: () => left-- };
}

const roomy = () => ({ getRemainingTimeInMillis: () => 900_000 });

/** One Lambda invocation as the SQS event source makes it: receive, invoke, delete what did not fail. */
function deliver(handler: ReturnType<typeof createJobStepHandler>, context: { getRemainingTimeInMillis(): number } = roomy(), wait = 0): Promise<{ received: number; failures: string[] }> {
  return deliverStep(sqs, queueUrl, handler, context, wait);
}

/** Delivers until the job ends (each round waits up to a second for a message to become visible). */
async function runToEnd(id: string, handler = createJobStepHandler(runtime), context = roomy): Promise<JobRecord> {
  for (let round = 0; round < 30; round++) {
    const job = await runtime.get(id);
    if (['succeeded', 'failed', 'partial', 'cancelled'].includes(job.state)) return job;
    await deliver(handler, context(), 1);
  }
  throw new Error(`job ${id} did not end`);
}

async function queueDepth(url: string): Promise<number> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return Number(out.Attributes!.ApproximateNumberOfMessages) + Number(out.Attributes!.ApproximateNumberOfMessagesNotVisible);
}

beforeAll(async () => {
  emulators = await startEmulators();
  sqs = createSqsClient({ endpoint: emulators.awsEndpoint });
  dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
  await createPkSkTable(dynamo, 'jobs-test-registry');
  dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'jobs-steps-dlq' }))).QueueUrl!;
  const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }))).Attributes!.QueueArn!;
  queueUrl = (
    await sqs.send(
      new CreateQueueCommand({
        QueueName: 'jobs-steps',
        Attributes: { VisibilityTimeout: String(VISIBILITY_SECONDS), RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: String(MAX_RECEIVE_COUNT) }) },
      }),
    )
  ).QueueUrl!;
  table = new JobTable(dynamo, 'jobs-test-registry');
  runtime = new JobRuntime({
    table,
    kinds: new JobKinds([counting, failing, fanning, slow]),
    queue: new SqsStepQueue(sqs, () => 'jobs-steps'),
    visibilitySeconds: VISIBILITY_SECONDS,
    retryDelaySeconds: 0,
    reserveMs: 0,
  });
});

beforeEach(async () => {
  log = { counted: [], runs: 0, finished: [] };
  await sqs.send(new PurgeQueueCommand({ QueueUrl: queueUrl }));
  await sqs.send(new PurgeQueueCommand({ QueueUrl: dlqUrl }));
});

afterAll(async () => {
  sqs?.destroy();
  dynamo?.destroy();
  await emulators?.stop();
});

describe('submission', () => {
  it('gives the same job for the same key and request, and 409 for the same key with another request', async () => {
    const first = await runtime.submit({ kind: 'count', key: 'order-17', request: { n: 3 }, parent: { model: 'mnist', version: '2' } });
    const again = await runtime.submit({ kind: 'count', key: 'order-17', request: { n: 3 }, parent: { model: 'mnist', version: '2' } });
    const other = await runtime.submit({ kind: 'count', key: 'order-18', request: { n: 3 } });

    expect(first.created).toBe(true);
    expect(again).toEqual({ created: false, job: first.job });
    expect(other.job.id).not.toBe(first.job.id);
    expect(first.job).toMatchObject({ kind: 'count', state: 'queued', key: 'order-17', request: { n: 3 }, parent: { model: 'mnist', version: '2' }, attempts: 0, stepsTotal: 1, stepsSucceeded: 0, stepsFailed: 0 });
    await expect(runtime.submit({ kind: 'count', key: 'order-17', request: { n: 4 }, parent: { model: 'mnist', version: '2' } })).rejects.toMatchObject({
      statusCode: 409,
      message: `idempotency key 'order-17' was used for a different count request (job ${first.job.id})`,
    });
    await expect(runtime.submit({ kind: 'count', request: { n: 0 } })).rejects.toThrow('n must be a positive integer');
    await expect(runtime.submit({ kind: 'nope', request: {} })).rejects.toMatchObject({ statusCode: 400, message: 'unknown job kind "nope"; known: count, fail, fan, slow' });
    await expect(runtime.submit({ kind: 'count', key: 'has space', request: { n: 1 } })).rejects.toMatchObject({ statusCode: 400 });
  });

  it('runs a resubmitted job once: the duplicate step message finds the step done', async () => {
    const { job } = await runtime.submit({ kind: 'count', key: 'twice', request: { n: 3 } });
    await runtime.submit({ kind: 'count', key: 'twice', request: { n: 3 } }); // still queued: its step is sent again

    const ended = await runToEnd(job.id);
    // A copy that met the step under its lease comes back once the lease would have run out.
    if ((await queueDepth(queueUrl)) > 0) await deliver(createJobStepHandler(runtime), roomy(), VISIBILITY_SECONDS + 1);

    expect(ended).toMatchObject({ state: 'succeeded', result: { sum: 3 }, attempts: 1, stepsTotal: 1, stepsSucceeded: 1 });
    expect(log.runs).toBe(1);
    expect(log.finished).toEqual([job.id]);
    expect(await queueDepth(queueUrl)).toBe(0);
  });
});

describe('step leases', () => {
  it('lets one of two workers racing for one step run it; the other hands its message back', async () => {
    let open!: () => void;
    log.gate = new Promise<void>((resolve) => (open = resolve));
    const { job } = await runtime.submit({ kind: 'count', request: { n: 4 } });
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify({ job: job.id, step: 'sum' }) })); // an SQS duplicate
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    expect(received.Messages).toHaveLength(2);

    const [a, b] = [createJobStepHandler(runtime), createJobStepHandler(runtime)];
    const first = a(sqsEvent([received.Messages![0]!]), roomy());
    const second = b(sqsEvent([received.Messages![1]!]), roomy());
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (log.runs === 0) return;
        clearInterval(poll);
        resolve();
      }, 10);
    });
    const loser = await Promise.race([first, second]);
    open();
    const results: SQSBatchResponse[] = await Promise.all([first, second]);

    expect(log.runs).toBe(1);
    expect(loser.batchItemFailures).toHaveLength(1);
    expect(results.map((r) => r.batchItemFailures.length).sort()).toEqual([0, 1]);
    const winnerIndex = results.findIndex((r) => r.batchItemFailures.length === 0);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: received.Messages![winnerIndex]!.ReceiptHandle! }));
    // The loser's message comes back when the winner's lease would have run out, and is acknowledged.
    const ended = await runToEnd(job.id);
    await deliver(createJobStepHandler(runtime), roomy(), VISIBILITY_SECONDS + 1);
    expect(ended).toMatchObject({ state: 'succeeded', result: { sum: 6 }, attempts: 1 });
    expect(log.runs).toBe(1);
    expect(await queueDepth(queueUrl)).toBe(0);
  });

  it('redelivers the step of a worker killed mid-step once its lease and visibility run out, and ends the job exactly once', async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 5 } });
    // The killed worker: it received the message and took the lease, then vanished (no delete, no renewal).
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1 }));
    expect(received.Messages).toHaveLength(1);
    const dead = await table.takeStep(job.id, 'sum', 'killed-worker', VISIBILITY_SECONDS * 1000, Date.now());
    expect(dead).toMatchObject({ state: 'running', owner: 'killed-worker', attempts: 1 });
    await table.startAttempt(job.id, Date.now());

    const ended = await runToEnd(job.id);

    expect(ended).toMatchObject({ state: 'succeeded', result: { sum: 10 }, attempts: 2, stepsSucceeded: 1 });
    expect(await table.getStep(job.id, 'sum')).toMatchObject({ state: 'succeeded', attempts: 2, leaseUntil: 0 });
    expect(log.runs).toBe(1);
    expect(log.finished).toEqual([job.id]);
    // The killed worker, had it come back, can no longer end the step.
    expect(await table.finishStep(job.id, 'sum', 'killed-worker', { state: 'succeeded', result: { sum: -1 } }, Date.now())).toBeUndefined();
    expect((await runtime.get(job.id)).result).toEqual({ sum: 10 });
    expect(await queueDepth(queueUrl)).toBe(0);
  });

  it('keeps renewing the lease and the message visibility while a step runs longer than the visibility timeout', async () => {
    const { job } = await runtime.submit({ kind: 'slow', request: {} });

    const ended = await runToEnd(job.id);

    // Three renewals take three seconds: without them the message would have been visible again after two.
    expect(ended).toMatchObject({ state: 'succeeded', result: { renewals: 3, visibleWhileRunning: 0 }, attempts: 1 });
    expect(await queueDepth(queueUrl)).toBe(0);
  });
});

describe('failures', () => {
  it('ends a job whose step always fails as failed with the reason, after the bounded attempts, without the dead-letter queue', async () => {
    const { job } = await runtime.submit({ kind: 'fail', request: {} });

    const ended = await runToEnd(job.id);

    expect(ended).toMatchObject({ state: 'failed', error: 'step main failed: the toy step always fails (after 3 attempts)', attempts: 3, stepsFailed: 1 });
    expect(await table.getStep(job.id, 'main')).toMatchObject({ state: 'failed', attempts: 3, lastError: 'the toy step always fails (after 3 attempts)' });
    expect(log.runs).toBe(3);
    expect(await queueDepth(queueUrl)).toBe(0);
    expect(await queueDepth(dlqUrl)).toBe(0);
  });

  it('ends a job partial when its kind says so: the parts that succeeded keep their results', async () => {
    const { job } = await runtime.submit({ kind: 'fan', request: {} });

    const ended = await runToEnd(job.id);

    expect(ended).toMatchObject({ state: 'partial', stepsTotal: 3, stepsSucceeded: 2, stepsFailed: 1 });
    expect([...(ended.result as number[])].sort((x, y) => x - y)).toEqual([0, 20]);
    expect(log.runs).toBe(4); // parts 0 and 2 once, part 1 twice (maxAttempts 2)
  });

  it('sends a message that is not a step message to the dead-letter queue after maxReceiveCount deliveries', async () => {
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: '{"job": 7}' }));
    const handler = createJobStepHandler(runtime);
    const failures: number[] = [];
    for (let i = 0; i < MAX_RECEIVE_COUNT; i++) {
      const delivered = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1 }));
      const response = await handler(sqsEvent(delivered.Messages ?? []), roomy());
      failures.push(response.batchItemFailures.length);
      // Visible again at once rather than after the visibility timeout, to keep the test short.
      await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: delivered.Messages![0]!.ReceiptHandle!, VisibilityTimeout: 0 }));
    }

    expect(failures).toEqual([1, 1, 1, 1, 1]);
    // The next receive finds it past maxReceiveCount: SQS moves it to the dead-letter queue instead.
    expect(await deliver(handler, roomy(), 1)).toEqual({ received: 0, failures: [] });
    const dead = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, WaitTimeSeconds: 1 }));
    expect(dead.Messages?.map((m) => m.Body)).toEqual(['{"job": 7}']);
  });

  it("ends the job failed when a step's message reaches the dead-letter queue (here: a worker that lacks the kind)", async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 2 } });
    const misconfigured = createJobStepHandler(new JobRuntime({ table, kinds: new JobKinds([failing]), queue: new SqsStepQueue(sqs, () => 'jobs-steps'), visibilitySeconds: VISIBILITY_SECONDS }));
    for (let i = 0; i < MAX_RECEIVE_COUNT; i++) {
      const delivered = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 1 }));
      expect((await misconfigured(sqsEvent(delivered.Messages ?? []), roomy())).batchItemFailures).toHaveLength(1);
      await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: delivered.Messages![0]!.ReceiptHandle!, VisibilityTimeout: 0 }));
    }
    expect(await deliver(misconfigured, roomy(), 1)).toEqual({ received: 0, failures: [] });
    const dead = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, WaitTimeSeconds: 1 }));

    const response = await createJobDeadLetterHandler(runtime)(sqsEvent(dead.Messages ?? []));

    expect(response.batchItemFailures).toEqual([]);
    expect(await runtime.get(job.id)).toMatchObject({ state: 'failed', error: 'step sum failed: its message went to the dead-letter queue: no delivery could run it', stepsFailed: 1 });
    expect(await table.getStep(job.id, 'sum')).toMatchObject({ state: 'failed', attempts: 0 });
    expect(log.runs).toBe(0);
  });
});

describe('continuation', () => {
  it('checkpoints a step that runs out of time and resumes it from the checkpoint in the next invocation', async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 10 } });

    // Each invocation has time for four items.
    const ended = await runToEnd(job.id, createJobStepHandler(runtime), () => budget(4));

    expect(log.counted).toEqual([0, 4, 8]);
    expect(ended).toMatchObject({ state: 'succeeded', result: { sum: 45 }, attempts: 3, progress: { done: 10, total: 10, stage: 'summing' } });
    expect(await table.getStep(job.id, 'sum')).toMatchObject({ state: 'succeeded', segments: 3, attempts: 1, checkpoint: { next: 8, sum: 28 } });
    expect(log.finished).toEqual([job.id]);
  });
});

describe('cancel', () => {
  it('stops a running step at its next progress report', async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 10 } });
    log.onItem = async (j, item) => {
      if (item === 3) await runtime.cancel(j.id);
    };

    const ended = await runToEnd(job.id);

    expect(ended).toMatchObject({ state: 'cancelled', error: 'cancelled by request', progress: { done: 2, total: 10 } });
    expect(await table.getStep(job.id, 'sum')).toMatchObject({ state: 'cancelled' });
    expect(log.finished).toEqual([]);
    expect(await queueDepth(queueUrl)).toBe(0);
  });

  it("makes a cancelled job's pending steps do nothing, and refuses to cancel a job that has ended", async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 3 } });
    const cancelled = await runtime.cancel(job.id);
    expect(cancelled).toMatchObject({ state: 'cancelled', error: 'cancelled by request' });
    expect(await runtime.cancel(job.id)).toMatchObject({ state: 'cancelled', updated: cancelled.updated });

    const delivered = await deliver(createJobStepHandler(runtime), roomy(), 1);

    expect(delivered).toEqual({ received: 1, failures: [] });
    expect(log.runs).toBe(0);
    expect(await table.getStep(job.id, 'sum')).toMatchObject({ state: 'pending', attempts: 0 });
    const done = await runtime.submit({ kind: 'count', request: { n: 1 } });
    await runToEnd(done.job.id);
    await expect(runtime.cancel(done.job.id)).rejects.toMatchObject({ statusCode: 409, message: `job '${done.job.id}' has already ended (succeeded); only a queued or running job can be cancelled` });
  });
});
