/**
 * Differential privacy on the server side (DP-FedAvg with fixed clipping, as Flower's
 * DifferentialPrivacyServerSideFixedClipping): each client's delta from the global model is clipped
 * to an L2 norm, the clipped deltas are averaged with equal weights, and Gaussian noise with standard
 * deviation noiseMultiplier * clip / clients is added to the average. The privacy spent is tracked
 * by an RDP accountant for the sampled Gaussian mechanism (Mironov, Talwar and Zhang 2019), with
 * the client sampling rate as q, converted to (epsilon, delta) as TensorFlow Privacy does.
 */
import { randomFillSync } from 'node:crypto';
import { seededRandom } from '../platform/random.ts';
import type { ClientWeights } from './strategies.ts';

export interface PrivacyOptions {
  /** L2 bound on each client's delta. */
  clip: number;
  /** Noise standard deviation over the clip (sigma = z C). */
  noiseMultiplier: number;
}

/** Uniform numbers in [0, 1): seeded (simulations, tests) or from the system's CSPRNG (the default). */
export function uniformSource(seed?: number): () => number {
  if (seed !== undefined) return seededRandom(seed);
  const buffer = new Uint32Array(1024);
  let at = buffer.length;
  return () => {
    if (at === buffer.length) {
      randomFillSync(buffer);
      at = 0;
    }
    return (buffer[at++] as number) / 4294967296;
  };
}

/** Standard normal samples by Box-Muller from a uniform source. */
export function gaussianSource(uniform: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const value = spare;
      spare = undefined;
      return value;
    }
    const u1 = 1 - uniform(); // (0, 1]: log stays finite
    const u2 = uniform();
    const radius = Math.sqrt(-2 * Math.log(u1));
    spare = radius * Math.sin(2 * Math.PI * u2);
    return radius * Math.cos(2 * Math.PI * u2);
  };
}

export function l2Norm(values: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += (values[i] as number) ** 2;
  return Math.sqrt(sum);
}

/** The delta scaled down to norm `clip` when it is longer (unchanged otherwise); a new array. */
export function clipToNorm(delta: Float64Array, clip: number): { clipped: Float64Array; norm: number } {
  const norm = l2Norm(delta);
  const scale = norm > clip ? clip / norm : 1;
  return { clipped: Float64Array.from(delta, (value) => value * scale), norm };
}

/**
 * The private mean: global + (sum of clipped deltas + N(0, (z C)^2)) / m, the m clients weighted
 * equally (example counts are not used: they would make one client's influence unbounded).
 */
export function privateAverage(global: Float64Array, updates: readonly ClientWeights[], options: PrivacyOptions, normal: () => number): { weights: Float64Array; norms: number[]; clipped: number } {
  if (!(options.clip > 0)) throw new RangeError(`clip ${options.clip} must be above 0`);
  if (!(options.noiseMultiplier >= 0)) throw new RangeError(`noise multiplier ${options.noiseMultiplier} must be 0 or more`);
  const m = updates.length;
  const sum = new Float64Array(global.length);
  const norms: number[] = [];
  let clipped = 0;
  for (const update of updates) {
    const delta = Float64Array.from(update.weights, (value, i) => value - (global[i] as number));
    const out = clipToNorm(delta, options.clip);
    norms.push(out.norm);
    if (out.norm > options.clip) clipped++;
    for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (out.clipped[i] as number);
  }
  const sigma = options.noiseMultiplier * options.clip;
  const weights = Float64Array.from(sum, (value, i) => (global[i] as number) + (value + sigma * normal()) / m);
  return { weights, norms, clipped };
}

/** Adaptive clipping (Andrew et al. 2021): the clip norm follows a quantile of the update norms. */
export interface AdaptiveClipping {
  /** The share of updates that should fall within the clip norm (gamma). */
  targetQuantile: number;
  /** The geometric step (eta_C): C <- C exp(-eta_C (b - gamma)). */
  learningRate: number;
  /** Standard deviation of the noise on the count of unclipped updates (sigma_b); default m / 20. */
  countStddev?: number | undefined;
}

