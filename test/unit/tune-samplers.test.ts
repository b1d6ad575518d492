import { describe, expect, it } from 'vitest';
import { enumerateGrid } from '../../functions/core/tune/samplers/grid.ts';
import { cholesky, expectedImprovement, GaussianProcess, solveLower, solveUpper } from '../../functions/core/tune/samplers/gp.ts';
import { categoricalProbabilities, defaultGamma, defaultWeights, jointEstimator, jointLogPdf, numericEstimator, numericLogPdf } from '../../functions/core/tune/samplers/tpe.ts';
import { parseSearchSpace, type Configuration } from '../../functions/core/tune/space.ts';
import { Study, type StudyConfigInput } from '../../functions/core/tune/study.ts';

const quadraticSpace = { parameters: { x: { type: 'float', low: -5, high: 5 }, y: { type: 'float', low: -5, high: 5 } } };
const quadratic = (p: Configuration) => ((p.x as number) - 1.3) ** 2 + ((p.y as number) + 0.7) ** 2;

/** Runs a minimization study on f; returns the study. */
function run(config: StudyConfigInput, trials: number, f: (p: Configuration) => number): Study {
  const study = Study.create(config);
  for (let i = 0; i < trials; i++) {
    const trial = study.ask();
    if (!trial) break;
    study.tell(trial.number, { f: f(trial.params) });
  }
  return study;
}

const minimize = [{ metric: 'f', direction: 'minimize' as const }];
const mixedSpace = {
  parameters: {
    optimizer: { type: 'categorical', choices: ['sgd', 'adam', 'rmsprop'] },
    lr: { type: 'float', low: 0.0001, high: 0.1, log: true },
    momentum: { type: 'float', low: 0, high: 0.9, step: 0.1, when: { parent: 'optimizer', values: ['sgd', 'rmsprop'] } },
    nesterov: { type: 'categorical', choices: [true, false], when: { parent: 'optimizer', values: ['sgd'] } },
    batch: { type: 'int', low: 16, high: 256, log: true },
    width: { type: 'int', low: 32, high: 128, step: 32 },
  },
};
const mixedObjective = (p: Configuration) =>
  Math.abs(Math.log10(p.lr as number) + 2) + (p.optimizer === 'adam' ? 0 : 0.5) + ((p.momentum as number | undefined) ?? 0) + Math.abs((p.batch as number) - 64) / 100 + (p.width === 64 ? 0 : 0.2);

const samplers: StudyConfigInput['sampler'][] = [
  { type: 'random' },
  { type: 'tpe', startupTrials: 5 },
  { type: 'tpe', startupTrials: 5, multivariate: true },
  { type: 'gp', startupTrials: 5, candidates: 200 },
  { type: 'nsga2', populationSize: 6 },
];

describe('every sampler', () => {
  it.each(samplers)('$type gives the same trials under the same seed and different ones under another', (sampler) => {
    const params = (seed: number) => run({ space: mixedSpace, objectives: minimize, sampler, seed }, 14, mixedObjective).trials.map((t) => t.params);
    const first = params(7);
    expect(params(7)).toEqual(first);
    expect(params(8)).not.toEqual(first);
  });

  it.each(samplers)('$type never samples a parameter its parent leaves inactive, and always samples an active one', (sampler) => {
    const study = run({ space: mixedSpace, objectives: minimize, sampler, seed: 3 }, 30, mixedObjective);
    for (const { params } of study.trials) {
      expect('momentum' in params).toBe(params.optimizer !== 'adam');
      expect('nesterov' in params).toBe(params.optimizer === 'sgd');
      expect(Object.keys(params).filter((k) => !['momentum', 'nesterov'].includes(k)).sort()).toEqual(['batch', 'lr', 'optimizer', 'width']);
      expect((params.width as number) % 32).toBe(0);
      expect(Number.isInteger(params.batch)).toBe(true);
      expect(params.lr).toBeGreaterThanOrEqual(0.0001);
      expect(params.lr).toBeLessThanOrEqual(0.1);
      if ('momentum' in params) expect([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]).toContain(params.momentum);
    }
  });

  it('a rebuilt study proposes exactly what the original would (a worker continuing from stored trials)', () => {
    for (const sampler of samplers) {
      const study = run({ space: mixedSpace, objectives: minimize, sampler, seed: 5 }, 12, mixedObjective);
      const rebuilt = Study.fromState(JSON.parse(JSON.stringify(study.toState())));
      expect(rebuilt.ask()).toEqual(study.ask());
    }
  });
});

