import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { readFile } from 'node:fs/promises';
import type { HttpError } from '../../functions/core/platform/errors.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { createInferenceHandler } from '../../functions/inference/app.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import type { ModelManifest } from '../../functions/core/artifacts/manifest.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { decodeModel, encodeModel, onnx, type ModelProtoInit, type ValueInfoProtoInit } from '../../functions/core/onnx/model-proto.ts';
import ort, { type Tensor } from '../../functions/core/onnx/ort.ts';
import { registerUpload, rejectionKey } from '../../functions/core/registry/register-upload.ts';
import type { RequestTensor } from '../../functions/core/v2/codec.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// Models that onnxruntime runs but that an opset window or its tensor-only boundary used to refuse:
// each is registered through the upload path, inferred through the service, and compared with
// onnxruntime running the uploaded graph directly.

const DataType = onnx.TensorProto.DataType;
let stack: RegistryStack;
let service: InferenceService;

beforeAll(async () => {
  stack = await startRegistryStack('serve-runtime');
  service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 't' });
});

afterAll(async () => {
  await stack?.stop();
});

async function register(name: string, bytes: Uint8Array): Promise<ModelManifest> {
  const key = `incoming/${name}/model.onnx`;
  await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: key, Body: bytes }));
  const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key });
  if (outcome.status !== 'registered') throw new Error(`${name} was not registered: ${JSON.stringify(outcome)}`);
  return outcome.manifest;
}

async function refusal(name: string, bytes: Uint8Array): Promise<string> {
  const key = `incoming/${name}/model.onnx`;
  await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: key, Body: bytes }));
  const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key });
  expect(outcome.status).toBe('rejected');
  expect(await stack.store.listVersions(name)).toEqual([]);
  const record = JSON.parse(Buffer.from((await stack.store.getObjectBytes(rejectionKey(key)))!).toString('utf8')) as { reason: string };
  return record.reason;
}

async function storedModel(manifest: ModelManifest): Promise<Uint8Array> {
  return (await stack.store.getObjectBytes(keys.modelFile(manifest.name, manifest.version)))!;
}

async function infer(name: string, inputs: RequestTensor[]) {
  const { response } = await service.infer(name, '1', { inputs, binaryDataOutput: false });
  return Object.fromEntries(response.outputs.map((o) => [o.name, { datatype: o.datatype, shape: o.shape, data: Array.from(o.data as ArrayLike<number | bigint | string>) }]));
}

/** onnxruntime on the uploaded bytes themselves, fetching only the named outputs. */
async function runDirectly(bytes: Uint8Array, feeds: Record<string, Tensor>, fetches: string[]) {
  const session = await ort.InferenceSession.create(bytes, { logSeverityLevel: 4 });
  try {
    const results = await session.run(feeds, fetches);
    return Object.fromEntries(fetches.map((name) => [name, { shape: [...results[name]!.dims], data: Array.from(results[name]!.data as ArrayLike<number | bigint>) }]));
  } finally {
    await session.release();
  }
}

function float32(values: number[], shape: number[]): RequestTensor {
  return { name: 'x', datatype: 'FP32', shape, data: Float32Array.from(values) };
}

const typed = (name: string, type: ValueInfoProtoInit['type']): ValueInfoProtoInit => ({ name, type });
const tensorType = (elemType: number, dims: (number | string)[]) => ({
  tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } },
});

function encode(m: ModelProtoInit): Uint8Array {
  return encodeModel(m);
}

