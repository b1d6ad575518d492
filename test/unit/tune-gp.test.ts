import { describe, expect, it } from 'vitest';
import { configurationKey, encode, feasibilityModel, finiteConfigurations, finiteSpaceLengthScalePrior, GpSampler } from '../../functions/core/tune/samplers/gp.ts';
import { trialRandom } from '../../functions/core/tune/samplers/sampler.ts';
import { parseSearchSpace, type Configuration } from '../../functions/core/tune/space.ts';
import { Study, type StudyConfigInput } from '../../functions/core/tune/study.ts';
import type { Trial } from '../../functions/core/tune/trial.ts';

const servingLike = {
  parameters: {
    quantization: { type: 'categorical', choices: ['none', 'int8', 'fp16'] },
    threads: { type: 'categorical', choices: [1, 2] },
    batch: { type: 'int', low: 1, high: 8, step: 7 },
  },
};
const servingLoss = (p: Configuration) => (p.quantization === 'int8' ? 1 : 3) + (p.threads === 1 ? 0 : 5) + (p.batch === 1 ? 0 : 0.5);

describe('GP-BO in a finite space', () => {
  it('lists every configuration of a space of categorical and stepped parameters, and none of a continuous one', () => {
    const space = parseSearchSpace(servingLike);
    expect(finiteConfigurations(space, 1000)).toHaveLength(12);
    expect(finiteConfigurations(space, 11)).toBeUndefined();
    expect(finiteConfigurations(parseSearchSpace({ parameters: { x: { type: 'float', low: 0, high: 1 } } }), 1000)).toBeUndefined();
    expect(configurationKey(space, { batch: 8, threads: 1, quantization: 'int8' })).toBe(configurationKey(space, { quantization: 'int8', threads: 1, batch: 8 }));
  });

  it.each([0, 1, 2])('never measures a configuration twice and stops when every one is measured (seed %i)', (seed) => {
    const study = Study.create({ space: servingLike, objectives: [{ metric: 'f', direction: 'minimize' }], sampler: { type: 'gp', startupTrials: 3 }, seed, maxTrials: 20 });
    const keys: string[] = [];
    for (let trial = study.ask(); trial; trial = study.ask()) {
      keys.push(JSON.stringify(trial.params));
      study.tell(trial.number, { f: servingLoss(trial.params) });
    }
    expect(keys).toHaveLength(12);
    expect(new Set(keys).size).toBe(12);
  });

  it('may propose a failed trial\'s configuration again (its place in the budget came back) and stops when the rest are measured', () => {
    const space = { parameters: { q: { type: 'categorical', choices: ['a', 'b'] } } };
    const study = Study.create({ space, objectives: [{ metric: 'f', direction: 'minimize' }], sampler: { type: 'gp', startupTrials: 1 }, seed: 4, maxTrials: 3 });
    const first = study.ask()!;
    study.fail(first.number);
    const second = study.ask()!;
    study.tell(second.number, { f: 1 });
    const third = study.ask()!;
    expect([second.params.q, third.params.q].sort()).toEqual(['a', 'b']);
    expect(study.ask()).toBeUndefined();
  });
});

