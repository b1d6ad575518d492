/**
 * Monitoring costs and reactions (docs/monitoring.md):
 * - capture_overhead_<rate>_b<batch>: the inference handler's time for a block of MNIST requests with
 *   data capture (summaries, the given sampling rate) over the same handler without capture, blocks
 *   interleaved, median of the per-pair ratios. The capture's own work (features, JSON, batching,
 *   S3 writes) runs after each answer on the same thread (setImmediate), so it lands in the block's
 *   time. capture_cpu_overhead_*: the same with the process's CPU time, which a loaded machine's
 *   scheduling does not move.
 * - drift_detection_requests: the fewest captured requests (batch 1) at which the drift job, with the
 *   default thresholds and its minimum set to that many rows, flags the stated shift in at least 95%
 *   of 20 seeds while raising no more than 5% false alarms on fresh samples.
 * - false_alarm_rate: share of 100 fresh samples (default policy: 200 rows) flagged as drift.
 * - canary_rollback_s: from the first failed answer of a bad canary (50% split, real handler, its
 *   EMF lines in the local metrics store) to the rollback by the local stack's guard loop (every
 *   LOCAL_GUARD_EVERY_MS, minRequests 50), median of 3 runs. Deployed, the guard runs every minute.
 * - tracer_off_import_ms / tracer_off_import_overhead: the deployed inference bundle imported by a fresh
 *   process (no model pre-warmed), as packaged (the Tracer's code bundled, tracing off) against the
 *   same bundle without the Tracer's packages, alternating, medians: what tracing costs a cold start
 *   when it is off (platform/tracing.ts imports the Tracer only when on).
 * Writes bench/results/monitor.json. Run: npm run bench -- monitor
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { CaptureWriter } from '../../functions/core/monitor/capture.ts';
import { compareWithBaseline } from '../../functions/core/monitor/drift.ts';
import { defaultDrift, readModelMonitoring, writeModelMonitoring } from '../../functions/core/monitor/policy.ts';
import { promote, setRoutes } from '../../functions/core/registry/rollout.ts';
import { createInferenceHandler, STICKY_HEADER } from '../../functions/inference/app.ts';
import { createLocalMonitor, LOCAL_GUARD_EVERY_MS } from '../../infra/local/monitor.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { gatherModel } from '../helpers/monitor-models.ts';
import { batchOf, loadMnist, mnistBaseline, mnistFeatures, permutation, PIXELS, type Mnist, type Shift } from '../helpers/mnist-drift.ts';
import { scaleModel, startRegistryStack } from '../helpers/registry-stack.ts';
import { BENCH_AWS_ENV, median, printTable, root, round, timeToResult, writeResults } from './common.ts';
import { buildDeployedBundle } from './bundle.ts';

const BLOCK = 40;
const PAIRS = 31;
const LADDER = [25, 50, 75, 100, 150, 200, 300];
const SEEDS = 20;
const FALSE_ALARM_SEEDS = 100;
const BASELINE_ROWS = 3000;

const event = (path: string, body: string, headers: Record<string, string> = {}): APIGatewayProxyEventV2 => {
  const e = apiEvent('POST', path, body);
  return { ...e, headers: { ...e.headers, ...headers } };
};

export async function captureOverhead(stack: Awaited<ReturnType<typeof startRegistryStack>>, mnist: Awaited<ReturnType<typeof loadMnist>>): Promise<Record<string, number>> {
  const { store } = stack;
  await pushModel(store, { name: 'mnist', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
  const service = new InferenceService({ store, sessions: new ModelSessions({ store, intraOpThreads: 1 }), serviceVersion: 'bench' });
  // Metrics taken and dropped per request, as the middleware would publish them, without the output.
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  const { logger, metrics } = createObservability('ai-mass-bench');
  logger.setLogLevel('SILENT');
  const without = createInferenceHandler({ service, maxBodyBytes: 16 << 20, logger, metrics });
  const results: Record<string, number> = {};
  for (const rate of [0.1, 1]) {
    await writeModelMonitoring(store, 'mnist', { capture: { enabled: true, samplingRate: rate } });
    const capture = new CaptureWriter({
      put: (key, body) => store.putObjectBytes(key, body),
      modelConfig: (m) => readModelMonitoring(store, m),
      onError: (what, error) => console.error(`capture ${what} failed: ${error.message}`),
    });
    const withCapture = createInferenceHandler({ service, maxBodyBytes: 16 << 20, logger, metrics, capture });
    for (const batch of [1, 64]) {
      const bodies = Array.from({ length: BLOCK }, (_, i) =>
        JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [batch, PIXELS], data: Array.from(batchOf(mnist.pixels, Array.from({ length: batch }, (_, r) => (i * batch + r) % mnist.rows), 'none')) }] }),
      );
      /** Wall time and CPU time (every thread of the process: onnxruntime's, and capture's deferred work) of one block. */
      const block = async (handler: typeof without) => {
        const started = performance.now();
        const cpu = process.cpuUsage();
        for (const body of bodies) {
          const response = await handler(event('/v2/models/mnist/versions/1/infer', body));
          metrics.publishStoredMetrics();
          if (response.statusCode !== 200) throw new Error(`inference answered ${response.statusCode}`);
        }
        // The capture's deferred work (setImmediate) belongs to this block.
        await new Promise((resolve) => setImmediate(resolve));
        const used = process.cpuUsage(cpu);
        return { wall: performance.now() - started, cpu: used.user + used.system };
      };
      for (let i = 0; i < 3; i++) {
        await block(without); // warm both paths
        await block(withCapture);
      }
      const ratios: number[] = [];
      const cpuRatios: number[] = [];
      for (let pair = 0; pair < PAIRS; pair++) {
        // Alternate which runs first, so a drift in the machine's load favours neither.
        let plain: Awaited<ReturnType<typeof block>>;
        let captured: Awaited<ReturnType<typeof block>>;
        if (pair % 2 === 0) {
          plain = await block(without);
          captured = await block(withCapture);
        } else {
          captured = await block(withCapture);
          plain = await block(without);
        }
        ratios.push(captured.wall / plain.wall);
        cpuRatios.push(captured.cpu / plain.cpu);
      }
      await capture.flush();
      results[`capture_overhead_${Math.round(rate * 100)}pct_b${batch}`] = round(median(ratios));
      results[`capture_cpu_overhead_${Math.round(rate * 100)}pct_b${batch}`] = round(median(cpuRatios));
    }
  }
  return results;
}

