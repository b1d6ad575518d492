/**
 * The training loop around a TrainingSession: a held-out validation split, seeded shuffling (the same
 * seed gives the same batches, to the bit, and a resumed run the same batches as an uninterrupted
 * one), mini-batches gathered from a data set as the evaluation loads it (IDX or JSONL columns),
 * learning-rate schedules, validation each epoch with early stopping, and a checkpoint state object
 * from which a later invocation continues.
 */
import ort, { type Tensor } from '../onnx/ort.ts';
import type { DatasetColumn } from '../evaluate/datasets.ts';
import { seededRandom } from '../platform/random.ts';
import { withTrainedValues } from './export.ts';
import type { TrainingSession, TrainingState } from './training-session.ts';

/** Rows as the evaluation's readers give them (parseIdxDataset, parseJsonlDataset, loadDataset). */
export interface TrainingData {
  columns: DatasetColumn[];
  labels?: Int32Array | undefined;
  targets?: Float64Array | undefined;
}

export type LearningRateSchedule =
  | { kind: 'constant'; warmupSteps?: number }
  /** Linear warm-up to the peak, then half a cosine down to `floor` (default 0) at the last step. */
  | { kind: 'cosine'; warmupSteps?: number; floor?: number }
  /** Linear warm-up, then the rate times `gamma` every `every` steps. */
  | { kind: 'step'; warmupSteps?: number; every: number; gamma: number };

/** The learning rate of step `step` (0-based) of `totalSteps`. */
export function learningRateAt(peak: number, schedule: LearningRateSchedule, step: number, totalSteps: number): number {
  const warmup = schedule.warmupSteps ?? 0;
  if (step < warmup) return (peak * (step + 1)) / warmup;
  const after = step - warmup;
  switch (schedule.kind) {
    case 'constant':
      return peak;
    case 'cosine': {
      const floor = schedule.floor ?? 0;
      const progress = after / Math.max(1, totalSteps - warmup);
      return floor + (peak - floor) * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress)));
    }
    case 'step':
      return peak * schedule.gamma ** Math.floor(after / schedule.every);
  }
}

/** Fisher-Yates under a seed: the same seed, the same order, on every machine. */
export function seededPermutation(count: number, seed: number): Uint32Array {
  const order = Uint32Array.from({ length: count }, (_, index) => index);
  const random = seededRandom(seed);
  for (let index = count - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1));
    [order[index], order[other]] = [order[other] as number, order[index] as number];
  }
  return order;
}

/** A held-out validation split of `fraction` of the rows, drawn under `seed`. */
export function validationSplit(rows: number, fraction: number, seed: number): { train: Uint32Array; validation: Uint32Array } {
  if (!(fraction >= 0 && fraction < 1)) throw new RangeError(`validation fraction ${fraction} is outside [0, 1)`);
  const order = seededPermutation(rows, seed);
  const held = Math.round(rows * fraction);
  return { validation: order.slice(0, held).sort(), train: order.slice(held).sort() };
}

const epochSeed = (seed: number, epoch: number) => (seed + Math.imul(epoch + 1, 0x9e3779b1)) >>> 0;

function rowCount(data: TrainingData): number {
  const first = data.columns[0];
  if (!first) throw new RangeError('the data set has no input column');
  return (first.data as ArrayLike<unknown>).length / first.rowSize;
}

/** The batch of `rows` (indices into the data set) as feeds: the model's inputs and the loss's input. */
export function gatherBatch(data: TrainingData, rows: ArrayLike<number>, floatType: 'float32' | 'float64'): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  const count = rows.length;
  for (const column of data.columns) {
    const source = column.data;
    if (Array.isArray(source)) throw new RangeError(`input "${column.name}" holds strings; training needs numeric inputs`);
    const typed = source as unknown as { constructor: new (length: number) => Float32Array; subarray(start: number, end: number): Float32Array };
    const batch = new typed.constructor(count * column.rowSize);
    for (let index = 0; index < count; index++) {
      const row = rows[index] as number;
      batch.set(typed.subarray(row * column.rowSize, (row + 1) * column.rowSize), index * column.rowSize);
    }
    const shape = [count * (column.rowShape[0] as number), ...column.rowShape.slice(1)];
    feeds[column.name] = new ort.Tensor(batch as unknown as Float32Array, shape);
  }
  if (data.labels) feeds.labels = new ort.Tensor('int64', BigInt64Array.from({ length: count }, (_, index) => BigInt(data.labels?.[rows[index] as number] as number)), [count]);
  else if (data.targets) {
    const size = data.targets.length / rowCount(data);
    const values = new (floatType === 'float32' ? Float32Array : Float64Array)(count * size);
    for (let index = 0; index < count; index++) values.set(data.targets.subarray((rows[index] as number) * size, ((rows[index] as number) + 1) * size), index * size);
    feeds.targets = new ort.Tensor(floatType, values, [count, size]);
  }
  return feeds;
}

