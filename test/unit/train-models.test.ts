/**
 * Whole models through the engine: a tiny MLP and a tiny CNN whose loss falls over a few steps on a
 * fixed batch, trained values written back into an inference model that passes the ONNX checker and
 * loads, head-only training that leaves the body bit for bit, and resuming from a saved state that
 * gives the same bits as an uninterrupted run. The training graphs themselves pass the checker too.
 */
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { decodeModel, encodeModel, readFloat32Tensor } from '../../functions/core/onnx/model-proto.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { withTrainedValues } from '../../functions/core/train/export.ts';
import { buildTrainingGraph, type TrainingGraphOptions } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

const random = seededRandom(11);
const uniform = (count: number, scale: number) => Array.from({ length: count }, () => (random() * 2 - 1) * scale);

/** MLP 6-16-3 with a final Softmax, the shape of the demo model. */
function mlpModel(): Uint8Array {
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'tiny_mlp',
        nodes: [
          node('MatMul', ['input', 'body.weight'], ['body.matmul']),
          node('Add', ['body.matmul', 'body.bias'], ['body.pre']),
          node('Relu', ['body.pre'], ['body.act']),
          node('MatMul', ['body.act', 'head.weight'], ['head.matmul']),
          node('Add', ['head.matmul', 'head.bias'], ['logits']),
          node('Softmax', ['logits'], ['probabilities'], { axis: attr.int(1) }),
        ],
        inputs: [valueInfo('input', 'float32', ['batch', 6])],
        outputs: [valueInfo('probabilities', 'float32', ['batch', 3])],
        initializers: [
          tensorFromFloat32('body.weight', [6, 16], uniform(96, 0.5)),
          tensorFromFloat32('body.bias', [16], new Array(16).fill(0)),
          tensorFromFloat32('head.weight', [16, 3], uniform(48, 0.5)),
          tensorFromFloat32('head.bias', [3], [0, 0, 0]),
        ],
      }),
    }),
  );
}

/** Conv-BN-Relu-MaxPool-Conv-LeakyRelu-AveragePool-Dropout-GlobalAveragePool-Flatten-Gemm. */
function cnnModel(): Uint8Array {
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'tiny_cnn',
        nodes: [
          node('Conv', ['image', 'conv1.weight', 'conv1.bias'], ['conv1'], { pads: attr.ints([1, 1, 1, 1]) }),
          node('BatchNormalization', ['conv1', 'bn1.scale', 'bn1.bias', 'bn1.mean', 'bn1.var'], ['bn1']),
          node('Relu', ['bn1'], ['relu1']),
          node('MaxPool', ['relu1'], ['pool1'], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) }),
          node('Conv', ['pool1', 'conv2.weight'], ['conv2'], { pads: attr.ints([1, 1, 1, 1]) }),
          node('LeakyRelu', ['conv2'], ['leaky2'], { alpha: attr.float(0.1) }),
          node('AveragePool', ['leaky2'], ['pool2'], { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) }),
          node('Dropout', ['pool2', 'drop.ratio'], ['dropped']),
          node('GlobalAveragePool', ['dropped'], ['gap']),
          node('Flatten', ['gap'], ['features']),
          node('Gemm', ['features', 'fc.weight', 'fc.bias'], ['logits'], { transB: attr.int(1) }),
        ],
        inputs: [valueInfo('image', 'float32', ['batch', 1, 8, 8])],
        outputs: [valueInfo('logits', 'float32', ['batch', 3])],
        initializers: [
          tensorFromFloat32('conv1.weight', [4, 1, 3, 3], uniform(36, 0.5)),
          tensorFromFloat32('conv1.bias', [4], [0, 0, 0, 0]),
          tensorFromFloat32('bn1.scale', [4], [1, 1, 1, 1]),
          tensorFromFloat32('bn1.bias', [4], [0, 0, 0, 0]),
          tensorFromFloat32('bn1.mean', [4], [0, 0, 0, 0]),
          tensorFromFloat32('bn1.var', [4], [1, 1, 1, 1]),
          tensorFromFloat32('conv2.weight', [6, 4, 3, 3], uniform(216, 0.3)),
          tensorFromFloat32('drop.ratio', [], [0.1]),
          tensorFromFloat32('fc.weight', [3, 6], uniform(18, 0.5)),
          tensorFromFloat32('fc.bias', [3], [0, 0, 0]),
        ],
      }),
    }),
  );
}

const batchSize = 12;
const labels = new ort.Tensor('int64', BigInt64Array.from({ length: batchSize }, (_, i) => BigInt(i % 3)), [batchSize]);
const mlpBatch = { input: new ort.Tensor('float32', Float32Array.from(uniform(batchSize * 6, 1)), [batchSize, 6]), labels };
const cnnBatch = { image: new ort.Tensor('float32', Float32Array.from(uniform(batchSize * 64, 1)), [batchSize, 1, 8, 8]), labels };

async function lossesOver(modelBytes: Uint8Array, options: TrainingGraphOptions, batch: Record<string, ort.Tensor>, steps: number, rate: number) {
  const session = await TrainingSession.create(buildTrainingGraph(modelBytes, options));
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) losses.push(await session.step(batch, rate));
  return { session, losses };
}

const crossEntropyOf = (probabilities: Float32Array) =>
  -Array.from({ length: batchSize }, (_, row) => Math.log(probabilities[row * 3 + (row % 3)] as number)).reduce((sum, value) => sum + value, 0) / batchSize;

