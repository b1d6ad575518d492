import type { Lineage, ModelManifest, PromotionPolicy } from '../artifacts/manifest.ts';
import { AUGMENTATIONS, type AugmentationKind } from './augment.ts';
import type { DatasetManifest } from './datasets.ts';
import { evaluateGate, type GateResult, type PolicySource } from './gate.ts';
import {
  agreementMetrics,
  bootstrapMean,
  classificationMetrics,
  MIN_SPEEDUP_PAIRS,
  regressionMetrics,
  type AgreementMetrics,
  type BootstrapOptions,
  type ClassificationMetrics,
  type Interval,
  type RegressionMetrics,
  type SpeedupInterval,
} from './metrics.ts';
import type { FailureCount, RangeResult, RowFailure, RowPredictions } from './runner.ts';
import type { ColdStartResult, OfflineResult, ServerResult, SingleStreamResult } from './scenarios.ts';

/** What each step of an evaluation leaves in `evals/.../steps/<n>.json`; the report is built from these alone. */
export type StepResult = { maxRssBytes: number } & (
  | { kind: 'accuracy'; start: number; end: number; result: RangeResult }
  | {
      kind: 'robustness';
      augmentation: AugmentationKind;
      strength: number;
      rows: number;
      candidateTop1: number[];
      baselineTop1?: number[] | undefined;
      candidateErrors: FailureCount;
      baselineErrors?: FailureCount | undefined;
    }
  | { kind: 'cold-start'; candidate: ColdStartResult; baseline?: ColdStartResult | undefined }
  | { kind: 'single-stream'; candidate: SingleStreamResult; baseline?: SingleStreamResult | undefined; speedup?: SpeedupInterval | undefined }
  | { kind: 'offline'; candidate: OfflineResult[]; baseline?: OfflineResult[] | undefined }
  | { kind: 'server'; candidate: ServerResult; baseline?: ServerResult | undefined }
);

export interface VariantReport {
  version: string;
  sizeBytes: number;
  lineage: Lineage | null;
  classification?: ClassificationMetrics;
  regression?: RegressionMetrics;
  singleStream?: SingleStreamResult;
  offline?: OfflineResult[];
  server?: ServerResult;
  coldStart?: ColdStartResult;
  /** Per scenario that ran: accuracy rows are never mixed with benchmark queries. */
  errors: Partial<Record<ErrorScenario, ErrorSummary>>;
}

export type ErrorScenario = 'accuracy' | 'robustness' | 'singleStream' | 'offline' | 'server';

/** What each scenario counts: rows, queries or samples. */
export const ERROR_UNITS: Record<ErrorScenario, string> = {
  accuracy: 'accuracy rows',
  robustness: 'augmented rows',
  singleStream: 'single-stream queries',
  offline: 'offline samples',
  server: 'server queries',
};

export interface ErrorSummary {
  errors: number;
  inferences: number;
  rate: number;
  /** The first failures, each with its row and reason. */
  failures: RowFailure[];
}

export interface RobustnessEntry {
  family: string;
  kind: AugmentationKind;
  strength: number;
  unit: string;
  candidate: Interval;
  baseline?: Interval;
  /** candidate minus baseline under the same augmentation, paired. */
  delta?: Interval;
}

export interface VariantPoint {
  version: string;
  top1: number | null;
  p50Ms: number | null;
  sizeBytes: number;
  reportKey: string | null;
}

