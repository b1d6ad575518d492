/**
 * Every op's gradient rule against central finite differences, through onnxruntime running the
 * generated graph. Each case makes the op's float inputs trainable parameters, takes MSE against fixed
 * targets as the loss, and compares d(loss)/d(parameter) from the graph with (L(p + h) - L(p - h)) / 2h.
 * FP64 where onnxruntime's CPU kernels have it (h = 1e-6, |error| <= 1e-7 + 1e-6 |gradient|); FP32 for
 * Conv, AveragePool and LeakyRelu (h = 1e-2, |error| <= 2e-3 + 1e-2 |gradient|).
 */
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { attr, graph, model, node, tensorFromInt64, valueInfo, type AttributeValue } from '../../functions/core/onnx/builder.ts';
import { encodeModel, type TensorProtoInit } from '../../functions/core/onnx/model-proto.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { tensorFromFloat, type FloatType } from '../../functions/core/train/graph-writer.ts';
import { buildTrainingGraph, type TrainingGraph } from '../../functions/core/train/training-graph.ts';

interface Parameter {
  name: string;
  dims: number[];
  /** Values drawn from [low, high) (default [-1, 1)); Relu-like ops get values away from their kink. */
  low?: number;
  high?: number;
  trainable?: boolean;
}

interface GradientCase {
  op: string;
  title: string;
  type: FloatType;
  parameters: Parameter[];
  attributes?: Record<string, AttributeValue>;
  /** Inputs of the node in order ('' skips an optional one); default the parameters' names. */
  inputs?: string[];
  constants?: TensorProtoInit[];
  /** Nodes before the tested one (their outputs may feed it). */
  before?: ReturnType<typeof node>[];
  outputDims: number[];
}

const count = (dims: readonly number[]) => dims.reduce((product, dim) => product * dim, 1);
const typed = (type: FloatType, values: number[]) => (type === 'float32' ? Float32Array.from(values) : Float64Array.from(values));

function awayFromZero(random: () => number, low: number, high: number): number {
  // Relu, LeakyRelu and MaxPool are not differentiable at a kink or a tie; keep values clear of them.
  for (;;) {
    const value = low + (high - low) * random();
    if (Math.abs(value) > 0.05) return value;
  }
}

