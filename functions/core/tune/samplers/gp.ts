import { activeConfiguration, fromUnit, gridValues, toUnit, type Configuration, type SearchSpace } from '../space.ts';
import { compareForObjective, isFeasible, type Constraint, type Trial } from '../trial.ts';
import { normalCdf, normalPdf } from '../math.ts';
import { enumerateGrid } from './grid.ts';
import { sampleConfiguration } from './random.ts';
import { completed, type SampleContext, type Sampler } from './sampler.ts';

export type GpKernel = 'matern52' | 'rbf';

export interface GpOptions {
  kernel?: GpKernel;
  /** Trials drawn at random before the model takes over. */
  startupTrials?: number;
  /**
   * Random candidates scored by expected improvement before the local refinement; a finite space of at
   * most this many configurations (see finiteConfigurations) is scored whole instead.
   */
  candidates?: number;
}

/** Length scales and noise levels (of standardized values) the marginal-likelihood search tries. */
const LENGTH_SCALES = [0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1, 1.5];
const NOISES = [1e-6, 1e-4, 1e-2, 1e-1];

/**
 * Features in [0, 1]: a numeric parameter by its position in its (log) range, a categorical one as
 * one-hot over its choices. A parameter a trial lacks (inactive) sits at the middle, or all zeros.
 */
export function encode(space: SearchSpace, config: Configuration): number[] {
  const x: number[] = [];
  for (const [name, p] of Object.entries(space.parameters)) {
    if (p.type === 'categorical') for (const c of p.choices) x.push(config[name] === c ? 1 : 0);
    else x.push(name in config ? toUnit(p, config[name] as number) : 0.5);
  }
  return x;
}

export function decode(space: SearchSpace, x: readonly number[]): Configuration {
  const out: Configuration = {};
  let i = 0;
  for (const [name, p] of Object.entries(space.parameters)) {
    if (p.type === 'categorical') {
      const block = x.slice(i, i + p.choices.length);
      out[name] = p.choices[block.indexOf(Math.max(...block))]!;
      i += p.choices.length;
    } else out[name] = fromUnit(p, x[i++]!);
  }
  return activeConfiguration(space, out);
}

export function kernelValue(kernel: GpKernel, distance: number, lengthScale: number): number {
  const r = distance / lengthScale;
  if (kernel === 'rbf') return Math.exp(-0.5 * r * r);
  const s = Math.sqrt(5) * r;
  return (1 + s + (s * s) / 3) * Math.exp(-s);
}

const distance = (a: readonly number[], b: readonly number[]) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0));

/**
 * Cholesky factor L (lower, row-major) of a symmetric positive-definite matrix, or undefined when it
 * is not. Written here because the matrices are small (one row per trial) and the bundle carries
 * no linear-algebra library; the noise term keeps them well conditioned.
 */
export function cholesky(a: readonly number[][]): number[][] | undefined {
  const n = a.length;
  const l = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i]![j]!;
      for (let k = 0; k < j; k++) s -= l[i]![k]! * l[j]![k]!;
      if (i === j) {
        if (!(s > 0)) return undefined;
        l[i]![i] = Math.sqrt(s);
      } else l[i]![j] = s / l[j]![j]!;
    }
  }
  return l;
}

/** Solves L y = b (forward substitution). */
export function solveLower(l: readonly number[][], b: readonly number[]): number[] {
  const y = new Array<number>(b.length);
  for (let i = 0; i < b.length; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= l[i]![k]! * y[k]!;
    y[i] = s / l[i]![i]!;
  }
  return y;
}

/** Solves Lᵀ x = y (back substitution). */
export function solveUpper(l: readonly number[][], y: readonly number[]): number[] {
  const n = y.length;
  const x = new Array<number>(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= l[k]![i]! * x[k]!;
    x[i] = s / l[i]![i]!;
  }
  return x;
}

/** A fitted Gaussian process on standardized targets, unit signal variance. */
export class GaussianProcess {
  readonly lengthScale: number;
  readonly noise: number;
  readonly logMarginalLikelihood: number;
  private readonly l: number[][];
  private readonly alpha: number[];
  readonly kernel: GpKernel;
  private readonly xs: readonly number[][];

  private constructor(
    kernel: GpKernel,
    xs: readonly number[][],
    lengthScale: number,
    noise: number,
    l: number[][],
    alpha: number[],
    lml: number,
  ) {
    this.kernel = kernel;
    this.xs = xs;
    this.lengthScale = lengthScale;
    this.noise = noise;
    this.l = l;
    this.alpha = alpha;
    this.logMarginalLikelihood = lml;
  }