describe('training whole models', () => {
  it('a tiny MLP: loss falls under SGD with momentum, and the written-back model passes the checker and scores better', async () => {
    const modelBytes = mlpModel();
    const { session, losses } = await lossesOver(modelBytes, { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'sgd', momentum: 0.9, weightDecay: 1e-4 } }, mlpBatch, 30, 0.1);
    expect(session.graph.prediction).toBe('logits');
    await checkOnnxModel(session.graph.bytes);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan((losses[0] as number) * 0.5);

    const trained = withTrainedValues(modelBytes, session.trainedValues());
    await checkOnnxModel(trained);
    const written = decodeModel(trained);
    expect(Array.from(readFloat32Tensor((written.graph?.initializer ?? []).find((t) => t.name === 'head.weight') ?? {}))).toEqual(Array.from(session.value('head.weight') as Float32Array));
    const before = await ort.InferenceSession.create(modelBytes);
    const after = await ort.InferenceSession.create(trained);
    const lossBefore = crossEntropyOf((await before.run({ input: mlpBatch.input })).probabilities?.data as Float32Array);
    const lossAfter = crossEntropyOf((await after.run({ input: mlpBatch.input })).probabilities?.data as Float32Array);
    expect(Math.abs(lossBefore - (losses[0] as number))).toBeLessThan(1e-5);
    expect(lossAfter).toBeLessThan(losses[losses.length - 1] as number);
    await Promise.all([session.release(), before.release(), after.release()]);
  });

  it('a tiny CNN (Conv, BatchNormalization, pools, Dropout, Gemm): loss falls under Adam; running statistics move and are written back', async () => {
    const modelBytes = cnnModel();
    const { session, losses } = await lossesOver(modelBytes, { loss: { kind: 'cross-entropy', labelSmoothing: 0.05 }, optimizer: { kind: 'adam' } }, cnnBatch, 40, 0.03);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan((losses[0] as number) * 0.7);
    await checkOnnxModel(session.graph.bytes);
    expect(session.graph.state.filter((entry) => entry.role === 'buffer').map((entry) => entry.input)).toEqual(['bn1.mean', 'bn1.var']);
    const runningMean = Array.from(session.value('bn1.mean') as Float32Array);
    expect(runningMean.some((value) => value !== 0)).toBe(true);

    const trained = withTrainedValues(modelBytes, session.trainedValues());
    await checkOnnxModel(trained);
    const written = decodeModel(trained);
    expect(Array.from(readFloat32Tensor((written.graph?.initializer ?? []).find((t) => t.name === 'bn1.mean') ?? {}))).toEqual(runningMean);
    const inference = await ort.InferenceSession.create(trained);
    const logits = (await inference.run({ image: cnnBatch.image })).logits?.data as Float32Array;
    expect(logits).toHaveLength(batchSize * 3);
    expect(Array.from(logits).every(Number.isFinite)).toBe(true);
    await Promise.all([session.release(), inference.release()]);
  });

  it('trains only the head when asked: the body stays a constant of the graph and bit for bit the same', async () => {
    const modelBytes = mlpModel();
    const { session, losses } = await lossesOver(modelBytes, { loss: { kind: 'cross-entropy' }, trainable: { prefix: 'head.' }, optimizer: { kind: 'adamw', weightDecay: 0.01 } }, mlpBatch, 10, 0.05);
    expect(session.graph.trainable).toEqual(['head.weight', 'head.bias']);
    expect(session.graph.state.filter((entry) => entry.role === 'parameter').map((entry) => entry.input)).toEqual(['head.weight', 'head.bias']);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] as number);
    const written = decodeModel(withTrainedValues(modelBytes, session.trainedValues()));
    const original = decodeModel(modelBytes);
    const data = (proto: typeof written, name: string) => Array.from(readFloat32Tensor((proto.graph?.initializer ?? []).find((t) => t.name === name) ?? {}));
    expect(data(written, 'body.weight')).toEqual(data(original, 'body.weight'));
    expect(data(written, 'head.weight')).not.toEqual(data(original, 'head.weight'));
    await session.release();
  });

  it('resumes from a saved state to the same bits as an uninterrupted run', async () => {
    const options: TrainingGraphOptions = { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'adam', weightDecay: 0.01 } };
    const graphOf = buildTrainingGraph(mlpModel(), options);
    const straight = await TrainingSession.create(graphOf);
    for (let step = 0; step < 4; step++) await straight.step(mlpBatch, 0.01);

    const first = await TrainingSession.create(graphOf);
    for (let step = 0; step < 2; step++) await first.step(mlpBatch, 0.01);
    const saved = structuredClone(first.saveState());
    await first.release();
    const resumed = await TrainingSession.create(graphOf);
    resumed.restoreState(saved);
    expect(resumed.stepCount).toBe(2);
    for (let step = 0; step < 2; step++) await resumed.step(mlpBatch, 0.01);
    for (const entry of graphOf.state) {
      expect(Buffer.from((resumed.value(entry.input) as Float32Array).buffer).equals(Buffer.from((straight.value(entry.input) as Float32Array).buffer))).toBe(true);
    }
    expect(Number((resumed.value('optimizer.step') as BigInt64Array)[0])).toBe(4);
    await Promise.all([straight.release(), resumed.release()]);
  });
});
