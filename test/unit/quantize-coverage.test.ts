import { readFile } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { DataType } from '../../functions/core/onnx/graph-toolkit.ts';
import { decodeModel, encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { quantizeDynamic } from '../../functions/core/quantize/dynamic.ts';
import { int8DynamicOptionsSchema } from '../../functions/core/quantize/options.ts';
import { quantizeModel } from '../../functions/core/quantize/quantize-model.ts';
import { quantParams, quantizeWeights } from '../../functions/core/quantize/quant-math.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

// What int8-dynamic must cover: every channel's zero point, weights torch shares through Identity,
// LSTM weights, and the refusals of a result not worth a version.
const quiet = { logSeverityLevel: 3 } as const;
const TRANSFORMER = 'fixtures/models/transformer-equal-layers/model.onnx';
const LSTM = 'fixtures/models/lstm-classifier/model.onnx';

function seeded(length: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 30 - 1;
  });
}

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>, output: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes, quiet);
  const out = (await session.run(feeds))[output]!.data as Float32Array;
  await session.release();
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Float initializers of rank 2 or more, scales aside: fp32 weights the quantizer did not convert. */
function fp32Matrices(bytes: Uint8Array): string[] {
  const m = decodeModel(bytes);
  return (m.graph!.initializer ?? []).filter((t) => t.dataType === DataType.FLOAT && (t.dims ?? []).length >= 2 && !t.name?.endsWith('_scale')).map((t) => t.name ?? '');
}

/** One Conv whose output channels are: ordinary, all zero, negative only, constant. */
function convModel(): Uint8Array {
  const w = seeded(4 * 2 * 3 * 3, 7);
  w.fill(0, 18, 36);
  for (let i = 36; i < 54; i++) w[i] = -Math.abs(w[i]!);
  w.fill(0.25, 54, 72);
  const conv = model({
    graph: graph({
      name: 'conv',
      nodes: [node('Conv', ['x', 'w'], ['y'], { pads: { type: 'ints', value: [1, 1, 1, 1] } }, 'conv')],
      inputs: [valueInfo('x', 'float32', ['n', 2, 5, 5])],
      outputs: [valueInfo('y', 'float32', ['n', 4, 5, 5])],
      initializers: [tensorFromFloat32('w', [4, 2, 3, 3], w)],
    }),
    opset: 13,
    irVersion: 8,
  });
  return encodeModel(conv);
}

describe('per-channel zero points', () => {
  // Channels: ordinary, all zero, constant positive, negative only.
  const weights = Float32Array.from([0.5, -0.25, 0.1, 0, 0, 0, 0.3, 0.3, 0.3, -0.2, -0.4, -0.1]);

  it('give every channel of a symmetric uint8 tensor the middle of the range, reduced range included', () => {
    const full = quantizeWeights(weights, [4, 3], { type: 'uint8', symmetric: true, axis: 0 });
    const reduced = quantizeWeights(weights, [4, 3], { type: 'uint8', symmetric: true, axis: 0, reduceRange: true });

    expect(Array.from(full.zeroPoints)).toEqual([128, 128, 128, 128]);
    expect(Array.from(reduced.zeroPoints)).toEqual([64, 64, 64, 64]);
    // The all-zero channel quantizes to its zero point, so it dequantizes to exactly 0.
    expect(Array.from(reduced.values.subarray(3, 6))).toEqual([64, 64, 64]);
    expect(Math.max(...reduced.values)).toBeLessThanOrEqual(127);
  });

  it('map 0 exactly for asymmetric channels, whatever their sign', () => {
    const q = quantizeWeights(weights, [4, 3], { type: 'uint8', symmetric: false, axis: 0, reduceRange: true });

    expect(Array.from(q.zeroPoints)).toEqual([42, 0, 0, 127]);
    expect(quantParams(0, 0, 'int8', false, true)).toEqual({ scale: 1, zeroPoint: -64 });
    expect(quantParams(0, 0, 'int8', true, true)).toEqual({ scale: 1, zeroPoint: 0 });
  });

  it('keep a Conv with an all-zero filter equal to fp32 under reduceRange (ConvInteger takes one zero point)', async () => {
    const bytes = convModel();
    const x = new ort.Tensor('float32', seeded(2 * 2 * 5 * 5, 3), [2, 2, 5, 5]);

    const { bytes: q, report } = quantizeDynamic(bytes, { opTypes: ['Conv'], reduceRange: true });

    expect(report.quantized).toEqual([{ node: 'conv', opType: 'Conv', graph: 'main', as: 'ConvInteger' }]);
    const ref = await run(bytes, { x }, 'y');
    const got = await run(q, { x }, 'y');
    const scale = Math.max(...Array.from(ref, Math.abs));
    expect(maxAbsDiff(ref, got)).toBeLessThan(0.05 * scale);
    // Channel 1 of each image is exactly 0, as in fp32.
    for (const image of [0, 1]) expect(Array.from(got.subarray(image * 100 + 25, image * 100 + 50)).every((v) => v === 0)).toBe(true);
    await checkOnnxModel(q);
  });
});

