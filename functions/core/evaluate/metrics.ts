/**
 * Quality metrics and their bootstrap confidence intervals. Everything here is a pure function of
 * per-row results, so the chunks of a long evaluation can be computed apart and combined at the end.
 */
import { seededRandom } from '../platform/random.ts';

export interface Interval {
  /** The point estimate on the full data. */
  value: number;
  low: number;
  high: number;
}

export interface BootstrapOptions {
  resamples: number;
  seed: number;
  /** Two-sided confidence level, e.g. 0.95. */
  confidence: number;
}

export const DEFAULT_BOOTSTRAP: BootstrapOptions = { resamples: 1000, seed: 1, confidence: 0.95 };

/** Linear-interpolated quantile of sorted values (numpy's default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  const a = sorted[lo]!;
  return a + (sorted[hi]! - a) * (at - lo);
}

/**
 * Percentile bootstrap of a statistic that is a mean of per-row values (`perRow`) or, with
 * `paired`, of the difference of two such means over the same resampled rows (candidate minus
 * baseline). `transform` maps a mean to the statistic (RMSE is sqrt of a mean of squares).
 */
export function bootstrapMean(
  perRow: ArrayLike<number>,
  options: BootstrapOptions = DEFAULT_BOOTSTRAP,
  paired?: ArrayLike<number>,
  transform: (mean: number) => number = (m) => m,
): Interval {
  const n = perRow.length;
  if (n === 0) return { value: Number.NaN, low: Number.NaN, high: Number.NaN };
  // The statistic is linear in the rows, so a paired difference resamples one vector: a - b per row.
  const a = Float64Array.from(perRow);
  const b = paired ? Float64Array.from(paired) : undefined;
  const mean = (v: Float64Array) => {
    let s = 0;
    for (let i = 0; i < n; i++) s += v[i]!;
    return s / n;
  };
  const stat = (ma: number, mb: number) => transform(ma) - (b ? transform(mb) : 0);
  const value = stat(mean(a), b ? mean(b) : 0);
  const stats = new Float64Array(options.resamples);
  const random = seededRandom(options.seed);
  const levels = discreteLevels(a, b);
  if (levels) {
    // Few distinct rows (0/1 hits, paired -1/0/1 changes): a resample's sum is the levels weighted by
    // multinomial counts, drawn exactly as conditional binomials; the same distribution as drawing
    // rows one by one, in O(levels * sqrt(n)) per resample instead of O(n).
    for (let r = 0; r < options.resamples; r++) {
      let left = n;
      let mass = 1;
      let sa = 0;
      let sb = 0;
      for (const level of levels) {
        const p = level.count / n;
        const k = left === 0 ? 0 : mass <= p ? left : binomial(left, p / mass, random);
        sa += k * level.a;
        sb += k * level.b;
        left -= k;
        mass -= p;
      }
      stats[r] = stat(sa / n, sb / n);
    }
  } else {
    for (let r = 0; r < options.resamples; r++) {
      let sa = 0;
      let sb = 0;
      for (let i = 0; i < n; i++) {
        const j = Math.floor(random() * n);
        sa += a[j]!;
        if (b) sb += b[j]!;
      }
      stats[r] = stat(sa / n, sb / n);
    }
  }
  stats.sort();
  const tail = (1 - options.confidence) / 2;
  return { value, low: quantileSorted(stats, tail), high: quantileSorted(stats, 1 - tail) };
}

/** The distinct (a, b) row values and how often each occurs, when there are at most 8 of them. */
function discreteLevels(a: Float64Array, b: Float64Array | undefined): { a: number; b: number; count: number }[] | undefined {
  const levels = new Map<string, { a: number; b: number; count: number }>();
  for (let i = 0; i < a.length; i++) {
    const key = b ? `${a[i]},${b[i]}` : String(a[i]);
    const level = levels.get(key);
    if (level) level.count++;
    else {
      if (levels.size === 8) return undefined;
      levels.set(key, { a: a[i]!, b: b ? b[i]! : 0, count: 1 });
    }
  }
  return [...levels.values()];
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7), accurate to about 1e-15 relative. */
function logGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let sum = c[0]!;
  for (let i = 1; i < 9; i++) sum += c[i]! / (x + i);
  const t = x + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(sum);
}

