/**
 * Optimizer updates written into the training graph: each parameter and its optimizer state come in
 * as graph inputs and go out updated, so a loop feeds one step's outputs to the next step's inputs.
 */
import { attr } from '../onnx/builder.ts';
import { floatDataType, type GraphWriter } from './graph-writer.ts';
import { TrainingGraphError } from './gradients.ts';

export type OptimizerSpec =
  /** v = momentum v + (g + decay p); p -= lr v (PyTorch's SGD, dampening 0). */
  | { kind: 'sgd'; momentum?: number; weightDecay?: number; decay?: DecayScope }
  /** Adam with L2 weight decay added to the gradient, bias-corrected by the step counter. */
  | { kind: 'adam'; beta1?: number; beta2?: number; epsilon?: number; weightDecay?: number; decay?: DecayScope }
  /** AdamW: weight decay applied to the parameter, decoupled from the moments. */
  | { kind: 'adamw'; beta1?: number; beta2?: number; epsilon?: number; weightDecay?: number; decay?: DecayScope };

/** Which parameters weight decay touches: matrices and kernels only (rank >= 2, the default), or all. */
export type DecayScope = 'matrices' | 'all';

export const learningRateInput = 'learning_rate';
export const stepCounterInput = 'optimizer.step';

export interface OptimizerState {
  /** Graph input carrying the state. */
  input: string;
  /** Graph output carrying its next value. */
  output: string;
  /** The parameter it belongs to (undefined for the step counter). */
  parameter?: string;
  kind: 'velocity' | 'adam_m' | 'adam_v' | 'step';
}

export interface ParameterUpdate {
  parameter: string;
  gradient: string;
  rank: number;
}

function checkRange(name: string, value: number, low: number, high: number, inclusiveHigh: boolean): void {
  if (!(value >= low && (inclusiveHigh ? value <= high : value < high))) {
    throw new TrainingGraphError(`optimizer: ${name} ${value} is outside [${low}, ${high}${inclusiveHigh ? ']' : ')'}`);
  }
}

/** Writes the update of every parameter; returns the updated parameter output names and the state. */
export function writeOptimizer(w: GraphWriter, spec: OptimizerSpec, updates: readonly ParameterUpdate[]): { updated: Map<string, string>; state: OptimizerState[] } {
  const weightDecay = spec.weightDecay ?? 0;
  checkRange('weightDecay', weightDecay, 0, 1, false);
  const decays = (update: ParameterUpdate) => weightDecay > 0 && ((spec.decay ?? 'matrices') === 'all' || update.rank >= 2);
  w.reserve(learningRateInput);
  const updated = new Map<string, string>();
  const state: OptimizerState[] = [];
  const stateInput = (parameter: string, kind: OptimizerState['kind']) => w.fresh(`${parameter}.${kind}`);

  if (spec.kind === 'sgd') {
    const momentum = spec.momentum ?? 0;
    checkRange('momentum', momentum, 0, 1, false);
    for (const update of updates) {
      const { parameter } = update;
      let gradient = update.gradient;
      if (decays(update)) gradient = w.op('Add', [gradient, w.op('Mul', [parameter, w.float(weightDecay)], `${parameter}.decay`)], `${parameter}.grad_with_decay`);
      let direction = gradient;
      if (momentum > 0) {
        const velocity = stateInput(parameter, 'velocity');
        direction = w.op('Add', [w.op('Mul', [velocity, w.float(momentum)], `${velocity}.kept`), gradient], `${velocity}.updated`);
        state.push({ input: velocity, output: direction, parameter, kind: 'velocity' });
      }
      const step = w.op('Mul', [direction, learningRateInput], `${parameter}.step`);
      updated.set(parameter, w.op('Sub', [parameter, step], `${parameter}.updated`));
    }
    return { updated, state };
  }

  const beta1 = spec.beta1 ?? 0.9;
  const beta2 = spec.beta2 ?? 0.999;
  const epsilon = spec.epsilon ?? 1e-8;
  checkRange('beta1', beta1, 0, 1, false);
  checkRange('beta2', beta2, 0, 1, false);
  checkRange('epsilon', epsilon, 0, 1, false);
  // The counter holds the steps already taken; this step is number counter + 1.
  w.reserve(stepCounterInput);
  const nextStep = w.op('Add', [stepCounterInput, w.intScalar(1)], `${stepCounterInput}.updated`);
  state.push({ input: stepCounterInput, output: nextStep, kind: 'step' });
  const t = w.op('Cast', [nextStep], 'optimizer.t', { to: attr.int(floatDataType[w.floatType]) });
  const correction1 = w.op('Sub', [w.float(1), w.op('Pow', [w.float(beta1), t], 'optimizer.beta1_t')], 'optimizer.correction1');
  const correction2 = w.op('Sub', [w.float(1), w.op('Pow', [w.float(beta2), t], 'optimizer.beta2_t')], 'optimizer.correction2');
  for (const update of updates) {
    const { parameter } = update;
    let gradient = update.gradient;
    const decoupled = spec.kind === 'adamw' && decays(update);
    if (spec.kind === 'adam' && decays(update)) gradient = w.op('Add', [gradient, w.op('Mul', [parameter, w.float(weightDecay)], `${parameter}.decay`)], `${parameter}.grad_with_decay`);
    const m = stateInput(parameter, 'adam_m');
    const v = stateInput(parameter, 'adam_v');
    const nextM = w.op('Add', [w.op('Mul', [m, w.float(beta1)], `${m}.kept`), w.op('Mul', [gradient, w.float(1 - beta1)], `${m}.new_part`)], `${m}.updated`);
    const squared = w.op('Mul', [gradient, gradient], `${parameter}.grad_squared`);
    const nextV = w.op('Add', [w.op('Mul', [v, w.float(beta2)], `${v}.kept`), w.op('Mul', [squared, w.float(1 - beta2)], `${v}.new_part`)], `${v}.updated`);
    state.push({ input: m, output: nextM, parameter, kind: 'adam_m' }, { input: v, output: nextV, parameter, kind: 'adam_v' });
    const denominator = w.op('Add', [w.op('Sqrt', [w.op('Div', [nextV, correction2], `${v}.corrected`)], `${v}.root`), w.float(epsilon)], `${parameter}.adam_denominator`);
    let direction = w.op('Div', [w.op('Div', [nextM, correction1], `${m}.corrected`), denominator], `${parameter}.adam_direction`);
    if (decoupled) direction = w.op('Add', [direction, w.op('Mul', [parameter, w.float(weightDecay)], `${parameter}.decay`)], `${parameter}.direction_with_decay`);
    const step = w.op('Mul', [direction, learningRateInput], `${parameter}.step`);
    updated.set(parameter, w.op('Sub', [parameter, step], `${parameter}.updated`));
  }
  return { updated, state };
}
