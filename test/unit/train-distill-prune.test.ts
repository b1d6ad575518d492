/**
 * Distillation and pruning on tiny models: the distillation loss's terms, a student built from a
 * teacher's signature learning from it with and without labels, augmentation drawn under a seed,
 * magnitude pruning's exact counts and masks kept through fine-tuning, and structured pruning that
 * removes units through Gemm chains and Conv + BatchNormalization + the next Conv, keeping the
 * outputs exact when the removed units carried nothing.
 */
import { describe, expect, it } from 'vitest';
import ort, { type Tensor } from '../../functions/core/onnx/ort.ts';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { decodeModel, encodeModel, readFloat32Tensor } from '../../functions/core/onnx/model-proto.ts';
import { tensorDims } from '../../functions/core/onnx/graph-toolkit.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { parseIdxDataset } from '../../functions/core/evaluate/datasets.ts';
import { augmentationBatches } from '../../functions/core/train/augment-batches.ts';
import { argmaxLabels, distillationLoss, softenedProbabilities, Teacher, teacherBatches } from '../../functions/core/train/distill.ts';
import { runTrainingLoop, type LoopOptions } from '../../functions/core/train/loop.ts';
import { applyMask, keepFraction, magnitudePrune, structuredPrune, unitChains } from '../../functions/core/train/prune.ts';
import { buildMlpStudent, defaultTrainable, teacherSignature } from '../../functions/core/train/student.ts';
import { buildTrainingGraph } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { mlp, quadrantIdx } from '../helpers/train-fixtures.ts';

const { images, labels } = quadrantIdx();
const data = parseIdxDataset('quadrants', images, labels, { shape: [1, 16] });
const loop: LoopOptions = { epochs: 6, batchSize: 16, learningRate: 0.05, schedule: { kind: 'constant' }, seed: 42, validationFraction: 0.25 };

const initializer = (bytes: Uint8Array, name: string) => {
  const t = (decodeModel(bytes).graph?.initializer ?? []).find((i) => i.name === name)!;
  return { dims: tensorDims(t), values: Array.from(readFloat32Tensor(t)) };
};

