/**
 * The optimizer updates and the losses against values computed here by hand, in FP64 so the graph
 * and the hand computation agree to rounding (|difference| <= 1e-12); the losses' gradients against
 * central finite differences; and the refusal of an op that has no gradient rule.
 */
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { tensorFromFloat64 } from '../../functions/core/train/graph-writer.ts';
import type { LossTerm } from '../../functions/core/train/losses.ts';
import type { OptimizerSpec } from '../../functions/core/train/optimizers.ts';
import { buildTrainingGraph, TrainingGraphError } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';

const x = [
  [1, 2],
  [-1, 0.5],
  [0.25, -3],
];
const t = [1, -2, 0.5];
const initialWeight = [0.5, -0.25];
const initialBias = 0.1;

/** prediction = x W + b, W [2, 1], b [1], in FP64. */
function linearModel(): Uint8Array {
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'linear',
        nodes: [node('MatMul', ['x', 'w'], ['xw']), node('Add', ['xw', 'b'], ['y'])],
        inputs: [valueInfo('x', 'float64', ['batch', 2])],
        outputs: [valueInfo('y', 'float64', ['batch', 1])],
        initializers: [tensorFromFloat64('w', [2, 1], initialWeight), tensorFromFloat64('b', [1], [initialBias])],
      }),
    }),
  );
}

/** d(MSE)/dW and d(MSE)/db of the linear model, by hand. */
function linearGradients(w: number[], b: number): { w: number[]; b: number } {
  const n = x.length;
  const errors = x.map((row, i) => (row[0] as number) * (w[0] as number) + (row[1] as number) * (w[1] as number) + b - (t[i] as number));
  return {
    w: [0, 1].map((j) => (2 / n) * errors.reduce((sum, e, i) => sum + e * ((x[i] as number[])[j] as number), 0)),
    b: (2 / n) * errors.reduce((sum, e) => sum + e, 0),
  };
}

async function twoSteps(optimizer: OptimizerSpec, learningRates: [number, number]): Promise<{ w: number[]; b: number }[]> {
  const training = buildTrainingGraph(linearModel(), { loss: { kind: 'mse' }, optimizer });
  const session = await TrainingSession.create(training);
  const batch = {
    x: new ort.Tensor('float64', Float64Array.from(x.flat()), [3, 2]),
    targets: new ort.Tensor('float64', Float64Array.from(t), [3, 1]),
  };
  const after: { w: number[]; b: number }[] = [];
  for (const rate of learningRates) {
    await session.step(batch, rate);
    after.push({ w: Array.from(session.value('w') as Float64Array), b: (session.value('b') as Float64Array)[0] as number });
  }
  await session.release();
  return after;
}

