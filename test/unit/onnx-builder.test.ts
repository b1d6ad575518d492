import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import {
  attr,
  graph,
  model,
  node,
  tensorFromFloat32,
  tensorFromInt64,
  valueInfo,
} from '../../functions/core/onnx/builder.ts';
import {
  OnnxFormatError,
  decodeModel,
  defaultOpsetVersion,
  encodeModel,
  int64ToBigInt,
  int64ToNumber,
  modelMetadata,
  onnx,
  readFloat32Tensor,
  readInt64Tensor,
} from '../../functions/core/onnx/model-proto.ts';
import { OnnxCheckerError, checkOnnxModel } from '../helpers/onnx-checker.ts';

/** relu(x · W + b), with b from a Constant node so a tensor attribute is exercised end to end. */
function denseReluModelBytes(): Uint8Array {
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      producerName: 'ai-mass',
      producerVersion: '0.1.0',
      metadata: { purpose: 'unit test', answer: '42' },
      graph: graph({
        name: 'dense_relu',
        inputs: [valueInfo('features', 'float32', ['batch', 3])],
        outputs: [valueInfo('activations', 'float32', ['batch', 2])],
        initializers: [tensorFromFloat32('weight', [3, 2], [1, -1, 2, 0.5, 0.25, 3])],
        nodes: [
          node('Constant', [], ['bias'], { value: attr.tensor(tensorFromFloat32('bias_value', [2], [0.5, -2])) }, 'bias_constant'),
          node('MatMul', ['features', 'weight'], ['product'], {}, 'matmul'),
          node('Add', ['product', 'bias'], ['preactivation'], {}, 'add_bias'),
          node('Relu', ['preactivation'], ['activations'], {}, 'relu'),
        ],
      }),
    }),
  );
}

