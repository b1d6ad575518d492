import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, HeadBucketCommand } from '@aws-sdk/client-s3';
import { createDynamoClient, createS3Client, createSnsClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { SnsModelEvents } from '../../functions/core/registry/events.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { createRegisterHandler } from '../../functions/register/app.ts';
import { startLocalBatch, type LocalBatch } from './batch.ts';
import { startLocalContainerWorker, type LocalContainerWorker } from './container-worker.ts';
import { startBodyProxy, type BodyProxy } from './body-proxy.ts';
import { assertPortFree, freePort, startEmulators, type Emulators } from './emulators.ts';
import { createLocalEvaluateWorker, pollOnce } from './evaluate-worker.ts';
import { startLocalFederation } from './federation.ts';
import { startLocalTuneWorker } from './tune-worker.ts';
import { startLocalQuantize, type LocalQuantize } from './quantize.ts';
import { createLocalRegistryResources } from './registry-resources.ts';
import { createLocalMonitor, LOCAL_GUARD_EVERY_MS, localMonitorQueue, type LocalMonitor } from './monitor.ts';
import { seedDemoModels, seedDemoPipeline } from './seed.ts';
import { startLocalTrainWorker } from './train-worker.ts';
import { watchS3Prefix, type Trigger } from './triggers.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface LocalStackOptions {
  apiPort?: number;
  awsPort?: number;
  dynamoPort?: number;
  lambdaPort?: number;
  bucket?: string;
  /** Models the inference function pre-warms (PRELOAD_MODELS). */
  preload?: string;
  /** The inference function's body limit (MAX_BODY_BYTES). */
  maxBodyBytes?: number;
  /** Where stack.json (read by the CLI) is written; undefined writes none. */
  stateDir?: string | undefined;
  /**
   * Where the emulators keep S3, SQS, SNS and DynamoDB state, found again on the next start (and
   * uploads left under incoming/ by a stack that stopped are registered then); undefined: in memory.
   */
  dataDir?: string | undefined;
  log?: (line: string) => void;
}

export interface LocalStack {
  api: string;
  bucket: string;
  awsEndpoint: string;
  dynamoEndpoint: string;
  registryTable: string;
  topicArn: string;
  seeded: string[];
  /** The functions' EMF metrics as the stack keeps them (`mass monitor`, the canary guard). */
  metricsFile: string;
  monitorQueue: string;
  stop(): Promise<void>;
}

/** The local stack's serverless-esbuild work folder, relative to the repository (never `.esbuild`, which `serverless package` uses). */
export function localBundleFolder(apiPort: number): string {
  return join('.local', `esbuild-${apiPort}`);
}

/** Names as the stack's yml files derive them: `${service}-${stage}-...` with the local stage. */
const PREFIX = 'ai-mass-local';

/** Dummy credentials and no metadata probe: nothing in the local stack may try to reach AWS. */
export const LOCAL_AWS_ENV = {
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
} as const;

async function waitFor(url: string, deadline: number, child: ChildProcess): Promise<void> {
  let last = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`serverless offline exited with code ${child.exitCode}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
      last = `${response.status} ${await response.text()}`;
    } catch (error) {
      last = String((error as Error).cause ?? error);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${url}: ${last}`);
}

/**
 * serverless-offline runs in a process group of its own (so that stopping it reaches its workers);
 * if this process is killed outright (kill -9) nothing would stop it, and the next start would find
 * the API port taken. A small process holds a pipe from this one: when the pipe closes, however this
 * process ended, it kills that group.
 */
function outliveGuard(groupId: number): ChildProcess {
  const script = `process.stdin.resume(); process.stdin.on('end', () => {
    // The group is usually gone already after a clean stop (ESRCH): nothing left to do then.
    try { process.kill(-${groupId}, 'SIGKILL'); } catch (error) { if (error.code !== 'ESRCH') throw error; }
  });`;
  const guard = spawn(process.execPath, ['-e', script], { detached: true, stdio: ['pipe', 'ignore', 'inherit'] });
  guard.unref();
  (guard.stdin as unknown as { unref(): void }).unref();
  return guard;
}

