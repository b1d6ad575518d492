import { internalBounds, isActive, roundSignificant, toInternal, type CategoricalParameter, type Configuration, type NumericParameter, type Parameter, type ParamValue } from '../space.ts';
import type { Trial } from '../trial.ts';
import { logSumExp, normalMass, normalPdf, pickWeighted, truncatedNormal } from '../math.ts';
import { sampleUniform } from './random.ts';
import type { SampleContext, Sampler } from './sampler.ts';
import { observations, splitObservations } from './tpe-split.ts';

export interface TpeOptions {
  /** Trials drawn at random before the estimators take over (Optuna: 10). */
  startupTrials?: number;
  /** Candidates drawn from the good estimator, of which the best ratio wins (Optuna: 24). */
  eiCandidates?: number;
  /** Weight of the prior kernel, a wide one centred on the range (Optuna: 1). */
  priorWeight?: number;
  /**
   * Optuna's `multivariate=True`: the unconditional parameters are modelled jointly (one kernel per
   * observation over all of them, bandwidth by Scott's rule), so candidates keep the correlations of
   * the good trials; conditional parameters are still sampled one by one.
   */
  multivariate?: boolean;
}

/** Optuna's SIGMA0_MAGNITUDE: the multivariate bandwidth is 0.2 n^(-1/(d+4)) of the range. */
const SIGMA0_MAGNITUDE = 0.2;

/** Optuna's default gamma: the best 10% of trials (rounded up), at most 25, are the good ones. */
export const defaultGamma = (n: number) => Math.min(Math.ceil(0.1 * n), 25);

/** Optuna's default weights: the latest 25 observations weigh 1, older ones ramp down from 1/n. */
export function defaultWeights(n: number): number[] {
  if (n < 25) return new Array<number>(n).fill(1);
  const rampLength = n - 25;
  const ramp = Array.from({ length: rampLength }, (_, i) => (rampLength === 1 ? 1 / n : 1 / n + ((1 - 1 / n) * i) / (rampLength - 1)));
  return [...ramp, ...new Array<number>(25).fill(1)];
}

/** A mixture of truncated normals in a parameter's internal space (log for a log scale). */
export interface NumericEstimator {
  mus: number[];
  sigmas: number[];
  weights: number[];
  low: number;
  high: number;
  /** Grid step of a discrete parameter, in internal units; the estimator then gives masses. */
  step?: number;
}

/**
 * Optuna's univariate Parzen estimator: one kernel per observation plus the prior (centre of the
 * range, width the range); each kernel's bandwidth is the larger gap to its sorted neighbours (the
 * range ends count as neighbours, except that the outermost kernels take their inner gap), clipped
 * to [range / min(100, 1 + kernels), range].
 */
export function numericEstimator(p: NumericParameter, observations: readonly number[], priorWeight: number, sigma0?: number): NumericEstimator {
  let [low, high] = internalBounds(p);
  const step = p.log ? undefined : (p.step ?? (p.type === 'int' ? 1 : undefined));
  if (p.type === 'int' && p.log) [low, high] = [Math.log(p.low - 0.5), Math.log(p.high + 0.5)];
  if (step !== undefined) [low, high] = [low - step / 2, high + step / 2];
  const range = high - low;
  const mus = [...observations.map((v) => toInternal(p, v)), (low + high) / 2];
  const order = [...mus.keys()].sort((a, b) => mus[a]! - mus[b]! || a - b);
  const sorted = [low, ...order.map((i) => mus[i]!), high];
  const sortedSigmas = order.map((_, r) => Math.max(sorted[r + 1]! - sorted[r]!, sorted[r + 2]! - sorted[r + 1]!));
  if (sorted.length >= 4) {
    sortedSigmas[0] = sorted[2]! - sorted[1]!;
    sortedSigmas[sortedSigmas.length - 1] = sorted[sorted.length - 2]! - sorted[sorted.length - 3]!;
  }
  const minSigma = range / Math.min(100, 1 + mus.length);
  const sigmas = new Array<number>(mus.length);
  order.forEach((i, r) => (sigmas[i] = Math.min(range, Math.max(minSigma, sigma0 === undefined ? sortedSigmas[r]! : sigma0 * range))));
  sigmas[mus.length - 1] = range;
  return { mus, sigmas, weights: normalized([...defaultWeights(observations.length), priorWeight]), low, high, step };
}

export function sampleNumeric(e: NumericEstimator, random: () => number, k = pickWeighted(e.weights, random)): number {
  const x = truncatedNormal(e.mus[k]!, e.sigmas[k]!, e.low, e.high, random);
  if (e.step === undefined) return x;
  const first = e.low + e.step / 2;
  const last = e.high - e.step / 2;
  return Math.min(last, Math.max(first, first + Math.round((x - first) / e.step) * e.step));
}

