import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { attr, graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';
import { decodeModel, encodeModel, onnx, type ModelProtoInit, type ValueInfoProtoInit } from '../../functions/core/onnx/model-proto.ts';
import { typeString } from '../../functions/core/onnx/non-tensor.ts';
import ort from '../../functions/core/onnx/ort.ts';
import { ModelRejectedError, validateModel } from '../../functions/core/artifacts/validation.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

// The mapping of non-tensor inputs and outputs at admission (functions/core/onnx/non-tensor.ts):
// what is rewritten runs in onnxruntime and passes the ONNX checker; what has no exact mapping is
// refused with what to change. Registration and serving end to end: test/integration/serve-runtime.test.ts.

const DataType = onnx.TensorProto.DataType;
const typed = (name: string, type: ValueInfoProtoInit['type']): ValueInfoProtoInit => ({ name, type });
const tensorType = (elemType: number, dims?: number[]) => ({
  tensorType: { elemType, ...(dims ? { shape: { dim: dims.map((d) => ({ dimValue: d })) } } : {}) },
});
const mapType = (keyType: number) => ({ mapType: { keyType, valueType: tensorType(DataType.FLOAT) } });

function build(spec: Parameters<typeof graph>[0], opset = 13, ml = false): Uint8Array {
  const m: ModelProtoInit = model({ graph: graph(spec), opset, irVersion: 8 });
  if (ml) m.opsetImport!.push({ domain: 'ai.onnx.ml', version: 1 });
  return encodeModel(m);
}

async function rejection(bytes: Uint8Array): Promise<string> {
  const error = await validateModel(bytes).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ModelRejectedError);
  return (error as Error).message;
}

/** validateModel, with the bytes it admitted for serving read back from its candidate file. */
async function admit(bytes: Uint8Array) {
  const examined = await validateModel(bytes);
  try {
    return { signature: examined.signature, bytes: new Uint8Array(await readFile(examined.modelFile)) };
  } finally {
    await examined.dispose();
  }
}

describe('typeString', () => {
  it('writes types in ONNX notation', () => {
    expect(typeString({ sequenceType: { elemType: mapType(DataType.INT64) } })).toBe('seq(map(int64,tensor(float)))');
    expect(typeString({ optionalType: { elemType: { sequenceType: { elemType: tensorType(DataType.INT64) } } } })).toBe('optional(seq(tensor(int64)))');
    expect(typeString({ sparseTensorType: { elemType: DataType.DOUBLE } })).toBe('sparse_tensor(double)');
    expect(typeString(tensorType(19))).toBe('tensor(float8e5m2)');
  });
});

describe('admission of a model whose inputs and outputs are all tensors', () => {
  it('keeps the upload as it is: the same bytes, no parameters', async () => {
    const bytes = build({ name: 'plain', nodes: [node('Relu', ['x'], ['y'])], inputs: [valueInfo('x', 'float32', [2])], outputs: [valueInfo('y', 'float32', [2])] });
    const admitted = await admit(bytes);
    expect(Buffer.from(admitted.bytes).equals(Buffer.from(bytes))).toBe(true);
    expect([admitted.signature.inputs, admitted.signature.outputs]).toEqual([[{ name: 'x', datatype: 'FP32', shape: [2] }], [{ name: 'y', datatype: 'FP32', shape: [2] }]]);
  });
});

describe('mapped at admission', () => {
  it('a ZipMap with string labels: the probabilities, and the labels as a BYTES output', async () => {
    const zipMap = node('ZipMap', ['p'], ['probs'], {}, 'zip', 'ai.onnx.ml');
    zipMap.attribute!.push({ name: 'classlabels_strings', type: onnx.AttributeProto.AttributeType.STRINGS, strings: ['cat', 'dog'].map((s) => Buffer.from(s)) });
    const bytes = build(
      { name: 'zip', nodes: [node('Softmax', ['x'], ['p'], { axis: attr.int(1) }), zipMap], inputs: [valueInfo('x', 'float32', ['n', 2])], outputs: [typed('probs', { sequenceType: { elemType: mapType(DataType.STRING) } })] },
      13,
      true,
    );
    const admitted = await admit(bytes);
    expect(admitted.signature.outputs).toEqual([
      { name: 'probs', datatype: 'FP32', shape: [-1, 2], parameters: { onnx_type: 'seq(map(string,tensor(float)))', mapping: 'zipmap-probabilities', labels_output: 'probs_labels' } },
      { name: 'probs_labels', datatype: 'BYTES', shape: [2], parameters: { onnx_type: 'seq(map(string,tensor(float)))', mapping: 'zipmap-labels', labels_of: 'probs' } },
    ]);
    await checkOnnxModel(admitted.bytes);
    const session = await ort.InferenceSession.create(admitted.bytes);
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([0, 0, 1, 3]), [2, 2]) });
    // The upload run directly cannot return its maps: read the tensor ZipMap was given instead.
    const probe = decodeModel(bytes);
    probe.graph!.output!.push(onnx.ValueInfoProto.create(valueInfo('p', 'float32', [2, 2])));
    const direct = await (await ort.InferenceSession.create(encodeModel(probe))).run({ x: new ort.Tensor('float32', Float32Array.from([0, 0, 1, 3]), [2, 2]) }, ['p']);
    expect(Array.from(out.probs!.data as Float32Array)).toEqual(Array.from(direct.p!.data as Float32Array));
    expect(out.probs_labels!.data).toEqual(['cat', 'dog']);
  });

  it('an optional sequence output: its element, stacked', async () => {
    const bytes = build({
      name: 'opt_seq',
      nodes: [node('Neg', ['x'], ['n']), node('SequenceConstruct', ['x', 'n'], ['s']), node('Optional', ['s'], ['o'])],
      inputs: [valueInfo('x', 'float32', [3])],
      outputs: [typed('o', { optionalType: { elemType: { sequenceType: { elemType: tensorType(DataType.FLOAT, [3]) } } } })],
    }, 15);
    const admitted = await admit(bytes);
    expect(admitted.signature.outputs).toEqual([
      { name: 'o', datatype: 'FP32', shape: [-1, 3], parameters: { onnx_type: 'optional(seq(tensor(float)))', mapping: 'optional-element+stacked-sequence' } },
    ]);
    await checkOnnxModel(admitted.bytes);
    const out = await (await ort.InferenceSession.create(admitted.bytes)).run({ x: new ort.Tensor('float32', Float32Array.from([1, -2, 0.5]), [3]) });
    expect([out.o!.dims, Array.from(out.o!.data as Float32Array)]).toEqual([[2, 3], [1, -2, 0.5, -1, 2, -0.5]]);
  });
});