describe('models at the opsets onnxruntime still runs', () => {
  it('serves an opset-1 model (IR 3, weights listed as inputs) with the outputs onnxruntime gives the upload', async () => {
    const bytes = encode(
      model({
        graph: graph({
          name: 'opset1',
          nodes: [node('MatMul', ['x', 'w'], ['m']), node('Softmax', ['m'], ['y'])],
          inputs: [valueInfo('x', 'float32', [1, 3]), valueInfo('w', 'float32', [3, 2])],
          outputs: [valueInfo('y', 'float32', [1, 2])],
          initializers: [tensorFromFloat32('w', [3, 2], [0.5, -1, 2, 0.25, -0.75, 1.5])],
        }),
        opset: 1,
        irVersion: 3,
      }),
    );
    const manifest = await register('opset-one', bytes);
    expect([manifest.opset, manifest.irVersion]).toEqual([1, 3]);
    expect(manifest.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [1, 3] }]);
    // Nothing to map: the stored file is the upload, byte for byte.
    expect(Buffer.from(await storedModel(manifest)).equals(Buffer.from(bytes))).toBe(true);

    const x = [0.3, -1.2, 2.5];
    const served = await infer('opset-one', [float32(x, [1, 3])]);
    const direct = await runDirectly(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [1, 3]) }, ['y']);
    expect(served).toEqual({ y: { datatype: 'FP32', ...direct.y } });
  });

  it('serves an opset-6 model with the outputs onnxruntime gives the upload', async () => {
    const bytes = encode(
      model({
        graph: graph({
          name: 'opset6',
          nodes: [node('Relu', ['x'], ['r']), node('Sigmoid', ['r'], ['s']), node('Sum', ['s', 'x'], ['y'])],
          inputs: [valueInfo('x', 'float32', ['n', 2])],
          outputs: [valueInfo('y', 'float32', ['n', 2])],
        }),
        opset: 6,
        irVersion: 3,
      }),
    );
    const manifest = await register('opset-six', bytes);
    expect(manifest.opset).toBe(6);
    const x = [-2, 0.5, 3, -0.125];
    const served = await infer('opset-six', [float32(x, [2, 2])]);
    const direct = await runDirectly(bytes, { x: new ort.Tensor('float32', Float32Array.from(x), [2, 2]) }, ['y']);
    expect(served).toEqual({ y: { datatype: 'FP32', ...direct.y } });
  });

  it('refuses an operator older than onnxruntime\'s kernels with what to do, not with a source path', async () => {
    const bytes = encode(
      model({
        graph: graph({ name: 'add6', nodes: [node('Add', ['x', 'x'], ['y'])], inputs: [valueInfo('x', 'float32', [2])], outputs: [valueInfo('y', 'float32', [2])] }),
        opset: 6,
        irVersion: 3,
      }),
    );
    expect(await refusal('add-six', bytes)).toBe(
      "onnxruntime cannot load the model: Could not find an implementation for Add(6) node with name ''. This onnxruntime has no kernel for Add at opset 6: convert the model to a newer opset (e.g. onnx.version_converter.convert_version(model, 13)) and upload again",
    );
  });

  it('refuses a model whose kernel fails to initialise with onnxruntime\'s reason and no source path', async () => {
    // A GRU with one activation where it needs two: onnxruntime's message starts with deep_cpu_gru.h's path.
    const gru = node('GRU', ['x', 'w', 'r'], ['y'], { hidden_size: attr.int(1) });
    gru.attribute!.push({ name: 'activations', type: onnx.AttributeProto.AttributeType.STRINGS, strings: [Buffer.from('Sigmoid')] });
    const bytes = encode(
      model({
        graph: graph({
          name: 'gru',
          nodes: [gru],
          inputs: [valueInfo('x', 'float32', [1, 1, 1])],
          outputs: [valueInfo('y', 'float32', [1, 1, 1, 1])],
          initializers: [tensorFromFloat32('w', [1, 3, 1], [1, 1, 1]), tensorFromFloat32('r', [1, 3, 1], [1, 1, 1])],
        }),
        opset: 13,
        irVersion: 8,
      }),
    );
    const raw = await ort.InferenceSession.create(bytes).catch((error: unknown) => (error as Error).message);
    expect(raw).toContain('deep_cpu_gru.h:');
    expect(await refusal('bad-gru', bytes)).toBe(
      'onnxruntime cannot load the model: Exception during initialization: activation_func_names.size() == static_cast<size_t>(num_directions_) * 2 was false.',
    );
  });
});

