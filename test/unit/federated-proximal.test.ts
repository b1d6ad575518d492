import { describe, expect, it } from 'vitest';
import ort from '../../functions/core/onnx/ort.ts';
import { graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { buildTrainingGraph } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

// y = x W, W [2, 1] = [1, -1]; MSE against targets.
const linear = encodeModel(
  model({
    opset: 17,
    irVersion: 8,
    graph: graph({ name: 'linear', nodes: [node('MatMul', ['x', 'W'], ['y'])], inputs: [valueInfo('x', 'float32', ['n', 2])], outputs: [valueInfo('y', 'float32', ['n', 1])], initializers: [tensorFromFloat32('W', [2, 1], [1, -1])] }),
  }),
);
const batch = { x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [2, 2]), targets: new ort.Tensor('float32', Float32Array.from([0, 1]), [2, 1]) };

async function oneStep(mu: number | undefined, anchor?: number[]) {
  const training = buildTrainingGraph(linear, { loss: { kind: 'mse' }, optimizer: { kind: 'sgd' }, ...(mu === undefined ? {} : { proximal: { mu } }) });
  const session = await TrainingSession.create(training);
  if (anchor) {
    const state = session.saveState();
    state.values['W.proximal_anchor'] = Float32Array.from(anchor);
    session.restoreState(state);
  }
  const loss = await session.step(batch, 0.1);
  const weights = [...(session.trainedValues().get('W') as Float32Array)];
  await session.release();
  return { loss, weights, training };
}

describe('FedProx proximal term in the training graph', () => {
  it('adds mu/2 |W - anchor|^2 to the loss and mu (W - anchor) to the gradient', async () => {
    const plain = await oneStep(undefined);
    // Anchor at W's own start: the term and its gradient are 0.
    const atStart = await oneStep(0.5);
    expect(atStart.loss).toBeCloseTo(plain.loss, 6);
    expect(atStart.weights[0]).toBeCloseTo(plain.weights[0] as number, 6);
    // Anchor at [0, 0]: d = W - anchor = [1, -1]; loss + 0.5 / 2 * 2 = + 0.5; W' = W - 0.1 (g + 0.5 d).
    const pulled = await oneStep(0.5, [0, 0]);
    expect(pulled.loss).toBeCloseTo(plain.loss + 0.5, 5);
    expect(pulled.weights[0]).toBeCloseTo((plain.weights[0] as number) - 0.1 * 0.5 * 1, 6);
    expect(pulled.weights[1]).toBeCloseTo((plain.weights[1] as number) - 0.1 * 0.5 * -1, 6);
    await checkOnnxModel(pulled.training.bytes);
    expect(pulled.training.state.find((s) => s.input === 'W.proximal_anchor')?.role).toBe('optimizer');
  });

  it('refuses a negative mu', () => {
    expect(() => buildTrainingGraph(linear, { loss: { kind: 'mse' }, optimizer: { kind: 'sgd' }, proximal: { mu: -1 } })).toThrow('proximal mu -1 must be a finite number >= 0');
  });
});