describe('a Transformer exported by PyTorch with equal layers', () => {
  it('quantizes every layer, the weights torch shares through Identity once, to a file at least 3x smaller', async () => {
    const bytes = await readFile(TRANSFORMER);
    const x = new ort.Tensor('float32', seeded(10 * 2 * 128, 5), [10, 2, 128]);

    const { bytes: q, report } = quantizeDynamic(bytes);

    // Per layer: the input projection, out_proj (Gemm), linear1, linear2; then the head.
    const converted = report.quantized.map((r) => `${r.opType} ${r.node}`);
    for (const layer of [0, 1, 2]) {
      expect(converted).toEqual(
        expect.arrayContaining([
          `MatMul /encoder/layers.${layer}/self_attn/MatMul`,
          `Gemm /encoder/layers.${layer}/self_attn/Gemm`,
          `MatMul /encoder/layers.${layer}/linear1/MatMul`,
          `MatMul /encoder/layers.${layer}/linear2/MatMul`,
        ]),
      );
    }
    expect(converted).toHaveLength(13);
    // Only the attention products of two activations stay fp32, and say why.
    expect(report.skipped.map((s) => s.reason)).toEqual(Array(6).fill('B is not a constant fp32 tensor'));
    expect(fp32Matrices(q)).toEqual([]);
    expect(bytes.byteLength / q.byteLength).toBeGreaterThanOrEqual(3);
    const ref = await run(bytes, { input: x }, 'output');
    const got = await run(q, { input: x }, 'output');
    expect(maxAbsDiff(ref, got)).toBeLessThan(0.05 * Math.max(...Array.from(ref, Math.abs)));
    await checkOnnxModel(q);
  });
});

describe('weights passed on through Identity', () => {
  it('are followed into subgraphs, and a subgraph that returns one still returns it', async () => {
    // w reaches a MatMul in the then-branch through two Identity nodes; the else-branch returns it through its own.
    const w = seeded(4 * 4, 13);
    const thenBranch = graph({
      name: 'then',
      nodes: [node('MatMul', ['x', 'w_again'], ['y_then'], {}, 'inner_matmul')],
      inputs: [],
      outputs: [valueInfo('y_then', 'float32', [1, 4])],
    });
    const elseBranch = graph({ name: 'else', nodes: [node('Identity', ['w_again'], ['w_out'], {}, 'return_w')], inputs: [], outputs: [valueInfo('w_out', 'float32', [4, 4])] });
    const built = model({
      graph: graph({
        name: 'branches',
        nodes: [
          node('Identity', ['w'], ['w_shared'], {}, 'share'),
          node('Identity', ['w_shared'], ['w_again'], {}, 'share_again'),
          node('If', ['c'], ['y'], { then_branch: attr.graph(thenBranch), else_branch: attr.graph(elseBranch) }, 'branch'),
        ],
        inputs: [valueInfo('c', 'bool', []), valueInfo('x', 'float32', [1, 4])],
        outputs: [valueInfo('y', 'float32', ['rows', 'columns'])],
        initializers: [tensorFromFloat32('w', [4, 4], w)],
      }),
      opset: 13,
      irVersion: 8,
    });
    const bytes = encodeModel(built);
    const x = new ort.Tensor('float32', seeded(4, 17), [1, 4]);
    const feeds = (c: boolean) => ({ c: new ort.Tensor('bool', Uint8Array.from([c ? 1 : 0]), []), x });

    const { bytes: q, report } = quantizeDynamic(bytes);

    expect(report.quantized).toEqual([{ node: 'inner_matmul', opType: 'MatMul', graph: 'main/branch.then_branch', as: 'DynamicQuantizeMatMul' }]);
    expect(report.notes[0]).toBe('2 Identity nodes that pass a weight on were bypassed, so shared weights are found and quantized once');
    expect(maxAbsDiff(await run(bytes, feeds(true), 'y'), await run(q, feeds(true), 'y'))).toBeLessThan(0.05);
    expect(Array.from(await run(q, feeds(false), 'y'))).toEqual(Array.from(w));
    await checkOnnxModel(q);
  });
});