describe('inputs and outputs that are not tensors', () => {
  it('serves a sequence output as its tensors stacked on a new first axis, equal to what onnxruntime puts in the sequence', async () => {
    const original: ModelProtoInit = model({
      graph: graph({
        name: 'seq_out',
        nodes: [node('Relu', ['x'], ['r']), node('Neg', ['x'], ['n']), node('SequenceConstruct', ['x', 'r', 'n'], ['parts'])],
        inputs: [valueInfo('x', 'float32', [2, 3])],
        outputs: [typed('parts', { sequenceType: { elemType: tensorType(DataType.FLOAT, [2, 3]) } })],
      }),
      opset: 13,
      irVersion: 8,
    });
    const bytes = encode(original);
    const manifest = await register('seq-out', bytes);
    expect(manifest.outputs).toEqual([
      { name: 'parts', datatype: 'FP32', shape: [-1, 2, 3], parameters: { onnx_type: 'seq(tensor(float))', mapping: 'stacked-sequence' } },
    ]);
    await checkOnnxModel(await storedModel(manifest));

    const x = [1.5, -2, 0, -0.25, 3, -7];
    const served = await infer('seq-out', [float32(x, [2, 3])]);
    // onnxruntime-node cannot return the sequence itself: read its elements with SequenceAt.
    const probe = decodeModel(bytes);
    for (const index of [0, 1, 2]) {
      const at = `at${index}`;
      probe.graph!.node!.push(onnx.NodeProto.create(node('SequenceAt', ['parts', `i${index}`], [at])));
      probe.graph!.initializer!.push(onnx.TensorProto.create({ name: `i${index}`, dataType: DataType.INT64, dims: [], int64Data: [index] }));
      probe.graph!.output!.push(onnx.ValueInfoProto.create(valueInfo(at, 'float32', [2, 3])));
    }
    const direct = await runDirectly(encodeModel(probe), { x: new ort.Tensor('float32', Float32Array.from(x), [2, 3]) }, ['at0', 'at1', 'at2']);
    expect(served).toEqual({ parts: { datatype: 'FP32', shape: [3, 2, 3], data: [...direct.at0!.data, ...direct.at1!.data, ...direct.at2!.data] } });
  });

  it('serves a sequence input as one tensor split on its first axis', async () => {
    const bytes = encode(
      model({
        graph: graph({
          name: 'seq_in',
          nodes: [node('SequenceLength', ['rows'], ['count']), node('ConcatFromSequence', ['rows'], ['joined'], { axis: attr.int(0) })],
          inputs: [typed('rows', { sequenceType: { elemType: tensorType(DataType.FLOAT, [2]) } })],
          outputs: [valueInfo('count', 'int64', []), valueInfo('joined', 'float32', ['m'])],
        }),
        opset: 13,
        irVersion: 8,
      }),
    );
    const manifest = await register('seq-in', bytes);
    expect(manifest.inputs).toEqual([{ name: 'rows', datatype: 'FP32', shape: [-1, 2], parameters: { onnx_type: 'seq(tensor(float))', mapping: 'stacked-sequence' } }]);
    await checkOnnxModel(await storedModel(manifest));
    const served = await infer('seq-in', [{ name: 'rows', datatype: 'FP32', shape: [3, 2], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }]);
    // Three rows of two: a sequence of three tensors, concatenated back in order.
    expect(served).toEqual({
      count: { datatype: 'INT64', shape: [], data: [3n] },
      joined: { datatype: 'FP32', shape: [6], data: [1, 2, 3, 4, 5, 6] },
    });
  });

  it('serves an optional input as a required tensor, and an optional output as its tensor, as onnxruntime computes them', async () => {
    const optionalFloat2 = { optionalType: { elemType: tensorType(DataType.FLOAT, [2]) } };
    const present = graph({ name: 'present', nodes: [node('OptionalGetElement', ['bias'], ['b'])], inputs: [], outputs: [valueInfo('b', 'float32', [2])] });
    const absent = graph({ name: 'absent', nodes: [node('Constant', [], ['z'], { value: attr.tensor(tensorFromFloat32('', [2], [0, 0])) })], inputs: [], outputs: [valueInfo('z', 'float32', [2])] });
    const bytes = encode(
      model({
        graph: graph({
          name: 'optional_io',
          nodes: [
            node('OptionalHasElement', ['bias'], ['has']),
            node('If', ['has'], ['b0'], { then_branch: attr.graph(present), else_branch: attr.graph(absent) }),
            node('Add', ['x', 'b0'], ['sum']),
            node('Optional', ['sum'], ['maybe']),
          ],
          inputs: [valueInfo('x', 'float32', [2]), typed('bias', optionalFloat2)],
          outputs: [typed('maybe', optionalFloat2)],
        }),
        opset: 16,
        irVersion: 8,
      }),
    );
    const manifest = await register('optional-io', bytes);
    expect(manifest.inputs).toEqual([
      { name: 'x', datatype: 'FP32', shape: [2] },
      { name: 'bias', datatype: 'FP32', shape: [2], parameters: { onnx_type: 'optional(tensor(float))', mapping: 'required-optional' } },
    ]);
    expect(manifest.outputs).toEqual([{ name: 'maybe', datatype: 'FP32', shape: [2], parameters: { onnx_type: 'optional(tensor(float))', mapping: 'optional-element' } }]);
    await checkOnnxModel(await storedModel(manifest));
    // onnxruntime cannot save a graph with optional values in its ORT format: served from model.onnx.
    expect(manifest.staged).toEqual({});

    const served = await infer('optional-io', [float32([1.25, -3], [2]), { name: 'bias', datatype: 'FP32', shape: [2], data: Float32Array.from([0.5, 10]) }]);
    const direct = await runDirectly(bytes, { x: new ort.Tensor('float32', Float32Array.from([1.25, -3]), [2]), bias: new ort.Tensor('float32', Float32Array.from([0.5, 10]), [2]) }, ['maybe']);
    expect(served).toEqual({ maybe: { datatype: 'FP32', ...direct.maybe } });
  });

  it('answers 400 for an optional output a run leaves empty, where onnxruntime-node on the upload ends the process', async () => {
    const empty = node('Optional', [], ['nothing']);
    empty.attribute!.push({ name: 'type', type: onnx.AttributeProto.AttributeType.TYPE_PROTO, tp: tensorType(DataType.FLOAT, [2]) });
    const bytes = encode(
      model({
        graph: graph({
          name: 'optional_none',
          nodes: [empty, node('Relu', ['x'], ['y'])],
          inputs: [valueInfo('x', 'float32', [2])],
          outputs: [typed('nothing', { optionalType: { elemType: tensorType(DataType.FLOAT, [2]) } }), valueInfo('y', 'float32', [2])],
        }),
        opset: 15,
        irVersion: 8,
      }),
    );
    await register('optional-none', bytes);
    const failure = await service.infer('optional-none', '1', { inputs: [float32([1, -1], [2])], binaryDataOutput: false }).then(() => undefined, (error: unknown) => error as HttpError);
    if (!failure) throw new Error('the empty optional output was answered');
    expect([failure.statusCode, failure.message]).toEqual([
      400,
      "model 'optional-none' version '1' rejected the input: Non-zero status code returned while running OptionalGetElement node. Name:'' Status Message: Trying to use OptionalGetElement on an optional type OrtValue which contains no data",
    ]);
    // The session survives (the upload itself, run by onnxruntime-node, ends the process): the same request, the same answer.
    const again = await service.infer('optional-none', '1', { inputs: [float32([1, -1], [2])], binaryDataOutput: false }).then(() => undefined, (error: unknown) => error as HttpError);
    expect(again?.message).toBe(failure.message);
  });

  it('registers and serves a model with no inputs', async () => {
    const bytes = encode(
      model({
        graph: graph({ name: 'constant', nodes: [node('Constant', [], ['c'], { value: attr.tensor(tensorFromFloat32('', [2], [1.5, -2.5])) })], inputs: [], outputs: [valueInfo('c', 'float32', [2])] }),
        opset: 13,
        irVersion: 8,
      }),
    );
    const manifest = await register('no-inputs', bytes);
    expect(manifest.inputs).toEqual([]);
    const direct = await runDirectly(bytes, {}, ['c']);
    expect(await infer('no-inputs', [])).toEqual({ c: { datatype: 'FP32', ...direct.c } });
  });

  it('refuses a BF16 input or output with the cast that fixes it, not onnxruntime\'s "Unsupported data type: 16"', async () => {
    const bf16In = encode(
      model({
        graph: graph({ name: 'bf16_in', nodes: [node('Cast', ['x'], ['y'], { to: attr.int(DataType.FLOAT) })], inputs: [typed('x', tensorType(DataType.BFLOAT16, [2]))], outputs: [valueInfo('y', 'float32', [2])] }),
        opset: 13,
        irVersion: 8,
      }),
    );
    expect(await ort.InferenceSession.create(bf16In).catch((error: unknown) => (error as Error).message)).toBe('Unsupported data type: 16');
    expect(await refusal('bf16-in', bf16In)).toBe(
      "input 'x' is a bfloat16 tensor, which cannot be served: onnxruntime-node has no bfloat16 tensor to hand over. Cast it at the graph boundary (a Cast from it to float (or float16) right after the input) and upload again",
    );
    const bf16Out = encode(
      model({
        graph: graph({ name: 'bf16_out', nodes: [node('Cast', ['x'], ['y'], { to: attr.int(DataType.BFLOAT16) })], inputs: [valueInfo('x', 'float32', [2])], outputs: [typed('y', tensorType(DataType.BFLOAT16, [2]))] }),
        opset: 13,
        irVersion: 8,
      }),
    );
    expect(await refusal('bf16-out', bf16Out)).toBe(
      "output 'y' is a bfloat16 tensor, which cannot be served: onnxruntime-node has no bfloat16 tensor to hand over. Cast it at the graph boundary (a Cast to float (or float16) right before the output) and upload again",
    );
  });
});