/**
 * An exact Binomial(n, p) draw by inversion from the mode outward: the probabilities at mode, mode+1,
 * mode-1, mode+2, ... are subtracted from one uniform draw until it is used up, which takes about
 * sqrt(n p (1 - p)) steps.
 */
export function binomial(n: number, p: number, random: () => number): number {
  if (p <= 0) return 0;
  if (p >= 1) return n;
  const mode = Math.min(n, Math.floor((n + 1) * p));
  const logPmf = (k: number) => logGamma(n + 1) - logGamma(k + 1) - logGamma(n - k + 1) + k * Math.log(p) + (n - k) * Math.log1p(-p);
  const odds = p / (1 - p);
  let u = random();
  let up = Math.exp(logPmf(mode));
  let down = up;
  u -= up;
  if (u <= 0) return mode;
  let hi = mode;
  let lo = mode;
  for (;;) {
    if (hi < n) {
      up *= ((n - hi) / (hi + 1)) * odds;
      hi++;
      u -= up;
      if (u <= 0) return hi;
    }
    if (lo > 0) {
      down *= (lo / (n - lo + 1)) / odds;
      lo--;
      u -= down;
      if (u <= 0) return lo;
    }
    if (hi >= n && lo <= 0) return mode;
  }
}

export interface ClassMetrics {
  class: number;
  support: number;
  precision: number;
  recall: number;
  f1: number;
}

export interface ClassificationMetrics {
  rows: number;
  top1: Interval;
  topK: Interval & { k: number };
  perClass: ClassMetrics[];
  macroF1: number;
  /** confusion[actual][predicted] */
  confusion: number[][];
}

/**
 * `ranked[i]` holds row i's predicted classes, best first (at least k of them when available).
 * Precision of a class never predicted, and recall of a class never present, are 0 (scikit-learn's
 * zero_division=0).
 */
export function classificationMetrics(
  labels: ArrayLike<number>,
  ranked: readonly (readonly number[])[],
  classes: number,
  k: number,
  bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP,
): ClassificationMetrics {
  const n = labels.length;
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  const hit1 = new Float64Array(n);
  const hitK = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const label = labels[i]!;
    const row = ranked[i]!;
    const top = row[0]!;
    if (label < classes && top < classes) confusion[label]![top]!++;
    hit1[i] = top === label ? 1 : 0;
    hitK[i] = row.slice(0, k).includes(label) ? 1 : 0;
  }
  const perClass = confusion.map((row, c): ClassMetrics => {
    const tp = row[c]!;
    const support = row.reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, r) => a + r[c]!, 0);
    const precision = predicted === 0 ? 0 : tp / predicted;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { class: c, support, precision, recall, f1 };
  });
  return {
    rows: n,
    top1: bootstrapMean(hit1, bootstrap),
    topK: { k, ...bootstrapMean(hitK, { ...bootstrap, seed: bootstrap.seed + 1 }) },
    perClass,
    macroF1: perClass.reduce((a, c) => a + c.f1, 0) / Math.max(1, classes),
    confusion,
  };
}

export interface RegressionMetrics {
  rows: number;
  mae: Interval;
  rmse: Interval;
}

/**
 * Per-row absolute and squared errors are averaged over the row's elements first, so that each row
 * weighs the same in the bootstrap whatever its target size.
 */
export function regressionMetrics(rowAbs: ArrayLike<number>, rowSq: ArrayLike<number>, bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP): RegressionMetrics {
  return {
    rows: rowAbs.length,
    mae: bootstrapMean(rowAbs, bootstrap),
    rmse: bootstrapMean(rowSq, { ...bootstrap, seed: bootstrap.seed + 1 }, undefined, Math.sqrt),
  };
}

export interface AgreementMetrics {
  rows: number;
  /** Share of rows whose top-1 class equals the reference's (classification outputs only). */
  top1Agreement?: Interval;
  /** Largest absolute difference of any output element. */
  maxAbsDiff: number;
  meanAbsDiff: Interval;
}