async function run(bytes: Uint8Array, feeds: Record<string, Tensor>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    return (await session.run(feeds))[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

async function trainedTeacher(): Promise<Uint8Array> {
  const session = await TrainingSession.create(buildTrainingGraph(mlp(), { loss: { kind: 'cross-entropy' }, trainable: { names: defaultTrainable(mlp()) }, optimizer: { kind: 'adam' } }));
  const trained = await runTrainingLoop(session, mlp(), data, loop);
  expect(trained.state.bestScore).toBe(1);
  return trained.model;
}

describe('distillation', () => {
  it('weighs KL x T^2 by alpha and cross-entropy by 1 - alpha, KL alone without labels', () => {
    expect(distillationLoss({ temperature: 4, alpha: 0.7 }, true)).toEqual([
      { kind: 'kl-divergence', temperature: 4, weight: 0.7 },
      { kind: 'cross-entropy', weight: 0.30000000000000004 },
    ]);
    expect(distillationLoss({ temperature: 4, alpha: 0.7 }, false)).toEqual([{ kind: 'kl-divergence', temperature: 4 }]);
    expect(() => distillationLoss({ temperature: 0, alpha: 0.5 }, true)).toThrow('temperature must be positive, got 0');
  });

  it('softens logits by the temperature', () => {
    const p = softenedProbabilities(Float32Array.of(Math.log(1), Math.log(4)), 2, 2);
    expect(p[0]).toBeCloseTo(1 / 3, 6);
    expect(p[1]).toBeCloseTo(2 / 3, 6);
  });

  it('sizes a student from the teacher: same input and output, the teacher\'s input scale, a final Softmax', async () => {
    const signature = teacherSignature(mlp());
    expect(signature).toEqual({ inputName: 'input', inputDims: [16], outputName: 'probabilities', classes: 4, softmax: true, inputScale: Math.fround(1 / 255) });
    const student = buildMlpStudent(signature, [6]);
    await checkOnnxModel(student);
    expect(initializer(student, 'dense1.weight').dims).toEqual([16, 6]);
    expect(initializer(student, 'dense2.weight').dims).toEqual([6, 4]);
    expect(defaultTrainable(student)).toEqual(['dense1.weight', 'dense1.bias', 'dense2.weight', 'dense2.bias']);
    const out = await run(student, { input: new ort.Tensor('float32', new Float32Array(32).fill(100), [2, 16]) });
    expect(out[0]! + out[1]! + out[2]! + out[3]!).toBeCloseTo(1, 6);
  });

  it('trains a student from a teacher with labels and without them, to the teacher\'s accuracy', async () => {
    const teacherBytes = await trainedTeacher();
    const teacher = await Teacher.create(teacherBytes);
    const logits = await teacher.logitsForAll(data, 240);
    const student = buildMlpStudent(teacherSignature(teacherBytes), [8], 3);
    const train = async (labelled: boolean) => {
      const graph = buildTrainingGraph(student, { loss: distillationLoss({ temperature: 2, alpha: 0.7 }, labelled), trainable: { names: defaultTrainable(student) }, optimizer: { kind: 'adam' } });
      expect(graph.lossInputs).toEqual(labelled ? ['teacher_probabilities', 'labels'] : ['teacher_probabilities']);
      const session = await TrainingSession.create(graph);
      // Unlabelled: the rows' own labels are replaced by the teacher's argmax, which validation scores agreement with.
      const rows = labelled ? data : { columns: data.columns, labels: argmaxLabels(logits, 4) };
      const losses: number[] = [];
      const result = await runTrainingLoop(session, student, rows, { ...loop, prepareBatch: teacherBatches(teacher, 2, logits), onProgress: (p) => { if (p.validationScore === undefined) losses.push(p.loss); } }, undefined);
      return { result, losses };
    };
    for (const labelled of [true, false]) {
      const { result, losses } = await train(labelled);
      expect(losses.slice(-10).reduce((a, b) => a + b) / 10).toBeLessThan(losses.slice(0, 10).reduce((a, b) => a + b) / 10 / 2);
      expect(result.state.bestScore).toBeGreaterThanOrEqual(0.95);
      await checkOnnxModel(result.model);
    }
    // Per batch (as after augmentation) the teacher gives the same probabilities as precomputed.
    const feeds = { input: new ort.Tensor('float32', Float32Array.from(data.columns[0]!.data as Float32Array).subarray(0, 32), [2, 16]) };
    const live = await teacherBatches(teacher, 2)(feeds, Uint32Array.of(0, 1), 0);
    const cached = await teacherBatches(teacher, 2, logits)(feeds, Uint32Array.of(0, 1), 0);
    expect(Array.from(live.teacher_probabilities!.data as Float32Array)).toEqual(Array.from(cached.teacher_probabilities!.data as Float32Array));
    await teacher.release();
  });

  it('augments rows on the fly under the seed and the step: the same batch twice, another at the next step', async () => {
    const hook = augmentationBatches({ kinds: ['shift', 'noise'], probability: 1 }, 'input', { height: 4, width: 4, channels: 1, maxValue: 255 }, 7);
    const original = Float32Array.from(data.columns[0]!.data as Float32Array).subarray(0, 64);
    const feeds = () => ({ input: new ort.Tensor('float32', Float32Array.from(original), [4, 16]) });
    const rows = Uint32Array.of(0, 1, 2, 3);
    const a = (await hook(feeds(), rows, 5)).input!.data as Float32Array;
    const b = (await hook(feeds(), rows, 5)).input!.data as Float32Array;
    const c = (await hook(feeds(), rows, 6)).input!.data as Float32Array;
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(original));
    expect(Array.from(c)).not.toEqual(Array.from(a));
    const none = augmentationBatches({ kinds: ['noise'], probability: 0 }, 'input', { height: 4, width: 4, channels: 1, maxValue: 255 }, 7);
    expect(Array.from((await none(feeds(), rows, 5)).input!.data as Float32Array)).toEqual(Array.from(original));
  });
});

/** Input [N, 2, 4, 4] -> Conv 2->4 (3x3, pad 1) -> BN -> Relu -> Conv 4->3 (1x1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm 3->2 -> Softmax. */
function smallCnn(deadChannels: number[]): Uint8Array {
  const random = seededRandom(11);
  const values = (n: number) => Array.from({ length: n }, () => random() * 2 - 1);
  const w2 = values(12);
  for (const c of deadChannels) for (let o = 0; o < 3; o++) w2[o * 4 + c] = 0;
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'small_cnn',
        nodes: [
          node('Conv', ['input', 'c1.w', 'c1.b'], ['c1'], { pads: attr.ints([1, 1, 1, 1]) }, 'conv1'),
          node('BatchNormalization', ['c1', 'bn.scale', 'bn.bias', 'bn.mean', 'bn.var'], ['bn'], {}, 'bn1'),
          node('Relu', ['bn'], ['r1'], {}, 'relu1'),
          node('Conv', ['r1', 'c2.w'], ['c2'], {}, 'conv2'),
          node('Relu', ['c2'], ['r2'], {}, 'relu2'),
          node('GlobalAveragePool', ['r2'], ['pooled'], {}, 'pool'),
          node('Flatten', ['pooled'], ['flat'], {}, 'flatten'),
          node('Gemm', ['flat', 'fc.w', 'fc.b'], ['logits'], { transB: attr.int(1) }, 'fc'),
          node('Softmax', ['logits'], ['probabilities'], { axis: attr.int(-1) }, 'softmax'),
        ],
        inputs: [valueInfo('input', 'float32', ['batch', 2, 4, 4])],
        outputs: [valueInfo('probabilities', 'float32', ['batch', 2])],
        initializers: [
          tensorFromFloat32('c1.w', [4, 2, 3, 3], values(72)),
          tensorFromFloat32('c1.b', [4], values(4)),
          tensorFromFloat32('bn.scale', [4], [1, 0.5, 2, 1.5]),
          tensorFromFloat32('bn.bias', [4], values(4)),
          tensorFromFloat32('bn.mean', [4], values(4)),
          tensorFromFloat32('bn.var', [4], [1, 2, 0.5, 1]),
          tensorFromFloat32('c2.w', [3, 4, 1, 1], w2),
          tensorFromFloat32('fc.w', [2, 3], values(6)),
          tensorFromFloat32('fc.b', [2], values(2)),
        ],
      }),
    }),
  );
}

