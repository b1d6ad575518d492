import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchDeadLetterHandler, createBatchScoreHandler } from '../../functions/batch-score/app.ts';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { shardStepName } from '../../functions/core/batch/merge.ts';
import { createBatchRuntime } from '../../functions/core/batch/runtime.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { pollSqsQueue, type Trigger } from '../../infra/local/triggers.ts';
import { doublingRow, getText, pushDoublingModel, putText, startBatchStack, waitFor, type BatchStack } from '../helpers/batch-stack.ts';

// What goes wrong in a job: bad rows become error lines beside the good ones; a shard that fails on
// every attempt is failed by the job runtime after the kind's attempts, and the job ends `partial`
// and says why.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const POISON_KEY = 'batches/inputs/poison.jsonl';
const SHARD_BYTES = 2048;
let stack: BatchStack;
const triggers: Trigger[] = [];

beforeAll(async () => {
  stack = await startBatchStack({ visibilityTimeout: 2 });
  await pushDoublingModel(stack);
  const { logger } = createObservability('batch-test');
  const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
  // The score function's S3 client fails the reads of the poison input's second shard on each of
  // its three attempts (the batch kind's maxAttempts), as a lost disk would; the merge that follows
  // reads it to list its rows. Everything else is the real SDK against the emulator.
  const s3 = createS3Client({ endpoint: stack.emulators.awsEndpoint });
  let poisoned = 3;
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { Key?: string; Range?: string };
      if (context.commandName === 'GetObjectCommand' && input.Key === POISON_KEY && input.Range?.startsWith(`bytes=${SHARD_BYTES - 1}-`) && poisoned > 0) {
        poisoned--;
        throw new Error('simulated read failure');
      }
      return next(args);
    },
    { step: 'initialize', name: 'poisonShardOne' },
  );
  const scoreRuntime = createBatchRuntime({ env: stack.env, s3, sqs: stack.sqs, dynamo: stack.dynamo });
  triggers.push(
    await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.shardQueueUrl, handler: createBatchScoreHandler({ runtime: scoreRuntime.jobs, log }) }),
    await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.deadLetterQueueUrl, handler: createBatchDeadLetterHandler({ runtime: stack.runtime.jobs, log }) }),
  );
});

afterAll(async () => {
  await Promise.all(triggers.map((t) => t.stop()));
  await stack?.stop();
});

async function finished(id: string) {
  return waitFor('the job to finish', async () => {
    const view = await stack.runtime.service().get(id);
    return ['succeeded', 'partial', 'failed'].includes(view.state) ? view : undefined;
  }, 30_000);
}