describe('grid sampler', () => {
  it('enumerates exactly the product, first parameter slowest, then stops', () => {
    const space = { parameters: { a: { type: 'int', low: 1, high: 3 }, b: { type: 'categorical', choices: ['x', 'y'] }, c: { type: 'float', low: 0, high: 0.5, step: 0.25 } } };
    const study = run({ space, objectives: minimize, sampler: { type: 'grid' } }, 100, () => 0);
    const seen = study.trials.map((t) => `${t.params.a}${t.params.b}${t.params.c}`);
    expect(seen).toEqual([
      '1x0', '1x0.25', '1x0.5', '1y0', '1y0.25', '1y0.5',
      '2x0', '2x0.25', '2x0.5', '2y0', '2y0.25', '2y0.5',
      '3x0', '3x0.25', '3x0.5', '3y0', '3y0.25', '3y0.5',
    ]);
    expect(study.ask()).toBeUndefined();
  });

  it('branches a conditional parameter only under the values that activate it', () => {
    const space = parseSearchSpace({
      parameters: { o: { type: 'categorical', choices: ['sgd', 'adam'] }, m: { type: 'float', low: 0, high: 0.9, step: 0.45, when: { parent: 'o', values: ['sgd'] } } },
    });
    expect(enumerateGrid(space)).toEqual([{ o: 'sgd', m: 0 }, { o: 'sgd', m: 0.45 }, { o: 'sgd', m: 0.9 }, { o: 'adam' }]);
  });
});

describe('incremental grid sampler', () => {
  it('searches one group with the others at the best so far, then the next group', () => {
    const space = { parameters: { a: { type: 'int', low: 0, high: 4 }, b: { type: 'int', low: 0, high: 2 }, c: { type: 'categorical', choices: ['p', 'q'] } } };
    const f = (p: Configuration) => ((p.a as number) - 3) ** 2 + ((p.b as number) - 0) ** 2 + (p.c === 'q' ? 0 : 1);
    const study = run({ space, objectives: minimize, sampler: { type: 'incremental-grid', groups: [['a'], ['b', 'c']] } }, 100, f);
    expect(study.trials.map((t) => t.params)).toEqual([
      // group a, b and c at their grid's middle (b 1, c 'p')
      { a: 0, b: 1, c: 'p' }, { a: 1, b: 1, c: 'p' }, { a: 2, b: 1, c: 'p' }, { a: 3, b: 1, c: 'p' }, { a: 4, b: 1, c: 'p' },
      // group (b, c), a fixed at the best so far (3), c varying fastest
      { a: 3, b: 0, c: 'p' }, { a: 3, b: 0, c: 'q' }, { a: 3, b: 1, c: 'p' }, { a: 3, b: 1, c: 'q' }, { a: 3, b: 2, c: 'p' }, { a: 3, b: 2, c: 'q' },
    ]);
    expect(study.bestTrial()!.params).toEqual({ a: 3, b: 0, c: 'q' });
    expect(study.ask()).toBeUndefined();
  });

  it('refuses groups that leave a parameter out or repeat one', () => {
    const space = { parameters: { a: { type: 'int', low: 0, high: 4 }, b: { type: 'int', low: 0, high: 2 } } };
    expect(() => Study.create({ space, objectives: minimize, sampler: { type: 'incremental-grid', groups: [['a']] } })).toThrow("incremental grid: parameter 'b' is in no group");
    expect(() => Study.create({ space, objectives: minimize, sampler: { type: 'incremental-grid', groups: [['a', 'b'], ['b']] } })).toThrow(
      "incremental grid: parameter 'b' is in more than one group",
    );
  });
});