describe('a scikit-learn classifier converted with its default ZipMap', () => {
  it('is served as the probability tensor and its class labels, equal to onnxruntime on the upload and close to scikit-learn', async () => {
    const bytes = new Uint8Array(await readFile('fixtures/models/iris-zipmap/model.onnx'));
    const expected = JSON.parse(await readFile('fixtures/models/iris-zipmap/expected.json', 'utf8')) as {
      input: number[][];
      label: number[];
      probabilities: number[][];
      classes: number[];
    };
    const manifest = await register('iris', bytes);
    const zipmapType = 'seq(map(int64,tensor(float)))';
    expect(manifest.outputs).toEqual([
      { name: 'output_label', datatype: 'INT64', shape: [-1] },
      { name: 'output_probability', datatype: 'FP32', shape: [-1, 3], parameters: { onnx_type: zipmapType, mapping: 'zipmap-probabilities', labels_output: 'output_probability_labels' } },
      { name: 'output_probability_labels', datatype: 'INT64', shape: [3], parameters: { onnx_type: zipmapType, mapping: 'zipmap-labels', labels_of: 'output_probability' } },
    ]);
    expect((await service.modelMetadata('iris', '1')).outputs).toEqual(manifest.outputs);
    await checkOnnxModel(await storedModel(manifest));

    const rows = expected.input.length;
    const x = expected.input.flat();
    const served = await infer('iris', [{ name: 'float_input', datatype: 'FP32', shape: [rows, 4], data: Float32Array.from(x) }]);
    // The upload run directly, with the tensor ZipMap reads exposed as an output (onnxruntime-node cannot return the maps).
    const probe = decodeModel(bytes);
    probe.graph!.output!.push(onnx.ValueInfoProto.create(valueInfo('probabilities', 'float32', [rows, 3])));
    const direct = await runDirectly(encodeModel(probe), { float_input: new ort.Tensor('float32', Float32Array.from(x), [rows, 4]) }, ['output_label', 'probabilities']);
    expect(served).toEqual({
      output_label: { datatype: 'INT64', ...direct.output_label },
      output_probability: { datatype: 'FP32', ...direct.probabilities },
      output_probability_labels: { datatype: 'INT64', shape: [3], data: [0n, 1n, 2n] },
    });
    // And scikit-learn's own answer for the same rows: the labels exactly, the probabilities to float32 precision.
    expect(served.output_label!.data).toEqual(expected.label.map(BigInt));
    const probabilities = served.output_probability!.data as number[];
    expected.probabilities.flat().forEach((p, i) => expect(probabilities[i]).toBeCloseTo(p, 6));
  });
});

