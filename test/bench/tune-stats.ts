// Rank and distribution tests for the TPE seed-noise part of `npm run bench -- tune` (no stats
// library in the repository): Mann-Whitney U and the two-sample Kolmogorov-Smirnov test, both with
// their large-sample p-values.
import { normalCdf } from '../../functions/core/tune/math.ts';

/** Ranks from 1, ties sharing their average rank. */
function ranks(values: readonly number[]): number[] {
  const order = [...values.keys()].sort((a, b) => values[a]! - values[b]!);
  const out = new Array<number>(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && values[order[j + 1]!] === values[order[i]!]) j++;
    for (let k = i; k <= j; k++) out[order[k]!] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

/**
 * Mann-Whitney U of a against b: `pLower` is U / (n m), the chance that a draw of a lies below one of
 * b (ties count half); `p` is the two-sided p-value of the normal approximation with continuity
 * correction (no tie correction: the regrets are continuous).
 */
export function mannWhitney(a: readonly number[], b: readonly number[]): { u: number; pLower: number; p: number } {
  const n = a.length;
  const m = b.length;
  const r = ranks([...a, ...b]);
  const rankSumA = r.slice(0, n).reduce((s, v) => s + v, 0);
  // U counts pairs with a above b; n m - U those with a below.
  const uAbove = rankSumA - (n * (n + 1)) / 2;
  const u = n * m - uAbove;
  const mean = (n * m) / 2;
  const sd = Math.sqrt((n * m * (n + m + 1)) / 12);
  const z = Math.max(0, Math.abs(u - mean) - 0.5) / sd;
  return { u, pLower: u / (n * m), p: Math.min(1, 2 * normalCdf(-z)) };
}

/** Two-sample Kolmogorov-Smirnov: the largest CDF gap d and its asymptotic p-value (Numerical Recipes' probks). */
export function ksTwoSample(a: readonly number[], b: readonly number[]): { d: number; p: number } {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i]!, y[j]!);
    while (i < x.length && x[i]! <= v) i++;
    while (j < y.length && y[j]! <= v) j++;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  const en = Math.sqrt((x.length * y.length) / (x.length + y.length));
  const lambda = (en + 0.12 + 0.11 / en) * d;
  let p = 0;
  for (let k = 1; k <= 100; k++) p += 2 * (k % 2 === 1 ? 1 : -1) * Math.exp(-2 * k * k * lambda * lambda);
  return { d, p: lambda < 1e-3 ? 1 : Math.min(1, Math.max(0, p)) };
}
