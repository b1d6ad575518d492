/**
 * Loss terms over the model's prediction, each giving its value and its gradient with respect to the
 * prediction directly (the closed forms, cheaper and steadier than differentiating LogSoftmax and Exp).
 * Terms add up with weights, so distillation is KL at a temperature plus cross-entropy on labels.
 */
import { attr } from '../onnx/builder.ts';
import { floatDataType, type GraphWriter } from './graph-writer.ts';
import { TrainingGraphError } from './gradients.ts';

export type LossTerm =
  /** Softmax cross-entropy over the last axis of [batch, classes] logits; integer labels (INT64 [batch]). */
  | { kind: 'cross-entropy'; labelSmoothing?: number; weight?: number }
  /** Mean squared error over every element against `targets` shaped like the prediction. */
  | { kind: 'mse'; weight?: number }
  /** KL(teacher || softmax(logits / T)) x T^2, mean over the batch; `teacher_probabilities` [batch, classes] already at temperature T. */
  | { kind: 'kl-divergence'; temperature: number; weight?: number };

/** The graph input each loss kind reads beside the model's own inputs. */
export const lossInputs = { 'cross-entropy': 'labels', mse: 'targets', 'kl-divergence': 'teacher_probabilities' } as const;

/** True when the term reads logits (so a model's final Softmax is stepped over). */
export const readsLogits = (term: LossTerm) => term.kind !== 'mse';

interface LossParts {
  loss: string;
  grad: string;
}

function batchSize(w: GraphWriter, prediction: string): string {
  const rows = w.op('Cast', [w.dim(prediction, 0, 'loss.batch_rows')], 'loss.batch_rows_float', { to: attr.int(floatDataType[w.floatType]) });
  return w.op('Reshape', [rows, w.ints([])], 'loss.batch_size');
}

function crossEntropy(w: GraphWriter, logits: string, smoothing: number): LossParts {
  const logProbabilities = w.op('LogSoftmax', [logits], 'loss.ce.log_probabilities', { axis: attr.int(-1) });
  const classes = w.dim(logits, -1, 'loss.ce.classes');
  // One-hot by comparison with 0..C-1: onnxruntime's OneHot has no FP64 kernel.
  const classIndices = w.op('Range', [w.intScalar(0), w.op('Reshape', [classes, w.ints([])], 'loss.ce.class_count'), w.intScalar(1)], 'loss.ce.class_indices');
  const hits = w.op('Equal', [w.op('Unsqueeze', [lossInputs['cross-entropy'], w.ints([1])], 'loss.ce.label_column'), classIndices], 'loss.ce.hits');
  let target = w.op('Cast', [hits], 'loss.ce.one_hot', { to: attr.int(floatDataType[w.floatType]) });
  if (smoothing > 0) {
    const classesFloat = w.op('Cast', [classes], 'loss.ce.classes_float', { to: attr.int(floatDataType[w.floatType]) });
    const spread = w.op('Div', [w.float(smoothing), classesFloat], 'loss.ce.smoothing_share');
    target = w.op('Add', [w.op('Mul', [target, w.float(1 - smoothing)], 'loss.ce.kept'), spread], 'loss.ce.smoothed_target');
  }
  const n = batchSize(w, logits);
  const total = w.op('ReduceSum', [w.op('Mul', [target, logProbabilities], 'loss.ce.target_log_p')], 'loss.ce.sum', { keepdims: attr.int(0) });
  const loss = w.op('Div', [w.op('Neg', [total], 'loss.ce.negated'), n], 'loss.ce');
  const error = w.op('Sub', [w.op('Exp', [logProbabilities], 'loss.ce.probabilities'), target], 'loss.ce.error');
  return { loss, grad: w.op('Div', [error, n], 'loss.ce.grad') };
}