async function driftFigures(mnist: Mnist) {
  const order = permutation(mnist.rows, 1);
  const features = (indices: readonly number[], shift: Shift) => mnistFeatures(mnist, indices, shift);
  const baseline = await mnistBaseline(mnist, order.slice(0, BASELINE_ROWS), 'bench');
  const rest = order.slice(BASELINE_ROWS);
  const sample = (seed: number, n: number) => permutation(rest.length, 1000 + seed).slice(0, n).map((i) => rest[i]!);
  const flagged = async (n: number, shift: Shift, seeds: number) => {
    let count = 0;
    for (let seed = 0; seed < seeds; seed++) if (compareWithBaseline(baseline, await features(sample(seed, n), shift), { ...defaultDrift(), minSamples: n }).drift) count++;
    return count / seeds;
  };
  const detection: Record<string, number | null> = {};
  const ladder: Record<string, unknown>[] = [];
  for (const n of LADDER) {
    const row = { n, false_alarms: await flagged(n, 'none', SEEDS), inverted: await flagged(n, 'inverted', SEEDS), rotated: await flagged(n, 'rotated', SEEDS) };
    ladder.push(row);
    for (const shift of ['inverted', 'rotated'] as const) if (detection[shift] === undefined && row[shift] >= 0.95 && row.false_alarms <= 0.05) detection[shift] = n;
  }
  return {
    drift_detection_requests: { rotated_90: detection.rotated ?? null, inverted: detection.inverted ?? null },
    false_alarm_rate: await flagged(defaultDrift().minSamples, 'none', FALSE_ALARM_SEEDS),
    drift_ladder: ladder,
  };
}

