import { describe, expect, it } from 'vitest';
import { rankPopulation, sbx, selectElite, tournament } from '../../functions/core/tune/samplers/nsga2.ts';
import { crowdingDistances, nonDominatedSort, type Direction, type Trial } from '../../functions/core/tune/trial.ts';
import { Study } from '../../functions/core/tune/study.ts';

const trialsOf = (values: number[][], violations: number[][] = []): Trial[] =>
  values.map((v, number) => ({ number, params: {}, state: 'complete', values: v, violations: violations[number] ?? [], intermediate: {} }));
const min2: Direction[] = ['minimize', 'minimize'];

describe('non-dominated sorting and crowding distance', () => {
  // A(1,5) B(2,3) C(4,1) | D(3,4) F(2,6) | E(5,5): B dominates D and F, A dominates F, D dominates E.
  const set = trialsOf([[1, 5], [2, 3], [4, 1], [3, 4], [5, 5], [2, 6]]);

  it('sorts a hand-made set into its fronts', () => {
    expect(nonDominatedSort(set, min2)).toEqual([[0, 1, 2], [3, 5], [4]]);
  });

  it('turns maximized objectives around', () => {
    const flipped = trialsOf([[1, -5], [2, -3], [4, -1], [3, -4], [5, -5], [2, -6]]);
    expect(nonDominatedSort(flipped, ['minimize', 'maximize'])).toEqual([[0, 1, 2], [3, 5], [4]]);
  });

  it('computes crowding distances by hand', () => {
    // P(0,10) Q(1,6) R(2,5) S(6,1) T(10,0): both ranges 10.
    // Q: (2-0)/10 + (10-5)/10 = 0.7; R: (6-1)/10 + (6-1)/10 = 1.0; S: (10-2)/10 + (5-0)/10 = 1.3
    const d = crowdingDistances([[0, 10], [1, 6], [2, 5], [6, 1], [10, 0]]);
    expect(d[0]).toBe(Infinity);
    expect(d[4]).toBe(Infinity);
    expect(d[1]).toBeCloseTo(0.7, 12);
    expect(d[2]).toBeCloseTo(1.0, 12);
    expect(d[3]).toBeCloseTo(1.3, 12);
    expect(crowdingDistances([[1, 5], [2, 3], [4, 1]])).toEqual([Infinity, 2, Infinity]);
  });

  it('ranks a feasible trial above any infeasible one, and infeasible ones by total violation', () => {
    // (0,0) dominates everything but breaks a constraint by 0.3; (9,9) is feasible.
    const constrained = trialsOf([[0, 0], [9, 9], [5, 5], [1, 1]], [[0.3], [0], [0], [0.1]]);
    expect(nonDominatedSort(constrained, min2)).toEqual([[2], [1], [3], [0]]);
  });

  it('selects whole fronts, then the most crowded-out of the last by distance, then by number', () => {
    expect(selectElite(set, min2, 4).map((t) => t.number)).toEqual([0, 2, 1, 3]);
    const ranked = rankPopulation(set, min2);
    const byNumber = (n: number) => ranked.find((r) => r.trial.number === n)!;
    expect(byNumber(1)).toMatchObject({ rank: 0, crowding: 2 });
    expect(tournament(byNumber(1), byNumber(3)).trial.number).toBe(1); // lower rank
    expect(tournament(byNumber(1), byNumber(0)).trial.number).toBe(0); // same rank, larger distance
  });

  it('crosses by SBX around the parents and within [0, 1]', () => {
    // u = 0.5 gives beta = 1: the children are the parents themselves
    const draws = [0.5, 0.1];
    expect(sbx(0.2, 0.6, 20, () => draws.shift()!)).toBeCloseTo(0.2, 12);
    const draws2 = [0.999999, 0.9];
    expect(sbx(0.2, 0.9, 2, () => draws2.shift()!)).toBe(1);
  });
});

describe('NSGA-II study', () => {
  it('finds the known front of f1 = x², f2 = (x - 2)² (x in [0, 2]) and spreads along it', () => {
    const study = Study.create({
      space: { parameters: { x: { type: 'float', low: -5, high: 5 } } },
      objectives: [{ metric: 'f1', direction: 'minimize' }, { metric: 'f2', direction: 'minimize' }],
      sampler: { type: 'nsga2', populationSize: 20 },
      seed: 1,
    });
    for (let i = 0; i < 100; i++) {
      const t = study.ask()!;
      const x = t.params.x as number;
      study.tell(t.number, { f1: x * x, f2: (x - 2) ** 2 });
    }
    const xs = study.paretoFront().map((t) => t.params.x as number);
    expect(xs.length).toBeGreaterThanOrEqual(20);
    for (const x of xs) {
      expect(x).toBeGreaterThan(-0.05);
      expect(x).toBeLessThan(2.05);
    }
    expect(Math.min(...xs)).toBeLessThan(0.2);
    expect(Math.max(...xs)).toBeGreaterThan(1.8);
  });

  it('keeps infeasible trials out of the Pareto front', () => {
    const study = Study.create({
      space: { parameters: { x: { type: 'float', low: 0, high: 1 } } },
      objectives: [{ metric: 'p99_ms', direction: 'minimize' }, { metric: 'accuracy', direction: 'maximize' }],
      constraints: [{ metric: 'accuracy_drop', op: '<=', bound: 0.5 }],
      sampler: { type: 'random' },
    });
    const told = [
      { p99_ms: 1, accuracy: 0.99, accuracy_drop: 0.6 }, // best on both, infeasible
      { p99_ms: 3, accuracy: 0.98, accuracy_drop: 0.4 },
      { p99_ms: 2, accuracy: 0.97, accuracy_drop: 0.5 },
      { p99_ms: 4, accuracy: 0.96, accuracy_drop: 0.2 }, // dominated by 1
    ];
    for (const metrics of told) study.tell(study.ask()!.number, metrics);
    expect(study.paretoFront().map((t) => t.number)).toEqual([1, 2]);
    expect(study.trials[0]!.violations![0]).toBeCloseTo(0.1, 12);
  });
});
