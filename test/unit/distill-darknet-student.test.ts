/**
 * Distillation into a thinner CNN: a tiny Darknet-style teacher (two residual stages, width x1, 32x32
 * images of four synthetic classes) taught to a student built by the same builder at width x0.5 (the
 * `darknet` student spec), for a few steps: the loss falls, and the student passes the ONNX checker
 * and loads.
 */
import { describe, expect, it } from 'vitest';
import ort from '../../functions/core/onnx/ort.ts';
import { decodeModel } from '../../functions/core/onnx/model-proto.ts';
import { darknet53Bytes, darknetSampleImages } from '../../functions/core/onnx/darknet.ts';
import { distillationLoss, Teacher, teacherBatches } from '../../functions/core/train/distill.ts';
import { runTrainingLoop } from '../../functions/core/train/loop.ts';
import { buildStudent, darknetInputProblem, defaultTrainable, teacherSignature } from '../../functions/core/train/student.ts';
import { buildTrainingGraph } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

const SIZE = 32;
const CLASSES = 4;
const STAGES = [1, 1];
const ROWS = 48;

/** Output channels of each Conv, in graph order. */
const convWidths = (bytes: Uint8Array) => {
  const g = decodeModel(bytes).graph!;
  const dims = new Map(g.initializer!.map((t) => [t.name, (t.dims ?? []).map(Number)]));
  return g.node!.filter((n) => n.opType === 'Conv').map((n) => dims.get(n.input![1]!)![0]);
};

describe('a thinner Darknet-style student', () => {
  it('refuses a teacher input it cannot take, naming the stride its stages need', () => {
    const signature = { inputName: 'input', inputDims: [3, 48, 48], outputName: 'probabilities', classes: CLASSES, softmax: true, inputScale: 1 };
    expect(darknetInputProblem(signature, STAGES)).toBeUndefined();
    expect(darknetInputProblem(signature)).toBe("a darknet student of 5 stages needs an input [batch, 3, S, S] with S a multiple of 32; the teacher's is [batch, 3, 48, 48]");
  });

  it('learns from a tiny CNN teacher at half its width: the loss falls, and the student is a valid model that loads', async () => {
    const teacherBytes = await darknet53Bytes({ stages: STAGES, widthMultiplier: 1, inputSize: SIZE, classes: CLASSES, seed: 3, calibrationImages: 8, probeImages: 64 });
    const signature = teacherSignature(teacherBytes);
    expect(signature).toEqual({ inputName: 'input', inputDims: [3, SIZE, SIZE], outputName: 'probabilities', classes: CLASSES, softmax: true, inputScale: 1 });
    const student = await buildStudent(signature, { kind: 'darknet', widthMultiplier: 0.5, stages: STAGES, seed: 5 });
    // Stem, then per stage a stride-2 conv and one residual block (squeeze, expand): every width halved.
    expect(convWidths(teacherBytes)).toEqual([32, 64, 32, 64, 128, 64, 128]);
    expect(convWidths(student)).toEqual([16, 32, 16, 32, 64, 32, 64]);

    const images = darknetSampleImages(ROWS, SIZE, 11, CLASSES);
    const data = {
      columns: [{ name: 'input', datatype: 'FP32' as const, rowShape: [1, 3, SIZE, SIZE], rowSize: 3 * SIZE * SIZE, data: images.images }],
      labels: images.labels,
    };
    const temperature = 2;
    const teacher = await Teacher.create(teacherBytes);
    const graph = buildTrainingGraph(student, { loss: distillationLoss({ temperature, alpha: 0.7 }, true), trainable: { names: defaultTrainable(student) }, optimizer: { kind: 'adam' } });
    const session = await TrainingSession.create(graph);
    const losses: number[] = [];
    try {
      const logits = await teacher.logitsForAll(data, ROWS);
      const result = await runTrainingLoop(
        session,
        student,
        data,
        {
          epochs: 4,
          batchSize: 12,
          learningRate: 0.01,
          schedule: { kind: 'constant' },
          seed: 7,
          validationFraction: 0,
          prepareBatch: teacherBatches(teacher, temperature, logits),
          onProgress: (p) => {
            if (p.validationScore === undefined) losses.push(p.loss);
          },
        },
        undefined,
      );
      // 4 epochs of 4 steps of 12 rows.
      expect(losses).toHaveLength(16);
      // Each epoch sees every row once: its mean loss falls to well under half the first epoch's.
      const epochLoss = result.state.history.map((h) => h.meanLoss);
      expect(epochLoss).toHaveLength(4);
      expect(epochLoss.at(-1)!).toBeLessThan(epochLoss[0]! / 2);
      expect(Math.max(...epochLoss.slice(1))).toBeLessThan(epochLoss[0]!);
      await checkOnnxModel(result.model);
      const loaded = await ort.InferenceSession.create(result.model);
      try {
        const out = await loaded.run({ input: new ort.Tensor('float32', images.images.subarray(0, 2 * 3 * SIZE * SIZE), [2, 3, SIZE, SIZE]) });
        const probabilities = out.probabilities!;
        expect(probabilities.dims).toEqual([2, CLASSES]);
        for (const row of [0, 1]) expect(Array.from((probabilities.data as Float32Array).subarray(row * CLASSES, (row + 1) * CLASSES)).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      } finally {
        await loaded.release();
      }
    } finally {
      await session.release();
      await teacher.release();
    }
  }, 120_000);
});
