/**
 * The training loop on a small IDX data set read by the evaluation's reader: a seeded validation
 * split, schedules at exact steps, learning to high validation accuracy, the same bits from the same
 * seed, a run cut into invocations, and a worker killed mid-epoch, each resuming from its checkpoint
 * to the same bits, early stopping that keeps the best weights, and regression from JSONL rows.
 */
import { describe, expect, it } from 'vitest';
import { graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { decodeModel, encodeModel, readFloat32Tensor } from '../../functions/core/onnx/model-proto.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { parseIdxDataset, parseJsonlDataset } from '../../functions/core/evaluate/datasets.ts';
import { CheckpointFormatError, decodeCheckpoint, encodeCheckpoint } from '../../functions/core/train/checkpoint.ts';
import { learningRateAt, runTrainingLoop, validationSplit, type LoopOptions, type LoopState } from '../../functions/core/train/loop.ts';
import { buildTrainingGraph } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { mlp, quadrantIdx, rows } from '../helpers/train-fixtures.ts';

const { images, labels } = quadrantIdx();
const data = parseIdxDataset('quadrants', images, labels, { shape: [1, 16] });

const modelBytes = mlp();
const options: LoopOptions = {
  epochs: 6,
  batchSize: 16,
  learningRate: 0.05,
  schedule: { kind: 'cosine', warmupSteps: 5 },
  seed: 42,
  validationFraction: 0.25,
};
const graphOf = () => buildTrainingGraph(modelBytes, { loss: { kind: 'cross-entropy' }, trainable: { names: ['w1', 'b1', 'w2', 'b2'] }, optimizer: { kind: 'adam' } });
const weights = (bytes: Uint8Array) => Object.fromEntries((decodeModel(bytes).graph?.initializer ?? []).map((tensor) => [tensor.name, Array.from(readFloat32Tensor(tensor))]));

describe('the training loop', () => {
  it('splits off a seeded validation set: disjoint, complete, the same for the same seed', () => {
    const split = validationSplit(rows, 0.25, 42);
    expect(split.validation).toHaveLength(60);
    expect(split.train).toHaveLength(180);
    expect(new Set([...split.train, ...split.validation]).size).toBe(rows);
    expect(validationSplit(rows, 0.25, 42)).toEqual(split);
    expect(Array.from(validationSplit(rows, 0.25, 43).validation)).not.toEqual(Array.from(split.validation));
  });

  it('gives each schedule’s rate at exact steps', () => {
    expect([0, 4, 5].map((step) => learningRateAt(0.1, { kind: 'constant', warmupSteps: 5 }, step, 100))).toEqual([0.02, 0.1, 0.1]);
    expect(learningRateAt(0.1, { kind: 'cosine', warmupSteps: 10 }, 10, 110)).toBe(0.1);
    expect(learningRateAt(0.1, { kind: 'cosine', warmupSteps: 10 }, 60, 110)).toBeCloseTo(0.05, 15);
    expect(learningRateAt(0.1, { kind: 'cosine', warmupSteps: 10, floor: 0.01 }, 110, 110)).toBeCloseTo(0.01, 15);
    expect([0, 9, 10, 25].map((step) => learningRateAt(0.1, { kind: 'step', every: 10, gamma: 0.5 }, step, 100))).toEqual([0.1, 0.1, 0.05, 0.025]);
  });

  it('learns to high validation accuracy, the same bits from the same seed; a run cut into invocations resumes to the same bits', async () => {
    const straight = await TrainingSession.create(graphOf());
    const first = await runTrainingLoop(straight, modelBytes, data, options);
    expect(first.state.done).toBe(true);
    expect(first.state.step).toBe(6 * 11);
    expect(first.state.bestScore).toBeGreaterThanOrEqual(0.95);
    await checkOnnxModel(first.model);

    const again = await runTrainingLoop(await TrainingSession.create(graphOf()), modelBytes, data, options);
    expect(weights(again.model)).toEqual(weights(first.model));

    // Invocations of at most 7 steps, each in a fresh session, each continuing from the last checkpoint.
    let saved: LoopState | undefined;
    let result;
    let invocations = 0;
    do {
      const session = await TrainingSession.create(graphOf());
      result = await runTrainingLoop(session, modelBytes, data, { ...options, maxStepsThisRun: 7, onCheckpoint: async (state) => void (saved = state) }, saved);
      invocations++;
      await session.release();
    } while (!result.state.done);
    expect(invocations).toBe(10);
    expect(result.state.history.map((entry) => entry.validationScore)).toEqual(first.state.history.map((entry) => entry.validationScore));
    expect(weights(result.model)).toEqual(weights(first.model));
    expect(result.state.session).toEqual(first.state.session);
  });

  it('a worker killed mid-epoch continues from its last checkpoint (every 4 steps, stored as bytes) to the same bits', async () => {
    const reference = await runTrainingLoop(await TrainingSession.create(graphOf()), modelBytes, data, options);
    let stored: Uint8Array | undefined;
    const killed = new Error('worker killed');
    const onCheckpoint = async (state: LoopState) => void (stored = encodeCheckpoint(state));
    await expect(
      runTrainingLoop(await TrainingSession.create(graphOf()), modelBytes, data, {
        ...options,
        checkpointEvery: 4,
        onCheckpoint,
        onProgress: (progress) => {
          if (progress.step === 18) throw killed;
        },
      }),
    ).rejects.toBe(killed);
    const saved = decodeCheckpoint(stored as Uint8Array);
    expect(decodeCheckpoint(encodeCheckpoint(saved))).toEqual(saved);
    expect(saved?.step).toBe(16);
    expect(saved?.epoch).toBe(1);
    expect(saved?.batch).toBe(5);
    const resumed = await runTrainingLoop(await TrainingSession.create(graphOf()), modelBytes, data, { ...options, checkpointEvery: 4, onCheckpoint }, saved);
    expect(weights(resumed.model)).toEqual(weights(reference.model));
    // The best weights may come from an epoch before the kill: compare the last step's state too.
    expect(resumed.state.session).toEqual(reference.state.session);
  });

  it('refuses a truncated checkpoint, naming where it ends', async () => {
    const session = await TrainingSession.create(graphOf());
    const bytes = encodeCheckpoint({ epoch: 0, batch: 0, step: 0, bestScore: null, epochsWithoutImprovement: 0, bestValues: null, history: [], session: session.saveState(), done: false });
    const headerLength = new DataView(bytes.buffer).getUint32(0, true);
    const firstArrayEnd = Math.ceil((4 + headerLength) / 8) * 8 + 16 * 8 * 4;
    expect(() => decodeCheckpoint(bytes.subarray(0, firstArrayEnd - 1))).toThrow(
      new CheckpointFormatError(`truncated training checkpoint: array "w1" ends at byte ${firstArrayEnd} of ${firstArrayEnd - 1}`),
    );
    expect(() => decodeCheckpoint(new Uint8Array(2))).toThrow(new CheckpointFormatError('not a training checkpoint: 2 bytes'));
    await session.release();
  });

  it('stops early when validation stops improving and keeps the best weights', async () => {
    const session = await TrainingSession.create(graphOf());
    // A zero learning rate never improves on the first epoch's score: patience 2 stops after epoch 3.
    const result = await runTrainingLoop(session, modelBytes, data, { ...options, learningRate: 0, earlyStopping: { patience: 2 } });
    expect(result.state.done).toBe(true);
    expect(result.state.history).toHaveLength(3);
    expect(result.state.epochsWithoutImprovement).toBe(2);
    expect(weights(result.model).w1).toEqual(weights(modelBytes).w1);
  });

  it('fits regression targets from JSONL rows (MSE): the validation score is minus the held-out MSE', async () => {
    const random = seededRandom(3);
    const lines = Array.from({ length: 200 }, () => {
      const [a, b] = [random() * 2 - 1, random() * 2 - 1];
      return JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [a, b] }], target: 2 * a - b + 0.5 });
    });
    const rowsData = parseJsonlDataset('linear', new TextEncoder().encode(lines.join('\n')));
    const linear = encodeModel(
      model({
        irVersion: 8,
        opset: 17,
        graph: graph({
          name: 'linear',
          nodes: [node('Gemm', ['x', 'w', 'b'], ['y'])],
          inputs: [valueInfo('x', 'float32', ['batch', 2])],
          outputs: [valueInfo('y', 'float32', ['batch', 1])],
          initializers: [tensorFromFloat32('w', [2, 1], [0, 0]), tensorFromFloat32('b', [1], [0])],
        }),
      }),
    );
    const session = await TrainingSession.create(buildTrainingGraph(linear, { loss: { kind: 'mse' }, optimizer: { kind: 'sgd', momentum: 0.9 } }));
    const result = await runTrainingLoop(session, linear, rowsData, { epochs: 8, batchSize: 10, learningRate: 0.1, schedule: { kind: 'constant' }, seed: 1, validationFraction: 0.2 });
    const scores = result.state.history.map((entry) => entry.validationScore);
    expect(scores[0]).toBeLessThan(0);
    expect(scores[scores.length - 1]).toBeGreaterThan(-1e-4);
    const fitted = weights(result.model);
    expect(fitted.w?.[0]).toBeCloseTo(2, 2);
    expect(fitted.w?.[1]).toBeCloseTo(-1, 2);
    expect(fitted.b?.[0]).toBeCloseTo(0.5, 2);
  });
});