async function checkGradients(testCase: GradientCase): Promise<void> {
  const random = seededRandom(7);
  const values = new Map(testCase.parameters.map((parameter) => [parameter.name, Array.from({ length: count(parameter.dims) }, () => awayFromZero(random, parameter.low ?? -1, parameter.high ?? 1))]));
  const modelBytes = encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: `${testCase.op}_gradient_check`,
        nodes: [...(testCase.before ?? []), node(testCase.op, testCase.inputs ?? testCase.parameters.map((parameter) => parameter.name), ['y'], testCase.attributes ?? {}, 'tested')],
        inputs: [],
        outputs: [valueInfo('y', testCase.type, testCase.outputDims)],
        initializers: [...testCase.parameters.map((parameter) => tensorFromFloat(testCase.type, parameter.name, parameter.dims, values.get(parameter.name) as number[])), ...(testCase.constants ?? [])],
      }),
    }),
  );
  const trainable = testCase.parameters.filter((parameter) => parameter.trainable !== false).map((parameter) => parameter.name);
  const training: TrainingGraph = buildTrainingGraph(modelBytes, { loss: { kind: 'mse' }, trainable: { names: trainable } });
  const session = await ort.InferenceSession.create(training.bytes);
  const targets = new ort.Tensor(testCase.type, typed(testCase.type, Array.from({ length: count(testCase.outputDims) }, () => random() * 2 - 1)), testCase.outputDims);
  const feedsWith = (name?: string, index?: number, delta?: number) => {
    const feeds: Record<string, ort.Tensor> = { targets };
    for (const entry of training.state) {
      const data = Array.from(entry.initial as Float32Array | Float64Array);
      if (entry.input === name) data[index as number] = (data[index as number] as number) + (delta as number);
      feeds[entry.input] = new ort.Tensor(testCase.type, typed(testCase.type, data), entry.dims);
    }
    return feeds;
  };
  const analytic = await session.run(feedsWith());
  const h = testCase.type === 'float64' ? 1e-6 : 1e-2;
  const [absolute, relative] = testCase.type === 'float64' ? [1e-7, 1e-6] : [2e-3, 1e-2];
  let checked = 0;
  for (const name of trainable) {
    const gradient = analytic[training.gradientOutputs[name] as string]?.data as Float64Array;
    expect(gradient.length).toBe(count(testCase.parameters.find((parameter) => parameter.name === name)?.dims ?? []));
    for (let index = 0; index < gradient.length; index++) {
      const up = Number((await session.run(feedsWith(name, index, h)))[training.lossOutput]?.data[0]);
      const down = Number((await session.run(feedsWith(name, index, -h)))[training.lossOutput]?.data[0]);
      const numeric = (up - down) / (2 * h);
      const expected = gradient[index] as number;
      if (Math.abs(numeric - expected) > absolute + relative * Math.abs(expected)) {
        throw new Error(`${testCase.title}: d loss / d ${name}[${index}] is ${expected} from the graph, ${numeric} by finite differences`);
      }
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(0);
  await session.release();
}

const f64 = 'float64' as const;
const f32 = 'float32' as const;
const cases: GradientCase[] = [
  { op: 'MatMul', title: 'MatMul [3,4] x [4,5]', type: f64, parameters: [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [4, 5] }], outputDims: [3, 5] },
  { op: 'MatMul', title: 'MatMul [2,3,4] x [4,5]', type: f64, parameters: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [4, 5] }], outputDims: [2, 3, 5] },
  { op: 'MatMul', title: 'MatMul [2,3,4] x [1,4,2] (batch broadcast)', type: f64, parameters: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [1, 4, 2] }], outputDims: [2, 3, 2] },
  { op: 'Gemm', title: 'Gemm plain, C [3,5]', type: f64, parameters: [{ name: 'a', dims: [3, 4] }, { name: 'b', dims: [4, 5] }, { name: 'c', dims: [3, 5] }], outputDims: [3, 5] },
  {
    op: 'Gemm', title: 'Gemm transA transB alpha beta, C [5] broadcast', type: f64,
    parameters: [{ name: 'a', dims: [4, 3] }, { name: 'b', dims: [5, 4] }, { name: 'c', dims: [5] }],
    attributes: { transA: attr.int(1), transB: attr.int(1), alpha: attr.float(0.7), beta: attr.float(1.5) }, outputDims: [3, 5],
  },
  { op: 'Add', title: 'Add [2,3,4] + [3,1]', type: f64, parameters: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [3, 1] }], outputDims: [2, 3, 4] },
  {
    // Reshape hides the shape, so the broadcast operand's gradient is summed by axes found at run time.
    op: 'Add', title: 'Add of a [2,1] of unknown shape (run-time axes) + [2,3]', type: f64,
    parameters: [{ name: 'a', dims: [2] }, { name: 'b', dims: [2, 3] }],
    before: [node('Reshape', ['a', 'column'], ['hidden'])], inputs: ['hidden', 'b'], constants: [tensorFromInt64('column', [2], [2, 1])], outputDims: [2, 3],
  },
  {
    op: 'Mul', title: 'Mul of a [3] + [2,3] where neither shape is known (run-time axes both ways)', type: f64,
    parameters: [{ name: 'a', dims: [3] }, { name: 'b', dims: [6] }],
    before: [node('Reshape', ['a', 'row'], ['ha']), node('Reshape', ['b', 'grid'], ['hb'])], inputs: ['ha', 'hb'],
    constants: [tensorFromInt64('row', [1], [3]), tensorFromInt64('grid', [2], [2, 3])], outputDims: [2, 3],
  },
  { op: 'Sub', title: 'Sub [2,3,4] - [4]', type: f64, parameters: [{ name: 'a', dims: [2, 3, 4] }, { name: 'b', dims: [4] }], outputDims: [2, 3, 4] },
  { op: 'Mul', title: 'Mul [3] * [2,3]', type: f64, parameters: [{ name: 'a', dims: [3] }, { name: 'b', dims: [2, 3] }], outputDims: [2, 3] },
  { op: 'Div', title: 'Div [2,3] / [2,1]', type: f64, parameters: [{ name: 'a', dims: [2, 3] }, { name: 'b', dims: [2, 1], low: 0.5, high: 2 }], outputDims: [2, 3] },
  { op: 'Relu', title: 'Relu', type: f64, parameters: [{ name: 'x', dims: [3, 4] }], outputDims: [3, 4] },
  { op: 'LeakyRelu', title: 'LeakyRelu alpha 0.2', type: f32, parameters: [{ name: 'x', dims: [3, 4] }], attributes: { alpha: attr.float(0.2) }, outputDims: [3, 4] },
  { op: 'Sigmoid', title: 'Sigmoid', type: f64, parameters: [{ name: 'x', dims: [3, 4], low: -3, high: 3 }], outputDims: [3, 4] },
  { op: 'Tanh', title: 'Tanh', type: f64, parameters: [{ name: 'x', dims: [3, 4], low: -2, high: 2 }], outputDims: [3, 4] },
  { op: 'Softmax', title: 'Softmax axis 1 of [2,3,4]', type: f64, parameters: [{ name: 'x', dims: [2, 3, 4], low: -2, high: 2 }], attributes: { axis: attr.int(1) }, outputDims: [2, 3, 4] },
  { op: 'LogSoftmax', title: 'LogSoftmax axis -1', type: f64, parameters: [{ name: 'x', dims: [3, 5], low: -2, high: 2 }], outputDims: [3, 5] },
  {
    op: 'Conv', title: 'Conv groups 2, strides [2,1], pads [1,0,1,2], dilations [1,2], bias', type: f32,
    parameters: [{ name: 'x', dims: [2, 4, 7, 6] }, { name: 'w', dims: [6, 2, 3, 3] }, { name: 'b', dims: [6] }],
    attributes: { group: attr.int(2), strides: attr.ints([2, 1]), pads: attr.ints([1, 0, 1, 2]), dilations: attr.ints([1, 2]) }, outputDims: [2, 6, 4, 4],
  },
  {
    op: 'Conv', title: 'Conv stride 2 (a row no window reaches), no bias', type: f32,
    parameters: [{ name: 'x', dims: [1, 2, 6, 6] }, { name: 'w', dims: [3, 2, 2, 2] }],
    attributes: { strides: attr.ints([2, 2]), kernel_shape: attr.ints([2, 2]) }, outputDims: [1, 3, 3, 3],
  },
  {
    op: 'Conv', title: 'Conv 3x3 stride 2 pads 1 on 6x6 (the end padding no window reaches)', type: f32,
    parameters: [{ name: 'x', dims: [1, 2, 6, 6] }, { name: 'w', dims: [2, 2, 3, 3] }],
    attributes: { strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]) }, outputDims: [1, 2, 3, 3],
  },
  {
    op: 'Conv', title: 'Conv depthwise (groups = channels), pads 1', type: f32,
    parameters: [{ name: 'x', dims: [2, 3, 5, 5] }, { name: 'w', dims: [3, 1, 3, 3] }],
    attributes: { group: attr.int(3), pads: attr.ints([1, 1, 1, 1]), strides: attr.ints([2, 2]) }, outputDims: [2, 3, 3, 3],
  },
  {
    op: 'BatchNormalization', title: 'BatchNormalization on batch statistics', type: f64,
    parameters: [{ name: 'x', dims: [3, 2, 2, 2] }, { name: 'scale', dims: [2], low: 0.5, high: 1.5 }, { name: 'bias', dims: [2] }, { name: 'mean', dims: [2], trainable: false }, { name: 'var', dims: [2], low: 0.5, high: 1.5, trainable: false }],
    outputDims: [3, 2, 2, 2],
  },
  {
    op: 'BatchNormalization', title: 'BatchNormalization frozen (running statistics)', type: f64,
    parameters: [{ name: 'x', dims: [3, 2, 2, 2] }, { name: 'scale', dims: [2], low: 0.5, high: 1.5, trainable: false }, { name: 'bias', dims: [2], trainable: false }, { name: 'mean', dims: [2], trainable: false }, { name: 'var', dims: [2], low: 0.5, high: 1.5, trainable: false }],
    outputDims: [3, 2, 2, 2],
  },
  {
    op: 'MaxPool', title: 'MaxPool 3x3 stride 2 pads 1 (overlapping windows)', type: f64, parameters: [{ name: 'x', dims: [1, 2, 5, 5] }],
    attributes: { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]) }, outputDims: [1, 2, 3, 3],
  },
  {
    op: 'AveragePool', title: 'AveragePool 3x3 stride 2 pads 1, padding not counted', type: f32, parameters: [{ name: 'x', dims: [1, 2, 6, 6] }],
    attributes: { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]) }, outputDims: [1, 2, 3, 3],
  },
  {
    op: 'AveragePool', title: 'AveragePool 2x2 stride 2 pads counted', type: f32, parameters: [{ name: 'x', dims: [2, 1, 5, 5] }],
    attributes: { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 0, 0]), count_include_pad: attr.int(1) }, outputDims: [2, 1, 3, 3],
  },
  { op: 'GlobalAveragePool', title: 'GlobalAveragePool', type: f32, parameters: [{ name: 'x', dims: [2, 3, 4, 5] }], outputDims: [2, 3, 1, 1] },
  { op: 'Flatten', title: 'Flatten axis 2', type: f64, parameters: [{ name: 'x', dims: [2, 3, 4] }], attributes: { axis: attr.int(2) }, outputDims: [6, 4] },
  { op: 'Reshape', title: 'Reshape [2,3,4] to [4,-1]', type: f64, parameters: [{ name: 'x', dims: [2, 3, 4] }], inputs: ['x', 'shape'], constants: [tensorFromInt64('shape', [2], [4, -1])], outputDims: [4, 6] },
  { op: 'Transpose', title: 'Transpose perm [2,0,1]', type: f64, parameters: [{ name: 'x', dims: [2, 3, 4] }], attributes: { perm: attr.ints([2, 0, 1]) }, outputDims: [4, 2, 3] },
  { op: 'Concat', title: 'Concat axis -1', type: f64, parameters: [{ name: 'a', dims: [2, 3] }, { name: 'b', dims: [2, 2] }], attributes: { axis: attr.int(-1) }, outputDims: [2, 5] },
  { op: 'Identity', title: 'Identity', type: f64, parameters: [{ name: 'x', dims: [2, 3] }], outputDims: [2, 3] },
];

