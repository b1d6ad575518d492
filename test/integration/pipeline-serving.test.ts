import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { DeleteObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { readFile } from 'node:fs/promises';
import type { HttpError } from '../../functions/core/platform/errors.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelSessions, servingSessionOptions } from '../../functions/core/sessions/model-sessions.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import ort, { type Tensor } from '../../functions/core/onnx/ort.ts';
import { mnistPreprocessModel, topKModel } from '../../functions/core/pipelines/demo.ts';
import { pushPipeline } from '../../functions/core/pipelines/registry.ts';
import { quantizeDynamic } from '../../functions/core/quantize/dynamic.ts';
import { decodeInferResponse, type RequestTensor } from '../../functions/core/v2/codec.ts';
import { createInferenceHandler } from '../../functions/inference/app.ts';
import { graph, model, node, tensorFromInt64, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { tritonclientRequest } from '../helpers/tritonclient.ts';

// Pipelines registered in the real registry (S3 and DynamoDB emulators) and served by the inference
// service with real onnxruntime sessions; every answer is compared with the step sessions run by hand.

const MNIST = 'fixtures/models/mnist/model.onnx';
let stack: RegistryStack;
let service: InferenceService;
let mnistBytes: Uint8Array;
const preBytes = mnistPreprocessModel({ scale: 1 / 255 });
const postBytes = topKModel(3, 10);

/** Two deterministic UINT8 images. */
const images = Uint8Array.from({ length: 2 * 784 }, (_, i) => (i * 37 + (i >> 5) * 11) % 256);
const imageInput = (data = images, rows = 2): RequestTensor => ({ name: 'image', datatype: 'UINT8', shape: [rows, 28, 28], data });

const CHAIN = {
  inputs: [{ name: 'image', datatype: 'UINT8', shape: [-1, 28, 28] }],
  outputs: [
    { name: 'labels', source: 'top3.labels' },
    { name: 'scores', source: 'top3.scores' },
  ],
  steps: [
    { id: 'pre', model: 'pre', version: '1', inputs: { image: '$request.image' } },
    { id: 'classify', model: 'mnist', version: '1', inputs: { input: 'pre.input' } },
    { id: 'top3', model: 'post', version: '1', inputs: { probabilities: 'classify.probabilities' } },
  ],
};

async function byHand(bytes: Uint8Array, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const session = await ort.InferenceSession.create(bytes, servingSessionOptions(1));
  try {
    return (await session.run(feeds)) as Record<string, Tensor>;
  } finally {
    await session.release();
  }
}

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

function errorOf(result: APIGatewayProxyStructuredResultV2): { status: number | undefined; error: string } {
  return { status: result.statusCode, error: (JSON.parse(result.body!) as { error: string }).error };
}

beforeAll(async () => {
  stack = await startRegistryStack('pipeline-serving');
  mnistBytes = await readFile(MNIST);
  await pushModel(stack.store, { name: 'mnist', version: '1', bytes: mnistBytes });
  await pushModel(stack.store, { name: 'mnist', version: '2', bytes: quantizeDynamic(mnistBytes).bytes, lineage: { sourceVersion: '1', method: 'int8-dynamic', options: {} } });
  await pushModel(stack.store, { name: 'pre', version: '1', bytes: preBytes });
  await pushModel(stack.store, { name: 'post', version: '1', bytes: postBytes });
  service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1, requireWarmup: true }), serviceVersion: 't' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('a 3-step chain (pre-processing, MNIST, top-3) served as one model', () => {
  it('writes step graphs that pass the ONNX checker', async () => {
    await checkOnnxModel(preBytes);
    await checkOnnxModel(postBytes);
    await checkOnnxModel(mnistPreprocessModel());
  });

  it('answers what the three sessions run by hand answer, with per-step timings on request', async () => {
    const { manifest } = await pushPipeline(stack.store, { name: 'chain', spec: CHAIN });
    expect(manifest).toMatchObject({
      format: 'pipeline',
      inputs: [{ name: 'image', datatype: 'UINT8', shape: [-1, 28, 28] }],
      outputs: [{ name: 'labels', datatype: 'INT64', shape: [-1, 3] }, { name: 'scores', datatype: 'FP32', shape: [-1, 3] }],
    });

    const { response } = await service.infer('chain', undefined, { inputs: [imageInput()], binaryDataOutput: false, parameters: { timings: true } });

    const pre = await byHand(preBytes, { image: new ort.Tensor('uint8', images, [2, 28, 28]) });
    const classify = await byHand(mnistBytes, { input: pre.input! });
    const top3 = await byHand(postBytes, { probabilities: classify.probabilities! });
    expect(response.model_version).toBe(manifest.version);
    expect(response.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([['labels', 'INT64', [2, 3]], ['scores', 'FP32', [2, 3]]]);
    expect(Array.from(response.outputs[0]!.data as BigInt64Array)).toEqual(Array.from(top3.labels!.data as BigInt64Array));
    expect(Array.from(response.outputs[1]!.data as Float32Array)).toEqual(Array.from(top3.scores!.data as Float32Array));
    const parameters = response.parameters!;
    expect(Object.keys(parameters).sort()).toEqual(['pipeline_ms', 'step_model.classify', 'step_model.pre', 'step_model.top3', 'step_ms.classify', 'step_ms.pre', 'step_ms.top3']);
    expect(parameters['step_model.classify']).toBe('mnist:1');
    expect(typeof parameters['step_ms.pre']).toBe('number');

    const plain = await service.infer('chain', undefined, { inputs: [imageInput()], binaryDataOutput: false });
    expect(plain.response.parameters).toBeUndefined();
  });

  it('is pre-warmed when the preload list names it: every step session loads at init', async () => {
    const sessions = new ModelSessions({ store: stack.store, intraOpThreads: 1, requireWarmup: true });
    const fresh = new InferenceService({ store: stack.store, sessions, serviceVersion: 't' });
    await fresh.preloadModels(['chain']);
    expect(fresh.isReady()).toBe(true);
    expect(['pre', 'mnist', 'post'].map((m) => sessions.loadedModel(m, '1')?.version)).toEqual(['1', '1', '1']);
  });

  it('serves metadata, readiness and a tritonclient-style binary request through the handler', async () => {
    const { logger, metrics } = createObservability('ai-mass-test');
    logger.setLogLevel('SILENT');
    const handler = createInferenceHandler({ service, maxBodyBytes: 6 * 1024 * 1024, logger, metrics });

    const metadata = await handler(event('GET', '/v2/models/chain'));
    expect(JSON.parse(metadata.body!)).toMatchObject({ name: 'chain', platform: 'ensemble', inputs: [{ name: 'image', datatype: 'UINT8', shape: [-1, 28, 28] }] });
    const ready = await handler(event('GET', '/v2/models/chain/ready'));
    expect(JSON.parse(ready.body!)).toMatchObject({ name: 'chain', ready: true });

    const { body, headers } = tritonclientRequest('image', [2, 28, 28], 'UINT8', images);
    const result = await handler(event('POST', '/v2/models/chain/infer', body, headers));
    expect(result.statusCode).toBe(200);
    const decoded = decodeInferResponse(Buffer.from(result.body!, 'base64'), Number(result.headers!['inference-header-content-length']));
    const json = await service.infer('chain', undefined, { inputs: [imageInput()], binaryDataOutput: false });
    expect(Array.from(decoded.outputs[0]!.data as BigInt64Array)).toEqual(Array.from(json.response.outputs[0]!.data as BigInt64Array));
    expect(Array.from(decoded.outputs[1]!.data as Float32Array)).toEqual(Array.from(json.response.outputs[1]!.data as Float32Array));

    const wrong = await handler(event('POST', '/v2/models/chain/infer', JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 28, 28], data: new Array(784).fill(0) }] })));
    expect(errorOf(wrong)).toEqual({ status: 400, error: 'input \'image\' has datatype FP32 but the pipeline expects UINT8' });
  });
});

