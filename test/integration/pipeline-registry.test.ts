import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { createQuantizeRuntime } from '../../functions/core/quantize/runtime.ts';
import { quantizeRequestSchema } from '../../functions/core/quantize/options.ts';
import { startQuantization } from '../../functions/core/quantize/start.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { pushPipeline } from '../../functions/core/pipelines/registry.ts';
import { rejectionKey } from '../../functions/core/registry/register-upload.ts';
import { setRoutes } from '../../functions/core/registry/rollout.ts';
import { createRegisterHandler } from '../../functions/register/app.ts';
import { createRegistryHandler } from '../../functions/registry/app.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// Registration of pipelines through the registry API and the upload path, against the emulators:
// refusals name the step and the tensor and write nothing; versions, aliases and canaries work as
// they do for models.

let stack: RegistryStack;
let registry: (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;

/** y = argmax-free cast: x FP32 [n, 2] -> y INT64 [n, 2]. */
const castModel = encodeModel(model({
  graph: graph({ name: 'cast', nodes: [node('Cast', ['x'], ['y'], { to: { type: 'int', value: 7 } })], inputs: [valueInfo('x', 'float32', ['n', 2])], outputs: [valueInfo('y', 'int64', ['n', 2])] }),
  opset: 17,
  irVersion: 8,
}));

const chain = (second: { model: string; version?: string }, from = 'a.y') => ({
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
  outputs: [{ name: 'y', source: 'b.y' }],
  steps: [
    { id: 'a', model: 'double', version: '1', inputs: { x: '$request.x' } },
    { id: 'b', ...second, inputs: { x: from } },
  ],
});

const body = (result: APIGatewayProxyStructuredResultV2) => JSON.parse(result.body!) as Record<string, unknown>;

beforeAll(async () => {
  stack = await startRegistryStack('pipeline-registry');
  await pushModel(stack.store, { name: 'double', version: '1', bytes: scaleModel(2) });
  await pushModel(stack.store, { name: 'triple', version: '1', bytes: scaleModel(3) });
  await pushModel(stack.store, { name: 'to-int', version: '1', bytes: castModel });
  const { logger } = createObservability('ai-mass-test');
  logger.setLogLevel('SILENT');
  const handler = createRegistryHandler({ store: stack.store, logger, gate: async () => undefined });
  registry = (event: APIGatewayProxyEventV2) => handler(event, {} as Context);
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('PUT /v2/pipelines/{name}', () => {
  it.each([
    ['a cycle', { ...chain({ model: 'triple', version: '1' }), steps: [{ id: 'a', model: 'double', version: '1', inputs: { x: 'b.y' } }, { id: 'b', model: 'triple', version: '1', inputs: { x: 'a.y' } }] }, "invalid pipeline: the graph has a cycle through steps 'a', 'b'"],
    ['a source step that does not exist', chain({ model: 'double', version: '1' }, 'c.y'), "invalid pipeline: step 'b': input 'x' reads 'c.y' from step 'c', which does not exist"],
    ['an unknown step model', chain({ model: 'ghost', version: '1' }), "invalid pipeline: step 'b': model 'ghost' version '1': does not exist (no registered version)"],
    ['an unknown version', chain({ model: 'triple', version: '7' }), "invalid pipeline: step 'b': model 'triple' version '7': does not exist or is retired"],
    ['an unknown alias', chain({ model: 'triple', version: 'prod' }), "invalid pipeline: step 'b': model 'triple' version 'prod': has no version or alias 'prod'"],
    ['a missing output', chain({ model: 'triple', version: '1' }, 'a.z'), "invalid pipeline: step 'b': input 'x' reads 'a.z', but step 'a' has no output 'z' (it has y)"],
    ['a bad field', { ...chain({ model: 'triple', version: '1' }), steps: [{ id: 'a', model: 'double', version: '1', inputs: { x: 'nowhere' } }] }, 'invalid pipeline (step "a") at steps.0.inputs.x: must be $request.<input> or <step>.<output>'],
  ])('refuses %s with a 400 naming the step and tensor, and registers nothing', async (_what, spec, message) => {
    const result = await registry(apiEvent('PUT', '/v2/pipelines/refused', spec));
    expect([result.statusCode, body(result).error]).toEqual([400, message]);
    expect(await stack.store.listVersions('refused')).toEqual([]);
  });

  it('refuses a connection whose datatypes differ, naming both ends', async () => {
    const spec = {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', source: 'b.y' }],
      steps: [
        { id: 'a', model: 'to-int', version: '1', inputs: { x: '$request.x' } },
        { id: 'b', model: 'triple', version: '1', inputs: { x: 'a.y' } },
      ],
    };
    const result = await registry(apiEvent('PUT', '/v2/pipelines/refused', spec));
    expect([result.statusCode, body(result).error]).toEqual([400, "invalid pipeline: step 'b': input 'x' of model 'triple' version '1' is FP32, but 'a.y' is INT64"]);
  });

  it('refuses shapes that contradict each other (a dynamic dimension fits any size)', async () => {
    const spec = { ...chain({ model: 'triple', version: '1' }), inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3] }] };
    const result = await registry(apiEvent('PUT', '/v2/pipelines/refused', spec));
    expect([result.statusCode, body(result).error]).toEqual([400, "invalid pipeline: step 'a': input 'x' of model 'double' version '1' is FP32 [-1,2], but '$request.x' is FP32 [-1,3] (dimension 1 is 3 against 2)"]);
    const fixed = await registry(apiEvent('PUT', '/v2/pipelines/fixed', { ...chain({ model: 'triple', version: '1' }), inputs: [{ name: 'x', datatype: 'FP32', shape: [4, 2] }] }));
    expect(fixed.statusCode).toBe(201);
  });

  it('registers a version (201), shows it, and serves it at /v2/models/{name}', async () => {
    const created = await registry(apiEvent('PUT', '/v2/pipelines/six', chain({ model: 'triple', version: '1' })));
    expect([created.statusCode, body(created)]).toMatchObject([201, { name: 'six', version: '1', resolved: { a: [{ model: 'double', version: '1' }], b: [{ model: 'triple', version: '1' }] } }]);
    const shown = await registry(apiEvent('GET', '/v2/pipelines/six'));
    expect(body(shown)).toMatchObject({ name: 'six', version: '1', versions: ['1'], spec: { steps: [{ id: 'a', kind: 'model' }, { id: 'b', kind: 'model' }] } });
    expect((await registry(apiEvent('GET', '/v2/pipelines/six/versions/2'))).statusCode).toBe(404);
    expect((await registry(apiEvent('DELETE', '/v2/pipelines/six'))).statusCode).toBe(405);
    const events = await stack.receiveEvents();
    expect(events.filter((e) => e.model === 'six')).toMatchObject([{ type: 'ModelVersionRegistered', model: 'six', version: '1' }]);

    const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 't' });
    const { response } = await service.infer('six', undefined, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([1, -2]) }], binaryDataOutput: false });
    expect(Array.from(response.outputs[0]!.data as Float32Array)).toEqual([6, -12]);
  });
});