describe('TPE', () => {
  it("uses Optuna's gamma and weights", () => {
    expect([1, 10, 11, 100, 300].map(defaultGamma)).toEqual([1, 1, 2, 10, 25]);
    expect(defaultWeights(3)).toEqual([1, 1, 1]);
    const w = defaultWeights(27);
    expect(w.length).toBe(27);
    expect(w[0]).toBeCloseTo(1 / 27, 12);
    expect(w.slice(1)).toEqual(new Array(26).fill(1));
  });

  it("sets bandwidths by Optuna's rule: neighbour gaps, inner gaps at the ends, magic clip, prior as wide as the range", () => {
    const space = parseSearchSpace({ parameters: { x: { type: 'float', low: 0, high: 10 }, i: { type: 'int', low: 1, high: 5 } } });
    // mus 2, 3 and the prior 5; gaps [0 2 3 5 10]: ends take inner gaps (1, 2), clipped up to 10 / (1 + 3) = 2.5
    expect(numericEstimator(space.parameters.x as never, [2, 3], 1)).toEqual({ mus: [2, 3, 5], sigmas: [2.5, 2.5, 10], weights: [1 / 3, 1 / 3, 1 / 3], low: 0, high: 10, step: undefined });
    // an int widens its range by half a step each side: [0.5, 5.5]
    const e = numericEstimator(space.parameters.i as never, [3], 1);
    expect(e).toEqual({ mus: [3, 3], sigmas: [5 / 3, 5], weights: [0.5, 0.5], low: 0.5, high: 5.5, step: 1 });
  });

  it('gives the truncated density and, for a discrete parameter, the mass of its step', () => {
    const space = parseSearchSpace({ parameters: { x: { type: 'float', low: 0, high: 10 }, i: { type: 'int', low: 1, high: 5 } } });
    // prior only: N(5, 10) truncated to [0, 10], at 5: phi(0) / 10 / (Phi(0.5) - Phi(-0.5))
    expect(numericLogPdf(numericEstimator(space.parameters.x as never, [], 1), 5)).toBeCloseTo(-2.261607292503096, 6);
    // N(3, 5) truncated to [0.5, 5.5], mass of [0.5, 1.5]
    expect(numericLogPdf(numericEstimator(space.parameters.i as never, [], 1), 1)).toBeCloseTo(-1.6498593707377676, 6);
  });

  it("scores TPE candidates with Optuna 3.1's bandwidth-weighted log density (its truncnorm logpdf leaves out log sigma)", () => {
    const space = parseSearchSpace({ parameters: { x: { type: 'float', low: -5, high: 10 } } });
    const e = numericEstimator(space.parameters.x as never, [1, -2, 7.5, 3.3, 9.9, 0.1, 5], 1);
    // (our erfc agrees to about 1e-7) optuna 3.1 (Debian python3-optuna): _ParzenEstimator({'x': obs}, {'x': FloatDistribution(-5, 10)}, TPESampler()'s parameters).log_pdf
    const optuna = [-1.8264693814149282, -1.310225292648504, -1.2746429591431196, -1.328724117764473, -1.3272911579815299];
    [-4, 0, 2.5, 6, 9.5].forEach((x, i) => expect(numericLogPdf(e, x, true)).toBeCloseTo(optuna[i]!, 6));
    // the exact density differs from it by each kernel's 1 / sigma
    expect(numericLogPdf(e, -4)).toBeCloseTo(-3.569557453071963, 6);
  });

  it("mixes categorical kernels as Optuna does (1 on the observed choice, prior / (n + 1) on each, normalized)", () => {
    const space = parseSearchSpace({ parameters: { c: { type: 'categorical', choices: ['a', 'b', 'c'] } } });
    const probs = categoricalProbabilities(space.parameters.c as never, ['a'], 1);
    expect(probs.map((p) => Number(p.toFixed(12)))).toEqual([0.466666666667, 0.266666666667, 0.266666666667]);
  });

  it("models parameters jointly as Optuna 3.1's multivariate TPE: Scott's-rule bandwidths, one kernel per observation across parameters", () => {
    const space = parseSearchSpace({ parameters: { x: { type: 'float', low: -5, high: 10 }, n: { type: 'int', low: 1, high: 5 }, c: { type: 'categorical', choices: ['a', 'b', 'c'] } } });
    const params = [{ x: 1, n: 1, c: 'a' }, { x: -2, n: 2, c: 'c' }, { x: 7.5, n: 2, c: 'c' }, { x: 3.3, n: 5, c: 'b' }, { x: 9.9, n: 4, c: 'a' }];
    const trials = params.map((p, number) => ({ number, state: 'complete' as const, params: p, values: [0] }));
    const e = jointEstimator(Object.entries(space.parameters), trials as never, 1);
    // optuna 3.1: _ParzenEstimator(obs, space, TPESampler(multivariate=True)'s parameters): sigma 0.2 * 5^(-1/7) of the range
    const sigmaX = e.parts[0]!.kind === 'numeric' ? e.parts[0]!.e.sigmas : [];
    sigmaX.slice(0, 5).forEach((s) => expect(s).toBeCloseTo(2.383792214105557, 12));
    expect(sigmaX[5]).toBe(15);
    const optuna = [-4.185317849068191, -4.244966258899607, -3.828732742617336, -3.9281495442333205];
    const points = [[-4, 1, 0], [0, 3, 1], [2.5, 2, 2], [6, 5, 0]];
    points.forEach((x, i) => expect(jointLogPdf(e, x)).toBeCloseTo(optuna[i]!, 6));
  });

  it.each([{ multivariate: false }, { multivariate: true }])('finds the minimum of a 2-D quadratic better than random search at the same seed and budget (multivariate: $multivariate)', ({ multivariate }) => {
    for (let seed = 0; seed < 5; seed++) {
      const tpe = run({ space: quadraticSpace, objectives: minimize, sampler: { type: 'tpe', multivariate }, seed }, 100, quadratic).bestTrial()!.values![0]!;
      const random = run({ space: quadraticSpace, objectives: minimize, sampler: { type: 'random' }, seed }, 100, quadratic).bestTrial()!.values![0]!;
      expect(tpe).toBeLessThan(random / 3);
      expect(tpe).toBeLessThan(0.05);
    }
  });
});