async function canaryRollback(): Promise<{ canary_rollback_s: number; runs: number[] }> {
  const stack = await startRegistryStack('bench-canary');
  try {
    for (const [version, bytes] of [['1', scaleModel(2)], ['2', gatherModel()]] as const) await pushModel(stack.store, { name: 'scale', version, bytes });
    await writeModelMonitoring(stack.store, 'scale', { guards: { prod: { enabled: true } } });
    const runs: number[] = [];
    for (let run = 0; run < 3; run++) {
      const monitor = await createLocalMonitor({
        store: stack.store,
        sqs: createSqsClient({ endpoint: stack.emulators.awsEndpoint }),
        dynamo: createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint }),
        table: stack.store.registry!.tableName,
        prefix: 'bench-canary',
        metricsFile: join(await mkdtemp(join(tmpdir(), 'bench-canary-')), 'metrics.jsonl'),
      });
      // Powertools prints EMF through the global console in dev mode; the local stack's store reads it.
      Object.assign(process.env, { POWERTOOLS_DEV: 'true', POWERTOOLS_METRICS_DISABLED: 'false', POWERTOOLS_LOG_LEVEL: 'SILENT' });
      const original = console.log;
      console.log = (line: unknown) => monitor.metricsStore.ingest(`${String(line)}\n`);
      try {
        const { logger, metrics } = createObservability('ai-mass');
        const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store, intraOpThreads: 1 }), serviceVersion: 'bench', aliasTtlMs: 0 });
        const handler = createInferenceHandler({ service, maxBodyBytes: 1 << 20, logger, metrics });
        const current = await stack.store.registry!.getAlias('scale', 'prod');
        await setRoutes({ store: stack.store }, { model: 'scale', alias: 'prod', routes: [{ version: '1', weight: 100 }], revision: current?.revision ?? 0 });
        await promote({ store: stack.store }, { model: 'scale', version: '2', alias: 'prod', canaryWeight: 50 });
        const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [5, 5] }] });
        let firstFailure: number | undefined;
        let rolledBack: number | undefined;
        const guardLoop = (async () => {
          while (rolledBack === undefined) {
            await new Promise((resolve) => setTimeout(resolve, LOCAL_GUARD_EVERY_MS));
            if ((await monitor.guard()).some((v) => v.outcome === 'rolled-back')) rolledBack = performance.now();
          }
        })();
        for (let i = 0; rolledBack === undefined && i < 100_000; i++) {
          const response = await handler(event('/v2/models/scale/versions/prod/infer', body, { [STICKY_HEADER]: `run${run}-caller-${i}` }));
          metrics.publishStoredMetrics();
          if (response.statusCode === 500 && firstFailure === undefined) firstFailure = performance.now();
          await new Promise((resolve) => setTimeout(resolve, 20)); // about 50 requests a second
        }
        await guardLoop;
        runs.push(round((rolledBack! - firstFailure!) / 1000, 2));
      } finally {
        console.log = original;
      }
    }
    return { canary_rollback_s: median(runs), runs };
  } finally {
    await stack.stop();
  }
}

const TRACER_IMPORT_REPS = 15;

export async function tracerImportCost(): Promise<{ with_ms: number; without_ms: number }> {
  const packaged = await buildDeployedBundle('functions/inference/handler.ts');
  const bare = await buildDeployedBundle('functions/inference/handler.ts', { external: ['@aws-lambda-powertools/tracer', '@aws-lambda-powertools/tracer/*'] });
  const dir = await mkdtemp(join(tmpdir(), 'bench-tracer-'));
  const script = join(dir, 'import.mjs');
  await writeFile(script, "await import(process.env.BUNDLE);\nprocess.stdout.write('RESULT imported\\n');\nprocess.exit(0);\n");
  const env = (file: string) => ({
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...BENCH_AWS_ENV,
    ...packaged.processEnv,
    AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    MODEL_BUCKET: 'bench-none',
    MODEL_CACHE_DIR: dir,
    NODE_PATH: join(root, 'node_modules'),
    POWERTOOLS_TRACE_ENABLED: 'false',
    POWERTOOLS_LOG_LEVEL: 'WARN',
    BUNDLE: pathToFileURL(file).href,
  });
  const withMs: number[] = [];
  const withoutMs: number[] = [];
  for (let i = 0; i <= TRACER_IMPORT_REPS; i++) {
    const a = await timeToResult(process.execPath, [script], { cwd: dir, env: env(packaged.file) });
    const b = await timeToResult(process.execPath, [script], { cwd: dir, env: env(bare.file) });
    if (i === 0) continue; // the page cache
    withMs.push(a.ms);
    withoutMs.push(b.ms);
  }
  return { with_ms: median(withMs), without_ms: median(withoutMs) };
}

export async function runMonitorBench(): Promise<Record<string, unknown>> {
  Object.assign(process.env, BENCH_AWS_ENV);
  const mnist = await loadMnist();
  const stack = await startRegistryStack('bench-capture');
  let overhead: Record<string, number>;
  try {
    overhead = await captureOverhead(stack, mnist);
  } finally {
    await stack.stop();
  }
  const tracer = await tracerImportCost();
  const drift = await driftFigures(mnist);
  const canary = await canaryRollback();
  const results = {
    ...overhead,
    tracer_off_import_ms: round(tracer.with_ms - tracer.without_ms, 1),
    tracer_off_import_overhead: round(tracer.with_ms / tracer.without_ms),
    inference_import_ms: round(tracer.without_ms, 1),
    ...drift,
    canary_rollback_s: canary.canary_rollback_s,
    canary_rollback_runs_s: canary.runs,
    notes: `capture: ${PAIRS} interleaved pairs of ${BLOCK}-request blocks per figure, S3 emulator in process; drift: baseline ${BASELINE_ROWS} MNIST test images, ${SEEDS} seeds per ladder step; canary: local guard every ${LOCAL_GUARD_EVERY_MS} ms, minRequests 50, ~50 requests/s at a 50% split; machine shared and loaded`,
  };
  printTable('monitor', results);
  await writeResults('monitor', results);
  return results;
}