describe('pipelines among model versions', () => {
  it('refuses to quantize a pipeline version (422), saying what to quantize instead', async () => {
    await pushPipeline(stack.store, { name: 'not-quantized', spec: chain({ model: 'triple', version: '1' }) });
    const deps = {
      store: stack.store,
      runtime: createQuantizeRuntime({ store: stack.store, dynamo: createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint }), sqs: stack.sqs, table: stack.store.registry!.tableName, stepQueue: 'pipeline-registry-quantize', visibilitySeconds: 960 }).runtime,
      workerMemoryMiB: 3008,
    };
    await expect(startQuantization(deps, 'not-quantized', '1', quantizeRequestSchema.parse({ method: 'int8-dynamic' }))).rejects.toMatchObject({
      statusCode: 422,
      message: `'not-quantized' version '1' is a pipeline; quantize its step models, or its fused version ("fuse": true)`,
    });
  });

  it('follows an alias a step names, and stands behind a canary like a model version', async () => {
    await pushModel(stack.store, { name: 'scaler', version: '1', bytes: scaleModel(10) });
    await pushModel(stack.store, { name: 'scaler', version: '2', bytes: scaleModel(100) });
    await setRoutes({ store: stack.store }, { model: 'scaler', alias: 'live', routes: [{ version: '1', weight: 100 }], revision: 0 });
    await pushPipeline(stack.store, { name: 'follows', spec: chain({ model: 'scaler', version: 'live' }) });
    const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 't', aliasTtlMs: 0 });
    const x = { name: 'x', datatype: 'FP32' as const, shape: [1, 2], data: Float32Array.from([1, 1]) };
    const run = async (name: string, key?: string) => Array.from((await service.infer(name, undefined, { inputs: [x], binaryDataOutput: false }, key)).response.outputs[0]!.data as Float32Array);
    expect(await run('follows')).toEqual([20, 20]);
    await setRoutes({ store: stack.store }, { model: 'scaler', alias: 'live', routes: [{ version: '2', weight: 100 }], revision: 1 });
    expect(await run('follows')).toEqual([200, 200]);

    // `ab`: version 1 a model (x * 2), version 2 a pipeline (x * 2 * 3); prod splits 50/50 by route key.
    await pushModel(stack.store, { name: 'ab', version: '1', bytes: scaleModel(2) });
    const { manifest } = await pushPipeline(stack.store, { name: 'ab', spec: chain({ model: 'triple', version: '1' }) });
    expect(manifest.version).toBe('2');
    await setRoutes({ store: stack.store }, { model: 'ab', alias: 'prod', routes: [{ version: '1', weight: 50 }, { version: '2', weight: 50 }], revision: 0 });
    const answers = new Map<number, Set<string>>();
    for (let i = 0; i < 40; i += 1) {
      const key = `user-${i}`;
      const first = (await run('ab', key))[0]!;
      const again = (await run('ab', key))[0]!;
      expect(again).toBe(first);
      answers.set(first, (answers.get(first) ?? new Set()).add(key));
    }
    expect([...answers.keys()].sort()).toEqual([2, 6]);
  });
});