describe('ensembles, switches and splitters', () => {
  it('averages the probabilities of the MNIST model and its int8 variant', async () => {
    await pushPipeline(stack.store, {
      name: 'mnist-mean',
      spec: {
        inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 784] }],
        outputs: [{ name: 'probabilities', source: 'vote.probabilities' }],
        steps: [{ id: 'vote', kind: 'ensemble', combine: 'mean', members: [{ model: 'mnist', version: '1' }, { model: 'mnist', version: '2' }], inputs: { input: '$request.input' } }],
      },
    });
    const pixels = Float32Array.from(images, (v) => v);
    const { response } = await service.infer('mnist-mean', undefined, { inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 784], data: pixels }], binaryDataOutput: false });

    const fp32 = (await byHand(mnistBytes, { input: new ort.Tensor('float32', pixels, [2, 784]) })).probabilities!.data as Float32Array;
    const stored = (await stack.store.getObjectBytes(keys.modelFile('mnist', '2')))!;
    const int8 = (await byHand(stored, { input: new ort.Tensor('float32', pixels, [2, 784]) })).probabilities!.data as Float32Array;
    const expected = Array.from(fp32, (v, i) => Math.fround((v + int8[i]!) / 2));
    expect(response.outputs[0]!.shape).toEqual([2, 10]);
    expect(Array.from(response.outputs[0]!.data as Float32Array)).toEqual(expected);
  });

  it('votes, weighs and concatenates member outputs', async () => {
    await pushModel(stack.store, { name: 'scale2', version: '1', bytes: scaleModel(2) });
    await pushModel(stack.store, { name: 'scale3', version: '1', bytes: scaleModel(3) });
    await pushModel(stack.store, { name: 'scaleneg', version: '1', bytes: scaleModel(-1) });
    const members = [{ model: 'scale2', version: '1' }, { model: 'scale3', version: '1' }, { model: 'scaleneg', version: '1' }];
    const spec = (combine: string, weighted = false) => ({
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', source: 'e.y' }],
      steps: [{ id: 'e', kind: 'ensemble', combine, members: weighted ? members.map((m, i) => ({ ...m, weight: i + 1 })) : members, inputs: { x: '$request.x' } }],
    });
    await pushPipeline(stack.store, { name: 'vote', spec: spec('majority_vote') });
    await pushPipeline(stack.store, { name: 'weighted', spec: spec('weighted_mean', true) });
    await pushPipeline(stack.store, { name: 'concat', spec: spec('concat') });
    const x = { name: 'x', datatype: 'FP32' as const, shape: [2, 2], data: Float32Array.from([1, 4, 5, 2]) };

    // Rows' argmax: scale2 -> [1, 0], scale3 -> [1, 0], scaleneg -> [0, 1]; two of three win.
    const vote = (await service.infer('vote', undefined, { inputs: [x], binaryDataOutput: false })).response.outputs[0]!;
    expect([vote.datatype, vote.shape, Array.from(vote.data as BigInt64Array)]).toEqual(['INT64', [2], [1n, 0n]]);
    // (1*2 + 2*3 + 3*-1) / 6 = 5/6 of x.
    const weighted = (await service.infer('weighted', undefined, { inputs: [x], binaryDataOutput: false })).response.outputs[0]!;
    expect(Array.from(weighted.data as Float32Array)).toEqual([1, 4, 5, 2].map((v) => Math.fround((v * 5) / 6)));
    const concat = (await service.infer('concat', undefined, { inputs: [x], binaryDataOutput: false })).response.outputs[0]!;
    expect([concat.shape, Array.from(concat.data as Float32Array)]).toEqual([[2, 6], [2, 8, 3, 12, -1, -4, 10, 4, 15, 6, -5, -2]]);
  });

  it('switches on a tensor condition', async () => {
    await pushPipeline(stack.store, {
      name: 'switch',
      spec: {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
        outputs: [{ name: 'y', source: 'route.y' }],
        steps: [{
          id: 'route',
          kind: 'switch',
          on: '$request.x',
          reduce: 'argmax',
          cases: [{ op: 'eq', value: 0, model: 'scale2', version: '1' }],
          default: { model: 'scale3', version: '1' },
          inputs: { x: '$request.x' },
        }],
      },
    });
    const run = (data: number[]) => service.infer('switch', undefined, { inputs: [{ name: 'x', datatype: 'FP32', shape: [data.length / 2, 2], data: Float32Array.from(data) }], binaryDataOutput: false, parameters: { timings: true } });
    const first = (await run([5, 1])).response;
    expect([Array.from(first.outputs[0]!.data as Float32Array), first.parameters!['step_model.route']]).toEqual([[10, 2], 'scale2:1']);
    const second = (await run([1, 5])).response;
    expect([Array.from(second.outputs[0]!.data as Float32Array), second.parameters!['step_model.route']]).toEqual([[3, 15], 'scale3:1']);
    await expect(run([5, 1, 1, 5])).rejects.toMatchObject({
      statusCode: 400,
      message: "pipeline 'switch' version '1' step 'route': the rows of '$request.x' choose different branches (row 0 case 0, row 1 default): send them in separate requests",
    });
  });

  it('splits 1,000 requests by weight, and keeps a route key on one branch', async () => {
    await pushPipeline(stack.store, {
      name: 'split',
      spec: {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
        outputs: [{ name: 'y', source: 'ab.y' }],
        steps: [{ id: 'ab', kind: 'splitter', branches: [{ model: 'scale2', version: '1', weight: 70 }, { model: 'scale3', version: '1', weight: 30 }], inputs: { x: '$request.x' } }],
      },
    });
    const x = { name: 'x', datatype: 'FP32' as const, shape: [1, 2], data: Float32Array.from([1, 1]) };
    let toScale2 = 0;
    for (let i = 0; i < 1000; i += 1) {
      const { response } = await service.infer('split', undefined, { inputs: [x], binaryDataOutput: false });
      if ((response.outputs[0]!.data as Float32Array)[0] === 2) toScale2 += 1;
    }
    // Binomial(1000, 0.7): standard deviation 14.5; 5 of them either side.
    expect(toScale2).toBeGreaterThan(627);
    expect(toScale2).toBeLessThan(773);
    const sticky = new Set<number>();
    for (let i = 0; i < 20; i += 1) sticky.add((await service.infer('split', undefined, { inputs: [x], binaryDataOutput: false }, 'caller-42')).response.outputs[0]!.data[0] as number);
    expect(sticky.size).toBe(1);
  });
});