/**
 * The noise multiplier left for the average when the count also gets noise: z_delta =
 * (z^-2 - (2 sigma_b)^-2)^(-1/2), so that the two releases together cost what z alone would
 * (Andrew et al. 2021, Theorem 1). Refused when sigma_b is too small for z.
 */
export function averageNoiseMultiplier(noiseMultiplier: number, countStddev: number): number {
  if (noiseMultiplier === 0) return 0;
  const left = noiseMultiplier ** -2 - (2 * countStddev) ** -2;
  if (!(left > 0)) throw new RangeError(`adaptive clipping at noise multiplier ${noiseMultiplier} needs a count noise above ${noiseMultiplier / 2} (clients per round / 20 by default); it is ${countStddev}: select more clients or set countStddev`);
  return left ** -0.5;
}

/**
 * The next clip norm from this round's update norms: b = (unclipped count + N(0, sigma_b^2)) / m,
 * C' = C exp(-eta (b - gamma)). An update exactly at the norm counts as unclipped (Flower's rule).
 */
export function nextClipNorm(clip: number, norms: readonly number[], options: AdaptiveClipping, normal: () => number): { clip: number; unclipped: number; noisedFraction: number } {
  if (norms.length === 0) throw new RangeError('adaptive clipping needs at least one update norm');
  const countStddev = options.countStddev ?? norms.length / 20;
  const unclipped = norms.filter((norm) => norm <= clip).length;
  const noisedFraction = (unclipped + (countStddev > 0 ? countStddev * normal() : 0)) / norms.length;
  return { clip: clip * Math.exp(-options.learningRate * (noisedFraction - options.targetQuantile)), unclipped, noisedFraction };
}

/**
 * RDP orders the accountant minimises over: Opacus' and TensorFlow Privacy's default grid (1.1 to
 * 10.9 by 0.1, then 12 to 63), and larger integer orders for long runs at small sampling rates.
 */
export const RDP_ORDERS: readonly number[] = [
  ...Array.from({ length: 99 }, (_, i) => Math.round((1.1 + i / 10) * 10) / 10),
  ...Array.from({ length: 52 }, (_, i) => i + 12),
  64,
  72,
  80,
  96,
  128,
  160,
  192,
  256,
  384,
  512,
];

function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const high = Math.max(a, b);
  return high + Math.log1p(Math.exp(Math.min(a, b) - high));
}

// Lanczos (g = 7, n = 9): log|Gamma(x)| to about 1e-15 relative, with the reflection formula below 0.5.
const LANCZOS = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];

export function logAbsGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logAbsGamma(1 - x);
  const y = x - 1;
  let sum = LANCZOS[0] as number;
  for (let i = 1; i < LANCZOS.length; i++) sum += (LANCZOS[i] as number) / (y + i);
  const t = y + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** log|C(n, k)| for a real n (a fractional order's generalised binomial coefficient). */
function logBinomial(n: number, k: number): number {
  if (Number.isInteger(n)) {
    let sum = 0;
    for (let i = 1; i <= k; i++) sum += Math.log(n - k + i) - Math.log(i);
    return sum;
  }
  return logAbsGamma(n + 1) - logAbsGamma(k + 1) - logAbsGamma(n - k + 1);
}

/**
 * log(erfc(x)), finite for large x where erfc underflows: the Chebyshev fit of Numerical Recipes'
 * erfcc (fractional error below 1.2e-7 everywhere) taken in log space.
 */
export function logErfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const logUpper = Math.log(t) + poly;
  return x >= 0 ? logUpper : Math.log(2 - Math.exp(logUpper));
}

function logAInteger(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  for (let i = 0; i <= alpha; i++) {
    const term = logBinomial(alpha, i) + i * Math.log(q) + (alpha - i) * Math.log1p(-q) + (i * i - i) / (2 * sigma ** 2);
    logA = logAdd(logA, term);
  }
  return logA;
}