describe('an LSTM classifier', () => {
  it('runs on DynamicQuantizeLSTM with int8 input and recurrent weights, close to fp32', async () => {
    const bytes = await readFile(LSTM);
    const x = new ort.Tensor('float32', seeded(3 * 12 * 16, 11), [3, 12, 16]);

    const { bytes: q, report } = quantizeDynamic(bytes);

    expect(report.quantized.map((r) => [r.opType, r.as])).toEqual([
      ['LSTM', 'DynamicQuantizeLSTM'],
      ['Gemm', 'DynamicQuantizeMatMul'],
    ]);
    const initializers = decodeModel(q).graph!.initializer!;
    const int8 = initializers.filter((t) => t.dataType === DataType.INT8 && (t.dims ?? []).length === 3).map((t) => (t.dims ?? []).map(Number));
    expect(int8).toEqual([
      [1, 16, 256],
      [1, 64, 256],
    ]);
    expect(fp32Matrices(q)).toEqual(['onnx::LSTM_111']); // the bias [1, 512], kept in fp32
    const ref = await run(bytes, { input: x }, 'output');
    const got = await run(q, { input: x }, 'output');
    expect(maxAbsDiff(ref, got)).toBeLessThan(0.02 * Math.max(...Array.from(ref, Math.abs)));
    expect(bytes.byteLength / q.byteLength).toBeGreaterThan(3);
    await checkOnnxModel(q);
  });
});

describe('a result not worth a version', () => {
  it('is refused when nothing was converted: a convolutional model keeps fp32 Conv under the default, which says why', async () => {
    await expect(quantizeModel(convModel(), { method: 'int8-dynamic', options: int8DynamicOptionsSchema.parse({}) })).rejects.toMatchObject({
      statusCode: 422,
      message:
        'int8-dynamic converted nothing, so no version was registered: Conv: 0 converted, 1 kept (1: Conv is not in opTypes by default: onnxruntime runs ConvInteger slower than fp32 Conv on x86 CPUs; int8-static (QDQ) quantizes convolutions into QLinearConv)',
    });
  });

  it('is refused when it is not smaller than its source', async () => {
    const tiny = model({
      graph: graph({
        name: 'tiny',
        nodes: [node('MatMul', ['x', 'w'], ['y'], {}, 'matmul')],
        inputs: [valueInfo('x', 'float32', ['n', 2])],
        outputs: [valueInfo('y', 'float32', ['n', 2])],
        initializers: [tensorFromFloat32('w', [2, 2], [1, 2, 3, 4])],
      }),
      opset: 13,
      irVersion: 8,
    });
    const bytes = encodeModel(tiny);
    const { report } = quantizeDynamic(bytes);

    await expect(quantizeModel(bytes, { method: 'int8-dynamic', options: int8DynamicOptionsSchema.parse({}) })).rejects.toMatchObject({
      statusCode: 422,
      message: `the int8-dynamic variant would be ${report.outputBytes} bytes, not smaller than its source's ${bytes.byteLength}, so no version was registered: MatMul: 1 converted, 0 kept`,
    });
  });
});
