import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { TpeSampler } from '../../functions/core/tune/samplers/tpe.ts';
import { observations, splitObservations } from '../../functions/core/tune/samplers/tpe-split.ts';
import { trialRandom } from '../../functions/core/tune/samplers/sampler.ts';
import { defaultGamma } from '../../functions/core/tune/samplers/tpe.ts';
import { parseSearchSpace } from '../../functions/core/tune/space.ts';
import type { Trial } from '../../functions/core/tune/trial.ts';

const space = parseSearchSpace({ parameters: { x: { type: 'float', low: 0, high: 10 } } });

/**
 * A maximized study of 21 trials, one complete: trial 5 (0.4); pruned trials at their last step 3
 * (2: 0.7, 9 and 14: 0.9), step 2 (1: 0.99, 11: 0.3), step 1 (3: 0.2 after 0.95 at step 0, 17: NaN), one
 * with no intermediate value (0), and the rest at step 0. gamma(21) = 3.
 */
function history(): Trial[] {
  const pruned = (number: number, intermediate: Record<string, number>): Trial => ({ number, params: { x: (number * 7) % 10 + 0.25 }, state: 'pruned', intermediate });
  const trials: Trial[] = [];
  for (let number = 0; number < 21; number++) trials.push(pruned(number, { 0: (number % 5) / 10 }));
  trials[0] = pruned(0, {});
  trials[1] = pruned(1, { 0: 0.5, 1: 0.6, 2: 0.99 });
  trials[2] = pruned(2, { 0: 0.1, 1: 0.2, 2: 0.3, 3: 0.7 });
  trials[3] = pruned(3, { 0: 0.95, 1: 0.2 });
  trials[5] = { number: 5, params: { x: 5.5 }, state: 'complete', values: [0.4], violations: [], intermediate: { 0: 0.4 } };
  trials[9] = pruned(9, { 0: 0.3, 1: 0.4, 2: 0.5, 3: 0.9 });
  trials[11] = pruned(11, { 0: 0.2, 1: 0.25, 2: 0.3 });
  trials[14] = pruned(14, { 0: 0.3, 1: 0.4, 2: 0.5, 3: 0.9 });
  trials[17] = pruned(17, { 0: 0.6, 1: NaN });
  return trials;
}

/** Optuna 3.1's own split of the same trials (Debian's python3-optuna): the numbers below, the numbers above. */
function optunaSplit(trials: Trial[], direction: 'minimize' | 'maximize'): [number[], number[]] {
  const py = (v: number) => (Number.isNaN(v) ? "float('nan')" : String(v));
  const rows = trials.map((t) =>
    t.state === 'complete'
      ? `ot.create_trial(state=ot.TrialState.COMPLETE, value=${py(t.values![0]!)}, params={'x': ${t.params.x}}, distributions=d, intermediate_values={${Object.entries(t.intermediate).map(([s, v]) => `${s}: ${py(v)}`).join(', ')}})`
      : `ot.create_trial(state=ot.TrialState.PRUNED, params={'x': ${t.params.x}}, distributions=d, intermediate_values={${Object.entries(t.intermediate).map(([s, v]) => `${s}: ${py(v)}`).join(', ')}})`,
  );
  const script = [
    'import json, warnings, optuna',
    'import optuna.trial as ot',
    'from optuna.samplers._tpe.sampler import _get_observation_pairs, _split_observation_pairs, default_gamma',
    'warnings.simplefilter("ignore")',
    'optuna.logging.set_verbosity(optuna.logging.ERROR)',
    "d = {'x': optuna.distributions.FloatDistribution(0, 10)}",
    `study = optuna.create_study(direction='${direction}')`,
    ...rows.map((r) => `study.add_trial(${r})`),
    "values, scores, violations = _get_observation_pairs(study, ['x'], False, False)",
    'below, above = _split_observation_pairs(scores, default_gamma(len(scores)), None)',
    'print(json.dumps([below.tolist(), above.tolist()]))',
  ].join('\n');
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', script], { encoding: 'utf8' })) as [number[], number[]];
}

const numbers = (trials: Trial[]) => trials.map((t) => t.number);

describe("TPE's split of complete and pruned trials (Optuna 3.1's _get_observation_pairs and _split_observation_pairs)", () => {
  it('ranks complete trials first, then pruned ones by the last step they reached and their value there', () => {
    const observed = observations(history(), 'maximize');
    const { below, above } = splitObservations(observed, defaultGamma(observed.length));

    expect(observed).toHaveLength(21);
    expect(observed.find((o) => o.trial.number === 0)).toMatchObject({ step: 1, loss: 0 });
    expect(observed.find((o) => o.trial.number === 3)).toMatchObject({ step: -1, loss: -0.2 });
    expect(observed.find((o) => o.trial.number === 17)).toMatchObject({ step: -1, loss: Infinity });
    // The complete trial, then the two step-3 trials with the higher value (ties by number).
    expect(numbers(below)).toEqual([5, 9, 14]);
    expect(numbers(above)).toEqual([0, 1, 2, 3, 4, 6, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20]);
  });

  it.each(['maximize', 'minimize'] as const)("splits as Optuna 3.1 does (%s)", (direction) => {
    const trials = history();
    const observed = observations(trials, direction);
    const { below, above } = splitObservations(observed, defaultGamma(observed.length));
    const [optunaBelow, optunaAbove] = optunaSplit(trials, direction);

    // Optuna returns indices into the trials, which here are the trial numbers.
    expect([numbers(below), numbers(above)]).toEqual([optunaBelow, optunaAbove]);
  });

  it('puts pruned trials after every complete one, feasible or not, when the study has constraints (Optuna: no constraint values, +inf)', () => {
    const trials: Trial[] = [
      { number: 0, params: { x: 1 }, state: 'complete', values: [5], violations: [0], intermediate: {} },
      { number: 1, params: { x: 2 }, state: 'pruned', intermediate: { 4: 0.1 } },
      { number: 2, params: { x: 3 }, state: 'complete', values: [1], violations: [2], intermediate: {} },
      { number: 3, params: { x: 4 }, state: 'complete', values: [9], violations: [0.5], intermediate: {} },
      { number: 4, params: { x: 5 }, state: 'pruned', intermediate: { 0: 0.2 } },
    ];
    const { below, above } = splitObservations(observations(trials, 'minimize'), 4);
    expect([numbers(below), numbers(above)]).toEqual([[0, 1, 2, 3], [4]]);
    expect(numbers(splitObservations(observations(trials, 'minimize'), 3).below)).toEqual([0, 2, 3]);
  });

  it('proposes from pruned trials as from complete trials in the same places of the ranking, and counts them towards the startup trials', () => {
    const sampler = new TpeSampler({ startupTrials: 10 });
    const propose = (trials: Trial[]) => sampler.sample({ space, directions: ['maximize'], trials, trialNumber: 21, random: trialRandom(7, 21) });
    const withPruned = history();
    // The same ranking from complete trials only: below 5, 9, 14 (best values), every other trial worse.
    const rank = [5, 9, 14, 2, 1, 11, 3, 17, 4, 6, 7, 8, 10, 12, 13, 15, 16, 18, 19, 20, 0];
    const allComplete = withPruned.map((t): Trial => ({ ...t, state: 'complete', values: [100 - rank.indexOf(t.number)], violations: [] }));
    const completeOnly = withPruned.filter((t) => t.state === 'complete');

    expect(propose(withPruned)).toEqual(propose(allComplete));
    // One complete trial alone is under the startup count: a uniform draw, which the model's is not.
    expect(propose(completeOnly)).not.toEqual(propose(withPruned));
  });
});