describe('malformed rows', () => {
  it('leave no errors object for a shard without them, and an empty errors.jsonl', async () => {
    // Prepare: three clean rows.
    await putText(stack, 'batches/inputs/clean.jsonl', `${[0, 1, 2].map(doublingRow).join('\n')}\n`);

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/clean.jsonl' });
    const final = await finished(job.id);

    // Assert: the merge read no shard errors object (none was written), and says so with an empty file.
    expect(final).toMatchObject({ state: 'succeeded', rows: { scored: 3, failed: 0 } });
    await expect(getText(stack, keys.batchShardErrors(job.id, 0))).rejects.toMatchObject({ name: 'NoSuchKey' });
    expect(await getText(stack, keys.batchErrors(job.id))).toBe('');
    expect((await getText(stack, keys.batchResult(job.id))).trimEnd().split('\n').map((l) => JSON.parse(l).row)).toEqual([0, 1, 2]);
  });

  it('become per-row errors in place, and the rest of the rows are scored', async () => {
    // Prepare
    const rows = [
      doublingRow(0),
      'not json at all',
      JSON.stringify({ inputs: [{ name: 'x', data: [1, 2, 3] }] }),
      JSON.stringify({ id: 'typed', inputs: [{ name: 'x', datatype: 'INT64', data: [1, 2, 3, 4] }] }),
      JSON.stringify({ inputs: [{ name: 'x', data: [1, 'a', 3, 4] }] }),
      '',
      JSON.stringify({ inputs: [] }),
      doublingRow(6),
    ];
    await putText(stack, 'batches/inputs/malformed.jsonl', `${rows.join('\n')}\n`);

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/malformed.jsonl' });
    const final = await finished(job.id);

    // Assert: the blank line is not a row; five bad rows out of seven.
    expect(final).toMatchObject({ state: 'succeeded', rows: { scored: 2, failed: 5 } });
    const result = (await getText(stack, keys.batchResult(job.id))).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(result.map((r) => r.row)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(result[0].outputs[0].data).toEqual([0, 1, 0, 2]);
    expect(result[6]).toMatchObject({ row: 6, id: 'r6', outputs: [{ data: [12, 13, -12, 2] }] });
    const errors = (await getText(stack, keys.batchErrors(job.id))).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(errors.map((e) => e.row)).toEqual([1, 2, 3, 4, 5]);
    expect((await getText(stack, keys.batchShardErrors(job.id, 0))).trimEnd().split('\n')).toHaveLength(5);
    expect(errors[0].error).toMatch(/^not valid JSON: /);
    expect(errors.slice(1)).toEqual([
      { row: 2, error: "input 'x' has 3 elements but its shape needs 4" },
      { row: 3, id: 'typed', error: "input 'x' has datatype INT64 but the model expects FP32" },
      { row: 4, error: `input 'x': element 1 is "a", expected a number for FP32` },
      { row: 5, error: "missing input 'x'" },
    ]);
  });

  it('in CSV, skips the header and reports a bad cell', async () => {
    await putText(stack, 'batches/inputs/table.csv', 'a,b,c,d\n1,2,3,4\n1,2,x,4\n5,6,7\n');
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/table.csv', csv_header: true });
    const final = await finished(job.id);
    expect(final).toMatchObject({ state: 'succeeded', format: 'csv', rows: { scored: 1, failed: 2 } });
    expect((await getText(stack, keys.batchResult(job.id))).trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual([
      { row: 0, outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [2, 4, 6, 8] }] },
      { row: 1, error: 'column 3 is "x", not a number' },
      { row: 2, error: "row has 3 columns but input 'x' needs 4" },
    ]);
  });
});

describe('a shard that fails on every attempt', () => {
  it('fails after its attempts, and the job ends partial with the reason and every row accounted for', async () => {
    // Prepare: three shards; the second cannot be read.
    const lines = Array.from({ length: 60 }, (_, i) => doublingRow(i));
    const input = `${lines.join('\n')}\n`;
    await putText(stack, POISON_KEY, input);

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: POISON_KEY, shard_bytes: SHARD_BYTES });
    const final = await finished(job.id);

    // Assert
    expect(job.shards.total).toBe(Math.ceil(Buffer.byteLength(input) / SHARD_BYTES));
    const steps = await stack.runtime.table.listSteps(job.id);
    const dead = steps.find((s) => s.name === shardStepName(1))!;
    expect(dead).toMatchObject({ state: 'failed', lastError: 'simulated read failure (after 3 attempts)', attempts: 3 });
    const result = (await getText(stack, keys.batchResult(job.id))).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(result.map((r) => r.row)).toEqual(lines.map((_, i) => i));
    const deadRows = result.filter((r) => r.error !== undefined);
    expect(deadRows.length).toBeGreaterThan(0);
    expect(deadRows.every((r) => r.error === 'shard 1 failed: simulated read failure')).toBe(true);
    expect(final).toMatchObject({
      state: 'partial',
      shards: { total: job.shards.total, done: job.shards.total - 1, failed: 1 },
      rows: { scored: lines.length - deadRows.length, failed: deadRows.length },
      reason: `1 of ${job.shards.total} shard(s) failed after repeated attempts; their ${deadRows.length} row(s) are listed in errors.jsonl: shard 1 failed: simulated read failure`,
    });
  });
});