  /**
   * Fits with the length scale and noise of the highest log marginal likelihood on a small grid
   * (plus `logPrior`, when given: the highest posterior).
   */
  static fit(kernel: GpKernel, xs: readonly number[][], ys: readonly number[], logPrior?: (lengthScale: number, noise: number) => number): GaussianProcess {
    let best: GaussianProcess | undefined;
    let bestScore = -Infinity;
    for (const lengthScale of LENGTH_SCALES) {
      for (const noise of NOISES) {
        const gp = GaussianProcess.tryFit(kernel, xs, ys, lengthScale, noise);
        const score = gp ? gp.logMarginalLikelihood + (logPrior ? logPrior(lengthScale, noise) : 0) : -Infinity;
        if (gp && (!best || score > bestScore)) {
          best = gp;
          bestScore = score;
        }
      }
    }
    if (!best) throw new Error('no Gaussian-process fit was positive definite');
    return best;
  }

  static tryFit(kernel: GpKernel, xs: readonly number[][], ys: readonly number[], lengthScale: number, noise: number): GaussianProcess | undefined {
    const n = xs.length;
    const k = xs.map((a, i) => xs.map((b, j) => kernelValue(kernel, distance(a, b), lengthScale) + (i === j ? noise : 0)));
    const l = cholesky(k);
    if (!l) return undefined;
    const alpha = solveUpper(l, solveLower(l, ys));
    const fitTerm = ys.reduce((s, y, i) => s + y * alpha[i]!, 0);
    const logDet = l.reduce((s, row, i) => s + Math.log(row[i]!), 0);
    const lml = -0.5 * fitTerm - logDet - (n / 2) * Math.log(2 * Math.PI);
    return new GaussianProcess(kernel, xs, lengthScale, noise, l, alpha, lml);
  }

  predict(x: readonly number[]): { mean: number; sd: number } {
    const kx = this.xs.map((a) => kernelValue(this.kernel, distance(a, x), this.lengthScale));
    const mean = kx.reduce((s, v, i) => s + v * this.alpha[i]!, 0);
    const v = solveLower(this.l, kx);
    const variance = Math.max(1e-12, 1 - v.reduce((s, e) => s + e * e, 0));
    return { mean, sd: Math.sqrt(variance) };
  }
}

/** Expected improvement below `best` of a normal prediction (for minimization). */
export function expectedImprovement(mean: number, sd: number, best: number): number {
  const z = (best - mean) / sd;
  return (best - mean) * normalCdf(z) + sd * normalPdf(z);
}

/**
 * Every configuration of a finite space (each parameter categorical or stepped), or undefined when
 * the space is continuous or the product of its parameters' value counts is over `limit`.
 */
export function finiteConfigurations(space: SearchSpace, limit: number): Configuration[] | undefined {
  let size = 1;
  for (const p of Object.values(space.parameters)) {
    const values = gridValues(p);
    if (!values) return undefined;
    size *= values.length;
  }
  return size > limit ? undefined : enumerateGrid(space);
}

/**
 * Optuna 4's log prior on a length scale, -(0.1 / λ + 0.1 λ) with λ its inverse square, highest at 1,
 * in units where a categorical that differs counts 1 (it puts 2 into the one-hot squared distance,
 * so λ = 2 / ℓ²). The GP of a finite space fits with it: with the few trials such a space gets, the
 * likelihood alone picks the shortest length scale (nothing yet shows two configurations alike),
 * under which every untried configuration scores the same and the search is random.
 */
export const finiteSpaceLengthScalePrior = (lengthScale: number) => {
  const lambda = 2 / (lengthScale * lengthScale);
  return -(0.1 / lambda + 0.1 * lambda);
};

/** A configuration's identity, independent of the order its keys were written in. */
export const configurationKey = (space: SearchSpace, c: Configuration) => JSON.stringify(Object.keys(space.parameters).map((name) => c[name] ?? null));

/**
 * The probability that a configuration meets every constraint, as Optuna's constrained GP sampler
 * models it: one GP per constraint on the completed trials' standardized constraint values (the
 * metric's distance past its bound, feasible at or below 0), the probabilities multiplied. A
 * constraint every completed trial gave the same value tells nothing about where it changes and is
 * left out. Trials without the metric (running ones under the constant liar) are not learned from.
 */
export function feasibilityModel(kernel: GpKernel, space: SearchSpace, trials: readonly Trial[], constraints: readonly Constraint[]): ((x: readonly number[]) => number) | undefined {
  const models: ((x: readonly number[]) => number)[] = [];
  for (const c of constraints) {
    const measured = trials.filter((t) => t.metrics?.[c.metric] !== undefined);
    const values = measured.map((t) => (c.op === '<=' ? t.metrics![c.metric]! - c.bound : c.bound - t.metrics![c.metric]!));
    if (values.every((v) => v === values[0])) continue;
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const sd = Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / values.length);
    const gp = GaussianProcess.fit(kernel, measured.map((t) => encode(space, t.params)), values.map((v) => (v - mean) / sd));
    const threshold = -mean / sd;
    models.push((x) => {
      const { mean: m, sd: s } = gp.predict(x);
      return normalCdf((threshold - m) / s);
    });
  }
  return models.length === 0 ? undefined : (x) => models.reduce((p, model) => p * model(x), 1);
}

