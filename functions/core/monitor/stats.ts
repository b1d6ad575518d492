/**
 * The drift tests (Evidently's and SageMaker Model Monitor's usual three): the population stability
 * index and Jensen-Shannon divergence over binned distributions, and the two-sample
 * Kolmogorov-Smirnov test over values. Pure functions, checked against hand-computed values.
 */

/** Added to every bin's share before PSI and JS, so an empty bin gives a large finite term, not infinity. */
export const BIN_FLOOR = 1e-4;

/**
 * Bin edges from sorted baseline values: one at the minimum, interior ones at the quantiles, and one
 * just above the maximum, so values outside the baseline's range land in bins of their own (empty in
 * the baseline) even where the baseline is constant.
 */
export function quantileEdges(sorted: ArrayLike<number>, bins: number): number[] {
  if (sorted.length === 0) return [];
  const min = sorted[0]!;
  const max = sorted[sorted.length - 1]!;
  const edges = [min];
  for (let i = 1; i < bins; i++) {
    const edge = sorted[Math.min(sorted.length - 1, Math.floor((i * sorted.length) / bins))]!;
    if (edge > edges.at(-1)!) edges.push(edge);
  }
  const above = max + Math.max(1e-9, Math.abs(max) * 1e-9);
  if (above > edges.at(-1)!) edges.push(above);
  return edges;
}

/** Counts per bin: bin i holds values in [edges[i-1], edges[i]), the first from -inf, the last to +inf. */
export function binCounts(values: ArrayLike<number>, edges: readonly number[]): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    let lo = 0;
    let hi = edges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (v >= edges[mid]!) lo = mid + 1;
      else hi = mid;
    }
    counts[lo]! += 1;
  }
  return counts;
}

/** Shares of a total, each floored at BIN_FLOOR and renormalised. */
export function shares(counts: readonly number[]): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  const floored = counts.map((c) => (total > 0 ? c / total : 0) + BIN_FLOOR);
  const sum = floored.reduce((a, b) => a + b, 0);
  return floored.map((p) => p / sum);
}

/** Population stability index of an actual distribution against an expected one (same bins). */
export function psi(expected: readonly number[], actual: readonly number[]): number {
  const e = shares(expected);
  const a = shares(actual);
  let sum = 0;
  for (let i = 0; i < e.length; i++) sum += (a[i]! - e[i]!) * Math.log(a[i]! / e[i]!);
  return sum;
}

/** Jensen-Shannon divergence in bits (0 for equal distributions, 1 at most). */
export function jensenShannon(p: readonly number[], q: readonly number[]): number {
  const a = shares(p);
  const b = shares(q);
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const m = (a[i]! + b[i]!) / 2;
    sum += 0.5 * a[i]! * Math.log2(a[i]! / m) + 0.5 * b[i]! * Math.log2(b[i]! / m);
  }
  return Math.max(0, sum);
}

/** The Kolmogorov distribution's survival function Q(λ) = 2 Σ (-1)^(k-1) exp(-2 k² λ²). */
export function kolmogorovQ(lambda: number): number {
  if (lambda < 1e-3) return 1;
  let sum = 0;
  for (let k = 1; k <= 100; k++) {
    const term = 2 * (k % 2 === 1 ? 1 : -1) * Math.exp(-2 * k * k * lambda * lambda);
    sum += term;
    if (Math.abs(term) < 1e-12) break;
  }
  return Math.min(1, Math.max(0, sum));
}

export interface KsResult {
  /** The largest distance between the two empirical CDFs. */
  statistic: number;
  /** Asymptotic p-value (Stephens' correction), for samples of n and m values. */
  pValue: number;
}

/**
 * Two-sample KS test of sorted values `a` against sorted values `b`. `bCount` is the size of the
 * population `b` stands for when `b` is a quantile sketch of it (a baseline keeps a sketch, not every value).
 */
export function ksTwoSample(a: ArrayLike<number>, b: ArrayLike<number>, bCount = b.length): KsResult {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return { statistic: 0, pValue: 1 };
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < n && j < m) {
    const x = Math.min(a[i]!, b[j]!);
    while (i < n && a[i]! <= x) i++;
    while (j < m && b[j]! <= x) j++;
    d = Math.max(d, Math.abs(i / n - j / m));
  }
  const effective = Math.sqrt((n * bCount) / (n + bCount));
  return { statistic: d, pValue: kolmogorovQ((effective + 0.12 + 0.11 / effective) * d) };
}

/** `count` values at evenly spaced quantiles of sorted values (all of them when there are fewer). */
export function quantileSketch(sorted: ArrayLike<number>, count: number): number[] {
  if (sorted.length <= count) return Array.from(sorted);
  return Array.from({ length: count }, (_, i) => sorted[Math.round(((i + 0.5) * sorted.length) / count - 0.5)]!);
}

export function meanAndStd(values: ArrayLike<number>): { mean: number; std: number } {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  const mean = values.length ? sum / values.length : 0;
  let sq = 0;
  for (let i = 0; i < values.length; i++) sq += (values[i]! - mean) ** 2;
  return { mean, std: values.length > 1 ? Math.sqrt(sq / (values.length - 1)) : 0 };
}