function expectClose(actual: { w: number[]; b: number }[], expected: { w: number[]; b: number }[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((step, index) => {
    const want = expected[index] as { w: number[]; b: number };
    for (const [got, wanted] of [...step.w.map((value, j) => [value, want.w[j] as number]), [step.b, want.b]] as [number, number][]) {
      expect(Math.abs(got - wanted)).toBeLessThanOrEqual(1e-12);
    }
  });
}

describe('optimizers, two steps against hand-computed updates', () => {
  it('SGD with momentum 0.9 and weight decay 0.01 on the matrix only', async () => {
    const [momentum, decay] = [0.9, 0.01];
    let [w, b] = [[...initialWeight], initialBias];
    let [vw, vb] = [[0, 0], 0];
    const expected = [];
    for (const rate of [0.1, 0.05]) {
      const g = linearGradients(w, b);
      vw = vw.map((v, j) => momentum * v + (g.w[j] as number) + decay * (w[j] as number));
      vb = momentum * vb + g.b;
      w = w.map((value, j) => value - rate * (vw[j] as number));
      b = b - rate * vb;
      expected.push({ w: [...w], b });
    }
    expectClose(await twoSteps({ kind: 'sgd', momentum, weightDecay: decay }, [0.1, 0.05]), expected);
  });

  for (const kind of ['adam', 'adamw'] as const) {
    it(`${kind === 'adam' ? 'Adam (L2 decay in the gradient)' : 'AdamW (decoupled decay)'}, bias-corrected by the step counter`, async () => {
      const [beta1, beta2, epsilon, decay] = [0.8, 0.95, 1e-6, 0.1];
      let [w, b] = [[...initialWeight], initialBias];
      let [mw, vw, mb, vb] = [[0, 0], [0, 0], 0, 0];
      const expected = [];
      let step = 0;
      for (const rate of [0.1, 0.05]) {
        step++;
        const g = linearGradients(w, b);
        const gw = kind === 'adam' ? g.w.map((value, j) => value + decay * (w[j] as number)) : g.w;
        mw = mw.map((m, j) => beta1 * m + (1 - beta1) * (gw[j] as number));
        vw = vw.map((v, j) => beta2 * v + (1 - beta2) * (gw[j] as number) ** 2);
        mb = beta1 * mb + (1 - beta1) * g.b;
        vb = beta2 * vb + (1 - beta2) * g.b ** 2;
        const [c1, c2] = [1 - beta1 ** step, 1 - beta2 ** step];
        w = w.map((value, j) => {
          const direction = (mw[j] as number) / c1 / (Math.sqrt((vw[j] as number) / c2) + epsilon);
          return value - rate * (direction + (kind === 'adamw' ? decay * value : 0));
        });
        b = b - (rate * (mb / c1)) / (Math.sqrt(vb / c2) + epsilon);
        expected.push({ w: [...w], b });
      }
      expectClose(await twoSteps({ kind, beta1, beta2, epsilon, weightDecay: decay }, [0.1, 0.05]), expected);
    });
  }

  it('refuses a momentum outside [0, 1)', () => {
    expect(() => buildTrainingGraph(linearModel(), { loss: { kind: 'mse' }, optimizer: { kind: 'sgd', momentum: 1 } })).toThrow(
      new TrainingGraphError('optimizer: momentum 1 is outside [0, 1)'),
    );
  });
});

const logits = [
  [2, -1, 0.5],
  [0, 1, -2],
];

/** prediction = logits, a trainable [2, 3] FP64 initializer, so the loss's gradient is the parameter's. */
function logitsModel(): Uint8Array {
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'logits',
        nodes: [node('Identity', ['z'], ['logits'])],
        inputs: [],
        outputs: [valueInfo('logits', 'float64', [2, 3])],
        initializers: [tensorFromFloat64('z', [2, 3], logits.flat())],
      }),
    }),
  );
}

const softmax = (row: number[], temperature = 1) => {
  const exps = row.map((value) => Math.exp(value / temperature));
  const total = exps.reduce((sum, value) => sum + value, 0);
  return exps.map((value) => value / total);
};

const lossFeeds = {
  labels: new ort.Tensor('int64', BigInt64Array.from([0n, 2n]), [2]),
  targets: new ort.Tensor('float64', Float64Array.from([1, 0, 0, 0, 0, 1]), [2, 3]),
  teacher_probabilities: new ort.Tensor('float64', Float64Array.from([0.7, 0.3, 0, 0.2, 0.5, 0.3]), [2, 3]),
};
const teacher = [
  [0.7, 0.3, 0],
  [0.2, 0.5, 0.3],
];

async function lossAndGradientCheck(loss: LossTerm | LossTerm[]): Promise<number> {
  const training = buildTrainingGraph(logitsModel(), { loss });
  const session = await ort.InferenceSession.create(training.bytes);
  const feeds = (values: number[]) => {
    const chosen: Record<string, ort.Tensor> = { z: new ort.Tensor('float64', Float64Array.from(values), [2, 3]) };
    for (const name of training.lossInputs) chosen[name] = lossFeeds[name as keyof typeof lossFeeds];
    return chosen;
  };
  const base = logits.flat();
  const result = await session.run(feeds(base));
  const gradient = result[training.gradientOutputs.z as string]?.data as Float64Array;
  const h = 1e-6;
  for (let index = 0; index < base.length; index++) {
    const shifted = (delta: number) => base.map((value, i) => (i === index ? value + delta : value));
    const up = Number((await session.run(feeds(shifted(h)))).loss?.data[0]);
    const down = Number((await session.run(feeds(shifted(-h)))).loss?.data[0]);
    expect(Math.abs((up - down) / (2 * h) - (gradient[index] as number))).toBeLessThanOrEqual(1e-8);
  }
  await session.release();
  return Number(result.loss?.data[0]);
}