/**
 * Log density (or, for a discrete parameter, log probability mass) of the mixture at x. With
 * `bandwidthWeighted` (what TPE scores with) a continuous kernel's density leaves out its 1 / sigma,
 * as Optuna 3.1's truncated-normal logpdf does: each kernel then counts in proportion to its bandwidth,
 * so the narrow kernels of a crowded region weigh less and candidates spread out. Measured on Branin and
 * Hartmann-6 (docs/tuning.md) it finds lower values than the exact density, and it is what Optuna's
 * benchmark figures come from.
 */
export function numericLogPdf(e: NumericEstimator, x: number, bandwidthWeighted = false): number {
  const terms = componentLogPdfs(e, x, bandwidthWeighted).map((v, k) => v + Math.log(e.weights[k]!));
  return logSumExp(terms);
}

/** Each kernel's log density (or log mass) at x, unweighted. */
function componentLogPdfs(e: NumericEstimator, x: number, bandwidthWeighted: boolean): number[] {
  return e.mus.map((mu, k) => {
    const sigma = e.sigmas[k]!;
    const z = normalMass((e.low - mu) / sigma, (e.high - mu) / sigma);
    const p = e.step === undefined
      ? normalPdf((x - mu) / sigma) / (bandwidthWeighted ? 1 : sigma)
      : normalMass((x - e.step / 2 - mu) / sigma, (x + e.step / 2 - mu) / sigma);
    return Math.log(Math.max(p, 1e-300)) - Math.log(z);
  });
}

/**
 * Optuna's categorical estimator: each observation is a kernel that puts weight 1 on its choice plus
 * priorWeight / (n + 1) on every choice, normalized; the prior kernel is uniform. The mixture's
 * probabilities are returned directly.
 */
export function categoricalProbabilities(p: CategoricalParameter, observations: readonly ParamValue[], priorWeight: number): number[] {
  const weights = normalized([...defaultWeights(observations.length), priorWeight]);
  const probs = new Array<number>(p.choices.length).fill(0);
  categoricalKernels(p, observations, priorWeight).forEach((row, k) => row.forEach((v, j) => (probs[j]! += weights[k]! * v)));
  return probs;
}

/** One row of choice probabilities per kernel (the observations', then the uniform prior's). */
function categoricalKernels(p: CategoricalParameter, observations: readonly ParamValue[], priorWeight: number): number[][] {
  const c = p.choices.length;
  const floor = priorWeight / (observations.length + 1);
  const rows = observations.map((v) => {
    const index = p.choices.indexOf(v);
    return p.choices.map((_, j) => ((j === index ? 1 : 0) + floor) / (1 + floor * c));
  });
  return [...rows, new Array<number>(c).fill(1 / c)];
}

/**
 * Tree-structured Parzen Estimator, univariate as Optuna's default: complete and pruned trials split
 * into good (the best gamma(n), feasible first, complete before pruned) and bad; each active parameter gets l(x) from the good trials
 * that have it and g(x) from the bad ones; of eiCandidates draws from l, the one with the highest
 * l(x) / g(x) (the expected-improvement ratio) is taken. Only the first objective is used.
 */
export class TpeSampler implements Sampler {
  readonly name = 'tpe';
  readonly startupTrials: number;
  readonly eiCandidates: number;
  readonly priorWeight: number;
  readonly multivariate: boolean;

  constructor(options: TpeOptions = {}) {
    this.startupTrials = options.startupTrials ?? 10;
    this.eiCandidates = options.eiCandidates ?? 24;
    this.priorWeight = options.priorWeight ?? 1;
    this.multivariate = options.multivariate ?? false;
  }

  sample(context: SampleContext): Configuration {
    const { space, random } = context;
    // Complete and pruned trials, as Optuna learns from both (tpe-split.ts).
    const observed = observations(context.trials, context.directions[0]!);
    const out: Configuration = {};
    if (observed.length < this.startupTrials) {
      for (const [name, p] of Object.entries(space.parameters)) if (isActive(p, out)) out[name] = sampleUniform(p, random);
      return out;
    }
    const { below, above } = splitObservations(observed, defaultGamma(observed.length));
    if (this.multivariate) {
      // Every trial has the unconditional parameters, so they form Optuna's intersection space.
      const joint = Object.entries(space.parameters).filter(([, p]) => !p.when);
      if (joint.length > 0) Object.assign(out, this.pickJoint(joint, below, above, random));
    }
    for (const [name, p] of Object.entries(space.parameters)) {
      if (name in out || !isActive(p, out)) continue;
      const good = below.filter((t) => name in t.params).map((t) => t.params[name]!);
      const bad = above.filter((t) => name in t.params).map((t) => t.params[name]!);
      out[name] = p.type === 'categorical' ? this.pickCategorical(p, good, bad, random) : this.pickNumeric(p, good as number[], bad as number[], random);
    }
    return out;
  }

