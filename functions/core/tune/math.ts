/** Normal distribution helpers for TPE and GP-BO (no numeric library in the bundle). */

const SQRT_2PI = Math.sqrt(2 * Math.PI);

/** Complementary error function; relative error below 1.2e-7 everywhere (Numerical Recipes' erfc). */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z - 1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

export const normalPdf = (z: number) => Math.exp(-0.5 * z * z) / SQRT_2PI;
export const normalCdf = (z: number) => 0.5 * erfc(-z / Math.SQRT2);

/** P(a < Z < b) for a standard normal Z, computed in the tail nearer zero to keep its precision. */
export function normalMass(a: number, b: number): number {
  return a > 0 ? normalCdf(-a) - normalCdf(-b) : normalCdf(b) - normalCdf(a);
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, relative error about 1e-9). */
export function normalQuantile(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  if (p <= 0) return -Infinity;
  if (p >= 1) return Infinity;
  if (p < 0.02425) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - 0.02425) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/** A draw from N(mu, sigma) truncated to [low, high], by inverting the CDF in the nearer tail. */
export function truncatedNormal(mu: number, sigma: number, low: number, high: number, random: () => number): number {
  const a = (low - mu) / sigma;
  const b = (high - mu) / sigma;
  let z: number;
  if (a > 0) {
    // Upper tail: mirror so both CDF values stay small and precise.
    const pa = normalCdf(-b);
    const pb = normalCdf(-a);
    z = -normalQuantile(pa + random() * (pb - pa));
  } else {
    const pa = normalCdf(a);
    const pb = normalCdf(b);
    z = normalQuantile(pa + random() * (pb - pa));
  }
  return Math.min(high, Math.max(low, mu + sigma * z));
}

export function logSumExp(xs: readonly number[]): number {
  const max = Math.max(...xs);
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (const x of xs) sum += Math.exp(x - max);
  return max + Math.log(sum);
}

/** Index of a draw from unnormalized weights. */
export function pickWeighted(weights: readonly number[], random: () => number): number {
  const total = weights.reduce((a, b) => a + b, 0);
  let u = random() * total;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i]!;
    if (u < 0) return i;
  }
  return weights.length - 1;
}
