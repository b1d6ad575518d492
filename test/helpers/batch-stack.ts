import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createDynamoClient, createS3Client, createSqsClient } from '../../functions/core/aws/clients.ts';
import { createBatchRuntime, type BatchRuntime } from '../../functions/core/batch/runtime.ts';
import { S3ObjectWriter } from '../../functions/core/batch/output.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { graph, model, node, scalarFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { batchEnvironment, createLocalBatchResources, type LocalBatchResources } from '../../infra/local/batch-resources.ts';

/** y = 2x over FP32 [-1, 4]: every output row is checkable against its input row. */
export function doublingModel(): Uint8Array {
  return encodeModel(
    model({
      opset: 17,
      irVersion: 8,
      graph: graph({
        name: 'double',
        nodes: [node('Mul', ['x', 'two'], ['y'])],
        inputs: [valueInfo('x', 'float32', ['batch', 4])],
        outputs: [valueInfo('y', 'float32', ['batch', 4])],
        initializers: [scalarFloat32('two', 2)],
      }),
    }),
  );
}

export function doublingRow(i: number): string {
  return JSON.stringify({ id: `r${i}`, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], data: [i, i + 0.5, -i, 1] }] });
}

export interface BatchStack {
  emulators: Emulators;
  s3: S3Client;
  sqs: SQSClient;
  dynamo: DynamoDBClient;
  resources: LocalBatchResources;
  env: Record<string, string>;
  store: ModelRepository;
  runtime: BatchRuntime;
  cacheDir: string;
  stop(): Promise<void>;
}

export async function startBatchStack(options: { visibilityTimeout?: number; maxReceiveCount?: number } = {}): Promise<BatchStack> {
  const emulators = await startEmulators();
  const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  const sqs = createSqsClient({ endpoint: emulators.awsEndpoint });
  const dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
  const resources = await createLocalBatchResources({ s3, sqs, dynamo, prefix: 'test', ...options });
  const cacheDir = await mkdtemp(join(tmpdir(), 'ai-mass-batch-'));
  const env = { ...batchEnvironment(resources, emulators), MODEL_CACHE_DIR: cacheDir, INTRA_OP_THREADS: '1' };
  // Versions registered in the registry table, where the batch functions look them up (and keep their jobs).
  const store = new ModelRepository({ s3, bucket: resources.bucket, cacheDir, registry: new RegistryTable(dynamo, resources.table) });
  const runtime = createBatchRuntime({ env, s3, sqs, dynamo });
  return {
    emulators,
    s3,
    sqs,
    dynamo,
    resources,
    env,
    store,
    runtime,
    cacheDir,
    async stop() {
      s3.destroy();
      sqs.destroy();
      dynamo.destroy();
      await emulators.stop();
      await rm(cacheDir, { recursive: true, force: true });
    },
  };
}

export async function pushDoublingModel(stack: BatchStack, name = 'double'): Promise<void> {
  await pushModel(stack.store, { name, bytes: doublingModel() });
}

/** An HTTP API (payload v2) event, as API Gateway hands it to the batch API function. */
export function apiEvent(method: string, path: string, body?: unknown): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: `${method} ${path}`,
    rawPath: path,
    rawQueryString: '',
    headers: { 'content-type': 'application/json' },
    isBase64Encoded: false,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    requestContext: {
      accountId: 'local',
      apiId: 'local',
      domainName: 'localhost',
      domainPrefix: 'localhost',
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
      requestId: 'test',
      routeKey: `${method} ${path}`,
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
  };
}

export async function putText(stack: BatchStack, key: string, body: string, metadata?: Record<string, string>): Promise<void> {
  if (body.length > 8 * 1024 * 1024 && !metadata) {
    // fauxqs takes at most 11 MiB per request: big inputs go up in parts, as the CLI sends them.
    const writer = new S3ObjectWriter({ s3: stack.s3, bucket: stack.resources.bucket, key });
    for (let at = 0; at < body.length; at += 4 * 1024 * 1024) await writer.write(body.slice(at, at + 4 * 1024 * 1024));
    await writer.close();
    return;
  }
  await stack.s3.send(new PutObjectCommand({ Bucket: stack.resources.bucket, Key: key, Body: body, ...(metadata ? { Metadata: metadata } : {}) }));
}

export async function getText(stack: BatchStack, key: string): Promise<string> {
  const out = await stack.s3.send(new GetObjectCommand({ Bucket: stack.resources.bucket, Key: key }));
  return out.Body!.transformToString('utf8');
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
