import type { InferenceSession, Tensor } from '../onnx/ort.ts';
import { float16BitsToNumber } from '../onnx/builder.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import type { TensorData } from '../v2/codec.ts';
import { batchFeeds, type LoadedDataset } from './datasets.ts';
import { topKIndices } from './metrics.ts';

/** How many failures each run keeps with their reason; the rest are only counted. */
export const KEPT_FAILURES = 5;

/** One failed row (or the first row of a failed batch) and why it failed. */
export interface RowFailure {
  row: number;
  /** Rows the failure covers: a batch onnxruntime refused fails all of its rows. */
  rows: number;
  reason: string;
}

/** Counts of failed rows against rows run, with the first failures' reasons. */
export interface FailureCount {
  errors: number;
  inferences: number;
  failures: RowFailure[];
}

export function recordFailure(into: FailureCount, failure: RowFailure): void {
  into.errors += failure.rows;
  if (into.failures.length < KEPT_FAILURES) into.failures.push(failure);
}

/** One model's outputs for a range of rows, reduced to what the metrics need. */
export interface RowPredictions extends FailureCount {
  /** Classification: each row's top-k classes, best first; [] for a row that failed. */
  ranked?: number[][];
  /** Regression: each row's mean absolute and mean squared error over its target's elements. */
  rowAbs?: number[];
  rowSq?: number[];
  /** Wall time spent in session.run, for the overhead figures. */
  runMs: number;
}

export interface RangeResult {
  candidate: RowPredictions;
  baseline?: RowPredictions;
  /** Per row, candidate against baseline over the whole output: max and mean absolute difference. */
  diffMax?: number[];
  diffMean?: number[];
}

export interface PredictOptions {
  batchSize: number;
  topK: number;
  /** The output that carries scores, predictions or labels; default the model's first. */
  output: string;
  /** Class names in class order, for a model whose label output is a string. */
  classLabels?: readonly string[] | undefined;
  /** Replacement column data (augmented images), indexed like the data set's rows from `start`. */
  override?: Map<string, TensorData> | undefined;
}

/**
 * An output as numbers: `labels` when its values are classes (integer, bool or string outputs, such
 * as scikit-learn's INT64 `label`), else scores. A row whose label maps to no class holds NaN, and
 * `unmapped` says why.
 */
export interface OutputValues {
  values: Float32Array | Float64Array;
  labels: boolean;
  unmapped?: string[];
}

/** Reads any output datatype onnxruntime gives into numbers, without losing an int64 label. */
export function outputValues(tensor: Tensor, classLabels?: readonly string[]): OutputValues {
  const data = tensor.data as unknown;
  if (data instanceof Float32Array || data instanceof Float64Array) return { values: data, labels: false };
  if (tensor.type === 'float16') {
    // Raw half-precision bits in a Uint16Array, or a Float16Array where the runtime has one.
    const values = data instanceof Uint16Array ? Float64Array.from(data, (bits) => float16BitsToNumber(bits)) : Float64Array.from(data as ArrayLike<number>);
    return { values, labels: false };
  }
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    const values = new Float64Array(data.length);
    const unmapped: string[] = [];
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      const n = Number(v);
      if (Number.isSafeInteger(n)) values[i] = n;
      else {
        values[i] = Number.NaN;
        unmapped[i] = `label ${v} is beyond the classes a data set can hold`;
      }
    }
    return { values, labels: true, ...(unmapped.length > 0 ? { unmapped } : {}) };
  }
  if (Array.isArray(data)) {
    const values = new Float64Array(data.length);
    const unmapped: string[] = [];
    for (let i = 0; i < data.length; i++) {
      const text = String(data[i]);
      const named = classLabels ? classLabels.indexOf(text) : -1;
      if (named >= 0) values[i] = named;
      else if (!classLabels && /^(0|[1-9]\d{0,8})$/.test(text)) values[i] = Number(text);
      else {
        values[i] = Number.NaN;
        unmapped[i] = classLabels
          ? `label '${text}' is not one of options.classLabels`
          : `label '${text}' is not a class index; give options.classLabels (the class names in class order)`;
      }
    }
    return { values, labels: true, ...(unmapped.length > 0 ? { unmapped } : {}) };
  }
  // Integer and bool outputs: classes.
  return { values: Float64Array.from(data as ArrayLike<number>), labels: true };
}

/**
 * Runs candidate (and baseline, on the very same batches) over rows [start, end). Outputs are kept
 * only for the current batch: memory stays flat however many rows a chunk has.
 */