export function agreementMetrics(
  candidateTop1: ArrayLike<number> | undefined,
  referenceTop1: ArrayLike<number> | undefined,
  rowMaxAbs: ArrayLike<number>,
  rowMeanAbs: ArrayLike<number>,
  bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP,
): AgreementMetrics {
  let max = 0;
  for (let i = 0; i < rowMaxAbs.length; i++) max = Math.max(max, rowMaxAbs[i]!);
  const out: AgreementMetrics = { rows: rowMaxAbs.length, maxAbsDiff: max, meanAbsDiff: bootstrapMean(rowMeanAbs, bootstrap) };
  if (candidateTop1 && referenceTop1) {
    const same = Float64Array.from({ length: candidateTop1.length }, (_, i) => (candidateTop1[i] === referenceTop1[i] ? 1 : 0));
    out.top1Agreement = bootstrapMean(same, { ...bootstrap, seed: bootstrap.seed + 2 });
  }
  return out;
}

export interface LatencySummary {
  count: number;
  mean: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function summarizeLatencies(ms: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(ms).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    mean: sorted.length ? sum / sorted.length : Number.NaN,
    min: sorted[0] ?? Number.NaN,
    p50: quantileSorted(sorted, 0.5),
    p90: quantileSorted(sorted, 0.9),
    p99: quantileSorted(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

/**
 * Histogram of latencies for the report's chart: `bins` equal-width bins from the minimum to `upper`
 * (default the maximum); anything above `upper` lands in the last bin, so one stall on a shared host
 * does not squeeze the whole distribution into the first bar.
 */
export function histogram(ms: ArrayLike<number>, bins = 30, upper?: number): { start: number; width: number; counts: number[] } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < ms.length; i++) {
    min = Math.min(min, ms[i]!);
    max = Math.max(max, ms[i]!);
  }
  if (!Number.isFinite(min)) return { start: 0, width: 0, counts: [] };
  const top = upper !== undefined && upper > min ? Math.min(max, upper) : max;
  const width = top > min ? (top - min) / bins : 1;
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < ms.length; i++) counts[Math.min(bins - 1, Math.floor((ms[i]! - min) / width))]!++;
  return { start: min, width, counts };
}

/** Indices of the k largest values of row `row` of a [rows, classes] score matrix, best first. */
export function topKIndices(scores: ArrayLike<number>, row: number, classes: number, k: number): number[] {
  const best: number[] = [];
  const base = row * classes;
  for (let c = 0; c < classes; c++) {
    const v = scores[base + c]!;
    let at = best.length;
    while (at > 0 && v > scores[base + best[at - 1]!]!) at--;
    if (at < k) {
      best.splice(at, 0, c);
      if (best.length > k) best.pop();
    }
  }
  return best;
}

/** A speedup with its distribution-free interval, from interleaved candidate/baseline query pairs. */
export interface SpeedupInterval extends Interval {
  /** Interleaved pairs the interval rests on. */
  pairs: number;
  confidence: number;
}

/** The fewest pairs whose sign-test interval reaches 95%: 0.5^6 * 2 < 0.05. */
export const MIN_SPEEDUP_PAIRS = 6;

/**
 * The speedup as the median over interleaved pairs of baseline latency / candidate latency, and the
 * sign-test interval of that median: order statistics k and n-k+1 of the sorted ratios, with k the
 * largest for which P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2. Each pair ran back to back, so
 * what a busy machine does to one query it does to its pair too, and cancels in the ratio; the
 * interval needs no assumption about how latencies are distributed. Undefined below
 * MIN_SPEEDUP_PAIRS pairs or when a latency is not positive.
 */
export function pairedSpeedup(baselineMs: ArrayLike<number>, candidateMs: ArrayLike<number>, confidence = 0.95): SpeedupInterval | undefined {
  const n = Math.min(baselineMs.length, candidateMs.length);
  if (n < MIN_SPEEDUP_PAIRS) return undefined;
  const ratios = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (!(candidateMs[i]! > 0) || !(baselineMs[i]! > 0)) return undefined;
    ratios[i] = baselineMs[i]! / candidateMs[i]!;
  }
  ratios.sort();
  const tail = (1 - confidence) / 2;
  // P(B <= j) accumulated in log space: 0.5^n underflows for a few thousand pairs.
  let logChoose = 0;
  let cdf = 0;
  let k = 0;
  for (let j = 0; j < n; j++) {
    cdf += Math.exp(logChoose - n * Math.LN2);
    if (cdf > tail) break;
    k = j + 1;
    logChoose += Math.log(n - j) - Math.log(j + 1);
  }
  if (k === 0) return undefined;
  return { value: quantileSorted(ratios, 0.5), low: ratios[k - 1]!, high: ratios[n - k]!, pairs: n, confidence };
}