export interface LoopOptions {
  epochs: number;
  batchSize: number;
  learningRate: number;
  schedule: LearningRateSchedule;
  seed: number;
  validationFraction: number;
  /** Stop when the validation score has not improved by `minDelta` for `patience` epochs; keep the best weights. */
  earlyStopping?: { patience: number; minDelta?: number };
  /** Save a checkpoint every this many steps (and at each epoch's end). */
  checkpointEvery?: number;
  onCheckpoint?: (state: LoopState) => Promise<void>;
  /** Awaited: a job reports progress here (and learns there that it was cancelled). */
  onProgress?: (progress: LoopProgress) => void | Promise<void>;
  /** Stop after this many steps in this invocation (a Lambda's time budget); the state says where to go on. */
  maxStepsThisRun?: number;
  /**
   * Changes or completes a batch before its step (augmentation, a teacher's probabilities); `step`
   * is the global step, so a seeded hook gives a resumed run the same batches as an uninterrupted one.
   */
  prepareBatch?: (feeds: Record<string, Tensor>, rows: Uint32Array, step: number) => Promise<Record<string, Tensor>> | Record<string, Tensor>;
  /** Runs after each step on the session's state (pruning masks keep pruned weights at zero). */
  afterStep?: (session: TrainingSession) => void;
  /** Stops the run early (a Lambda's clock); checked before each step, like maxStepsThisRun. */
  shouldPause?: () => boolean;
}

export interface LoopProgress {
  epoch: number;
  step: number;
  loss: number;
  validationScore?: number;
}

/** Where a run stands: enough to continue it in another process, to the same bits. */
export interface LoopState {
  epoch: number;
  /** The next batch of `epoch` to run. */
  batch: number;
  step: number;
  bestScore: number | null;
  epochsWithoutImprovement: number;
  bestValues: Record<string, Float32Array | Float64Array> | null;
  history: { epoch: number; meanLoss: number; validationScore: number }[];
  session: TrainingState;
  done: boolean;
}

export interface LoopResult {
  state: LoopState;
  /** The inference model with the best (or last, without validation) trained values. */
  model: Uint8Array;
}

/**
 * Validation score, higher is better: accuracy for labelled rows (argmax of the model's first
 * output), minus the mean squared error for targets.
 */
export async function validationScore(modelBytes: Uint8Array, data: TrainingData, rows: Uint32Array, batchSize: number, floatType: 'float32' | 'float64'): Promise<number> {
  const session = await ort.InferenceSession.create(modelBytes);
  const output = session.outputNames[0] as string;
  let total = 0;
  try {
    for (let start = 0; start < rows.length; start += batchSize) {
      const chosen = rows.subarray(start, Math.min(rows.length, start + batchSize));
      const feeds = gatherBatch(data, chosen, floatType);
      const inputs = Object.fromEntries(session.inputNames.map((name) => [name, feeds[name] as Tensor]));
      const values = (await session.run(inputs))[output]?.data as Float32Array;
      const width = values.length / chosen.length;
      for (let row = 0; row < chosen.length; row++) {
        if (data.labels) {
          let best = 0;
          for (let column = 1; column < width; column++) if ((values[row * width + column] as number) > (values[row * width + best] as number)) best = column;
          if (best === data.labels[chosen[row] as number]) total += 1;
        } else {
          for (let column = 0; column < width; column++) total -= ((values[row * width + column] as number) - (data.targets?.[(chosen[row] as number) * width + column] as number)) ** 2 / width;
        }
      }
    }
  } finally {
    await session.release();
  }
  return total / rows.length;
}

/** The feeds a graph reads: data sets may carry labels a loss does not use (distillation without labels). */
function pick(feeds: Record<string, Tensor>, names: readonly string[]): Record<string, Tensor> {
  const picked: Record<string, Tensor> = {};
  for (const name of names) {
    const tensor = feeds[name];
    if (!tensor) throw new RangeError(`the batch has no "${name}" for the training graph`);
    picked[name] = tensor;
  }
  return picked;
}