export async function predictRange(
  dataset: LoadedDataset,
  start: number,
  end: number,
  candidate: InferenceSession,
  baseline: InferenceSession | undefined,
  options: PredictOptions,
): Promise<RangeResult> {
  const classify = dataset.manifest.labels !== 'target';
  const fresh = (): RowPredictions => ({
    ...(classify ? { ranked: [] } : {}),
    ...(dataset.targets ? { rowAbs: [], rowSq: [] } : {}),
    errors: 0,
    inferences: 0,
    failures: [],
    runMs: 0,
  });
  const result: RangeResult = { candidate: fresh(), ...(baseline ? { baseline: fresh(), diffMax: [], diffMean: [] } : {}) };
  const offset = options.override ? start : 0;
  for (let at = start; at < end; at += options.batchSize) {
    const stop = Math.min(end, at + options.batchSize);
    const rows = stop - at;
    const feeds = batchFeeds(dataset, at - offset, stop - offset, options.override);
    const a = await runOne(candidate, feeds, options, result.candidate, at, rows);
    const b = baseline ? await runOne(baseline, feeds, options, result.baseline!, at, rows) : undefined;
    record(dataset, at, rows, a, result.candidate, options.topK);
    if (baseline) {
      record(dataset, at, rows, b, result.baseline!, options.topK);
      for (let r = 0; r < rows; r++) {
        if (!a || !b || a.values.length !== b.values.length) {
          result.diffMax!.push(Number.NaN);
          result.diffMean!.push(Number.NaN);
          continue;
        }
        const size = a.values.length / rows;
        let max = 0;
        let sum = 0;
        for (let i = r * size; i < (r + 1) * size; i++) {
          const d = Math.abs(a.values[i]! - b.values[i]!);
          sum += d;
          if (d > max) max = d;
        }
        result.diffMax!.push(max);
        result.diffMean!.push(sum / size);
      }
    }
  }
  return result;
}

/** One batch through one session; a refusal fails the batch's rows and keeps the runtime's reason. */
async function runOne(
  session: InferenceSession,
  feeds: Record<string, Tensor>,
  options: PredictOptions,
  into: RowPredictions,
  first: number,
  rows: number,
): Promise<OutputValues | undefined> {
  into.inferences += rows;
  const started = performance.now();
  try {
    const out = await session.run(feeds, [options.output]);
    into.runMs += performance.now() - started;
    const values = outputValues(out[options.output] as Tensor, options.classLabels);
    if (values.values.length % rows !== 0) {
      recordFailure(into, { row: first, rows, reason: `output '${options.output}' has ${values.values.length} values for ${rows} rows` });
      return undefined;
    }
    return values;
  } catch (error) {
    into.runMs += performance.now() - started;
    recordFailure(into, { row: first, rows, reason: runtimeMessage(error) });
    return undefined;
  }
}

function record(dataset: LoadedDataset, first: number, rows: number, output: OutputValues | undefined, into: RowPredictions, k: number): void {
  const scores = output?.values;
  const size = scores ? scores.length / rows : 0;
  const failRow = (r: number, reason: string) => recordFailure(into, { row: first + r, rows: 1, reason });
  for (let r = 0; r < rows; r++) {
    const unmapped = output?.unmapped?.slice(r * size, (r + 1) * size).find((u) => u !== undefined);
    if (unmapped) failRow(r, unmapped);
    if (into.ranked) {
      if (!scores || unmapped) into.ranked.push([]);
      else if (output.labels && size !== 1) {
        failRow(r, `the label output has ${size} values per row; a label output has one (choose a score output with options.output)`);
        into.ranked.push([]);
      } else into.ranked.push(size === 1 ? [output.labels ? scores[r]! : Math.round(scores[r]!)] : topKIndices(scores, r, size, k));
    }
    if (into.rowAbs && dataset.targets) {
      const t = dataset.manifest.targetSize!;
      if (!scores || unmapped || size !== t) {
        if (scores && !unmapped) failRow(r, `the output has ${size} values per row but the target has ${t}`);
        into.rowAbs.push(Number.NaN);
        into.rowSq!.push(Number.NaN);
        continue;
      }
      let abs = 0;
      let sq = 0;
      for (let i = 0; i < t; i++) {
        const d = scores[r * size + i]! - dataset.targets[(first + r) * t + i]!;
        abs += Math.abs(d);
        sq += d * d;
      }
      into.rowAbs.push(abs / t);
      into.rowSq!.push(sq / t);
    }
  }
}
