// `npm run bench -- tune`: median regret of our samplers on Branin and Hartmann-6 (known optima)
// after 50 and 100 trials over TUNE_BENCH_SEEDS seeds (default 20), beside Optuna's samplers on the
// same functions, budgets and seeds (tune-optuna.py, Debian's python3-optuna under PYTHON, default
// /usr/bin/python3), and the TPE seed-noise check (runTpeNoise; TUNE_BENCH_ONLY=tpe_noise runs it
// alone). Writes bench/results/tune.json.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Study, type StudyConfigInput } from '../../functions/core/tune/study.ts';
import { parseSearchSpace, type Configuration } from '../../functions/core/tune/space.ts';
import { readFile } from 'node:fs/promises';
import { median, printTable, resultsDir, root, writeResults } from './common.ts';
import { runTuneSearchBench } from './tune-search.ts';
import { ksTwoSample, mannWhitney } from './tune-stats.ts';
import { TpeSampler } from '../../functions/core/tune/samplers/tpe.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import type { Trial } from '../../functions/core/tune/trial.ts';

/** Three significant digits: regrets span from 1e-5 to 1. */
const significant = (v: number) => Number(v.toPrecision(3));

interface Problem {
  space: StudyConfigInput['space'];
  optimum: number;
  f: (p: Configuration) => number;
}

const branin: Problem = {
  space: { parameters: { x1: { type: 'float', low: -5, high: 10 }, x2: { type: 'float', low: 0, high: 15 } } },
  optimum: 0.397887357729738,
  f: (p) => {
    const x1 = p.x1 as number;
    const x2 = p.x2 as number;
    const b = 5.1 / (4 * Math.PI ** 2);
    const c = 5 / Math.PI;
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * Math.PI)) * Math.cos(x1) + 10;
  },
};

const A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]];
const P = [
  [1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
  [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381],
].map((row) => row.map((v) => v * 1e-4));
const ALPHA = [1, 1.2, 3, 3.2];
const hartmann6: Problem = {
  space: { parameters: Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`x${i}`, { type: 'float', low: 0, high: 1 }])) },
  optimum: -3.322368011415515,
  f: (p) => -ALPHA.reduce((s, a, i) => s + a * Math.exp(-A[i]!.reduce((t, aij, j) => t + aij * ((p[`x${j}`] as number) - P[i]![j]!) ** 2, 0)), 0),
};

const samplers: Record<string, StudyConfigInput['sampler']> = {
  random: { type: 'random' },
  tpe: { type: 'tpe' },
  tpe_multivariate: { type: 'tpe', multivariate: true },
  gp: { type: 'gp' },
  genetic: { type: 'nsga2', populationSize: 20 },
};

function regrets(problem: Problem, sampler: StudyConfigInput['sampler'], seed: number): { at50: number; at100: number } {
  const study = Study.create({ space: problem.space, objectives: [{ metric: 'f', direction: 'minimize' }], sampler, seed, maxTrials: 100 });
  let best = Infinity;
  let at50 = Infinity;
  for (let trial = study.ask(); trial; trial = study.ask()) {
    const value = problem.f(trial.params);
    study.tell(trial.number, { f: value });
    best = Math.min(best, value);
    if (trial.number === 49) at50 = best - problem.optimum;
  }
  return { at50, at100: best - problem.optimum };
}

/** Medians of consecutive sets of `size` seeds (0-19, 20-39, ...). */
const setMedians = (values: number[], size: number) =>
  Array.from({ length: Math.floor(values.length / size) }, (_, k) => significant(median(values.slice(k * size, (k + 1) * size))));

/**
 * Is our TPE's Branin gap to Optuna's the algorithm or the seeds? (1) Decisions: for the first 10, 30,
 * 60 and 90 trials of Optuna TPE runs on Branin, 2000 next points from Optuna's own estimator code
 * (tune-tpe-decisions.py) and 2000 from ours given the same history, compared per coordinate by a
 * two-sample KS test. (2) Noise: ours and Optuna's TPE over TUNE_BENCH_NOISE_SEEDS seeds (default
 * 100): the median regret after 100 trials of each set of 20 seeds, of all seeds, and a Mann-Whitney
 * test of the two samples of regrets. Adds its keys to `results` (and to `results.optuna`).
 */