describe('an optional sequence input', () => {
  it('is a required tensor, split on its first axis', async () => {
    const bytes = build({
      name: 'opt_seq_in',
      nodes: [node('OptionalGetElement', ['o'], ['s']), node('SequenceLength', ['s'], ['count']), node('ConcatFromSequence', ['s'], ['joined'], { axis: attr.int(0) })],
      inputs: [typed('o', { optionalType: { elemType: { sequenceType: { elemType: tensorType(DataType.FLOAT, [2]) } } } })],
      outputs: [valueInfo('count', 'int64', []), valueInfo('joined', 'float32', [6])],
    }, 15);
    const admitted = await admit(bytes);
    expect(admitted.signature.inputs).toEqual([
      { name: 'o', datatype: 'FP32', shape: [-1, 2], parameters: { onnx_type: 'optional(seq(tensor(float)))', mapping: 'required-optional+stacked-sequence' } },
    ]);
    await checkOnnxModel(admitted.bytes);
    const out = await (await ort.InferenceSession.create(admitted.bytes)).run({ o: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]) });
    expect([out.count!.data, Array.from(out.joined!.data as Float32Array)]).toEqual([BigInt64Array.from([3n]), [1, 2, 3, 4, 5, 6]]);
  });
});

describe('refused at admission, with what to change', () => {
  it('a map input', async () => {
    const bytes = build(
      { name: 'dict', nodes: [node('DictVectorizer', ['d'], ['v'], { int64_vocabulary: attr.ints([1, 2]) }, 'dv', 'ai.onnx.ml')], inputs: [typed('d', { mapType: { keyType: DataType.INT64, valueType: tensorType(DataType.FLOAT) } })], outputs: [valueInfo('v', 'float32', [1, 2])] },
      13,
      true,
    );
    expect(await rejection(bytes)).toBe(
      "input 'd' is map(int64,tensor(float)): V2 carries tensors, and sequences of tensors, optionals and scikit-learn ZipMap outputs are mapped to them; nothing maps this type exactly. Change the graph at its boundary so that the input is a tensor and upload again",
    );
  });

  it('a sequence output whose tensors have no declared shape', async () => {
    const bytes = build({ name: 'seq', nodes: [node('SequenceConstruct', ['x'], ['s'])], inputs: [valueInfo('x', 'float32', [2])], outputs: [typed('s', { sequenceType: { elemType: tensorType(DataType.FLOAT) } })] });
    expect(await rejection(bytes)).toBe(
      "output 's' is seq(tensor(float)) with no declared tensor shape; it is served as one tensor, its tensors stacked along a new first axis, so declare the rank of the tensors in the sequence (e.g. [N, 4]) and upload again",
    );
  });

  it('a ZipMap output that the graph also reads', async () => {
    const zipMap = node('ZipMap', ['x'], ['probs'], {}, 'zip', 'ai.onnx.ml');
    zipMap.attribute!.push({ name: 'classlabels_int64s', type: onnx.AttributeProto.AttributeType.INTS, ints: [0, 1] });
    const seqMap = { sequenceType: { elemType: mapType(DataType.INT64) } };
    const bytes = build(
      { name: 'zip', nodes: [zipMap, node('SequenceLength', ['probs'], ['n'])], inputs: [valueInfo('x', 'float32', ['n', 2])], outputs: [typed('probs', seqMap), valueInfo('n', 'int64', [])] },
      13,
      true,
    );
    expect(await rejection(bytes)).toBe(
      "output 'probs' (ZipMap) is also read inside the graph, so it cannot be replaced by its probability tensor; remove the ZipMap (skl2onnx: options={'zipmap': False}) and upload again",
    );
  });

  it('a sparse tensor input', async () => {
    const bytes = build({ name: 'sparse', nodes: [node('Identity', ['x'], ['y'])], inputs: [typed('x', { sparseTensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: 2 }] } } })], outputs: [valueInfo('y', 'float32', [2])] });
    expect(await rejection(bytes)).toBe("input 'x' is sparse_tensor(float); V2 carries dense tensors: densify it at the graph boundary and upload again");
  });

  it('a float8 output, with the cast that fixes it', async () => {
    const bytes = build({ name: 'f8', nodes: [node('Cast', ['x'], ['y'], { to: attr.int(17) })], inputs: [valueInfo('x', 'float32', [2])], outputs: [typed('y', tensorType(17, [2]))] }, 19);
    expect(await rejection(bytes)).toBe(
      "output 'y' is a float8e4m3fn tensor, which cannot be served: onnxruntime-node has no float8e4m3fn tensor to hand over. Cast it at the graph boundary (a Cast to float (or float16) right before the output) and upload again",
    );
  });
});
