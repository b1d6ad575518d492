import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchApiHandler } from '../../functions/batch-submit/app.ts';
import { createBatchDeadLetterHandler, createBatchScoreHandler } from '../../functions/batch-score/app.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { pollSqsQueue, type Trigger } from '../../infra/local/triggers.ts';
import { apiEvent, doublingRow, getText, pushDoublingModel, putText, startBatchStack, waitFor, type BatchStack } from '../helpers/batch-stack.ts';

// The Lambda path end to end on the emulators: the API function plans, the SQS event source (the
// local poller) runs the score function, the last shard merges.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const ROWS = 10_000;
let stack: BatchStack;
let triggers: Trigger[] = [];
let api: ReturnType<typeof createBatchApiHandler>;

beforeAll(async () => {
  stack = await startBatchStack({ visibilityTimeout: 20 });
  await pushDoublingModel(stack);
  const { logger, metrics } = createObservability('batch-test');
  api = createBatchApiHandler({ service: stack.runtime.service(), maxBodyBytes: 6_000_000, logger, metrics });
  const runtime = stack.runtime.jobs;
  const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
  triggers = [
    await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.shardQueueUrl, handler: createBatchScoreHandler({ runtime, log }), batchSize: 2, concurrency: 2 }),
    await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.deadLetterQueueUrl, handler: createBatchDeadLetterHandler({ runtime, log }) }),
  ];
});

afterAll(async () => {
  await Promise.all(triggers.map((t) => t.stop()));
  await stack?.stop();
});

describe('a 10,000-row job on the Lambda worker', () => {
  it('scores every row exactly once, in input order, and reports its progress', async () => {
    // Prepare: rows of uneven length, so shard boundaries fall mid-line.
    const input = Array.from({ length: ROWS }, (_, i) => doublingRow(i)).join('\n') + '\n';
    await putText(stack, 'batches/inputs/ten-thousand.jsonl', input);

    // Act
    const submitted = await api(apiEvent('POST', '/v2/batches', { model: 'double', input: 'batches/inputs/ten-thousand.jsonl', batch_size: 32, shard_bytes: 50_000 }));
    expect(submitted.statusCode).toBe(202);
    const job = JSON.parse(submitted.body!);
    expect(job.shards.total).toBe(Math.ceil(Buffer.byteLength(input) / 50_000));
    const final = await waitFor('the job to finish', async () => {
      const view = JSON.parse((await api(apiEvent('GET', `/v2/batches/${job.id}`))).body!);
      return ['succeeded', 'partial', 'failed'].includes(view.state) ? view : undefined;
    });

    // Assert
    expect(final).toMatchObject({ state: 'succeeded', model: 'double', version: '1', shards: { total: job.shards.total, done: job.shards.total, failed: 0 }, rows: { scored: ROWS, failed: 0 } });
    expect(final.rows_per_s).toBeGreaterThan(0);
    const lines = (await getText(stack, keys.batchResult(job.id))).trimEnd().split('\n');
    expect(lines).toHaveLength(ROWS);
    lines.forEach((line, i) => {
      const row = JSON.parse(line);
      expect(row).toEqual({ row: i, id: `r${i}`, outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [2 * i, 2 * i + 1, 0 - 2 * i, 2] }] });
    });
    expect(await getText(stack, keys.batchErrors(job.id))).toBe('');
  });
});