describe('over the V2 HTTP handler', () => {
  function event(method: string, path: string, body?: string): APIGatewayProxyEventV2 {
    return {
      version: '2.0',
      routeKey: '$default',
      rawPath: path,
      rawQueryString: '',
      headers: {},
      requestContext: { http: { method, path } },
      ...(body !== undefined ? { body, isBase64Encoded: false } : { isBase64Encoded: false }),
    } as unknown as APIGatewayProxyEventV2;
  }

  function handler() {
    const { logger, metrics } = createObservability('ai-mass-test');
    logger.setLogLevel('SILENT');
    return createInferenceHandler({ service, maxBodyBytes: 6 * 1024 * 1024, logger, metrics });
  }

  it('shows the ZipMap mapping in the model metadata and answers JSON with the labels and probabilities', async () => {
    const http = handler();
    const metadata = await http(event('GET', '/v2/models/iris/versions/1'));
    expect(metadata.statusCode).toBe(200);
    expect(JSON.parse(metadata.body!).outputs[1]).toEqual({
      name: 'output_probability',
      datatype: 'FP32',
      shape: [-1, 3],
      parameters: { onnx_type: 'seq(map(int64,tensor(float)))', mapping: 'zipmap-probabilities', labels_output: 'output_probability_labels' },
    });
    const row = [5.1, 3.5, 1.4, 0.2];
    const answer = await http(event('POST', '/v2/models/iris/versions/1/infer', JSON.stringify({ inputs: [{ name: 'float_input', datatype: 'FP32', shape: [1, 4], data: row }] })));
    expect(answer.statusCode).toBe(200);
    const outputs = JSON.parse(answer.body!).outputs as { name: string; datatype: string; shape: number[]; data: unknown[] }[];
    const served = await infer('iris', [{ name: 'float_input', datatype: 'FP32', shape: [1, 4], data: Float32Array.from(row) }]);
    // JSON FP32 is the shortest text that reads back as the same float32 (v2/json-numbers.ts).
    outputs[1]!.data = outputs[1]!.data.map((v) => Math.fround(v as number));
    expect(outputs).toEqual([
      { name: 'output_label', datatype: 'INT64', shape: [1], data: [0] },
      { name: 'output_probability', datatype: 'FP32', shape: [1, 3], data: served.output_probability!.data },
      { name: 'output_probability_labels', datatype: 'INT64', shape: [3], data: [0, 1, 2] },
    ]);
  });
});