function runTpeNoise(results: Record<string, unknown>, python: string): void {
  const seeds = Number(process.env.TUNE_BENCH_NOISE_SEEDS ?? 100);
  const draws = 2000;
  const histories = JSON.parse(execFileSync(python, [join(root, 'test', 'bench', 'tune-tpe-decisions.py'), '0,1,2,3,4,5,6,7', '10,30,60,90', String(draws)], { encoding: 'utf8', maxBuffer: 1 << 28 })) as {
    seed: number; n: number; history: { x1: number; x2: number; value: number }[]; x1: number[]; x2: number[];
  }[];
  const tpe = new TpeSampler();
  const space = parseSearchSpace(branin.space);
  const ps: number[] = [];
  for (const h of histories) {
    const trials = h.history.map((t, number): Trial => ({ number, params: { x1: t.x1, x2: t.x2 }, state: 'complete', values: [t.value], intermediate: {} }));
    const ours = Array.from({ length: draws }, (_, i) => tpe.sample({ space, directions: ['minimize'], trials, trialNumber: h.n, random: seededRandom(h.seed * 1_000_000 + h.n * 10_000 + i) }));
    for (const name of ['x1', 'x2'] as const) ps.push(ksTwoSample(h[name], ours.map((c) => c[name] as number)).p);
  }
  results.tpe_decisions = {
    how: `Optuna TPE runs on Branin, seeds 0-7; after 10, 30, 60 and 90 trials ${draws} next points from Optuna 3.1's estimators and ${draws} from ours given the same history; two-sample KS per coordinate`,
    ks_tests: ps.length,
    ks_min_p: significant(Math.min(...ps)),
    ks_below_0_05: ps.filter((p) => p < 0.05).length,
    ks_below_0_01: ps.filter((p) => p < 0.01).length,
  };
  console.log(`tpe decisions: ${JSON.stringify(results.tpe_decisions)}`);
  const optuna = JSON.parse(execFileSync(python, [join(root, 'test', 'bench', 'tune-optuna.py'), '--per-seed', String(seeds), 'tpe'], { encoding: 'utf8', maxBuffer: 1 << 24 })) as Record<string, { tpe: { regret_100_per_seed: number[] } }>;
  results.tpe_noise_seeds = seeds;
  for (const [name, problem] of Object.entries({ branin, hartmann6 })) {
    const ours = Array.from({ length: seeds }, (_, seed) => regrets(problem, samplers.tpe!, seed).at100);
    const theirs = optuna[name]!.tpe.regret_100_per_seed;
    const row = results[name] as Record<string, unknown>;
    row.regret_100_seed_sets = { tpe: setMedians(ours, 20) };
    row.regret_100_all_seeds = { tpe: significant(median(ours)) };
    const test = mannWhitney(ours, theirs);
    row.tpe_vs_optuna_mann_whitney_p = significant(test.p);
    row.tpe_below_optuna_probability = significant(test.pLower);
    const theirRow = ((results.optuna as Record<string, Record<string, Record<string, unknown>>>)[name] ??= {}).tpe ??= {};
    theirRow.regret_100_seed_sets = setMedians(theirs, 20);
    theirRow.regret_100_all_seeds = significant(median(theirs));
    console.log(`${name} tpe over ${seeds} seeds: ours ${JSON.stringify(row.regret_100_seed_sets)} all ${significant(median(ours))}; optuna ${JSON.stringify(theirRow.regret_100_seed_sets)} all ${theirRow.regret_100_all_seeds}; Mann-Whitney p ${row.tpe_vs_optuna_mann_whitney_p}, P(ours lower) ${row.tpe_below_optuna_probability}`);
  }
}

export async function runTuneBench(): Promise<Record<string, unknown>> {
  const python = process.env.PYTHON ?? '/usr/bin/python3';
  // TUNE_BENCH_ONLY=tpe (a sampler's name): rerun that sampler of ours only, keeping every other figure.
  const only = process.env.TUNE_BENCH_ONLY;
  if (only && only in samplers) {
    const kept = JSON.parse(await readFile(join(resultsDir, 'tune.json'), 'utf8')) as Record<string, Record<string, Record<string, number>>>;
    const seeds = kept.seeds as unknown as number;
    for (const [name, problem] of Object.entries({ branin, hartmann6 })) {
      const runs = Array.from({ length: seeds }, (_, seed) => regrets(problem, samplers[only]!, seed));
      kept[name]!.regret_50![only] = significant(median(runs.map((r) => r.at50)));
      kept[name]!.regret_100![only] = significant(median(runs.map((r) => r.at100)));
      console.log(`${name} ${only}: regret_50 ${kept[name]!.regret_50![only]} regret_100 ${kept[name]!.regret_100![only]}`);
    }
    await writeResults('tune', kept);
    return kept;
  }
  if (only === 'tpe_noise') {
    const kept = JSON.parse(await readFile(join(resultsDir, 'tune.json'), 'utf8')) as Record<string, unknown>;
    runTpeNoise(kept, python);
    await writeResults('tune', kept);
    return kept;
  }
  if (only === 'search') {
    const kept = JSON.parse(await readFile(join(resultsDir, 'tune.json'), 'utf8')) as Record<string, unknown>;
    const results = { ...kept, ...(await runTuneSearchBench()) };
    printTable('tune (studies)', results);
    await writeResults('tune', results);
    return results;
  }
  const seeds = Number(process.env.TUNE_BENCH_SEEDS ?? 20);
  const results: Record<string, unknown> = { seeds, trials: 100, genetic: 'nsga2, population 20' };
  for (const [name, problem] of Object.entries({ branin, hartmann6 })) {
    const row: Record<string, Record<string, number>> = { regret_50: {}, regret_100: {} };
    for (const [samplerName, sampler] of Object.entries(samplers)) {
      const runs = Array.from({ length: seeds }, (_, seed) => regrets(problem, sampler, seed));
      row.regret_50![samplerName] = significant(median(runs.map((r) => r.at50)));
      row.regret_100![samplerName] = significant(median(runs.map((r) => r.at100)));
      console.log(`${name} ${samplerName}: regret_50 ${row.regret_50![samplerName]} regret_100 ${row.regret_100![samplerName]}`);
    }
    results[name] = row;
  }
  const optuna = execFileSync(python, [join(root, 'test', 'bench', 'tune-optuna.py'), String(seeds)], { encoding: 'utf8', maxBuffer: 1 << 20 });
  results.optuna = JSON.parse(optuna) as unknown;
  for (const [fn, bySampler] of Object.entries(results.optuna as Record<string, Record<string, Record<string, number>>>)) {
    for (const [sampler, r] of Object.entries(bySampler)) console.log(`optuna ${fn} ${sampler}: regret_50 ${significant(r.regret_50!)} regret_100 ${significant(r.regret_100!)}`);
  }
  runTpeNoise(results, python);
  Object.assign(results, await runTuneSearchBench());
  printTable('tune (median regret)', results);
  await writeResults('tune', results);
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) await runTuneBench();
