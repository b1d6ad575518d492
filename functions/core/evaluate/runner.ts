import type { InferenceSession, Tensor } from '../ort.ts';
import type { TensorData } from '../v2/codec.ts';
import { batchFeeds, type LoadedDataset } from './datasets.ts';
import { topKIndices } from './metrics.ts';

/** One model's outputs for a range of rows, reduced to what the metrics need. */
export interface RowPredictions {
  /** Classification: each row's top-k classes, best first; [] for a row whose batch failed. */
  ranked?: number[][];
  /** Regression: each row's mean absolute and mean squared error over its target's elements. */
  rowAbs?: number[];
  rowSq?: number[];
  /** Rows whose batch onnxruntime refused. */
  errors: number;
  inferences: number;
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
  /** The output that carries scores or predictions; default the model's first. */
  output: string;
  /** Replacement column data (augmented images), indexed like the data set's rows from `start`. */
  override?: Map<string, TensorData> | undefined;
}

type Scores = Float32Array | Float64Array;

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
    runMs: 0,
  });
  const result: RangeResult = { candidate: fresh(), ...(baseline ? { baseline: fresh(), diffMax: [], diffMean: [] } : {}) };
  const offset = options.override ? start : 0;
  for (let at = start; at < end; at += options.batchSize) {
    const stop = Math.min(end, at + options.batchSize);
    const rows = stop - at;
    const feeds = batchFeeds(dataset, at - offset, stop - offset, options.override);
    const a = await runOne(candidate, feeds, options.output, result.candidate, rows);
    const b = baseline ? await runOne(baseline, feeds, options.output, result.baseline!, rows) : undefined;
    record(dataset, at, rows, a, result.candidate, options.topK);
    if (baseline) {
      record(dataset, at, rows, b, result.baseline!, options.topK);
      for (let r = 0; r < rows; r++) {
        if (!a || !b || a.length !== b.length) {
          result.diffMax!.push(Number.NaN);
          result.diffMean!.push(Number.NaN);
          continue;
        }
        const size = a.length / rows;
        let max = 0;
        let sum = 0;
        for (let i = r * size; i < (r + 1) * size; i++) {
          const d = Math.abs(a[i]! - b[i]!);
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

async function runOne(
  session: InferenceSession,
  feeds: Record<string, Tensor>,
  output: string,
  into: RowPredictions,
  rows: number,
): Promise<Scores | undefined> {
  into.inferences += rows;
  const started = performance.now();
  try {
    const out = await session.run(feeds, [output]);
    into.runMs += performance.now() - started;
    const data = (out[output] as Tensor).data;
    return data instanceof Float32Array || data instanceof Float64Array ? data : Float64Array.from(data as ArrayLike<number>);
  } catch {
    into.runMs += performance.now() - started;
    into.errors += rows;
    return undefined;
  }
}

function record(dataset: LoadedDataset, first: number, rows: number, scores: Scores | undefined, into: RowPredictions, k: number): void {
  const size = scores ? scores.length / rows : 0;
  for (let r = 0; r < rows; r++) {
    if (into.ranked) into.ranked.push(scores ? (size === 1 ? [Math.round(scores[r]!)] : topKIndices(scores, r, size, k)) : []);
    if (into.rowAbs && dataset.targets) {
      const t = dataset.manifest.targetSize!;
      if (!scores || size !== t) {
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