describe('losses against hand-computed values (and their gradients against finite differences)', () => {
  const labels = [0, 2];
  it('softmax cross-entropy with label smoothing 0.1', async () => {
    const smoothing = 0.1;
    const expected =
      logits.reduce((sum, row, i) => {
        const p = softmax(row);
        return sum - p.reduce((inner, probability, c) => inner + ((c === labels[i] ? 1 - smoothing : 0) + smoothing / 3) * Math.log(probability), 0);
      }, 0) / 2;
    expect(Math.abs((await lossAndGradientCheck({ kind: 'cross-entropy', labelSmoothing: smoothing })) - expected)).toBeLessThanOrEqual(1e-12);
  });

  it('mean squared error', async () => {
    const targets = [1, 0, 0, 0, 0, 1];
    const expected = logits.flat().reduce((sum, value, i) => sum + (value - (targets[i] as number)) ** 2, 0) / 6;
    expect(Math.abs((await lossAndGradientCheck({ kind: 'mse' })) - expected)).toBeLessThanOrEqual(1e-12);
  });

  it('KL divergence at temperature 2, scaled by T^2, a zero teacher probability included', async () => {
    const temperature = 2;
    const expected =
      (temperature ** 2 *
        logits.reduce((sum, row, i) => {
          const q = softmax(row, temperature);
          return sum + (teacher[i] as number[]).reduce((inner, p, c) => inner + (p > 0 ? p * (Math.log(p) - Math.log(q[c] as number)) : 0), 0);
        }, 0)) /
      2;
    expect(Math.abs((await lossAndGradientCheck({ kind: 'kl-divergence', temperature })) - expected)).toBeLessThanOrEqual(1e-12);
  });

  it('distillation: 0.7 KL at T = 3 plus 0.3 cross-entropy', async () => {
    const kl = (3 ** 2 * logits.reduce((sum, row, i) => sum + (teacher[i] as number[]).reduce((inner, p, c) => inner + (p > 0 ? p * (Math.log(p) - Math.log(softmax(row, 3)[c] as number)) : 0), 0), 0)) / 2;
    const ce = -logits.reduce((sum, row, i) => sum + Math.log(softmax(row)[labels[i] as number] as number), 0) / 2;
    const value = await lossAndGradientCheck([
      { kind: 'kl-divergence', temperature: 3, weight: 0.7 },
      { kind: 'cross-entropy', weight: 0.3 },
    ]);
    expect(Math.abs(value - (0.7 * kl + 0.3 * ce))).toBeLessThanOrEqual(1e-12);
  });
});

describe('refusals', () => {
  it('refuses an op on the gradient path that has no rule, naming it and its node', () => {
    const bytes = encodeModel(
      model({
        irVersion: 8,
        opset: 17,
        graph: graph({
          name: 'with_erf',
          nodes: [node('MatMul', ['x', 'w'], ['h'], {}, 'dense'), node('Erf', ['h'], ['y'], {}, 'gelu_erf')],
          inputs: [valueInfo('x', 'float32', ['batch', 2])],
          outputs: [valueInfo('y', 'float32', ['batch', 2])],
          initializers: [tensorFromFloat64('w', [2, 2], [1, 0, 0, 1])].map((tensor) => ({ ...tensor, dataType: 11 })),
        }),
      }),
    );
    expect(() => buildTrainingGraph(bytes, { loss: { kind: 'mse' } })).toThrow(
      new TrainingGraphError(
        'op Erf (node "gelu_erf") has no gradient rule; training supports Add, AveragePool, BatchNormalization, Concat, Conv, Div, Dropout, Flatten, Gemm, GlobalAveragePool, Identity, LeakyRelu, LogSoftmax, MatMul, MaxPool, Mul, Relu, Reshape, Sigmoid, Softmax, Sub, Tanh, Transpose',
      ),
    );
  });

  it('refuses a trainable name that is not a float initializer, and an opset before 13', () => {
    expect(() => buildTrainingGraph(linearModel(), { loss: { kind: 'mse' }, trainable: { names: ['missing'] } })).toThrow(
      new TrainingGraphError('trainable parameter "missing" is not a float initializer of the model'),
    );
    const old = encodeModel({ ...(model({ irVersion: 7, opset: 12, graph: graph({ name: 'g', nodes: [node('Identity', ['w'], ['y'])], inputs: [], outputs: [valueInfo('y', 'float64', [1])], initializers: [tensorFromFloat64('w', [1], [1])] }) })) });
    expect(() => buildTrainingGraph(old, { loss: { kind: 'mse' } })).toThrow(new TrainingGraphError('the model imports ai.onnx opset 12; training supports opsets 13 to 17'));
  });
});