describe('incoming/<name>/pipeline.json', () => {
  it('registers an uploaded spec, and leaves a rejection record for a refused one', async () => {
    const { logger, metrics } = createObservability('ai-mass-test');
    logger.setLogLevel('SILENT');
    const register = createRegisterHandler({ store: stack.store, logger, metrics, maxModelBytes: 1024 * 1024 });
    const s3 = stack.s3;
    const upload = async (name: string, spec: unknown) => {
      const key = `incoming/${name}/pipeline.json`;
      await s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: key, Body: JSON.stringify(spec) }));
      return { key, outcomes: await register({ Records: [{ s3: { bucket: { name: stack.store.bucket }, object: { key, size: 1 } } }] } as never) };
    };
    const good = await upload('uploaded', chain({ model: 'triple', version: '1' }));
    expect(good.outcomes).toMatchObject([{ status: 'registered', manifest: { name: 'uploaded', version: '1', format: 'pipeline' } }]);
    expect(await stack.store.getObjectBytes(good.key)).toBeUndefined();
    expect(await stack.store.getObjectBytes(keys.pipelineFile('uploaded', '1'))).toBeDefined();

    const bad = await upload('uploaded-bad', chain({ model: 'ghost', version: '1' }));
    const reason = "invalid pipeline: step 'b': model 'ghost' version '1': does not exist (no registered version)";
    expect(bad.outcomes).toMatchObject([{ status: 'rejected', reason }]);
    expect(JSON.parse(Buffer.from((await stack.store.getObjectBytes(rejectionKey(bad.key)))!).toString('utf8'))).toMatchObject({ reason });
    expect(await stack.store.listVersions('uploaded-bad')).toEqual([]);
  });
});
