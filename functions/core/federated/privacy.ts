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

/** RDP orders the accountant minimises over (integer orders: the exact binomial expansion). */
export const RDP_ORDERS: readonly number[] = [...Array.from({ length: 63 }, (_, i) => i + 2), 72, 80, 96, 128, 160, 192, 256, 384, 512];

function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const high = Math.max(a, b);
  return high + Math.log1p(Math.exp(Math.min(a, b) - high));
}

function logBinomial(n: number, k: number): number {
  let sum = 0;
  for (let i = 1; i <= k; i++) sum += Math.log(n - k + i) - Math.log(i);
  return sum;
}

/**
 * RDP of one step of the sampled Gaussian mechanism at integer order alpha: log(A_alpha) / (alpha - 1)
 * with A_alpha = sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2)).
 */
export function sampledGaussianRdp(q: number, noiseMultiplier: number, alpha: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`sampling rate ${q} is outside [0, 1]`);
  if (!Number.isInteger(alpha) || alpha < 2) throw new RangeError(`order ${alpha} must be an integer >= 2`);
  if (q === 0) return 0;
  if (noiseMultiplier === 0) return Infinity;
  if (q === 1) return alpha / (2 * noiseMultiplier ** 2);
  let logA = -Infinity;
  for (let i = 0; i <= alpha; i++) {
    const term = logBinomial(alpha, i) + i * Math.log(q) + (alpha - i) * Math.log1p(-q) + (i * i - i) / (2 * noiseMultiplier ** 2);
    logA = logAdd(logA, term);
  }
  return logA / (alpha - 1);
}

/**
 * (epsilon, delta) from RDP values: eps = min over alpha of rdp - (log delta + log alpha) / (alpha - 1)
 * + log((alpha - 1) / alpha) (Canonne, Kamath and Steinke 2020, Proposition 12; TensorFlow Privacy's
 * conversion), never more than the classic rdp + log(1 / delta) / (alpha - 1).
 */
export function epsilonFromRdp(rdp: readonly number[], orders: readonly number[], delta: number): { epsilon: number; order: number } {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`delta ${delta} is outside (0, 1)`);
  let best = { epsilon: Infinity, order: orders[0] ?? 2 };
  orders.forEach((alpha, index) => {
    const r = rdp[index] as number;
    const improved = r - (Math.log(delta) + Math.log(alpha)) / (alpha - 1) + Math.log((alpha - 1) / alpha);
    const classic = r + Math.log(1 / delta) / (alpha - 1);
    const epsilon = Math.max(0, Math.min(improved, classic));
    if (epsilon < best.epsilon) best = { epsilon, order: alpha };
  });
  return best;
}

/** Privacy spent after `rounds` rounds, each sampling a fraction q of the clients. */
export function privacySpent(q: number, noiseMultiplier: number, rounds: number, delta: number, orders: readonly number[] = RDP_ORDERS): { epsilon: number; delta: number; order: number } {
  const rdp = orders.map((alpha) => rounds * sampledGaussianRdp(q, noiseMultiplier, alpha));
  return { ...epsilonFromRdp(rdp, orders, delta), delta };
}
