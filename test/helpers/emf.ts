import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { vi } from 'vitest';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { parseEmfLine, type EmfSample } from '../../functions/core/monitor/metrics-source.ts';
import { startEmulators } from '../../infra/local/emulators.ts';
import { gatherModel } from './monitor-models.ts';

const event = (method: string, path: string, body?: unknown): APIGatewayProxyEventV2 =>
  ({ version: '2.0', routeKey: '$default', rawPath: path, rawQueryString: '', headers: {}, requestContext: { http: { method, path } }, isBase64Encoded: false, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }) as unknown as APIGatewayProxyEventV2;

/**
 * The EMF metrics the inference function's own Lambda entry (functions/inference/handler.ts, with
 * its middleware) prints on a cold start, an answered request, a runtime failure and a capture that
 * cannot read its config: parsed from Powertools' output as CloudWatch would parse it.
 */
export async function inferenceHandlerEmf(functionName: string): Promise<EmfSample[]> {
  const emulators = await startEmulators();
  const saved = { ...process.env };
  try {
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    await s3.send(new CreateBucketCommand({ Bucket: 'emf' }));
    const work = await mkdtemp(join(tmpdir(), 'emf-'));
    const store = new ModelRepository({ s3, bucket: 'emf', cacheDir: join(work, 'seed') });
    await pushModel(store, { name: 'mnist', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
    await pushModel(store, { name: 'gather', version: '1', bytes: gatherModel() });
    // A monitoring config that cannot be read: CaptureFailures (the request is answered all the same).
    await store.putObjectBytes('models/mnist/monitoring.json', Buffer.from('{"capture": '));
    Object.assign(process.env, {
      MODEL_BUCKET: 'emf',
      AWS_ENDPOINT_URL: emulators.awsEndpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_EC2_METADATA_DISABLED: 'true',
      MODEL_CACHE_DIR: join(work, 'cache'),
      PRELOAD_MODELS: '',
      CAPTURE_BATCH_RECORDS: '1',
      POWERTOOLS_SERVICE_NAME: 'ai-mass',
      POWERTOOLS_METRICS_NAMESPACE: 'AIMass',
      POWERTOOLS_LOG_LEVEL: 'SILENT',
      // Powertools prints through the global console in dev mode (metrics kept on), read here.
      POWERTOOLS_DEV: 'true',
      POWERTOOLS_METRICS_DISABLED: 'false',
      // As Lambda sets it for an on-demand environment: Powertools counts ColdStart only then.
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    });
    const lines: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      vi.resetModules();
      const module = (await import('../../functions/inference/handler.ts')) as { handler: (e: APIGatewayProxyEventV2, c: Context) => Promise<{ statusCode?: number }>; ready: Promise<void> };
      await module.ready;
      const context = { functionName, functionVersion: '$LATEST', awsRequestId: 'r', getRemainingTimeInMillis: () => 28_000 } as unknown as Context;
      const statuses = [
        (await module.handler(event('GET', '/v2/health/live'), context)).statusCode,
        (await module.handler(event('POST', '/v2/models/mnist/infer', { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from({ length: 784 }, () => 0.5) }] }), context)).statusCode,
        (await module.handler(event('POST', '/v2/models/gather/infer', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [5, 5] }] }), context)).statusCode,
      ];
      if (statuses.join() !== '200,200,500') throw new Error(`unexpected answers ${statuses.join()}`);
      // Capture reads its config after the answer: wait for its failure to be counted.
      for (let i = 0; i < 100 && !lines.some((l) => l.includes('"CaptureFailures"')); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      spy.mockRestore();
    }
    return lines.flatMap(parseEmfLine);
  } finally {
    for (const k of Object.keys(process.env)) delete process.env[k];
    Object.assign(process.env, saved);
    await emulators.stop();
  }
}