describe('failures name their step', () => {
  it('answers 503 naming the step when a step model cannot be served', async () => {
    await pushModel(stack.store, { name: 'fragile', version: '1', bytes: scaleModel(4) });
    await pushPipeline(stack.store, {
      name: 'uses-fragile',
      spec: {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
        outputs: [{ name: 'y', source: 'b.y' }],
        steps: [
          { id: 'a', model: 'scale2', version: '1', inputs: { x: '$request.x' } },
          { id: 'b', model: 'fragile', version: '1', inputs: { x: 'a.y' } },
        ],
      },
    });
    const s3 = stack.s3;
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: stack.store.bucket, Prefix: keys.versionPrefix('fragile', '1') }));
    for (const o of listed.Contents ?? []) {
      if (!o.Key!.endsWith('manifest.json')) await s3.send(new DeleteObjectCommand({ Bucket: stack.store.bucket, Key: o.Key! }));
    }
    const fresh = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 't' });
    const error = (await fresh.infer('uses-fragile', undefined, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([1, 2]) }], binaryDataOutput: false }).catch((e: unknown) => e)) as HttpError;
    expect(error.statusCode).toBe(503);
    expect(error.message).toMatch(/^pipeline 'uses-fragile' version '1' step 'b' cannot be served: /);
    // Named in the preload list, it leaves the environment not ready, saying which step.
    const preloading = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 't' });
    await preloading.preloadModels(['uses-fragile']);
    expect(preloading.isReady()).toBe(false);
    expect(preloading.notReadyReason()).toMatch(/^pre-warmed models failed to load: uses-fragile \(pipeline 'uses-fragile' version '1' step 'b' cannot be served: /);
  });

  it('answers 500 naming the step when a step fails while running', async () => {
    // Reshape to [-1, 4]: two rows of x fit, one row does not (a failure inside the run, not an input check).
    const reshape = encodeModel(model({
      graph: graph({
        name: 'reshape4',
        nodes: [node('Reshape', ['x', 'to'], ['y'])],
        inputs: [valueInfo('x', 'float32', ['n', 2])],
        outputs: [valueInfo('y', 'float32', ['m', 4])],
        initializers: [tensorFromInt64('to', [2], [-1, 4])],
      }),
      opset: 17,
      irVersion: 8,
    }));
    await pushModel(stack.store, { name: 'reshape4', version: '1', bytes: reshape, warmup: [{ name: 'x', datatype: 'FP32', shape: [2, 2], data: [0, 0, 0, 0] }] });
    await pushPipeline(stack.store, {
      name: 'breaks',
      spec: {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
        outputs: [{ name: 'y', source: 'flat.y' }],
        steps: [
          { id: 'double', model: 'scale2', version: '1', inputs: { x: '$request.x' } },
          { id: 'flat', model: 'reshape4', version: '1', inputs: { x: 'double.y' } },
        ],
      },
    });
    const ok = await service.infer('breaks', undefined, { inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }], binaryDataOutput: false });
    expect(Array.from(ok.response.outputs[0]!.data as Float32Array)).toEqual([2, 4, 6, 8]);
    const error = (await service.infer('breaks', undefined, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([1, 2]) }], binaryDataOutput: false }).catch((e: unknown) => e)) as HttpError;
    expect(error.statusCode).toBe(500);
    expect(error.message).toMatch(/^pipeline 'breaks' version '1' step 'flat' failed: model 'reshape4' version '1' failed while running: .*Reshape/);
  });
});