describe('Gaussian-process BO', () => {
  it('factors and solves by Cholesky', () => {
    const l = cholesky([[4, 2], [2, 3]])!;
    expect(l).toEqual([[2, 0], [1, Math.SQRT2]]);
    // (L Lᵀ) x = [8, 7] has x = [1.25, 1.5]
    const x = solveUpper(l, solveLower(l, [8, 7]));
    expect(x[0]).toBeCloseTo(1.25, 12);
    expect(x[1]).toBeCloseTo(1.5, 12);
    expect(cholesky([[1, 2], [2, 1]])).toBeUndefined();
  });

  it('computes expected improvement', () => {
    // at the incumbent with sd 1: EI = phi(0)
    expect(expectedImprovement(0, 1, 0)).toBeCloseTo(0.3989422804, 8);
    // (best - mean) Phi(1) + phi(1) for mean -1
    expect(expectedImprovement(-1, 1, 0)).toBeCloseTo(1.0833154705876864, 6);
  });

  it('interpolates its data with a small noise and picks a length scale by marginal likelihood', () => {
    const xs = [[0], [0.25], [0.5], [0.75], [1]];
    const ys = xs.map(([x]) => Math.sin(6 * x!));
    const gp = GaussianProcess.fit('matern52', xs, ys);
    expect(gp.noise).toBe(1e-6);
    expect(gp.predict([0.5]).mean).toBeCloseTo(Math.sin(3), 3);
    expect(gp.predict([0.5]).sd).toBeLessThan(0.01);
    expect(gp.predict([0.6]).sd).toBeGreaterThan(gp.predict([0.5]).sd);
  });

  it.each(['matern52', 'rbf'] as const)('with %s finds the minimum of a 2-D quadratic better than random search at the same seed and budget', (kernel) => {
    for (let seed = 0; seed < 3; seed++) {
      const gp = run({ space: quadraticSpace, objectives: minimize, sampler: { type: 'gp', kernel, candidates: 300 }, seed }, 25, quadratic).bestTrial()!.values![0]!;
      const random = run({ space: quadraticSpace, objectives: minimize, sampler: { type: 'random' }, seed }, 25, quadratic).bestTrial()!.values![0]!;
      expect(gp).toBeLessThan(random);
      expect(gp).toBeLessThan(0.01);
    }
  });
});