describe('gradient rules against central finite differences', () => {
  for (const testCase of cases) {
    it(testCase.title, async () => {
      await checkGradients(testCase);
    });
  }

  it('Dropout: the backward mask is the forward mask, scaled by 1 / (1 - ratio)', async () => {
    // With x all ones, targets 0 and ratio 0.5, y is 0 or 2, so the loss is 4k/n for k kept elements
    // and d loss / d x is 8/n where kept and 0 where dropped: the two must agree element for element.
    const n = 64;
    const bytes = encodeModel(
      model({
        irVersion: 8,
        opset: 17,
        graph: graph({
          name: 'dropout_check',
          nodes: [node('Dropout', ['x', 'ratio'], ['y'], { seed: attr.int(3) })],
          inputs: [],
          outputs: [valueInfo('y', 'float32', [n])],
          initializers: [tensorFromFloat('float32', 'x', [n], new Array(n).fill(1)), tensorFromFloat('float32', 'ratio', [], [0.5])],
        }),
      }),
    );
    const training = buildTrainingGraph(bytes, { loss: { kind: 'mse' }, trainable: { names: ['x'] } });
    const session = await ort.InferenceSession.create(training.bytes);
    const result = await session.run({ x: new ort.Tensor('float32', new Float32Array(n).fill(1), [n]), targets: new ort.Tensor('float32', new Float32Array(n), [n]) });
    const gradient = Array.from(result[training.gradientOutputs.x as string]?.data as Float32Array);
    const kept = gradient.filter((value) => value !== 0).length;
    expect(gradient.every((value) => value === 0 || Math.abs(value - 8 / n) < 1e-7)).toBe(true);
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(n);
    expect(Number(result.loss?.data[0])).toBeCloseTo((4 * kept) / n, 6);
    await session.release();
  });
});