export interface EvaluationReport {
  /** 2: errors per scenario with their first failures, and the paired speedup interval. */
  schemaVersion: 2;
  id: string;
  model: string;
  version: string;
  baselineVersion: string | null;
  dataset: { name: string; sha256: string; rows: number; labels: DatasetManifest['labels']; classes?: number };
  scenarios: string[];
  options: Record<string, unknown>;
  startedAt: string;
  evaluatedAt: string;
  durationMs: number;
  environment: Record<string, unknown>;
  candidate: VariantReport;
  baseline?: VariantReport;
  agreement?: AgreementMetrics;
  comparison?: {
    top1Delta?: Interval;
    topKDelta?: Interval;
    maeDelta?: Interval;
    rmseDelta?: Interval;
    /** Median over interleaved single-stream query pairs of baseline latency / candidate latency. */
    speedup?: number;
    /** Its sign-test interval; the gate's minSpeedup reads the lower bound. */
    speedupInterval?: SpeedupInterval;
    /** Why no speedup was established although both versions ran single-stream. */
    speedupUnavailable?: string;
    p99DeltaMs?: number;
    /** candidate / baseline offline samples per second at the largest batch size. */
    throughputRatio?: number;
    sizeRatio: number;
  };
  robustness?: { rows: number; clean: { candidate: Interval; baseline?: Interval }; results: RobustnessEntry[] };
  memory: { peakRssBytes: number };
  variants: VariantPoint[];
  gate: GateResult;
}

export interface BuildReportInput {
  id: string;
  candidate: ModelManifest;
  baseline?: ModelManifest | undefined;
  dataset: DatasetManifest;
  rows: number;
  labels?: Int32Array | undefined;
  scenarios: string[];
  options: Record<string, unknown> & { topK: number; bootstrap: BootstrapOptions };
  steps: StepResult[];
  policy: PromotionPolicy;
  policySource: PolicySource;
  /** Other versions' latest reports on the same data set, for the accuracy-against-latency chart. */
  otherVariants: VariantPoint[];
  environment: Record<string, unknown>;
  startedAt: string;
  now: Date;
}

// JSON turns NaN into null; read it back as NaN so a failed row stays a failed row.
const num = (v: number | null | undefined) => (v === null || v === undefined ? Number.NaN : v);

const KEPT_IN_REPORT = 10;

/** Sums failure counts, keeping the first failures in order. */
function summarize(parts: readonly FailureCount[]): ErrorSummary {
  const errors = parts.reduce((a, p) => a + p.errors, 0);
  const inferences = parts.reduce((a, p) => a + p.inferences, 0);
  return {
    errors,
    inferences,
    rate: inferences === 0 ? Number.NaN : errors / inferences,
    failures: parts.flatMap((p) => p.failures ?? []).slice(0, KEPT_IN_REPORT),
  };
}

function concat(parts: RowPredictions[]) {
  return {
    ranked: parts.flatMap((p) => p.ranked ?? []),
    rowAbs: parts.flatMap((p) => (p.rowAbs ?? []).map(num)),
    rowSq: parts.flatMap((p) => (p.rowSq ?? []).map(num)),
    counts: summarize(parts),
  };
}

function finite(values: number[]): number[] {
  return values.filter((v) => Number.isFinite(v));
}

/** "row 12: <reason>", or "rows 0-255: <reason>" for a batch that failed as a whole. */
export function failureText(f: RowFailure): string {
  return `${f.rows > 1 ? `rows ${f.row}-${f.row + f.rows - 1}` : `row ${f.row}`}: ${f.reason}`;
}

