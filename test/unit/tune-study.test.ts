import { describe, expect, it } from 'vitest';
import { Study, withLies } from '../../functions/core/tune/study.ts';
import { trialRandom } from '../../functions/core/tune/samplers/sampler.ts';

const config = {
  space: { parameters: { q: { type: 'categorical', choices: ['int8', 'fp16', 'none'] }, threads: { type: 'int', low: 1, high: 4 } } },
  objectives: [{ metric: 'p99_ms', direction: 'minimize' }],
  constraints: [{ metric: 'accuracy_drop', op: '<=', bound: 0.5 }],
  sampler: { type: 'grid' },
  maxTrials: 5,
};

describe('study', () => {
  it('asks, tells, and keeps the best feasible trial and its history', () => {
    const study = Study.create(config);
    const measured = [
      { p99_ms: 9, accuracy_drop: 0.1 },
      { p99_ms: 4, accuracy_drop: 0.9 }, // fastest so far, infeasible
      { p99_ms: 6, accuracy_drop: 0.5 },
      { p99_ms: 7, accuracy_drop: 0.0 },
    ];
    for (const metrics of measured) study.tell(study.ask()!.number, metrics);
    expect(study.bestTrial()).toEqual({
      number: 2,
      params: { q: 'int8', threads: 3 },
      state: 'complete',
      metrics: { p99_ms: 6, accuracy_drop: 0.5 },
      values: [6],
      violations: [0],
      intermediate: {},
    });
    expect(study.history()).toEqual([
      { number: 0, state: 'complete', values: [9], feasible: true, bestSoFar: 9 },
      { number: 1, state: 'complete', values: [4], feasible: false, bestSoFar: 9 },
      { number: 2, state: 'complete', values: [6], feasible: true, bestSoFar: 6 },
      { number: 3, state: 'complete', values: [7], feasible: true, bestSoFar: 6 },
    ]);
  });

  it('stops at its trial budget, where a failed trial gives its place back', () => {
    const study = Study.create(config);
    for (let i = 0; i < 5; i++) expect(study.ask()!.number).toBe(i);
    expect(study.ask()).toBeUndefined();
    study.fail(3);
    expect(study.ask()).toMatchObject({ number: 5, params: { q: 'fp16', threads: 2 } });
    expect(study.ask()).toBeUndefined();
  });

  it('refuses metrics it cannot use and a trial that is not running, changing nothing', () => {
    const study = Study.create(config);
    const t = study.ask()!;
    expect(() => study.tell(t.number, { p99_ms: 3 })).toThrow("trial 0: metric 'accuracy_drop' is missing");
    expect(() => study.tell(t.number, { p99_ms: NaN, accuracy_drop: 0 })).toThrow("trial 0: metric 'p99_ms' is NaN, not a finite number");
    expect(study.trials[0]!.state).toBe('running');
    expect(() => study.tell(7, { p99_ms: 3, accuracy_drop: 0 })).toThrow('trial 7 does not exist');
    study.fail(t.number);
    expect(() => study.tell(t.number, { p99_ms: 3, accuracy_drop: 0 })).toThrow('trial 0 is failed, not running');
    expect(() => study.ask(0)).toThrow('trial 0 already exists');
    expect(study.bestTrial()).toBeUndefined();
  });

  it('has no best trial when none is feasible, and no best trial for several objectives', () => {
    const study = Study.create(config);
    study.tell(study.ask()!.number, { p99_ms: 1, accuracy_drop: 2 });
    expect(study.bestTrial()).toBeUndefined();
    const multi = Study.create({ ...config, objectives: [{ metric: 'a', direction: 'minimize' }, { metric: 'b', direction: 'maximize' }] });
    expect(() => multi.bestTrial()).toThrow('a study with several objectives has a Pareto front, not a best trial');
  });

  it('survives JSON: a study rebuilt from its state continues the same way, trials asked out of order included', () => {
    const study = Study.create({ ...config, sampler: { type: 'tpe', startupTrials: 2 }, maxTrials: 10, seed: 11 });
    for (let i = 0; i < 4; i++) {
      const t = study.ask()!;
      study.tell(t.number, { p99_ms: (t.params.threads as number) * 2, accuracy_drop: 0 });
    }
    const state = JSON.parse(JSON.stringify(study.toState()));
    const rebuilt = Study.fromState(state);
    expect(rebuilt.toState()).toEqual(study.toState());
    // two workers given numbers 5 and 4 by a shared counter, asking in that order
    expect(rebuilt.ask(5)).toEqual(study.ask(5));
    expect(rebuilt.ask(4)).toEqual(study.ask(4));
  });
});

describe('parallel asks', () => {
  const tpe = {
    space: { parameters: { x: { type: 'float', low: -5, high: 5 }, y: { type: 'float', low: -5, high: 5 } } },
    objectives: [{ metric: 'loss', direction: 'minimize' }],
    sampler: { type: 'tpe', startupTrials: 4 },
    seed: 7,
  };
  const loss = (p: Record<string, unknown>) => ((p.x as number) - 1) ** 2 + ((p.y as number) + 2) ** 2;

  it('tells the sampler each running trial as the worst value so far (constant liar)', () => {
    const study = Study.create(tpe);
    for (let i = 0; i < 6; i++) {
      const t = study.ask()!;
      study.tell(t.number, { loss: loss(t.params) });
    }
    const running = study.ask()!; // a parallel worker's trial, not told yet
    const worst = Math.max(...study.trials.filter((t) => t.state === 'complete').map((t) => t.values![0]!));

    const seen = withLies(study.trials, ['minimize']);

    expect(seen.find((t) => t.number === running.number)).toMatchObject({ state: 'complete', values: [worst], violations: [] });
    expect(seen.filter((t) => t.number !== running.number)).toEqual(study.trials.filter((t) => t.number !== running.number));
    // The next ask sees the lie; without the liar it would not, and proposes another configuration.
    const liar = Study.fromState(study.toState()).propose(running.number + 1);
    const honest = new Study({ ...study.config, constantLiar: false }, study.trials).propose(running.number + 1);
    const expected = study.sampler.sample({ space: study.config.space, directions: ['minimize'], trials: seen, trialNumber: running.number + 1, random: trialRandom(7, running.number + 1) });
    expect(liar).toEqual(expected);
    expect(honest).not.toEqual(liar);
  });

  it('changes nothing for a sequential study, and gives the worst of each direction', () => {
    const trials = [
      { number: 0, params: {}, state: 'complete' as const, values: [3, 0.9], violations: [0], intermediate: {} },
      { number: 1, params: {}, state: 'complete' as const, values: [5, 0.7], violations: [0.2], intermediate: {} },
      { number: 2, params: {}, state: 'running' as const, intermediate: {} },
    ];
    expect(withLies(trials.slice(0, 2), ['minimize', 'maximize'])).toEqual(trials.slice(0, 2));
    expect(withLies([trials[2]!], ['minimize', 'maximize'])).toEqual([trials[2]]);
    expect(withLies(trials, ['minimize', 'maximize'])[2]).toEqual({ number: 2, params: {}, state: 'complete', values: [5, 0.7], violations: [0], intermediate: {} });
  });
});
