import type { Tensor } from '../onnx/ort.ts';
import { NotFoundError } from '../platform/errors.ts';
import type { ModelSessions } from '../sessions/model-sessions.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName, assertValidVersion } from '../artifacts/names.ts';
import { v2DatatypeOf } from '../v2/datatypes.ts';
import { batchFeeds, loadDataset, matchDatasetToModel, readDatasetManifest } from '../evaluate/datasets.ts';
import { FeatureTable, inputFeatures, predictionFeatures, type FeatureColumn, type FeatureKind, type TensorLike } from './features.ts';
import { binCounts, meanAndStd, quantileEdges, quantileSketch } from './stats.ts';

/**
 * A version's baseline: the distribution of every input feature and prediction (features.ts) over a
 * data set, kept beside the version at `models/<model>/<version>/monitoring/baseline.json`. Numeric
 * features keep decile bins (PSI and JS compare binned shares) and a 1000-point quantile sketch
 * (KS compares distributions); categorical ones keep their categories' counts.
 */
export const BASELINE_BINS = 10;
export const SKETCH_POINTS = 1000;

export interface FeatureBaseline {
  name: string;
  kind: FeatureKind;
  count: number;
  mean?: number;
  std?: number;
  min?: number;
  max?: number;
  edges?: number[];
  counts?: number[];
  sketch?: number[];
  categories?: Record<string, number>;
}

export interface Baseline {
  model: string;
  version: string;
  dataset: { name: string; sha256: string; rows: number };
  created: string;
  rows: number;
  inputs: FeatureBaseline[];
  predictions: FeatureBaseline[];
}

export const baselineKey = (model: string, version: string) => `models/${model}/${version}/monitoring/baseline.json`;

/** The baseline entry of one feature column. */
export function summarizeFeature(column: FeatureColumn): FeatureBaseline {
  if (column.kind === 'categorical') {
    const categories: Record<string, number> = {};
    for (const v of column.values) categories[String(v)] = (categories[String(v)] ?? 0) + 1;
    return { name: column.name, kind: 'categorical', count: column.values.length, categories };
  }
  const sorted = Float64Array.from(column.values as number[]).sort();
  const edges = quantileEdges(sorted, BASELINE_BINS);
  const { mean, std } = meanAndStd(sorted);
  return {
    name: column.name,
    kind: 'numeric',
    count: sorted.length,
    mean,
    std,
    min: sorted[0] ?? 0,
    max: sorted.at(-1) ?? 0,
    edges,
    counts: binCounts(sorted, edges),
    sketch: quantileSketch(sorted, SKETCH_POINTS),
  };
}

export const tensorLike = (name: string, tensor: Tensor): TensorLike => ({
  name,
  datatype: v2DatatypeOf(tensor.type) ?? tensor.type,
  shape: tensor.dims,
  data: tensor.data as ArrayLike<unknown>,
});

export interface BaselineRequest {
  model: string;
  version: string;
  dataset: string;
  /** Rows of the data set used, from the first (all by default). */
  rows?: number | undefined;
}

/** Runs the version over the data set and summarises its inputs and predictions. */
export async function computeBaseline(
  deps: { store: ModelRepository; sessions: ModelSessions; now?: () => Date; progress?: (done: number, total: number) => Promise<void> },
  request: BaselineRequest,
): Promise<Baseline> {
  const model = assertValidName(request.model, 'model name');
  const version = assertValidVersion(request.version);
  const manifest = await deps.store.getManifest(model, version);
  const dataset = await readDatasetManifest(deps.store, request.dataset);
  const { batchable } = matchDatasetToModel(dataset, manifest);
  const loaded = await loadDataset(deps.store, dataset);
  const loadedModel = await deps.sessions.get(manifest);
  const rows = Math.min(dataset.rows, request.rows ?? dataset.rows);
  const step = batchable ? 256 : 1;
  const inputs = new FeatureTable();
  const predictions = new FeatureTable();
  for (let start = 0; start < rows; start += step) {
    const end = Math.min(rows, start + step);
    const feeds = batchFeeds(loaded, start, end);
    const results = await loadedModel.session.run(feeds);
    for (const [name, tensor] of Object.entries(feeds)) inputs.add(inputFeatures(tensorLike(name, tensor)));
    for (const output of manifest.outputs) {
      const tensor = results[output.name] as Tensor | undefined;
      if (tensor) predictions.add(predictionFeatures(tensorLike(output.name, tensor)));
    }
    await deps.progress?.(end, rows);
  }
  return {
    model,
    version,
    dataset: { name: dataset.name, sha256: dataset.sha256, rows: dataset.rows },
    created: (deps.now?.() ?? new Date()).toISOString(),
    rows,
    inputs: [...inputs.columns.values()].map(summarizeFeature),
    predictions: [...predictions.columns.values()].map(summarizeFeature),
  };
}

export async function writeBaseline(store: ModelRepository, baseline: Baseline): Promise<string> {
  const key = baselineKey(baseline.model, baseline.version);
  await store.putObjectBytes(key, Buffer.from(JSON.stringify(baseline)), 'application/json');
  return key;
}

export async function readBaseline(store: ModelRepository, model: string, version: string): Promise<Baseline> {
  const bytes = await store.getObjectBytes(baselineKey(model, version));
  if (!bytes) throw new NotFoundError(`model '${model}' version '${version}' has no baseline; compute one with \`mass monitor baseline ${model} ${version} --dataset <name>\``);
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as Baseline;
}
