import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Study } from '../../functions/core/tune/study.ts';
import { startStudyStack, type StudyStack } from '../helpers/study-stack.ts';

let stack: StudyStack;

beforeAll(async () => {
  stack = await startStudyStack('tune-table');
});

afterAll(async () => {
  await stack?.stop();
});

const space = { parameters: { lr: { type: 'float', low: 0.001, high: 0.1, log: true }, width: { type: 'int', low: 8, high: 64, step: 8 } } };
const objectives = [{ metric: 'loss', direction: 'minimize' }];

describe('studies in the registry table', () => {
  it('gives concurrent workers distinct trial numbers and stops exactly at the budget', async () => {
    const table = stack.worker();
    await table.createStudy('concurrent', { space, objectives, sampler: { type: 'random' }, maxTrials: 20, seed: 4 });
    const workers = Array.from({ length: 8 }, (_, w) => ({ name: `w${w}`, table: stack.worker() }));
    const asked = await Promise.all(
      workers.map(async ({ name, table: own }) => {
        const numbers: number[] = [];
        for (;;) {
          const trial = await own.ask('concurrent', name);
          if (!trial) return numbers;
          numbers.push(trial.number);
          await own.tell('concurrent', trial.number, name, { loss: trial.params.lr as number });
        }
      }),
    );
    const all = asked.flat().sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 20 }, (_, i) => i));
    const trials = await table.listTrials('concurrent');
    expect(trials.map((t) => [t.number, t.state])).toEqual(all.map((n) => [n, 'complete']));
    // each trial has the configuration its number gets under the seed, whoever asked for it
    const first = trials[0]!;
    expect(first.params).toEqual(new Study((await table.loadStudy('concurrent')).config).ask(0)!.params);
    expect(await table.ask('concurrent', 'late')).toBeUndefined();
  });

  it('keeps a trial to its worker and refuses a second tell', async () => {
    const table = stack.worker();
    await table.createStudy('owned', { space, objectives, sampler: { type: 'tpe' } });
    const trial = (await table.ask('owned', 'a'))!;
    await expect(table.tell('owned', trial.number, 'b', { loss: 1 })).rejects.toThrow("trial 0 belongs to worker 'a', not 'b'");
    await expect(table.tell('owned', trial.number, 'a', { accuracy: 1 })).rejects.toThrow("trial 0: metric 'loss' is missing");
    const told = await table.tell('owned', trial.number, 'a', { loss: 0.25 });
    expect(told).toMatchObject({ number: 0, state: 'complete', values: [0.25], violations: [], metrics: { loss: 0.25 } });
    await expect(table.tell('owned', trial.number, 'a', { loss: 0.1 })).rejects.toThrow('trial 0 is complete, not running');
    await expect(table.tell('owned', 9, 'a', { loss: 0.1 })).rejects.toThrow("study 'owned' has no trial 9");
    await expect(table.createStudy('owned', { space, objectives, sampler: { type: 'tpe' } })).rejects.toThrow("study 'owned' already exists");
    await expect(table.createStudy('Bad Id', { space, objectives, sampler: { type: 'tpe' } })).rejects.toThrow("study id 'Bad Id' must match [a-z0-9][a-z0-9._-]{0,63}");
    await expect(table.ask('missing', 'a')).rejects.toThrow("study 'missing' does not exist");
  });

  it('stores intermediate values and prunes by the median of completed trials', async () => {
    const table = stack.worker();
    await table.createStudy('pruned', { space, objectives, sampler: { type: 'random' }, pruner: { type: 'median', startupTrials: 2 } });
    for (const curve of [[1.0, 0.5], [2.0, 1.0]]) {
      const t = (await table.ask('pruned', 'w'))!;
      for (const [step, v] of curve.entries()) expect(await table.report('pruned', t.number, 'w', step, v)).toEqual({ prune: false });
      await table.tell('pruned', t.number, 'w', { loss: curve[1]! });
    }
    const t = (await table.ask('pruned', 'w'))!;
    expect(await table.report('pruned', t.number, 'w', 0, 1.4)).toEqual({ prune: false });
    expect(await table.report('pruned', t.number, 'w', 1, 0.9)).toEqual({ prune: true });
    const stored = (await table.listTrials('pruned'))[2]!;
    expect(stored).toMatchObject({ state: 'pruned', intermediate: { '0': 1.4, '1': 0.9 } });
    await expect(table.report('pruned', t.number, 'w', 2, 0.1)).rejects.toThrow('trial 2 is pruned, not running');
    await expect(table.report('pruned', t.number, 'w', 2.5, 0.1)).rejects.toThrow('trial 2: step must be an integer of at least 0, got 2.5');
  });

  it('records successive-halving rungs with the trial', async () => {
    const table = stack.worker();
    await table.createStudy('asha', { space, objectives, sampler: { type: 'random' }, pruner: { type: 'successive-halving', minResource: 1, reductionFactor: 2 } });
    const a = (await table.ask('asha', 'w'))!;
    expect(await table.report('asha', a.number, 'w', 1, 0.5)).toEqual({ prune: false });
    const b = (await table.ask('asha', 'w'))!;
    expect(await table.report('asha', b.number, 'w', 1, 0.7)).toEqual({ prune: true });
    const trials = await table.listTrials('asha');
    expect(trials.map((t) => [t.state, t.rungs])).toEqual([['running', [0.5]], ['pruned', [0.7]]]);
  });

  it("fails a trial whose worker's lease ran out, gives its place back, and the study goes on", async () => {
    let clock = 1_000_000;
    const table = stack.worker({ leaseMs: 60_000, now: () => clock });
    await table.createStudy('lease', { space, objectives, sampler: { type: 'random' }, maxTrials: 2 });
    const dead = (await table.ask('lease', 'dead'))!;
    const alive = (await table.ask('lease', 'alive'))!;
    expect(await table.ask('lease', 'third')).toBeUndefined();
    clock += 30_000;
    await table.report('lease', alive.number, 'alive', 0, 0.3); // renews its lease to clock + 60 s
    clock += 40_000;
    expect(await table.failExpired('lease')).toEqual([dead.number]);
    expect(await table.failExpired('lease')).toEqual([]);
    await expect(table.tell('lease', dead.number, 'dead', { loss: 1 })).rejects.toThrow('trial 0 is failed, not running');
    const next = (await table.ask('lease', 'third'))!;
    expect(next.number).toBe(2);
    expect(await table.ask('lease', 'fourth')).toBeUndefined();
    await table.tell('lease', alive.number, 'alive', { loss: 0.3 });
    await table.tell('lease', next.number, 'third', { loss: 0.2 });
    const study = await table.loadStudy('lease');
    expect(study.trials.map((t) => t.state)).toEqual(['failed', 'complete', 'complete']);
    expect(study.bestTrial()!.number).toBe(2);
  });

  it('renews the lease of a running trial for its own worker only, so a trial longer than its lease between reports is kept', async () => {
    let clock = 2_000_000;
    const table = stack.worker({ leaseMs: 60_000, now: () => clock });
    await table.createStudy('renew', { space, objectives, sampler: { type: 'random' }, maxTrials: 2 });
    const long = (await table.ask('renew', 'long'))!;
    const quiet = (await table.ask('renew', 'quiet'))!;
    clock += 50_000;
    await table.renew('renew', long.number, 'long'); // until clock + 60 s, without an intermediate value
    await expect(table.renew('renew', quiet.number, 'long')).rejects.toThrow("trial 1 belongs to worker 'quiet', not 'long'");
    clock += 50_000;

    expect(await table.failExpired('renew')).toEqual([quiet.number]);
    await expect(table.renew('renew', quiet.number, 'quiet')).rejects.toThrow('trial 1 is failed, not running');
    const trials = await table.listTrials('renew');
    expect(trials.map((t) => [t.state, t.leaseUntil, t.intermediate])).toEqual([['running', 2_110_000, {}], ['failed', 2_060_000, {}]]);
    await table.tell('renew', long.number, 'long', { loss: 0.5 });
  });
});

describe('time budget', () => {
  it('starts no trial once the time budget has passed; running trials may still finish', async () => {
    let clock = Date.parse('2026-01-01T00:00:00Z');
    const table = stack.worker({ now: () => clock });
    await table.createStudy('timed', { space, objectives, sampler: { type: 'random' }, timeBudgetSeconds: 60 });
    const first = (await table.ask('timed', 'a'))!;
    clock += 59_999;
    const second = (await table.ask('timed', 'b'))!;
    clock += 1;

    expect(await table.ask('timed', 'c')).toBeUndefined();
    expect((await table.getStudyRecord('timed')).deadline).toBe(Date.parse('2026-01-01T00:01:00Z'));
    await table.tell('timed', second.number, 'b', { loss: 1 });
    expect((await table.tell('timed', first.number, 'a', { loss: 2 })).state).toBe('complete');
  });
});
