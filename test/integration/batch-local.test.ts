import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchRuntime, type BatchRuntime } from '../../functions/core/batch/runtime.ts';
import { createS3Client, createDynamoClient } from '../../functions/core/aws/clients.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { startLocalBatch, type LocalBatch } from '../../infra/local/batch.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { doublingModel, doublingRow, waitFor } from '../helpers/batch-stack.ts';

// The batch part of the local stack (infra/local/batch.ts) and `mass worker`, as a user runs them
// from a checkout whose .local/stack.json names the stack.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const BUCKET = 'ai-mass-local-models';
let emulators: Emulators;
let batch: LocalBatch;
let runtime: BatchRuntime;
let s3: S3Client;
let dir: string;
let mass: ChildProcess;
let massOut = '';

beforeAll(async () => {
  emulators = await startEmulators();
  dir = await mkdtemp(join(tmpdir(), 'ai-mass-local-batch-'));
  batch = await startLocalBatch({ awsEndpoint: emulators.awsEndpoint, dynamoEndpoint: emulators.dynamoEndpoint, bucket: BUCKET, cacheDir: join(dir, 'cache') });
  s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  const registry = new RegistryTable(createDynamoClient({ endpoint: emulators.dynamoEndpoint }), batch.resources.table);
  await pushModel(new ModelRepository({ s3, bucket: BUCKET, cacheDir: join(dir, 'push-cache'), registry }), { name: 'double', bytes: doublingModel() });
  runtime = createBatchRuntime({ env: batch.environment });
  await mkdir(join(dir, '.local'));
  await writeFile(join(dir, '.local', 'stack.json'), JSON.stringify({ api: 'http://127.0.0.1:9', bucket: BUCKET, ...emulators, batchWorkerEnv: batch.environment }));
  mass = spawn(process.execPath, [join(import.meta.dirname, '..', '..', 'functions', 'cli', 'mass.ts'), 'worker', '--count', '2', '--threads', '1'], {
    cwd: dir,
    env: { ...process.env, AWS_ENDPOINT_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  mass.stdout!.on('data', (chunk: Buffer) => (massOut += chunk.toString()));
});

afterAll(async () => {
  if (mass && mass.exitCode === null) mass.kill('SIGKILL');
  await batch?.stop();
  await emulators?.stop();
  await rm(dir, { recursive: true, force: true });
});

const rows = (n: number) => Array.from({ length: n }, (_, i) => JSON.parse(doublingRow(i)));
const succeeded = (id: string) =>
  waitFor(`job ${id} to succeed`, async () => {
    const view = await runtime.service().get(id).catch(() => undefined);
    return view?.state === 'succeeded' ? view : undefined;
  }, 120_000);

describe('the local batch stack', () => {
  it('scores GPU-queue jobs on `mass worker` processes, Lambda-queue jobs on the score function, uploads by the watcher', async () => {
    // Act
    const gpu = await runtime.service().submit({ model: 'double', rows: rows(300), worker: 'gpu', shard_bytes: 2000 });
    const lambda = await runtime.service().submit({ model: 'double', rows: rows(300), worker: 'lambda', shard_bytes: 2000 });
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'batches/incoming/local-upload.jsonl', Body: `${doublingRow(1)}\n`, Metadata: { model: 'double' } }));

    // Assert
    expect((await succeeded(gpu.job.id)).rows).toEqual({ scored: 300, failed: 0 });
    expect((await succeeded(lambda.job.id)).rows).toEqual({ scored: 300, failed: 0 });
    expect((await succeeded('local-upload')).rows).toEqual({ scored: 1, failed: 0 });
    const done = massOut.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { message: string; pid: number; job?: string });
    const gpuShards = done.filter((l) => l.message === 'shard done' && l.job === gpu.job.id);
    expect(gpuShards).toHaveLength(gpu.job.shards.total);
    expect(done.some((l) => l.message === 'shard done' && l.job === lambda.job.id)).toBe(false);
  }, 300_000);

  it('stops every worker on Ctrl-C', async () => {
    mass.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => mass.once('exit', (exitCode) => resolve(exitCode)));
    expect(code).toBe(0);
    expect(massOut.split('\n').filter((l) => l.includes('"message":"stopped"'))).toHaveLength(2);
  });
});