/**
 * Gaussian-process Bayesian optimization of the first objective: a GP (Matern 5/2 or RBF, one length
 * scale over the normalized features) is fitted to the completed trials' standardized losses; the
 * next configuration maximizes expected improvement over the best feasible loss, first over random
 * candidates, then by a local search (Gaussian steps that shrink when they fail) from the best few.
 */
export class GpSampler implements Sampler {
  readonly name = 'gp';
  readonly kernel: GpKernel;
  readonly startupTrials: number;
  readonly candidates: number;

  constructor(options: GpOptions = {}) {
    this.kernel = options.kernel ?? 'matern52';
    this.startupTrials = options.startupTrials ?? 10;
    this.candidates = options.candidates ?? 1000;
  }

  sample(context: SampleContext): Configuration | undefined {
    const { space, random } = context;
    const done = completed(context.trials);
    // In a finite space no configuration is measured twice: a repeat would spend the budget on a
    // value already known. A failed trial gave its place back, so its configuration may come again.
    const finite = finiteConfigurations(space, this.candidates);
    const tried = new Set(context.trials.filter((t) => t.state !== 'failed').map((t) => configurationKey(space, t.params)));
    const untried = finite?.filter((c) => !tried.has(configurationKey(space, c)));
    if (untried?.length === 0) return undefined;
    if (done.length < this.startupTrials) return untried ? untried[Math.floor(random() * untried.length)]! : sampleConfiguration(space, random);
    const sign = context.directions[0] === 'maximize' ? -1 : 1;
    const xs = done.map((t) => encode(space, t.params));
    const losses = done.map((t) => sign * t.values![0]!);
    const mean = losses.reduce((a, b) => a + b, 0) / losses.length;
    const sd = Math.sqrt(losses.reduce((s, v) => s + (v - mean) ** 2, 0) / losses.length) || 1;
    const ys = losses.map((v) => (v - mean) / sd);
    const gp = GaussianProcess.fit(this.kernel, xs, ys, untried ? finiteSpaceLengthScalePrior : undefined);
    const feasible = done.filter(isFeasible);
    const incumbent = (feasible.length > 0 ? feasible : done).sort((a, b) => compareForObjective(a, b, context.directions[0]!))[0]!;
    const best = (sign * incumbent.values![0]! - mean) / sd;
    const feasibility = feasibilityModel(this.kernel, space, done, context.constraints ?? []);
    // Expected improvement times the probability of feasibility; before any trial was feasible, the
    // probability alone (Optuna's constrained acquisition).
    const score = (x: number[]) => {
      if (feasibility && feasible.length === 0) return feasibility(x);
      const { mean: m, sd: s } = gp.predict(x);
      return expectedImprovement(m, s, best) * (feasibility ? feasibility(x) : 1);
    };

    if (untried) {
      // Equal scores (configurations the model cannot tell apart) are broken at random, not by order.
      const scores = untried.map((c) => score(encode(space, c)));
      const top = Math.max(...scores);
      const ties = untried.filter((_, i) => scores[i]! >= top - 1e-12 * Math.abs(top));
      return ties[Math.floor(random() * ties.length)]!;
    }
    const scored = Array.from({ length: this.candidates }, () => {
      const x = encode(space, sampleConfiguration(space, random));
      return { x, ei: score(x) };
    });
    // Also start from the incumbent itself: the optimum is often next to it.
    const start = encode(space, incumbent.params);
    scored.push({ x: start, ei: score(start) });
    scored.sort((a, b) => b.ei - a.ei);
    let winner = scored[0]!;
    for (const seed of [...scored.slice(0, 4), scored[scored.length - 1]!].filter((s, i, all) => all.indexOf(s) === i)) {
      const refined = this.refine(space, seed, score, random);
      if (refined.ei > winner.ei) winner = refined;
    }
    return decode(space, winner.x);
  }

  /** Hill-climbs the numeric features with Gaussian steps, halving the step after failures. */
  private refine(space: SearchSpace, start: { x: number[]; ei: number }, score: (x: number[]) => number, random: () => number) {
    const numeric: number[] = [];
    let i = 0;
    for (const p of Object.values(space.parameters)) {
      if (p.type === 'categorical') i += p.choices.length;
      else numeric.push(i++);
    }
    let current = start;
    let step = 0.1;
    let failures = 0;
    for (let iteration = 0; iteration < 60 && step > 1e-4 && numeric.length > 0; iteration++) {
      const x = [...current.x];
      for (const j of numeric) x[j] = Math.min(1, Math.max(0, x[j]! + step * gaussian(random)));
      const ei = score(x);
      if (ei > current.ei) {
        current = { x, ei };
        failures = 0;
      } else if (++failures >= 5) {
        step /= 2;
        failures = 0;
      }
    }
    return current;
  }
}

/** A standard normal draw (Box-Muller). */
export function gaussian(random: () => number): number {
  const u = 1 - random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}