export function initialLoopState(session: TrainingSession): LoopState {
  return { epoch: 0, batch: 0, step: 0, bestScore: null, epochsWithoutImprovement: 0, bestValues: null, history: [], session: session.saveState(), done: false };
}

/** Runs (or continues from `resume`) the loop; `modelBytes` is the inference model the session was built from. */
export async function runTrainingLoop(session: TrainingSession, modelBytes: Uint8Array, data: TrainingData, options: LoopOptions, resume?: LoopState): Promise<LoopResult> {
  const rows = rowCount(data);
  const split = validationSplit(rows, options.validationFraction, options.seed);
  const batchesPerEpoch = Math.floor(split.train.length / options.batchSize);
  if (batchesPerEpoch === 0) throw new RangeError(`${split.train.length} training rows do not fill one batch of ${options.batchSize}`);
  if (data.labels && split.validation.length === 0 && options.earlyStopping) throw new RangeError('early stopping needs a validation split');
  const totalSteps = batchesPerEpoch * options.epochs;
  const graphInputs = [...session.graph.dataInputs, ...session.graph.lossInputs];
  const state = resume ? structuredClone(resume) : initialLoopState(session);
  if (resume) session.restoreState(state.session);
  let stepsThisRun = 0;
  const checkpoint = async () => {
    state.session = session.saveState();
    await options.onCheckpoint?.(structuredClone(state));
  };

  while (!state.done && state.epoch < options.epochs) {
    const order = split.train.length ? seededPermutation(split.train.length, epochSeed(options.seed, state.epoch)) : new Uint32Array();
    const rowsOf = (batch: number) => Uint32Array.from(order.subarray(batch * options.batchSize, (batch + 1) * options.batchSize), (position) => split.train[position] as number);
    let lossSum = 0;
    const lossesBefore = state.batch;
    for (; state.batch < batchesPerEpoch; state.batch++) {
      if ((options.maxStepsThisRun !== undefined && stepsThisRun >= options.maxStepsThisRun) || (stepsThisRun > 0 && options.shouldPause?.())) {
        await checkpoint();
        return { state, model: withTrainedValues(modelBytes, session.trainedValues()) };
      }
      const rows = rowsOf(state.batch);
      let feeds = gatherBatch(data, rows, session.graph.floatType);
      if (options.prepareBatch) feeds = await options.prepareBatch(feeds, rows, state.step);
      const loss = await session.step(pick(feeds, graphInputs), learningRateAt(options.learningRate, options.schedule, state.step, totalSteps));
      options.afterStep?.(session);
      if (!Number.isFinite(loss)) throw new Error(`training diverged: loss ${loss} at step ${state.step}`);
      lossSum += loss;
      state.step++;
      stepsThisRun++;
      await options.onProgress?.({ epoch: state.epoch, step: state.step, loss });
      if (options.checkpointEvery && state.step % options.checkpointEvery === 0 && state.batch + 1 < batchesPerEpoch) {
        state.batch++;
        await checkpoint();
        state.batch--;
      }
    }
    const trained = session.trainedValues();
    const score = split.validation.length ? await validationScore(withTrainedValues(modelBytes, trained), data, split.validation, options.batchSize, session.graph.floatType) : Number.NaN;
    state.history.push({ epoch: state.epoch, meanLoss: lossSum / Math.max(1, batchesPerEpoch - lossesBefore), validationScore: score });
    await options.onProgress?.({ epoch: state.epoch, step: state.step, loss: lossSum / Math.max(1, batchesPerEpoch - lossesBefore), validationScore: score });
    if (!Number.isNaN(score) && (state.bestScore === null || score > state.bestScore + (options.earlyStopping?.minDelta ?? 0))) {
      state.bestScore = score;
      state.bestValues = Object.fromEntries(trained);
      state.epochsWithoutImprovement = 0;
    } else if (!Number.isNaN(score)) {
      state.epochsWithoutImprovement++;
    }
    state.epoch++;
    state.batch = 0;
    if (options.earlyStopping && state.epochsWithoutImprovement >= options.earlyStopping.patience) state.done = true;
    if (state.epoch >= options.epochs) state.done = true;
    await checkpoint();
  }
  const finalValues = state.bestValues ? new Map(Object.entries(state.bestValues)) : session.trainedValues();
  return { state, model: withTrainedValues(modelBytes, finalValues) };
}
