import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { encodeInferRequest } from '../../functions/core/v2/codec.ts';
import { createInferenceHandler } from '../../functions/inference/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { seedDemoModels } from '../../infra/local/seed.ts';
import { sileroRequest } from '../helpers/silero.ts';

// The handler in process with real dependencies (S3 emulator, onnxruntime): the paths that the HTTP
// gateway would answer before the handler, and API Gateway's base64 bodies.
let emulators: Emulators;
let store: ModelRepository;

function event(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): APIGatewayProxyEventV2 {
  const binary = Buffer.isBuffer(body);
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: path,
    rawQueryString: '',
    headers,
    requestContext: { http: { method, path } },
    ...(body !== undefined ? { body: binary ? body.toString('base64') : body, isBase64Encoded: binary } : { isBase64Encoded: false }),
  } as unknown as APIGatewayProxyEventV2;
}

function handlerWith(preload: string[] = [], maxBodyBytes = 6 * 1024 * 1024) {
  const sessions = new ModelSessions({ store, intraOpThreads: 1 });
  const service = new InferenceService({ store, sessions, serviceVersion: 'test' });
  const { logger, metrics } = createObservability('ai-mass-test');
  logger.setLogLevel('SILENT');
  return { service, handler: createInferenceHandler({ service, maxBodyBytes, logger, metrics }), ready: service.preloadModels(preload) };
}

beforeAll(async () => {
  emulators = await startEmulators();
  const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  await s3.send(new CreateBucketCommand({ Bucket: 'handler-test' }));
  store = new ModelRepository({ s3, bucket: 'handler-test', cacheDir: '/tmp/ai-mass-handler-test' });
  await seedDemoModels(store);
});

afterAll(async () => {
  await emulators?.stop();
});

describe('inference handler in process', () => {
  it('reports not ready (503) while a pre-warmed model cannot load, and ready once all have', async () => {
    const broken = handlerWith(['silero-vad', 'no-such-model']);
    await broken.ready;
    const response = await broken.handler(event('GET', '/v2/health/ready'));
    expect([response.statusCode, JSON.parse(response.body!)]).toEqual([503, { error: "pre-warmed models failed to load: no-such-model (unknown model 'no-such-model')" }]);

    const good = handlerWith(['silero-vad:1']);
    await good.ready;
    const late = await good.handler(event('GET', '/v2/health/ready'));
    expect([late.statusCode, JSON.parse(late.body!)]).toEqual([200, { ready: true }]);
  });

  it('answers its own unknown routes and wrong methods with 404 and 405', async () => {
    const { handler } = handlerWith();
    const missing = await handler(event('GET', '/v2/nothing'));
    expect([missing.statusCode, JSON.parse(missing.body!)]).toEqual([404, { error: 'no route for GET /v2/nothing' }]);
    const wrong = await handler(event('GET', '/v2/models/mnist/infer'));
    expect([wrong.statusCode, JSON.parse(wrong.body!)]).toEqual([405, { error: 'method GET is not allowed on /v2/models/mnist/infer; use POST' }]);
  });

  it('decodes a base64 body that carries the binary extension, as API Gateway delivers it', async () => {
    const { handler } = handlerWith();
    const request = sileroRequest();
    const encoded = encodeInferRequest(
      [
        { name: 'input', datatype: 'FP32', shape: [1, 512], data: Float32Array.from(request.inputs[0]!.data as number[]) },
        { name: 'state', datatype: 'FP32', shape: [2, 1, 128], data: new Float32Array(256) },
        { name: 'sr', datatype: 'INT64', shape: [], data: new BigInt64Array([16000n]) },
      ],
      { binary: true },
    );
    const response = await handler(
      event('POST', '/v2/models/silero-vad/infer', encoded.body, { 'inference-header-content-length': String(encoded.jsonLength) }),
    );
    expect(response.statusCode).toBe(200);
    const body = JSON.parse(response.body!);
    expect(body.outputs[0].data[0]).toBeCloseTo(0.003501683473587036, 6);
  });

  it('refuses a body whose declared length is over the limit without reading it', async () => {
    const { handler } = handlerWith([], 1000);
    const response = await handler(event('POST', '/v2/models/mnist/infer', '{}', { 'content-length': '5000' }));
    expect([response.statusCode, JSON.parse(response.body!)]).toEqual([413, { error: 'request body of 5000 bytes exceeds the limit of 1000 bytes' }]);
  });

  it("reports a runtime failure on input the signature allows as the server's (500), with a clean message", async () => {
    const { handler } = handlerWith();
    const request = sileroRequest();
    // One audio sample: the signature allows it, silero's STFT padding does not, which nothing declared says.
    request.inputs[0] = { name: 'input', datatype: 'FP32', shape: [1, 1], data: [0] };
    const response = await handler(event('POST', '/v2/models/silero-vad/infer', JSON.stringify(request)));
    expect(response.statusCode).toBe(500);
    const message: string = JSON.parse(response.body!).error;
    expect(message).toMatch(/^model 'silero-vad' version '1' failed while running: Non-zero status code returned while running /);
    expect(message).not.toMatch(/\.cc|\.h:|onnxruntime::/);
  });

  it('answers no client mistake with a 5xx', async () => {
    const { handler } = handlerWith();
    const bodies = [
      '', 'null', '[]', '{}', '{"inputs":null}', '{"inputs":[{}]}', '{"inputs":[{"name":"input"}]}',
      '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,784],"data":[[[]]]}]}',
      '{"inputs":[{"name":"input","datatype":"FP32","shape":[1e9,1e9],"data":[]}]}',
      '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,784],"parameters":{"binary_data_size":-1}}]}',
      '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,784],"data":{}}],"outputs":[{"name":7}]}',
      '\u0000\u0001',
    ];
    const statuses = [];
    for (const body of bodies) {
      statuses.push((await handler(event('POST', '/v2/models/mnist/infer', body))).statusCode);
    }
    statuses.push((await handler(event('GET', '/v2/models/%E0%A4%A'))).statusCode);
    statuses.push((await handler(event('GET', '/v2/models/..%2F..'))).statusCode);
    expect(statuses).toEqual(new Array(bodies.length + 2).fill(400));
  });
});