describe('ONNX builder and model codec', () => {
  it('round-trips a built model through decode and encode byte for byte', () => {
    const bytes = denseReluModelBytes();

    const decoded = decodeModel(bytes);
    const reencoded = encodeModel(decoded);

    expect(Buffer.from(reencoded).equals(Buffer.from(bytes))).toBe(true);
    expect(int64ToNumber(decoded.irVersion)).toBe(8);
    expect(defaultOpsetVersion(decoded)).toBe(17);
    expect(decoded.producerName).toBe('ai-mass');
    expect(decoded.producerVersion).toBe('0.1.0');
    expect(modelMetadata(decoded)).toEqual({ purpose: 'unit test', answer: '42' });
    expect(decoded.graph!.node!.map((n) => n.opType)).toEqual(['Constant', 'MatMul', 'Add', 'Relu']);
    const inputShape = decoded.graph!.input![0]!.type!.tensorType!.shape!.dim!;
    expect(inputShape.map((dim) => dim.dimParam || int64ToNumber(dim.dimValue))).toEqual(['batch', 3]);
    const weight = decoded.graph!.initializer![0]!;
    expect(weight.dims!.map((dim) => int64ToNumber(dim))).toEqual([3, 2]);
    expect(weight.dataType).toBe(onnx.TensorProto.DataType.FLOAT);
    expect(Array.from(readFloat32Tensor(weight))).toEqual([1, -1, 2, 0.5, 0.25, 3]);
  });

  it('gives exact outputs in onnxruntime for a golden input', async () => {
    const session = await ort.InferenceSession.create(denseReluModelBytes());

    const result = await session.run({
      features: new ort.Tensor('float32', Float32Array.from([1, 2, 3, -4, 1, 2]), [2, 3]),
    });

    expect(session.inputNames).toEqual(['features']);
    expect(session.outputNames).toEqual(['activations']);
    expect(result.activations!.dims).toEqual([2, 2]);
    expect(Array.from(result.activations!.data as Float32Array)).toEqual([6.25, 7, 0, 8.5]);
    await session.release();
  });

  it('writes a model the ONNX checker accepts', async () => {
    await expect(checkOnnxModel(denseReluModelBytes())).resolves.toBeUndefined();
  });

  it('BAD CALL: the ONNX checker helper rejects a graph that reads an undefined value, with the reason', async () => {
    const bytes = encodeModel(
      model({
        irVersion: 8,
        opset: 17,
        graph: graph({
          name: 'dangling',
          inputs: [valueInfo('x', 'float32', [1])],
          outputs: [valueInfo('y', 'float32', [1])],
          nodes: [node('Relu', ['missing'], ['y'])],
        }),
      }),
    );

    const checking = checkOnnxModel(bytes);

    await expect(checking).rejects.toBeInstanceOf(OnnxCheckerError);
    await expect(checking).rejects.toThrow(
      "ONNX checker rejected the model (85 bytes): ValidationError: Nodes in a graph must be topologically sorted, however input 'missing' of node: \nname:  OpType: Relu\n is not output of any previous nodes.",
    );
  });

  it('encodes every attribute type with its ONNX type tag', () => {
    const built = node('Custom', ['a'], ['b'], {
      alpha: attr.float(0.5),
      axis: attr.int(-1),
      perm: attr.ints([1, 0n]),
      scales: attr.floats([1.5, 2]),
      mode: attr.string('linear'),
      value: attr.tensor(tensorFromInt64('shape', [2], [-1n, 784])),
      body: attr.graph(graph({ name: 'body', nodes: [], inputs: [], outputs: [] })),
    }, 'custom_node');
    const bytes = encodeModel(model({ irVersion: 8, opset: 17, graph: graph({ name: 'g', nodes: [built], inputs: [], outputs: [] }) }));

    const attributes = decodeModel(bytes).graph!.node![0]!.attribute!;

    const AttributeType = onnx.AttributeProto.AttributeType;
    expect(attributes.map((a) => [a.name, a.type])).toEqual([
      ['alpha', AttributeType.FLOAT],
      ['axis', AttributeType.INT],
      ['perm', AttributeType.INTS],
      ['scales', AttributeType.FLOATS],
      ['mode', AttributeType.STRING],
      ['value', AttributeType.TENSOR],
      ['body', AttributeType.GRAPH],
    ]);
    expect(attributes[0]!.f).toBe(0.5);
    expect(int64ToNumber(attributes[1]!.i)).toBe(-1);
    expect(attributes[2]!.ints!.map((i) => int64ToNumber(i))).toEqual([1, 0]);
    expect(attributes[3]!.floats).toEqual([1.5, 2]);
    expect(new TextDecoder().decode(attributes[4]!.s!)).toBe('linear');
    expect(Array.from(readInt64Tensor(attributes[5]!.t!))).toEqual([-1n, 784n]);
    expect(attributes[6]!.g!.name).toBe('body');
  });

  it('converts int64 fields exactly, refusing to round beyond 2^53', () => {
    const huge = onnx.TensorProto.decode(onnx.TensorProto.encode({ dims: [Number.MAX_SAFE_INTEGER] }).finish()).dims[0]!;
    const tooBig = onnx.ModelProto.decode(
      // field 1 (ir_version), varint 2^62
      Uint8Array.from([0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]),
    ).irVersion;

    expect(int64ToNumber(huge)).toBe(Number.MAX_SAFE_INTEGER);
    expect(int64ToBigInt(tooBig)).toBe(2n ** 62n);
    expect(() => int64ToNumber(tooBig)).toThrow(new RangeError('int64 value 4611686018427387904 is outside the safe integer range of a number'));
    expect(int64ToNumber(null)).toBe(0);
  });

  it('BAD CALL: a tensor whose dims do not match its data is refused', () => {
    expect(() => tensorFromFloat32('weight', [2, 3], [1, 2, 3])).toThrow(
      new RangeError('tensor "weight": dims [2, 3] hold 6 elements but 3 values were given'),
    );
    expect(() => readInt64Tensor(tensorFromFloat32('weight', [1], [1]))).toThrow(
      new OnnxFormatError('tensor "weight" has data_type 1, not INT64 (7)'),
    );
    expect(() => valueInfo('input', 'float32', [-1, 784])).toThrow(
      new RangeError('value "input": a fixed dimension must be a non-negative integer, got -1; name a dynamic one with a string'),
    );
  });

  it('BAD CALL: decoding bytes that are not ONNX throws OnnxFormatError', () => {
    const attempt = (bytes: Uint8Array) => () => decodeModel(bytes);

    expect(attempt(new Uint8Array(0))).toThrow(new OnnxFormatError('not an ONNX model: the input is empty (0 bytes)'));
    expect(attempt(new TextEncoder().encode('hello world, not onnx'))).toThrow(
      new OnnxFormatError(
        'not an ONNX model: protobuf decode of 21 bytes failed (invalid wire type 4 at offset 3); the file is truncated or not ONNX',
      ),
    );
    // A single valid field that is not ir_version: protobuf accepts it, the guard does not.
    expect(attempt(Uint8Array.from([0x12, 0x01, 0x78]))).toThrow(
      new OnnxFormatError('not an ONNX model: ir_version is missing or 0 (3 bytes)'),
    );
    expect(attempt(Uint8Array.from([0x08, 0x08]))).toThrow(
      new OnnxFormatError('not an ONNX model: no opset_import (ir_version 8, 2 bytes)'),
    );
    try {
      decodeModel(new Uint8Array([1, 2, 3, 4, 5]));
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(OnnxFormatError);
      expect((error as Error).name).toBe('OnnxFormatError');
    }
  });

  it('BAD CALL: a truncated model throws OnnxFormatError naming the cut', () => {
    const bytes = denseReluModelBytes();

    const truncated = bytes.subarray(0, 50);

    expect(() => decodeModel(truncated)).toThrow(
      new OnnxFormatError(
        'not an ONNX model: protobuf decode of 50 bytes failed (index out of range: 50 + 10 > 50); the file is truncated or not ONNX',
      ),
    );
  });
});
