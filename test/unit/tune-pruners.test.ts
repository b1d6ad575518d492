import { describe, expect, it } from 'vitest';
import { MedianPruner, percentile, SuccessiveHalvingPruner } from '../../functions/core/tune/pruners.ts';
import type { Trial } from '../../functions/core/tune/trial.ts';
import { Study } from '../../functions/core/tune/study.ts';

const curve = (number: number, values: number[], state: Trial['state'] = 'complete'): Trial => ({
  number,
  params: {},
  state,
  values: state === 'complete' ? [values[values.length - 1]!] : undefined,
  intermediate: Object.fromEntries(values.map((v, step) => [String(step), v])),
});

describe('median pruner', () => {
  // Completed losses by step: step 0 -> 1, 2, 3 (median 2); step 1 -> 0.8, 1.5, 2 (median 1.5).
  const finished = [curve(0, [1.0, 0.8, 0.6]), curve(1, [2.0, 1.5, 1.0]), curve(2, [3.0, 2.0, 1.5])];

  it('prunes a trial whose best value so far is worse than the median at its step, and only then', () => {
    const pruner = new MedianPruner({ startupTrials: 3 });
    expect(pruner.decide(curve(3, [2.5], 'running'), finished, 'minimize')).toEqual({ prune: true });
    expect(pruner.decide(curve(3, [2.0], 'running'), finished, 'minimize')).toEqual({ prune: false });
    // at step 1 its value 2.5 is worse than 1.5, but its best so far (1.5) is not
    expect(pruner.decide(curve(3, [1.5, 2.5], 'running'), finished, 'minimize')).toEqual({ prune: false });
    expect(pruner.decide(curve(3, [1.6, 2.5], 'running'), finished, 'minimize')).toEqual({ prune: true });
  });

  it('waits for its startup trials and warm-up steps', () => {
    expect(new MedianPruner({ startupTrials: 4 }).decide(curve(3, [9], 'running'), finished, 'minimize')).toEqual({ prune: false });
    expect(new MedianPruner({ startupTrials: 3, warmupSteps: 1 }).decide(curve(3, [9], 'running'), finished, 'minimize')).toEqual({ prune: false });
    expect(new MedianPruner({ startupTrials: 3, warmupSteps: 1 }).decide(curve(3, [9, 9], 'running'), finished, 'minimize')).toEqual({ prune: true });
  });

  it('judges only the first step reported in each interval', () => {
    const pruner = new MedianPruner({ startupTrials: 3, intervalSteps: 2 });
    // step 1 lies in the interval that began at step 0, already judged
    expect(pruner.decide(curve(3, [1.5, 9], 'running'), finished, 'minimize')).toEqual({ prune: false });
    expect(pruner.decide(curve(3, [9, 9, 9], 'running'), finished, 'minimize')).toEqual({ prune: true });
  });

  it('turns around for a maximized objective and prunes a NaN-only trial', () => {
    const accuracy = [curve(0, [0.5]), curve(1, [0.6]), curve(2, [0.7])];
    const pruner = new MedianPruner({ startupTrials: 3 });
    expect(pruner.decide(curve(3, [0.55], 'running'), accuracy, 'maximize')).toEqual({ prune: true });
    expect(pruner.decide(curve(3, [0.65], 'running'), accuracy, 'maximize')).toEqual({ prune: false });
    expect(pruner.decide(curve(3, [NaN], 'running'), accuracy, 'maximize')).toEqual({ prune: true });
  });

  it('interpolates percentiles as numpy does', () => {
    expect(percentile([3, 1, 2, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5], 25)).toBe(2);
  });
});

describe('asynchronous successive halving', () => {
  // min resource 1, reduction factor 2: rungs at steps 1, 2, 4, 8
  const pruner = new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: 2 });
  const at = (number: number, steps: number[], rungs: number[] = []): Trial => ({ ...curve(number, steps, 'running'), rungs });

  it('promotes the top 1/reduction-factor of the values recorded at each rung, in arrival order', () => {
    expect(pruner.decide(at(0, [0.9]), [], 'minimize')).toEqual({ prune: false, rungs: [] }); // step 0, below the first rung
    const a = pruner.decide(at(0, [0.9, 0.5]), [], 'minimize');
    expect(a).toEqual({ prune: false, rungs: [0.5] }); // alone at rung 0: the best goes on
    const others = [at(0, [0.9, 0.5], [0.5])];
    const b = pruner.decide(at(1, [0.9, 0.7]), others, 'minimize');
    expect(b).toEqual({ prune: true, rungs: [0.7] }); // [0.5, 0.7]: top 1 of 2 is 0.5
    others.push(at(1, [0.9, 0.7], [0.7]));
    expect(pruner.decide(at(2, [0.9, 0.4]), others, 'minimize')).toEqual({ prune: false, rungs: [0.4] });
    others.push(at(2, [0.9, 0.4], [0.4]));
    expect(pruner.decide(at(3, [0.9, 0.6]), others, 'minimize')).toEqual({ prune: true, rungs: [0.6] }); // top 2 of 4: 0.4, 0.5
    others.push(at(3, [0.9, 0.6], [0.6]));
    expect(pruner.decide(at(4, [0.9, 0.45]), others, 'minimize')).toEqual({ prune: false, rungs: [0.45] }); // top 2 of 5: 0.4, 0.45
  });

  it('climbs several rungs at once when a trial reports a later step first', () => {
    const others = [at(0, [], [0.3, 0.2])];
    // step 4 reaches rungs 0 (step 1), 1 (step 2) and 2 (step 4), each judged on the value at step 4
    expect(pruner.decide(at(1, [0, 0, 0, 0, 0.15]), others, 'minimize')).toEqual({ prune: false, rungs: [0.15, 0.15, 0.15] });
    // better than 0.3 at rung 0, worse than 0.2 at rung 1
    expect(pruner.decide(at(1, [0, 0, 0, 0, 0.25]), others, 'minimize')).toEqual({ prune: true, rungs: [0.25, 0.25] });
    expect(pruner.decide(at(2, [0, 0, 0, 0, 0.35]), others, 'minimize')).toEqual({ prune: true, rungs: [0.35] });
  });

  it('turns around for a maximized objective', () => {
    const others = [at(0, [], [0.8])];
    expect(pruner.decide(at(1, [0, 0.7]), others, 'maximize')).toEqual({ prune: true, rungs: [0.7] });
    expect(pruner.decide(at(1, [0, 0.9]), others, 'maximize')).toEqual({ prune: false, rungs: [0.9] });
  });
});

describe('pruning in a study', () => {
  it('marks a trial pruned when the pruner says so and refuses reports after that', () => {
    const study = Study.create({
      space: { parameters: { x: { type: 'float', low: 0, high: 1 } } },
      objectives: [{ metric: 'loss', direction: 'minimize' }],
      sampler: { type: 'random' },
      pruner: { type: 'median', startupTrials: 2 },
    });
    for (const losses of [[1.0, 0.5], [2.0, 1.0]]) {
      const t = study.ask()!;
      losses.forEach((v, step) => study.report(t.number, step, v));
      study.tell(t.number, { loss: losses[1]! });
    }
    const t = study.ask()!;
    expect(study.report(t.number, 0, 1.4)).toEqual({ prune: false }); // median of 1 and 2 is 1.5
    expect(study.report(t.number, 1, 0.9)).toEqual({ prune: true }); // median of 0.5 and 1 is 0.75
    expect(study.trials[2]!.state).toBe('pruned');
    expect(() => study.report(t.number, 2, 0.1)).toThrow('trial 2 is pruned, not running');
  });
});