export function buildReport(input: BuildReportInput): EvaluationReport {
  const { steps, options, dataset } = input;
  const bootstrap = options.bootstrap;
  const accuracy = steps.filter((s): s is Extract<StepResult, { kind: 'accuracy' }> => s.kind === 'accuracy').sort((a, b) => a.start - b.start);
  const find = <K extends StepResult['kind']>(kind: K) => steps.find((s) => s.kind === kind) as Extract<StepResult, { kind: K }> | undefined;
  const cand = concat(accuracy.map((s) => s.result.candidate));
  const base = input.baseline ? concat(accuracy.map((s) => s.result.baseline!)) : undefined;
  const labels = input.labels?.subarray(0, input.rows);
  const maxPredicted = Math.max(-1, ...cand.ranked.map((r) => r[0] ?? -1), ...(base?.ranked ?? []).map((r) => r[0] ?? -1));
  const classes = Math.max(dataset.classes ?? 0, maxPredicted + 1);

  const variant = (manifest: ModelManifest, which: 'candidate' | 'baseline', preds: ReturnType<typeof concat> | undefined): VariantReport => {
    const perf = {
      singleStream: find('single-stream')?.[which],
      offline: find('offline')?.[which],
      server: find('server')?.[which],
      coldStart: find('cold-start')?.[which],
    };
    const robustness = steps.filter((s) => s.kind === 'robustness').map((s) => (which === 'candidate' ? s.candidateErrors : s.baselineErrors));
    const errors: VariantReport['errors'] = {};
    if (preds && accuracy.length > 0) errors.accuracy = preds.counts;
    if (robustness.length > 0 && robustness.every((r) => r !== undefined)) errors.robustness = summarize(robustness);
    if (perf.singleStream) errors.singleStream = summarize([perf.singleStream]);
    if (perf.offline) errors.offline = summarize(perf.offline);
    if (perf.server) errors.server = summarize([perf.server]);
    const out: VariantReport = { version: manifest.version, sizeBytes: manifest.bytes, lineage: manifest.lineage, errors };
    if (preds && labels && accuracy.length > 0) out.classification = classificationMetrics(labels, preds.ranked, classes, options.topK, bootstrap);
    if (preds && dataset.labels === 'target' && accuracy.length > 0) out.regression = regressionMetrics(preds.rowAbs, preds.rowSq, bootstrap);
    if (perf.singleStream) out.singleStream = perf.singleStream;
    if (perf.offline) out.offline = perf.offline;
    if (perf.server) out.server = perf.server;
    if (perf.coldStart) out.coldStart = perf.coldStart;
    return out;
  };

  const candidate = variant(input.candidate, 'candidate', cand);
  const baseline = input.baseline ? variant(input.baseline, 'baseline', base) : undefined;

  let agreement: AgreementMetrics | undefined;
  let comparison: EvaluationReport['comparison'];
  if (input.baseline && baseline) {
    if (accuracy.length > 0) {
      const diffMax = accuracy.flatMap((s) => (s.result.diffMax ?? []).map(num));
      const diffMean = accuracy.flatMap((s) => (s.result.diffMean ?? []).map(num));
      agreement = agreementMetrics(
        dataset.labels === 'target' ? undefined : cand.ranked.map((r) => r[0] ?? -1),
        dataset.labels === 'target' || !base ? undefined : base.ranked.map((r) => r[0] ?? -2),
        finite(diffMax),
        finite(diffMean),
        bootstrap,
      );
    }
    comparison = { sizeRatio: input.candidate.bytes / input.baseline.bytes };
    if (labels && base && accuracy.length > 0) {
      const hit = (ranked: number[][], k: number) => Float64Array.from(ranked, (r, i) => (r.slice(0, k).includes(labels[i]!) ? 1 : 0));
      comparison.top1Delta = bootstrapMean(hit(cand.ranked, 1), { ...bootstrap, seed: bootstrap.seed + 3 }, hit(base.ranked, 1));
      comparison.topKDelta = bootstrapMean(hit(cand.ranked, options.topK), { ...bootstrap, seed: bootstrap.seed + 4 }, hit(base.ranked, options.topK));
    }
    if (dataset.labels === 'target' && base && accuracy.length > 0) {
      comparison.maeDelta = bootstrapMean(cand.rowAbs, { ...bootstrap, seed: bootstrap.seed + 5 }, base.rowAbs);
      comparison.rmseDelta = bootstrapMean(cand.rowSq, { ...bootstrap, seed: bootstrap.seed + 6 }, base.rowSq, Math.sqrt);
    }
    if (candidate.singleStream && baseline.singleStream) {
      const speedup = find('single-stream')?.speedup;
      if (speedup) {
        comparison.speedup = speedup.value;
        comparison.speedupInterval = speedup;
      } else {
        const failed = candidate.singleStream.errors + baseline.singleStream.errors;
        comparison.speedupUnavailable =
          failed > 0
            ? `${failed} single-stream queries failed, so their times say nothing about speed`
            : `${Math.min(candidate.singleStream.count, baseline.singleStream.count)} interleaved query pairs are too few for an interval (at least ${MIN_SPEEDUP_PAIRS} needed)`;
      }
      comparison.p99DeltaMs = candidate.singleStream.p99 - baseline.singleStream.p99;
    }
    if (candidate.offline?.length && baseline.offline?.length) {
      const c = candidate.offline.at(-1)!;
      const b = baseline.offline.find((o) => o.batchSize === c.batchSize);
      if (b) comparison.throughputRatio = c.samplesPerSecond / b.samplesPerSecond;
    }
  }

  let robustness: EvaluationReport['robustness'];
  const robust = steps.filter((s): s is Extract<StepResult, { kind: 'robustness' }> => s.kind === 'robustness');
  if (robust.length > 0 && input.labels) {
    const rows = robust[0]!.rows;
    const hits = (top1: ArrayLike<number>) => Float64Array.from({ length: rows }, (_, i) => (top1[i] === input.labels![i] ? 1 : 0));
    const cleanCand = hits(cand.ranked.map((r) => r[0] ?? -1));
    const cleanBase = base ? hits(base.ranked.map((r) => r[0] ?? -1)) : undefined;
    robustness = {
      rows,
      clean: {
        candidate: bootstrapMean(cleanCand, bootstrap),
        ...(cleanBase ? { baseline: bootstrapMean(cleanBase, bootstrap) } : {}),
      },
      results: robust.map((s, i): RobustnessEntry => {
        const spec = AUGMENTATIONS.find((a) => a.kind === s.augmentation)!;
        const c = hits(s.candidateTop1);
        const b = s.baselineTop1 ? hits(s.baselineTop1) : undefined;
        const seeded = { ...bootstrap, seed: bootstrap.seed + 100 + i };
        return {
          family: spec.family,
          kind: s.augmentation,
          strength: s.strength,
          unit: spec.unit,
          candidate: bootstrapMean(c, seeded),
          ...(b ? { baseline: bootstrapMean(b, seeded), delta: bootstrapMean(c, seeded, b) } : {}),
        };
      }),
    };
  }

  const point = (v: VariantReport, reportKey: string | null): VariantPoint => ({
    version: v.version,
    top1: v.classification?.top1.value ?? null,
    p50Ms: v.singleStream?.p50 ?? null,
    sizeBytes: v.sizeBytes,
    reportKey,
  });
  const variants = [point(candidate, null), ...(baseline ? [point(baseline, null)] : [])];
  for (const other of input.otherVariants) if (!variants.some((v) => v.version === other.version)) variants.push(other);

  const gate = evaluateGate(input.policy, input.policySource, {
    accuracyDelta: comparison?.top1Delta,
    speedup: comparison?.speedupInterval,
    speedupUnavailable: comparison?.speedupUnavailable,
    candidateP99Ms: candidate.singleStream?.p99,
    candidateErrors: (Object.entries(candidate.errors) as [ErrorScenario, ErrorSummary][]).map(([scenario, e]) => ({
      what: ERROR_UNITS[scenario],
      errors: e.errors,
      inferences: e.inferences,
      firstReason: e.failures[0] ? failureText(e.failures[0]) : undefined,
    })),
    baselineVersion: input.baseline?.version ?? null,
  });

  return {
    schemaVersion: 2,
    id: input.id,
    model: input.candidate.name,
    version: input.candidate.version,
    baselineVersion: input.baseline?.version ?? null,
    dataset: { name: dataset.name, sha256: dataset.sha256, rows: input.rows, labels: dataset.labels, ...(classes > 0 ? { classes } : {}) },
    scenarios: input.scenarios,
    options: input.options,
    startedAt: input.startedAt,
    evaluatedAt: input.now.toISOString(),
    durationMs: input.now.getTime() - Date.parse(input.startedAt),
    environment: input.environment,
    candidate,
    ...(baseline ? { baseline } : {}),
    ...(agreement ? { agreement } : {}),
    ...(comparison ? { comparison } : {}),
    ...(robustness ? { robustness } : {}),
    memory: { peakRssBytes: steps.reduce((m, s) => Math.max(m, s.maxRssBytes), 0) },
    variants,
    gate,
  };
}