/**
 * The whole system on one machine: S3/SQS and DynamoDB emulators on loopback, the demo models
 * registered, and the HTTP API served by serverless-offline from the same handler code as in AWS.
 */
export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const apiPort = options.apiPort ?? 3000;
  const lambdaPort = options.lambdaPort ?? 3002;
  const bucket = options.bucket ?? 'ai-mass-local-models';
  const log = options.log ?? (() => {});
  Object.assign(process.env, LOCAL_AWS_ENV);
  await assertPortFree(apiPort, 'HTTP API');
  await assertPortFree(lambdaPort, 'serverless-offline Lambda endpoint');

  const emulators: Emulators = await startEmulators({ awsPort: options.awsPort ?? 4566, dynamoPort: options.dynamoPort ?? 8000, dataDir: options.dataDir });
  let offline: ChildProcess | undefined;
  let proxy: BodyProxy | undefined;
  let watchdog: ChildProcess | undefined;
  const triggers: Trigger[] = [];
  let batch: LocalBatch | undefined;
  let quantize: LocalQuantize | undefined;
  let container: LocalContainerWorker | undefined;
  let evaluating = true;
  let evaluateLoop: Promise<void> = Promise.resolve();
  let monitor: LocalMonitor | undefined;
  let monitorLoop: Promise<void> = Promise.resolve();
  const stop = async () => {
    evaluating = false;
    await Promise.all(triggers.map((t) => t.stop()));
    await batch?.stop();
    await quantize?.stop();
    await container?.stop();
    await evaluateLoop;
    await monitorLoop;
    await proxy?.stop();
    if (offline && offline.exitCode === null && offline.pid) {
      const exited = new Promise((r) => offline!.once('exit', r));
      process.kill(-offline.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (offline.exitCode === null) process.kill(-offline.pid, 'SIGKILL');
    }
    watchdog?.stdin?.end();
    await emulators.stop();
    // The bundle is rebuilt on every start; a stack without kept state (tests, on random ports) also
    // leaves no caches behind, so repeated runs do not pile up folders under .local.
    await rm(join(root, localBundleFolder(apiPort)), { recursive: true, force: true });
    if (!options.dataDir) await rm(join(root, '.local', `tmp-${apiPort}`), { recursive: true, force: true });
  };
  try {
    log(`emulators: S3+SQS ${emulators.awsEndpoint}, DynamoDB ${emulators.dynamoEndpoint}`);
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    const dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
    const sns = createSnsClient({ endpoint: emulators.awsEndpoint });
    const exists = await s3.send(new HeadBucketCommand({ Bucket: bucket })).then(() => true, () => false);
    if (!exists) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const registry = await createLocalRegistryResources({ dynamo, sns, prefix: PREFIX });
    const store = new ModelRepository({
      s3,
      bucket,
      cacheDir: join(root, '.local', 'cache'),
      registry: new RegistryTable(dynamo, registry.table),
      events: new SnsModelEvents(sns, registry.topicArn),
    });
    const seeded = await seedDemoModels(store);
    log(`registered demo models: ${seeded.join(', ')}`);
    const pipelines = await seedDemoPipeline(store);
    log(`registered demo pipeline: ${pipelines.join(', ')}`);
    seeded.push(pipelines.at(-1)!);

    // What Lambda's event sources do in AWS: uploads under incoming/ run the register function;
    // batch uploads and queues run the batch functions; the evaluate queue runs the evaluate worker.
    const { logger, metrics } = createObservability('ai-mass-local');
    triggers.push(
      // Uploads already there were in flight when a stack with the same state stopped: register them now.
      await watchS3Prefix({ s3, bucket, prefix: 'incoming/', existing: 'deliver', handler: createRegisterHandler({ store, logger, metrics, maxModelBytes: 512 * 1024 * 1024 }), log }),
    );
    batch = await startLocalBatch({
      awsEndpoint: emulators.awsEndpoint,
      dynamoEndpoint: emulators.dynamoEndpoint,
      bucket,
      prefix: PREFIX,
      cacheDir: join(root, '.local', `tmp-${apiPort}`, 'batch'),
      existingUploads: 'deliver',
    });
    quantize = await startLocalQuantize({ awsEndpoint: emulators.awsEndpoint, dynamoEndpoint: emulators.dynamoEndpoint, store, registryTable: registry.table, prefix: PREFIX });
    // Evaluation jobs: records in the registry table, steps on the queue evaluate.yml names.
    const evaluator = createLocalEvaluateWorker({
      awsEndpoint: emulators.awsEndpoint,
      dynamoEndpoint: emulators.dynamoEndpoint,
      table: registry.table,
      queueName: `${PREFIX}-evaluate-steps`,
      bucket,
      cacheDir: join(root, '.local', 'cache'),
    });
    const evaluateQueueUrl = await evaluator.ensureResources();
    // Train jobs (the job runtime's train kind): the API under serverless-offline, the worker here.
    triggers.push(...(await startLocalTrainWorker({ sqs: createSqsClient({ endpoint: emulators.awsEndpoint }), dynamo, store, table: registry.table, prefix: PREFIX })));
    // Jobs placed on the container worker (any kind; docs/jobs.md, placement): the container's own
    // entry point in a process of its own, on the container queue the train API sends to.
    container = await startLocalContainerWorker({
      sqs: createSqsClient({ endpoint: emulators.awsEndpoint }),
      prefix: PREFIX,
      env: {
        AWS_ENDPOINT_URL: emulators.awsEndpoint,
        DYNAMODB_ENDPOINT_URL: emulators.dynamoEndpoint,
        MODEL_BUCKET: bucket,
        REGISTRY_TABLE: registry.table,
        MODEL_EVENTS_TOPIC_ARN: registry.topicArn,
        MODEL_CACHE_DIR: join(root, '.local', `tmp-${apiPort}`, 'container-models'),
      },
      log,
    });
    // Federations: round deadlines and aggregation steps (infra/serverless/federated.yml's queues).
    triggers.push(...(await startLocalFederation({ awsEndpoint: emulators.awsEndpoint, dynamoEndpoint: emulators.dynamoEndpoint, store, registryTable: registry.table, prefix: PREFIX, log })));
    evaluateLoop = (async () => {
      while (evaluating) {
        await pollOnce({ sqs: evaluator.sqs, queueUrl: evaluateQueueUrl, handler: evaluator.handler, waitSeconds: 1 }).catch((error: Error) => log(`evaluate worker: ${error.message}`));
      }
    })();

    // The studies API (serverless-offline) sends tune lanes to this queue; this process runs them.
    triggers.push(await startLocalTuneWorker({ sqs: evaluator.sqs, dynamo, table: registry.table, store, queueName: `${PREFIX}-tune-steps`, log }));
    // Monitoring (docs/monitoring.md): the EMF lines the functions print are kept in metricsFile for
    // `mass monitor` and the canary guard, which runs every few seconds; the monitor kind's steps run here.
    const metricsFile = join(options.stateDir ?? join(root, '.local', `tmp-${apiPort}`), 'metrics.jsonl');
    monitor = await createLocalMonitor({ store, sqs: evaluator.sqs, dynamo, table: registry.table, prefix: PREFIX, metricsFile, log });
    const localMonitor = monitor;
    monitorLoop = (async () => {
      let guardedAt = 0;
      while (evaluating) {
        await localMonitor.pollOnce(1).catch((error: Error) => log(`monitor worker: ${error.message}`));
        if (Date.now() - guardedAt >= LOCAL_GUARD_EVERY_MS) {
          guardedAt = Date.now();
          const verdicts = await localMonitor.guard().catch((error: Error) => {
            log(`canary guard: ${error.message}`);
            return [];
          });
          for (const v of verdicts.filter((x) => x.outcome === 'rolled-back' || x.outcome === 'rollback-failed')) {
            log(`canary guard: ${v.model} ${v.alias} ${v.outcome}: ${v.reasons.join('; ')}${v.error ? ` (${v.error})` : ''}`);
          }
        }
      }
    })();

    const env = {
      ...process.env,
      ...LOCAL_AWS_ENV,
      AWS_ENDPOINT_URL: emulators.awsEndpoint,
      DYNAMODB_ENDPOINT_URL: emulators.dynamoEndpoint,
      MODEL_BUCKET: bucket,
      ...batch.environment,
      ...quantize.environment,
      MODEL_CACHE_DIR: join(root, '.local', `tmp-${apiPort}`, 'models'),
      MODEL_EVENTS_TOPIC_ARN: registry.topicArn,
      // Each stack its own bundle folder (serverless.yml's esbuild.outputWorkFolder reads it), so a
      // `serverless package` run (.esbuild) or a second stack never deletes it.
      AI_MASS_ESBUILD_WORK_FOLDER: localBundleFolder(apiPort),
      // No V8 code-cache training locally (infra/esbuild/plugins.ts says why).
      AI_MASS_SKIP_CODE_CACHE_TRAINING: '1',
    };
    // serverless-offline listens on a port of its own behind the body proxy (body-proxy.ts), which
    // makes it pass request bodies to the handlers as API Gateway does: bytes, untouched.
    const offlinePort = await freePort();
    offline = spawn(
      process.execPath,
      [
        join(root, 'node_modules', 'serverless', 'bin', 'serverless.js'),
        'offline', 'start',
        '--stage', 'local',
        '--param', 'runtimeTarget=local',
        '--param', `preWarmedModels=${options.preload ?? 'mnist,silero-vad'}`,
        // The batch API takes GPU jobs: the GPU queue exists locally and `mass worker` consumes it;
        // the train API places large jobs on the container worker started above (CONTAINER_WORKERS).
        '--param', 'batchGpuWorkers=true',
        ...(options.maxBodyBytes ? ['--param', `maxBodyBytes=${options.maxBodyBytes}`] : []),
        '--host', '127.0.0.1',
        // Hand the handlers this process's environment (emulator endpoints, queue URLs), not only AWS_*.
        '--localEnvironment',
        '--httpPort', String(offlinePort),
        '--lambdaPort', String(lambdaPort),
      ],
      { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    watchdog = outliveGuard(offline.pid!);
    offline.stdout!.on('data', (chunk: Buffer) => {
      log(chunk.toString().trimEnd());
      monitor?.metricsStore.ingest(chunk.toString());
    });
    offline.stderr!.on('data', (chunk: Buffer) => log(chunk.toString().trimEnd()));
    proxy = await startBodyProxy({ port: apiPort, targetPort: offlinePort });
    const api = `http://127.0.0.1:${apiPort}`;
    // Generous: serverless-offline bundles every function first, slow on a busy machine.
    const deadline = Date.now() + 300_000;
    await waitFor(`${api}/v2/health/live`, deadline, offline);
    await waitFor(`${api}/v2/health/ready`, deadline, offline);

    const stack = {
      api,
      bucket,
      awsEndpoint: emulators.awsEndpoint,
      dynamoEndpoint: emulators.dynamoEndpoint,
      registryTable: registry.table,
      topicArn: registry.topicArn,
      seeded,
      metricsFile,
      monitorQueue: localMonitorQueue(PREFIX),
      // `mass batch worker` starts container workers with this (its queue and cache added).
      batchWorkerEnv: batch?.environment,
    };
    if (options.stateDir) {
      await mkdir(options.stateDir, { recursive: true });
      await writeFile(join(options.stateDir, 'stack.json'), JSON.stringify(stack, null, 2));
    }
    return { ...stack, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