describe('GP-BO length scale in a finite space', () => {
  it("uses Optuna 4's length-scale prior in Hamming units: highest where a differing categorical is one length scale away", () => {
    expect(finiteSpaceLengthScalePrior(Math.SQRT2)).toBeCloseTo(-0.2, 12);
    expect(finiteSpaceLengthScalePrior(0.05)).toBeCloseTo(-(0.1 / 800 + 80), 9);
    expect(finiteSpaceLengthScalePrior(1)).toBeLessThan(finiteSpaceLengthScalePrior(Math.SQRT2));
  });

  it('learns from three trials which parameter values are good, so every seed proposes the same configuration', () => {
    // The loss is the number of ones; three trials show that a 1 in a or b costs more than a 0. With
    // the length scale by likelihood alone, every untried configuration scored the same (no two alike
    // yet) and the proposal was a draw among them.
    const space = parseSearchSpace({ parameters: { a: { type: 'categorical', choices: [0, 1] }, b: { type: 'categorical', choices: [0, 1] }, c: { type: 'categorical', choices: [0, 1] } } });
    const told = [{ a: 1, b: 1, c: 1 }, { a: 0, b: 1, c: 1 }, { a: 1, b: 0, c: 1 }];
    const trials: Trial[] = told.map((params, number) => {
      const f = params.a + params.b + params.c;
      return { number, params, state: 'complete', values: [f], violations: [], metrics: { f }, intermediate: {} };
    });
    const sampler = new GpSampler({ startupTrials: 3 });
    const proposals = Array.from({ length: 10 }, (_, seed) => sampler.sample({ space, directions: ['minimize'], trials, trialNumber: 3, random: trialRandom(seed, 3) }));
    expect(proposals).toEqual(Array.from({ length: 10 }, () => ({ a: 0, b: 0, c: 1 })));
  });
});

describe('GP-BO with constraints', () => {
  const space = parseSearchSpace({ parameters: { x: { type: 'float', low: 0, high: 1 } } });
  const trial = (number: number, x: number, c: number): Trial => ({ number, params: { x }, state: 'complete', values: [x], violations: [Math.max(0, c - 0.5)], metrics: { f: x, c }, intermediate: {} });

  it('gives a high probability of feasibility next to feasible trials and a low one next to infeasible ones', () => {
    const trials = [trial(0, 0.1, 0.1), trial(1, 0.3, 0.3), trial(2, 0.7, 0.7), trial(3, 0.9, 0.9)];
    const pof = feasibilityModel('matern52', space, trials, [{ metric: 'c', op: '<=', bound: 0.5 }])!;
    expect(pof(encode(space, { x: 0.2 }))).toBeGreaterThan(0.95);
    expect(pof(encode(space, { x: 0.8 }))).toBeLessThan(0.05);
    // ">=" turns the other way
    const reversed = feasibilityModel('matern52', space, trials, [{ metric: 'c', op: '>=', bound: 0.5 }])!;
    expect(reversed(encode(space, { x: 0.8 }))).toBeGreaterThan(0.95);
  });

  it('leaves out a constraint every trial gave the same value (nothing tells where it changes)', () => {
    const trials = [trial(0, 0.1, 0), trial(1, 0.9, 0)];
    expect(feasibilityModel('matern52', space, trials, [{ metric: 'c', op: '<=', bound: 0.5 }])).toBeUndefined();
  });

  it('proposes few infeasible configurations where the objective improves towards the infeasible region', () => {
    // f falls with x and x > 0.6 is infeasible: the best feasible value is at x = 0.6.
    const config = (seed: number): StudyConfigInput => ({
      space: { parameters: { x: { type: 'float', low: 0, high: 1 }, y: { type: 'float', low: 0, high: 1 } } },
      objectives: [{ metric: 'f', direction: 'minimize' }],
      constraints: [{ metric: 'c', op: '<=', bound: 0.6 }],
      sampler: { type: 'gp', startupTrials: 5, candidates: 300 },
      seed,
      maxTrials: 20,
    });
    for (let seed = 0; seed < 3; seed++) {
      const study = Study.create(config(seed));
      for (let t = study.ask(); t; t = study.ask()) {
        const { x, y } = t.params as { x: number; y: number };
        study.tell(t.number, { f: -x + 0.1 * (y - 0.5) ** 2, c: x });
      }
      const guided = study.trials.slice(5);
      // Without the model the GP goes to x = 1 (its best predicted loss) for all 15 guided trials.
      expect(guided.filter((t) => (t.params.x as number) > 0.7).length).toBeLessThanOrEqual(3);
      expect(study.bestTrial()!.values![0]!).toBeLessThan(-0.59);
    }
  });
});
