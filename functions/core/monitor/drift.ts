import type { Baseline, FeatureBaseline } from './baseline.ts';
import type { CaptureRecord } from './capture.ts';
import { FeatureTable, inputFeatures, predictionFeatures, type FeatureColumn } from './features.ts';
import type { DriftPolicy } from './policy.ts';
import { binCounts, jensenShannon, ksTwoSample, psi } from './stats.ts';

/**
 * Captured rows against a version's baseline: per feature PSI and Jensen-Shannon over the baseline's
 * bins (categories for a categorical feature) and, for numeric ones, the KS test against the
 * baseline's sketch. A feature drifts when any test crosses the policy's threshold; KS's alpha is
 * divided among the numeric features, so testing many features does not multiply false alarms.
 */
export interface FeatureDrift {
  name: string;
  group: 'input' | 'prediction';
  kind: FeatureBaseline['kind'];
  samples: number;
  psi: number;
  jensenShannon: number;
  ks: { statistic: number; pValue: number } | null;
  baselineMean?: number;
  capturedMean?: number;
  drifted: boolean;
  /** The tests that crossed their thresholds. */
  reasons: string[];
}

export interface DriftResult {
  samples: number;
  enough: boolean;
  drift: boolean;
  /** The largest PSI over all features (the DriftScore metric). */
  score: number;
  features: FeatureDrift[];
  /** Features of the baseline that no captured record had (a dropped field, a tensor not sent). */
  missing: string[];
}

/** Features of captured records: computed from whole tensors, or as the summary recorded them. */
export function captureFeatures(records: readonly CaptureRecord[]): { inputs: FeatureTable; predictions: FeatureTable; rows: number } {
  const inputs = new FeatureTable();
  const predictions = new FeatureTable();
  let rows = 0;
  for (const record of records) {
    for (const [tensors, table, compute] of [
      [record.inputs, inputs, inputFeatures],
      [record.outputs, predictions, predictionFeatures],
    ] as const) {
      for (const t of tensors) {
        const columns: FeatureColumn[] = t.data ? compute({ name: t.name, datatype: t.datatype, shape: t.shape, data: t.data }) : (t.features ?? []);
        table.add(columns);
      }
    }
    rows += record.inputs[0] ? (record.inputs[0].shape.length >= 2 ? record.inputs[0].shape[0]! : 1) : 0;
  }
  return { inputs, predictions, rows };
}

function numericMean(values: readonly (number | string)[]): number {
  let sum = 0;
  for (const v of values) sum += v as number;
  return values.length ? sum / values.length : 0;
}

function compareFeature(base: FeatureBaseline, values: readonly (number | string)[], group: FeatureDrift['group'], policy: DriftPolicy, ksAlpha: number): FeatureDrift {
  let expected: number[];
  let actual: number[];
  let ks: FeatureDrift['ks'] = null;
  if (base.kind === 'categorical') {
    const categories = [...new Set([...Object.keys(base.categories ?? {}), ...values.map(String)])].sort();
    expected = categories.map((c) => base.categories?.[c] ?? 0);
    const seen = new Map<string, number>();
    for (const v of values) seen.set(String(v), (seen.get(String(v)) ?? 0) + 1);
    actual = categories.map((c) => seen.get(c) ?? 0);
  } else {
    expected = base.counts ?? [];
    actual = binCounts(values as number[], base.edges ?? []);
    const sorted = Float64Array.from(values as number[]).sort();
    ks = ksTwoSample(sorted, base.sketch ?? [], base.count);
  }
  const result = { psi: psi(expected, actual), jensenShannon: jensenShannon(expected, actual) };
  const reasons: string[] = [];
  if (result.psi >= policy.psi) reasons.push(`PSI ${result.psi.toFixed(3)} >= ${policy.psi}`);
  if (result.jensenShannon >= policy.jensenShannon) reasons.push(`Jensen-Shannon ${result.jensenShannon.toFixed(3)} >= ${policy.jensenShannon}`);
  if (ks && ks.pValue < ksAlpha) reasons.push(`KS p-value ${ks.pValue.toExponential(2)} < ${ksAlpha.toExponential(2)}`);
  return {
    name: base.name,
    group,
    kind: base.kind,
    samples: values.length,
    ...result,
    ks,
    ...(base.kind === 'numeric' ? { baselineMean: base.mean ?? 0, capturedMean: numericMean(values) } : {}),
    drifted: reasons.length > 0,
    reasons,
  };
}

export function compareWithBaseline(baseline: Baseline, captured: { inputs: FeatureTable; predictions: FeatureTable; rows: number }, policy: DriftPolicy): DriftResult {
  const pairs = [
    ...baseline.inputs.map((b) => [b, captured.inputs.columns.get(b.name), 'input'] as const),
    ...baseline.predictions.map((b) => [b, captured.predictions.columns.get(b.name), 'prediction'] as const),
  ];
  const present = pairs.filter(([, column]) => column && column.values.length > 0);
  const numeric = present.filter(([b]) => b.kind === 'numeric').length;
  const ksAlpha = policy.ksAlpha / Math.max(1, numeric);
  const enough = captured.rows >= policy.minSamples;
  const features = enough ? present.map(([b, column, group]) => compareFeature(b, column!.values, group, policy, ksAlpha)) : [];
  return {
    samples: captured.rows,
    enough,
    drift: features.some((f) => f.drifted),
    score: features.reduce((m, f) => Math.max(m, f.psi), 0),
    features,
    missing: pairs.filter(([, column]) => !column || column.values.length === 0).map(([b]) => b.name),
  };
}
