import { activeConfiguration, fromUnit, toUnit, type Configuration, type SearchSpace } from '../space.ts';
import { compareForObjective, isFeasible } from '../trial.ts';
import { normalCdf, normalPdf } from '../math.ts';
import { sampleConfiguration } from './random.ts';
import { completed, type SampleContext, type Sampler } from './sampler.ts';

export type GpKernel = 'matern52' | 'rbf';

export interface GpOptions {
  kernel?: GpKernel;
  /** Trials drawn at random before the model takes over. */
  startupTrials?: number;
  /** Random candidates scored by expected improvement before the local refinement. */
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

  /** Fits with the length scale and noise of the highest log marginal likelihood on a small grid. */
  static fit(kernel: GpKernel, xs: readonly number[][], ys: readonly number[]): GaussianProcess {
    let best: GaussianProcess | undefined;
    for (const lengthScale of LENGTH_SCALES) {
      for (const noise of NOISES) {
        const gp = GaussianProcess.tryFit(kernel, xs, ys, lengthScale, noise);
        if (gp && (!best || gp.logMarginalLikelihood > best.logMarginalLikelihood)) best = gp;
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

  sample(context: SampleContext): Configuration {
    const { space, random } = context;
    const done = completed(context.trials);
    if (done.length < this.startupTrials) return sampleConfiguration(space, random);
    const sign = context.directions[0] === 'maximize' ? -1 : 1;
    const xs = done.map((t) => encode(space, t.params));
    const losses = done.map((t) => sign * t.values![0]!);
    const mean = losses.reduce((a, b) => a + b, 0) / losses.length;
    const sd = Math.sqrt(losses.reduce((s, v) => s + (v - mean) ** 2, 0) / losses.length) || 1;
    const ys = losses.map((v) => (v - mean) / sd);
    const gp = GaussianProcess.fit(this.kernel, xs, ys);
    const feasible = done.filter(isFeasible);
    const incumbent = (feasible.length > 0 ? feasible : done).sort((a, b) => compareForObjective(a, b, context.directions[0]!))[0]!;
    const best = (sign * incumbent.values![0]! - mean) / sd;
    const score = (x: number[]) => {
      const { mean: m, sd: s } = gp.predict(x);
      return expectedImprovement(m, s, best);
    };

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