function meanSquaredError(w: GraphWriter, prediction: string): LossParts {
  const difference = w.op('Sub', [prediction, lossInputs.mse], 'loss.mse.difference');
  const count = w.countOf(prediction, 'loss.mse.count');
  const loss = w.op('Div', [w.op('ReduceSum', [w.op('Mul', [difference, difference], 'loss.mse.squared')], 'loss.mse.sum', { keepdims: attr.int(0) }), count], 'loss.mse');
  return { loss, grad: w.op('Div', [w.op('Mul', [difference, w.float(2)], 'loss.mse.twice'), count], 'loss.mse.grad') };
}

function klDivergence(w: GraphWriter, logits: string, temperature: number): LossParts {
  const teacher = lossInputs['kl-divergence'];
  const scaled = w.op('Div', [logits, w.float(temperature)], 'loss.kl.scaled_logits');
  const studentLog = w.op('LogSoftmax', [scaled], 'loss.kl.student_log_p', { axis: attr.int(-1) });
  // p log p is 0 at p = 0; Where keeps log(0) from turning it into NaN.
  const teacherLog = w.op('Where', [w.op('Greater', [teacher, w.float(0)], 'loss.kl.teacher_positive'), w.op('Mul', [teacher, w.op('Log', [teacher], 'loss.kl.teacher_log_raw')], 'loss.kl.teacher_plogp_raw'), w.float(0)], 'loss.kl.teacher_plogp');
  const cross = w.op('Mul', [teacher, studentLog], 'loss.kl.cross');
  const n = batchSize(w, logits);
  const total = w.op('ReduceSum', [w.op('Sub', [teacherLog, cross], 'loss.kl.pointwise')], 'loss.kl.sum', { keepdims: attr.int(0) });
  const loss = w.op('Div', [w.op('Mul', [total, w.float(temperature * temperature)], 'loss.kl.scaled'), n], 'loss.kl');
  const error = w.op('Sub', [w.op('Exp', [studentLog], 'loss.kl.student_p'), teacher], 'loss.kl.error');
  return { loss, grad: w.op('Div', [w.op('Mul', [error, w.float(temperature)], 'loss.kl.error_scaled'), n], 'loss.kl.grad') };
}

/** Writes the weighted sum of the terms; returns the scalar loss and d(loss)/d(prediction). */
export function writeLoss(w: GraphWriter, prediction: string, predictionRank: number | undefined, terms: readonly LossTerm[]): LossParts {
  if (terms.length === 0) throw new TrainingGraphError('no loss term given');
  const parts = terms.map((term) => {
    const weight = term.weight ?? 1;
    if (!Number.isFinite(weight)) throw new TrainingGraphError(`loss ${term.kind}: weight ${weight} is not a finite number`);
    if (term.kind !== 'mse' && predictionRank !== undefined && predictionRank !== 2) {
      throw new TrainingGraphError(`loss ${term.kind} needs [batch, classes] logits; "${prediction}" has rank ${predictionRank}`);
    }
    let part: LossParts;
    if (term.kind === 'cross-entropy') {
      const smoothing = term.labelSmoothing ?? 0;
      if (!(smoothing >= 0 && smoothing < 1)) throw new TrainingGraphError(`loss cross-entropy: labelSmoothing ${smoothing} is outside [0, 1)`);
      part = crossEntropy(w, prediction, smoothing);
    } else if (term.kind === 'mse') {
      part = meanSquaredError(w, prediction);
    } else {
      if (!(term.temperature > 0)) throw new TrainingGraphError(`loss kl-divergence: temperature ${term.temperature} must be above 0`);
      part = klDivergence(w, prediction, term.temperature);
    }
    if (weight === 1) return part;
    return { loss: w.op('Mul', [part.loss, w.float(weight)], `${part.loss}.weighted`), grad: w.op('Mul', [part.grad, w.float(weight)], `${part.grad}.weighted`) };
  });
  if (parts.length === 1) return parts[0] as LossParts;
  return { loss: w.op('Sum', parts.map((part) => part.loss), 'loss.total'), grad: w.op('Sum', parts.map((part) => part.grad), 'loss.grad') };
}