describe('pruning', () => {
  it('zeroes exactly the smallest weights per layer or globally, and keeps them zero through fine-tuning', async () => {
    const perLayer = magnitudePrune(mlp(), { sparsity: 0.5, scope: 'layer' });
    expect(perLayer.total).toBe(16 * 8 + 8 * 4);
    expect(perLayer.zeroed).toBe(64 + 16);
    expect(initializer(perLayer.bytes, 'w1').values.filter((v) => v === 0)).toHaveLength(64);
    expect(initializer(perLayer.bytes, 'w2').values.filter((v) => v === 0)).toHaveLength(16);
    const original = initializer(mlp(), 'w1').values;
    const kept = initializer(perLayer.bytes, 'w1').values;
    const smallestKept = Math.min(...kept.filter((v) => v !== 0).map(Math.abs));
    expect(Math.max(...original.filter((_, i) => kept[i] === 0).map(Math.abs))).toBeLessThanOrEqual(smallestKept);

    const global = magnitudePrune(mlp(), { sparsity: 0.75, scope: 'global' });
    expect(global.zeroed).toBe(120);
    const all = [...initializer(global.bytes, 'w1').values, ...initializer(global.bytes, 'w2').values];
    expect(all.filter((v) => v === 0)).toHaveLength(120);

    const session = await TrainingSession.create(buildTrainingGraph(perLayer.bytes, { loss: { kind: 'cross-entropy' }, trainable: { names: ['w1', 'b1', 'w2', 'b2'] }, optimizer: { kind: 'adam' } }));
    const tuned = await runTrainingLoop(session, perLayer.bytes, data, {
      ...loop,
      epochs: 2,
      afterStep: (s) => {
        for (const [name, mask] of perLayer.masks) applyMask(s.value(name) as Float32Array, mask);
      },
    });
    expect(initializer(tuned.model, 'w1').values.filter((v) => v === 0)).toHaveLength(64);
    expect(initializer(tuned.model, 'w1').values).not.toEqual(kept);
    await checkOnnxModel(tuned.model);
  });

  it('removes hidden units of a Gemm chain: weights, bias and the next layer\'s inputs', async () => {
    const before = mlp();
    expect(unitChains(decodeModel(before)).map((c) => [c.producer.opType, c.between.map((n) => n.opType), c.consumer.opType, c.width])).toEqual([['Gemm', ['Tanh'], 'Gemm', 8]]);
    const pruned = structuredPrune(before, { keep: keepFraction(0.5) });
    expect(pruned.layers).toEqual([{ producer: 'w1', consumer: 'w2', before: 8, after: 4 }]);
    expect(initializer(pruned.bytes, 'w1').dims).toEqual([16, 4]);
    expect(initializer(pruned.bytes, 'b1').dims).toEqual([4]);
    expect(initializer(pruned.bytes, 'w2').dims).toEqual([4, 4]);
    expect(pruned.parametersAfter).toBe(pruned.parametersBefore - 16 * 4 - 4 - 4 * 4);
    await checkOnnxModel(pruned.bytes);
    expect(await run(pruned.bytes, { input: new ort.Tensor('float32', new Float32Array(16).fill(100), [1, 16]) })).toHaveLength(4);
  });

  it('removes Conv output channels with their BatchNormalization and the next Conv\'s inputs; dead channels go first and the outputs stay exact', async () => {
    const before = smallCnn([1, 3]);
    const chains = unitChains(decodeModel(before));
    expect(chains.map((c) => [c.producer.name, c.between.map((n) => n.opType), c.consumer.name])).toEqual([
      ['conv1', ['BatchNormalization', 'Relu'], 'conv2'],
      ['conv2', ['Relu', 'GlobalAveragePool', 'Flatten'], 'fc'],
    ]);
    const pruned = structuredPrune(before, { keep: (producer, width) => (producer === 'conv1' ? 2 : width) });
    expect(pruned.layers).toEqual([
      { producer: 'conv1', consumer: 'conv2', before: 4, after: 2 },
      { producer: 'conv2', consumer: 'fc', before: 3, after: 3 },
    ]);
    expect(initializer(pruned.bytes, 'c1.w').dims).toEqual([2, 2, 3, 3]);
    expect(initializer(pruned.bytes, 'bn.scale').values).toEqual([1, 2]);
    expect(initializer(pruned.bytes, 'bn.var').values).toEqual([1, 0.5]);
    expect(initializer(pruned.bytes, 'c2.w').dims).toEqual([3, 2, 1, 1]);
    await checkOnnxModel(pruned.bytes);
    const random = seededRandom(4);
    const input = () => ({ input: new ort.Tensor('float32', Float32Array.from({ length: 3 * 32 }, () => random()), [3, 2, 4, 4]) });
    const feeds = input();
    expect(Array.from(await run(pruned.bytes, feeds))).toEqual(Array.from(await run(before, feeds)));
    // Through the head too: conv2 down to one channel, fc's columns follow (transB).
    const thinner = structuredPrune(pruned.bytes, { keep: () => 1 });
    expect(initializer(thinner.bytes, 'fc.w').dims).toEqual([2, 1]);
    await checkOnnxModel(thinner.bytes);
    expect(await run(thinner.bytes, input())).toHaveLength(6);
  });
});