  private pickNumeric(p: NumericParameter, good: number[], bad: number[], random: () => number): number {
    const l = numericEstimator(p, good, this.priorWeight);
    const g = numericEstimator(p, bad, this.priorWeight);
    let best = NaN;
    let bestScore = -Infinity;
    for (let i = 0; i < this.eiCandidates; i++) {
      const x = sampleNumeric(l, random);
      const score = numericLogPdf(l, x, true) - numericLogPdf(g, x, true);
      if (score > bestScore) [best, bestScore] = [x, score];
    }
    return fromTpeInternal(p, best);
  }

  private pickJoint(params: [string, Parameter][], below: Trial[], above: Trial[], random: () => number): Configuration {
    const l = jointEstimator(params, below, this.priorWeight);
    const g = jointEstimator(params, above, this.priorWeight);
    let best: number[] = [];
    let bestScore = -Infinity;
    for (let i = 0; i < this.eiCandidates; i++) {
      const x = sampleJoint(l, random);
      const score = jointLogPdf(l, x) - jointLogPdf(g, x);
      if (score > bestScore) [best, bestScore] = [x, score];
    }
    return Object.fromEntries(l.parts.map((part, d) => [part.name, part.kind === 'numeric' ? fromTpeInternal(part.p, best[d]!) : part.p.choices[best[d]!]!]));
  }

  private pickCategorical(p: CategoricalParameter, good: ParamValue[], bad: ParamValue[], random: () => number): ParamValue {
    const l = categoricalProbabilities(p, good, this.priorWeight);
    const g = categoricalProbabilities(p, bad, this.priorWeight);
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < this.eiCandidates; i++) {
      const j = pickWeighted(l, random);
      const score = Math.log(l[j]!) - Math.log(g[j]!);
      if (score > bestScore) [best, bestScore] = [j, score];
    }
    return p.choices[best]!;
  }
}

/**
 * Optuna's multivariate Parzen estimator: kernel k of every parameter belongs to observation k (the
 * last to the prior), so a draw takes one kernel for all parameters and the density multiplies over
 * them. Numeric bandwidths are 0.2 n^(-1/(d+4)) of the range (Scott's rule, as in BOHB), magic-clipped.
 */
export interface JointEstimator {
  weights: number[];
  parts: ({ name: string; kind: 'numeric'; p: NumericParameter; e: NumericEstimator } | { name: string; kind: 'categorical'; p: CategoricalParameter; rows: number[][] })[];
}

export function jointEstimator(params: [string, Parameter][], trials: readonly Trial[], priorWeight: number): JointEstimator {
  const sigma0 = SIGMA0_MAGNITUDE * Math.max(trials.length, 1) ** (-1 / (params.length + 4));
  return {
    weights: normalized([...defaultWeights(trials.length), priorWeight]),
    parts: params.map(([name, p]) => {
      const values = trials.map((t) => t.params[name]!);
      return p.type === 'categorical'
        ? { name, kind: 'categorical' as const, p, rows: categoricalKernels(p, values, priorWeight) }
        : { name, kind: 'numeric' as const, p, e: numericEstimator(p, values as number[], priorWeight, sigma0) };
    }),
  };
}

/** One joint draw: numeric parameters in internal units, categorical ones as choice indices. */
function sampleJoint(e: JointEstimator, random: () => number): number[] {
  const k = pickWeighted(e.weights, random);
  return e.parts.map((part) => (part.kind === 'numeric' ? sampleNumeric(part.e, random, k) : pickWeighted(part.rows[k]!, random)));
}

export function jointLogPdf(e: JointEstimator, x: readonly number[]): number {
  const terms = e.weights.map((w) => Math.log(w));
  e.parts.forEach((part, d) => {
    const logs = part.kind === 'numeric' ? componentLogPdfs(part.e, x[d]!, true) : part.rows.map((row) => Math.log(row[x[d]!]!));
    logs.forEach((v, k) => (terms[k]! += v));
  });
  return logSumExp(terms);
}

function fromTpeInternal(p: NumericParameter, x: number): number {
  let v = p.log ? Math.exp(x) : x;
  if (p.type === 'int') v = Math.round(v);
  else if (p.step !== undefined) v = roundSignificant(p.low + Math.round((v - p.low) / p.step) * p.step);
  return Math.min(p.high, Math.max(p.low, v));
}

function normalized(ws: number[]): number[] {
  const total = ws.reduce((a, b) => a + b, 0);
  return ws.map((w) => w / total);
}
