import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createDynamoClient, createS3Client, createSnsClient } from '../../../functions/core/aws/clients.ts';
import { pushModel } from '../../../functions/core/registry/model-push.ts';
import { RUNTIME_WARMUP_MODEL } from '../../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../../functions/core/registry/repository.ts';
import { RegistryTable } from '../../../functions/core/registry/registry-table.ts';
import { startEmulators } from '../../local/emulators.ts';
import { createLocalRegistryResources } from '../../local/registry-resources.ts';
import type { CacheTraining } from '../train-code-cache.ts';

/**
 * The inference function's code-cache training: its cold path as a deployed environment runs it.
 * The local emulators (loopback only) hold a one-node model registered like any upload; init
 * pre-warms it by name (registry query, manifest and staged artifact through the boot fetch,
 * session, warm-up run), then the handler serves a JSON and a binary inference request, the model's
 * metadata and the readiness check. Whatever that compiles is what a cold start finds cached.
 */
const MODEL = 'code-cache-training';

type Handler = (event: unknown, context: unknown) => Promise<{ statusCode: number; body: string }>;

function request(method: string, path: string, body?: { text: string; contentType: string; headerLength?: number }) {
  return {
    version: '2.0',
    rawPath: path,
    headers: {
      ...(body ? { 'content-type': body.contentType } : {}),
      ...(body?.headerLength !== undefined ? { 'inference-header-content-length': String(body.headerLength) } : {}),
    },
    requestContext: { http: { method, path } },
    isBase64Encoded: body?.headerLength !== undefined,
    ...(body ? { body: body.text } : {}),
  };
}

function binaryBody(): { text: string; contentType: string; headerLength: number } {
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }], outputs: [{ name: 'y', parameters: { binary_data: true } }] }));
  const tensor = Buffer.from(new Float32Array([2]).buffer);
  return { text: Buffer.concat([header, tensor]).toString('base64'), contentType: 'application/octet-stream', headerLength: header.length };
}

export const train: CacheTraining = async (load) => {
  const emulators = await startEmulators();
  const storeCache = await mkdtemp(join(tmpdir(), 'code-cache-store-'));
  const functionCache = await mkdtemp(join(tmpdir(), 'code-cache-function-'));
  try {
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    const dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
    const bucket = 'ai-mass-code-cache-training';
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const { table } = await createLocalRegistryResources({ dynamo, sns: createSnsClient({ endpoint: emulators.awsEndpoint }), prefix: 'ai-mass-code-cache' });
    const store = new ModelRepository({ s3, bucket, cacheDir: storeCache, registry: new RegistryTable(dynamo, table) });
    await pushModel(store, { name: MODEL, bytes: RUNTIME_WARMUP_MODEL, notes: 'code cache training' });
    Object.assign(process.env, {
      AWS_ENDPOINT_URL: emulators.awsEndpoint,
      DYNAMODB_ENDPOINT_URL: emulators.dynamoEndpoint,
      MODEL_BUCKET: bucket,
      REGISTRY_TABLE: table,
      PRELOAD_MODELS: MODEL,
      MODEL_CACHE_DIR: functionCache,
    });
    const { handler } = (await load()) as { handler: Handler };
    const context = { functionName: 'code-cache-training', awsRequestId: 'training', invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:code-cache-training', memoryLimitInMB: '2048', functionVersion: '$LATEST', getRemainingTimeInMillis: () => 28_000 };
    const json = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [2] }], outputs: [{ name: 'y' }] });
    const events = [
      request('POST', `/v2/models/${MODEL}/infer`, { text: json, contentType: 'application/json' }),
      request('POST', `/v2/models/${MODEL}/versions/1/infer`, binaryBody()),
      request('GET', `/v2/models/${MODEL}`),
      request('GET', '/v2/health/ready'),
    ];
    for (const event of events) {
      const response = await handler(event, context);
      if (response.statusCode !== 200) throw new Error(`${event.requestContext.http.method} ${event.rawPath}: ${response.statusCode} ${response.body}`);
    }
  } finally {
    await emulators.stop();
    await Promise.all([storeCache, functionCache].map((dir) => rm(dir, { recursive: true, force: true })));
  }
};