/**
 * log(A_alpha) at a fractional order (Mironov, Talwar and Zhang 2019, Section 3.3): the integral
 * split at z0 = sigma^2 log(1/q - 1) + 1/2, each part a series in the generalised binomial
 * coefficients, summed in absolute value (an upper bound) until both terms fall 30 nats under the
 * total, as Google's dp_accounting does. Infinity when the series does not settle in 1000 terms.
 */
function logAFractional(q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma ** 2 * Math.log(1 / q - 1) + 0.5;
  const logQ = Math.log(q);
  const log1mQ = Math.log1p(-q);
  let last0 = -Infinity;
  let last1 = -Infinity;
  for (let i = 0; i < 1000; i++) {
    const logCoef = logBinomial(alpha, i);
    const j = alpha - i;
    const s0 = logCoef + i * logQ + j * log1mQ + (i * i - i) / (2 * sigma ** 2) + Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma));
    const s1 = logCoef + j * logQ + i * log1mQ + (j * j - j) / (2 * sigma ** 2) + Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma));
    logA0 = logAdd(logA0, s0);
    logA1 = logAdd(logA1, s1);
    const total = logAdd(logA0, logA1);
    if (s0 < last0 && s1 < last1 && Math.max(s0, s1) < total - 30) return total;
    last0 = s0;
    last1 = s1;
  }
  return Infinity;
}

/**
 * RDP of one step of the sampled Gaussian mechanism at order alpha > 1: log(A_alpha) / (alpha - 1),
 * with A_alpha = sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2)) at an integer
 * order and the split series at a fractional one.
 */
export function sampledGaussianRdp(q: number, noiseMultiplier: number, alpha: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`sampling rate ${q} is outside [0, 1]`);
  if (!(alpha > 1) || !Number.isFinite(alpha)) throw new RangeError(`order ${alpha} must be a finite number above 1`);
  if (q === 0) return 0;
  if (noiseMultiplier === 0) return Infinity;
  if (q === 1) return alpha / (2 * noiseMultiplier ** 2);
  if (Number.isInteger(alpha)) return logAInteger(q, noiseMultiplier, alpha) / (alpha - 1);
  const rdp = logAFractional(q, noiseMultiplier, alpha) / (alpha - 1);
  // RDP never decreases with the order: where the series does not settle (q near 1/2 makes it
  // decay only polynomially), the next integer order's value bounds it, and stays storable.
  return Number.isFinite(rdp) ? rdp : logAInteger(q, noiseMultiplier, Math.ceil(alpha)) / (Math.ceil(alpha) - 1);
}

/**
 * (epsilon, delta) from RDP values: eps = min over alpha of rdp + log(1 - 1/alpha) - log(delta alpha)
 * / (alpha - 1) (Canonne, Kamath and Steinke 2020, Proposition 12), as dp_accounting's
 * compute_epsilon: 0 where the KL bound already gives delta, orders at or below 1.01 skipped (the
 * bound is unstable there).
 */
export function epsilonFromRdp(rdp: readonly number[], orders: readonly number[], delta: number): { epsilon: number; order: number } {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`delta ${delta} is outside (0, 1)`);
  if (rdp.length !== orders.length) throw new RangeError(`${rdp.length} RDP values for ${orders.length} orders`);
  let best = { epsilon: Infinity, order: orders[0] ?? 2 };
  orders.forEach((alpha, index) => {
    const r = rdp[index] as number;
    let epsilon: number;
    if (r < 0 || delta ** 2 + Math.expm1(-r) > 0) epsilon = 0;
    else if (alpha > 1.01) epsilon = r + Math.log1p(-1 / alpha) - Math.log(delta * alpha) / (alpha - 1);
    else epsilon = Infinity;
    if (epsilon < best.epsilon) best = { epsilon, order: alpha };
  });
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

/** Privacy spent after `rounds` rounds, each sampling a fraction q of the clients. */
export function privacySpent(q: number, noiseMultiplier: number, rounds: number, delta: number, orders: readonly number[] = RDP_ORDERS): { epsilon: number; delta: number; order: number } {
  const rdp = orders.map((alpha) => rounds * sampledGaussianRdp(q, noiseMultiplier, alpha));
  return { ...epsilonFromRdp(rdp, orders, delta), delta };
}
