/**
 * Training jobs on the emulators: the API's refusals (each a 4xx that names what was wrong, and no
 * job), fine-tuning, distillation and pruning run by the job runtime through the real SQS queue and
 * registered as unrouted versions with lineage, and a job cut into invocations and killed mid-epoch
 * that finishes from its checkpoints in the bucket to the same bits as an uninterrupted one.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CreateQueueCommand, GetQueueAttributesCommand, PurgeQueueCommand } from '@aws-sdk/client-sqs';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Server } from 'node:http';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import type { JobRecord } from '../../functions/core/jobs/record.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { pushPipeline } from '../../functions/core/pipelines/registry.ts';
import ort from '../../functions/core/onnx/ort.ts';
import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { decodeModel, encodeModel, readFloat32Tensor } from '../../functions/core/onnx/model-proto.ts';
import { tensorDims } from '../../functions/core/onnx/graph-toolkit.ts';
import { trainJobKind, type TrainDeps } from '../../functions/core/train/jobs.ts';
import type { LoopState } from '../../functions/core/train/loop.ts';
import { buildMlpStudent } from '../../functions/core/train/student.ts';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { createTrainApiHandler } from '../../functions/train/app.ts';
import { createJobsApiHandler } from '../../functions/jobs/app.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { serveApi } from '../helpers/api-server.ts';
import { deliverStep } from '../helpers/job-delivery.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { mlp, quadrantIdx } from '../helpers/train-fixtures.ts';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
const NAME = 'train-jobs';

let stack: RegistryStack;
let queueUrl: string;
let runtime: JobRuntime;
let table: JobTable;
let server: Server;
let apiUrl: string;
/** What the worker's checkpoint hook does, per test. */
let onCheckpoint: TrainDeps['onCheckpointStored'];

const silent = () => undefined;
const deps = (): TrainDeps => ({ store: stack.store, pauseMarginMs: 0, progressSeconds: 0, onCheckpointStored: (...args) => onCheckpoint?.(...args) });

async function submit(version: string, body: unknown): Promise<{ statusCode: number; body: Record<string, unknown> }> {
  const api = createTrainApiHandler({ store: stack.store, runtime, log: silent });
  const out = await api(apiEvent('POST', `/v2/models/quad/versions/${version}/train`, body));
  return { statusCode: out.statusCode!, body: JSON.parse(out.body as string) as Record<string, unknown> };
}

/** Invocations until the job ends; `remaining` is each invocation's clock (a count of looks, no real time). */
async function runToEnd(id: string, remaining: () => number = () => 900_000): Promise<{ job: JobRecord; invocations: number }> {
  const handler = createJobStepHandler(runtime);
  for (let invocations = 0; invocations < 60; invocations++) {
    const job = await runtime.get(id);
    if (['succeeded', 'failed', 'partial', 'cancelled'].includes(job.state)) return { job, invocations };
    await deliverStep(stack.sqs, queueUrl, handler, { getRemainingTimeInMillis: remaining }, 1);
  }
  throw new Error(`job ${id} did not end`);
}

async function queueDepth(): Promise<number> {
  const out = await stack.sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return Number(out.Attributes!.ApproximateNumberOfMessages) + Number(out.Attributes!.ApproximateNumberOfMessagesNotVisible);
}

const finetune = { method: 'finetune', dataset: 'quadrants', training: { epochs: 3, batchSize: 16, learningRate: 0.05, checkpointEvery: 4, seed: 7, validationFraction: 0.25 } };

beforeAll(async () => {
  stack = await startRegistryStack(NAME);
  queueUrl = (await stack.sqs.send(new CreateQueueCommand({ QueueName: `${NAME}-train-steps`, Attributes: { VisibilityTimeout: '30' } }))).QueueUrl!;
  table = new JobTable(createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint }), `${NAME}-registry`);
  runtime = new JobRuntime({
    table,
    kinds: new JobKinds([trainJobKind(deps())]),
    queue: new SqsStepQueue(stack.sqs, () => `${NAME}-train-steps`),
    visibilitySeconds: 30,
    retryDelaySeconds: 0,
    reserveMs: 0,
  });
  await pushModel(stack.store, { name: 'quad', bytes: mlp() });
  // Version 2: the same signature with two classes, too few for the data set's four labels.
  await pushModel(stack.store, { name: 'quad', bytes: buildMlpStudent({ inputName: 'input', inputDims: [16], outputName: 'probabilities', classes: 2, softmax: true, inputScale: 1 / 255 }, [4]) });
  // Version 3: an op without a gradient rule (Erf) on the path to the loss.
  await pushModel(stack.store, {
    name: 'quad',
    bytes: encodeModel(
      model({
        irVersion: 8,
        opset: 17,
        graph: graph({
          name: 'erf',
          nodes: [node('MatMul', ['input', 'w'], ['h']), node('Erf', ['h'], ['e'], {}, 'gelu_erf'), node('MatMul', ['e', 'w2'], ['probabilities'])],
          inputs: [valueInfo('input', 'float32', ['batch', 16])],
          outputs: [valueInfo('probabilities', 'float32', ['batch', 4])],
          initializers: [tensorFromFloat32('w', [16, 8], new Array(128).fill(0.01)), tensorFromFloat32('w2', [8, 4], new Array(32).fill(0.01))],
        }),
      }),
    ),
  });
  // The HTTP API as the CLI reaches it: the train route and the jobs routes.
  const train = createTrainApiHandler({ store: stack.store, runtime, log: silent });
  const jobs = createJobsApiHandler({ table, log: silent });
  ({ server, url: apiUrl } = await serveApi((event) => (event.rawPath.startsWith('/v2/jobs/') ? jobs(event) : train(event))));
  const { images, labels } = quadrantIdx();
  await pushDataset(stack.store, { name: 'quadrants', upload: { format: 'idx', images, labels, shape: [1, 16] } });
});

beforeEach(async () => {
  onCheckpoint = undefined;
  await stack.sqs.send(new PurgeQueueCommand({ QueueUrl: queueUrl }));
});

afterAll(async () => {
  server?.close();
  await stack?.stop();
});

describe('POST /v2/models/{name}/versions/{version}/train', () => {
  it.each([
    ['an unknown method', '1', { method: 'grow', dataset: 'quadrants' }, 400, 'invalid train request'],
    ['a misspelt option', '1', { ...finetune, training: { epoch: 3 } }, 400, 'Unrecognized key: "epoch"'],
    ['a bad option value', '1', { ...finetune, training: { learningRate: -1 } }, 400, 'training.learningRate'],
    ['an unknown data set', '1', { ...finetune, dataset: 'nope' }, 404, "unknown data set 'nope'"],
    ['an unknown version', '9', finetune, 404, 'version'],
    ['labels the model cannot hold', '2', finetune, 400, "data set 'quadrants' has labels up to 3, but model 'quad' version '2' has 2 classes"],
    ['an op without a gradient', '3', finetune, 422, 'op Erf (node "gelu_erf") has no gradient rule'],
    ['a batch larger than the data', '1', { ...finetune, training: { batchSize: 1000 } }, 400, 'training.batchSize 1000 is larger than the 216 training rows'],
    ['a student with other outputs', '1', { method: 'distill', dataset: 'quadrants', student: { kind: 'registered', model: 'quad', version: '2' } }, 400, "must output 'probabilities' with 4 classes"],
    ['a student larger than any worker', '1', { method: 'distill', dataset: 'quadrants', student: { kind: 'mlp', hidden: [65536, 65536] } }, 400, 'student.hidden [65536, 65536] makes 4296409092 parameters; at most 100000000'],
    ['a darknet student for a flat input', '1', { method: 'distill', dataset: 'quadrants', student: { kind: 'darknet', widthMultiplier: 0.25 } }, 422, 'a darknet student of 5 stages needs an input [batch, 3, S, S] with S a multiple of 32'],
  ])('refuses %s, naming it, and starts no job', async (_what, version, body, status, message) => {
    const out = await submit(version, body);
    expect(out.statusCode).toBe(status);
    expect(out.body.error).toContain(message);
    expect(await queueDepth()).toBe(0);
  });
});

describe('train jobs', () => {
  it('fine-tunes a version into a new, unrouted version with lineage and progress', async () => {
    const started = await submit('1', finetune);
    expect(started.statusCode).toBe(202);
    expect(started.body).toMatchObject({ kind: 'train', state: 'queued', parent: { model: 'quad', version: '1' } });
    const { job } = await runToEnd(started.body.id as string);
    expect(job.state).toBe('succeeded');
    const result = job.result as Record<string, unknown>;
    expect(result).toMatchObject({ model: 'quad', method: 'finetune', dataset: 'quadrants' });
    expect(result.validationAccuracy).toBeGreaterThanOrEqual(0.9);
    // 3 epochs of 11 steps of 16 rows (180 training rows after the validation split).
    expect(job.progress).toMatchObject({ done: 3 * 11 * 16, total: 3 * 11 * 16, stage: `registered version ${result.version as string}` });
    expect(job.progress!.ratePerSecond).toBeGreaterThan(0);
    const manifest = await stack.store.getManifest('quad', result.version as string);
    expect(manifest.lineage).toMatchObject({
      sourceVersion: '1',
      method: 'finetune',
      options: { job: job.id, source: { model: 'quad', version: '1' }, dataset: 'quadrants', hyperParameters: { dataset: 'quadrants', training: { epochs: 3, batchSize: 16, learningRate: 0.05 } }, finalLoss: result.finalLoss, validationAccuracy: result.validationAccuracy },
    });
    expect((await stack.store.listRoutableVersions('quad')).uploaded).not.toContain(result.version);
    await checkOnnxModel((await stack.store.getModelBytes(manifest)).bytes);
  });

  it('a job cut into invocations and killed mid-epoch finishes from its checkpoints, to the same bits', async () => {
    const uninterrupted = await runToEnd(((await submit('1', finetune)).body.id as string));
    // Every invocation's clock runs out after 5 looks; the worker dies once, after the checkpoint at step 12.
    let looks = 0;
    const steps: number[] = [];
    let killed = false;
    onCheckpoint = (_job: string, _phase: number, state: LoopState) => {
      steps.push(state.step);
      if (state.step === 12 && !killed) {
        killed = true;
        throw new Error('worker killed');
      }
    };
    const cut = await runToEnd((await submit('1', finetune)).body.id as string, () => (looks++ % 5 === 4 ? -1 : 1));
    expect(cut.job.state).toBe('succeeded');
    expect(cut.invocations).toBeGreaterThan(3);
    expect(killed).toBe(true);
    // After the kill the run resumed from step 12's checkpoint rather than from the start.
    expect(steps.indexOf(12)).toBeGreaterThan(0);
    expect(steps.slice(steps.indexOf(12) + 1)[0]).toBeGreaterThan(12);
    const versions = [uninterrupted.job, cut.job].map((j) => (j.result as { version: string }).version);
    const [a, b] = await Promise.all(versions.map((v) => stack.store.getManifest('quad', v)));
    expect(b!.sha256).toBe(a!.sha256);
    expect(versions[1]).not.toBe(versions[0]);
  });

  it('distills the version into an MLP student of the same signature', async () => {
    const started = await submit('1', { method: 'distill', dataset: 'quadrants', student: { kind: 'mlp', hidden: [8] }, temperature: 2, alpha: 0.5, training: { ...finetune.training, epochs: 6 } });
    expect(started.statusCode).toBe(202);
    const { job } = await runToEnd(started.body.id as string);
    expect(job.state).toBe('succeeded');
    const result = job.result as Record<string, unknown>;
    expect(result).toMatchObject({ method: 'distill', teacher: { model: 'quad', version: '1' }, student: { kind: 'mlp', hidden: [8] }, labelled: true });
    const bytes = (await stack.store.getModelBytes(await stack.store.getManifest('quad', result.version as string))).bytes;
    const weights = new Map((decodeModel(bytes).graph?.initializer ?? []).map((t) => [t.name, tensorDims(t)]));
    expect(weights.get('dense1.weight')).toEqual([16, 8]);
    await checkOnnxModel(bytes);
  });

  it('prunes half the hidden units in two rounds with fine-tuning, and the result loads', async () => {
    const started = await submit('1', { method: 'prune', dataset: 'quadrants', pruning: { kind: 'structured', fraction: 0.5, rounds: 2 }, training: { ...finetune.training, epochs: 2 } });
    const { job } = await runToEnd(started.body.id as string);
    expect(job.state).toBe('succeeded');
    const result = job.result as { version: string; phases: { pruning: { layers: { before: number; after: number }[] } }[] };
    expect(result.phases.map((p) => p.pruning.layers.map((l) => [l.before, l.after]))).toEqual([[[8, 6]], [[6, 4]]]);
    const bytes = (await stack.store.getModelBytes(await stack.store.getManifest('quad', result.version))).bytes;
    const weights = new Map((decodeModel(bytes).graph?.initializer ?? []).map((t) => [t.name, tensorDims(t)]));
    expect([weights.get('w1'), weights.get('b1'), weights.get('w2')]).toEqual([[16, 4], [4], [4, 4]]);
    await checkOnnxModel(bytes);
  });
});

const initializerValues = (bytes: Uint8Array, name: string) => Array.from(readFloat32Tensor(decodeModel(bytes).graph!.initializer!.find((t) => t.name === name)!));

/** A teacher that knows the task: each class's logit is `gain` times its quadrant's scaled brightness. */
function sharpTeacher(gain: number): Uint8Array {
  const w = Array.from({ length: 64 }, (_, i) => {
    const [pixel, quadrant] = [Math.floor(i / 4), i % 4];
    const [y, x] = [Math.floor(pixel / 4), pixel % 4];
    return (y >= 2 ? 2 : 0) + (x >= 2 ? 1 : 0) === quadrant ? gain : 0;
  });
  return encodeModel(
    model({
      irVersion: 8,
      opset: 17,
      graph: graph({
        name: 'quadrant_teacher',
        nodes: [node('Mul', ['input', 'scale'], ['scaled']), node('MatMul', ['scaled', 'w'], ['logits']), node('Softmax', ['logits'], ['probabilities'], { axis: attr.int(-1) })],
        inputs: [valueInfo('input', 'float32', ['batch', 16])],
        outputs: [valueInfo('probabilities', 'float32', ['batch', 4])],
        initializers: [tensorFromFloat32('scale', [], [1 / 255]), tensorFromFloat32('w', [16, 4], w)],
      }),
    }),
  );
}

describe('a pipeline as the teacher', () => {
  const post = async (name: string, body: unknown) => {
    const api = createTrainApiHandler({ store: stack.store, runtime, log: silent });
    const out = await api(apiEvent('POST', `/v2/models/${name}/versions/1/train`, body));
    return { statusCode: out.statusCode!, body: JSON.parse(out.body as string) as Record<string, unknown> };
  };
  const distill = { method: 'distill', dataset: 'quadrants', temperature: 2, alpha: 0.5, training: { ...finetune.training, epochs: 6 } };

  beforeAll(async () => {
    await pushModel(stack.store, { name: 'quad-sharp', bytes: sharpTeacher(2) });
    await pushModel(stack.store, { name: 'quad-sharper', bytes: sharpTeacher(3) });
    // An ensemble: the mean of two members' probabilities, which the teacher reads back as logits (their log).
    await pushPipeline(stack.store, {
      name: 'quad-ensemble',
      spec: {
        inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 16] }],
        outputs: [{ name: 'probabilities', source: 'vote.probabilities' }],
        steps: [{ id: 'vote', kind: 'ensemble', combine: 'mean', members: [{ model: 'quad-sharp', version: '1' }, { model: 'quad-sharper', version: '1' }], inputs: { input: '$request.input' } }],
      },
    });
  });

  it.each([
    ['a registered student whose output does not match the pipeline\'s', { ...distill, student: { kind: 'registered', model: 'quad', version: '2' } }, 400, "student 'quad' version '2' must output 'probabilities' with 4 classes like its teacher"],
    ['fine-tuning a pipeline', finetune, 422, "'quad-ensemble' version '1' is a pipeline; it can only teach (method distill), not be trained by finetune"],
  ])('refuses %s at submission, and starts no job', async (_what, body, status, message) => {
    const out = await post('quad-ensemble', body);
    expect(out).toEqual({ statusCode: status, body: { error: message } });
    expect(await queueDepth()).toBe(0);
  });

  it('distills the pipeline through the pipeline executor into an MLP student registered under its name', async () => {
    // alpha 1: the teacher's probabilities alone, no labels.
    const started = await post('quad-ensemble', { ...distill, alpha: 1, student: { kind: 'mlp', hidden: [8] } });
    expect(started.statusCode).toBe(202);
    const { job } = await runToEnd(started.body.id as string);
    expect(job.state).toBe('succeeded');
    const result = job.result as Record<string, unknown>;
    expect(result).toMatchObject({ model: 'quad-ensemble', method: 'distill', teacher: { model: 'quad-ensemble', version: '1' }, labelled: true });
    const manifest = await stack.store.getManifest('quad-ensemble', result.version as string);
    expect(manifest).toMatchObject({ format: 'onnx', lineage: { sourceVersion: '1', method: 'distill' } });
    const bytes = (await stack.store.getModelBytes(manifest)).bytes;
    await checkOnnxModel(bytes);
    // The members scale raw pixels by 1/255 first; so does the student.
    expect(initializerValues(bytes, 'input_scale')).toEqual([Math.fround(1 / 255)]);
    // The student learnt the teacher: its class agrees with the ensemble's (its members agree with each other) on most rows.
    const { images } = quadrantIdx();
    const input = new ort.Tensor('float32', Float32Array.from(images.subarray(16)), [240, 16]);
    const argmax = async (model: Uint8Array) => {
      const session = await ort.InferenceSession.create(model);
      const p = (await session.run({ input })).probabilities!;
      await session.release();
      expect(p.dims).toEqual([240, 4]);
      const data = p.data as Float32Array;
      return Array.from({ length: 240 }, (_, row) => [0, 1, 2, 3].reduce((best, c) => (data[row * 4 + c]! > data[row * 4 + best]! ? c : best), 0));
    };
    const [student, teacher] = [await argmax(bytes), await argmax(sharpTeacher(2))];
    expect(student.filter((c, row) => c === teacher[row]).length / 240).toBeGreaterThanOrEqual(0.9);
  });
});

/** The CLI as a user runs it against the API; steps are delivered meanwhile, until it exits. */
async function mass(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const cli = spawn(process.execPath, ['functions/cli/mass.ts', '--api', apiUrl, ...args], { env: { ...process.env, MASS_AUTH: '', MASS_TOKEN: '' } });
  let stdout = '';
  let stderr = '';
  cli.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let exited = false;
  const exit = once(cli, 'exit').then(([code]) => {
    exited = true;
    return code as number;
  });
  const handler = createJobStepHandler(runtime);
  while (!exited) await deliverStep(stack.sqs, queueUrl, handler, { getRemainingTimeInMillis: () => 900_000 }, 1);
  return { code: await exit, stdout, stderr };
}

describe('mass train | distill | prune', () => {
  it('distills with --watch: a progress line, then the registered version', async () => {
    const out = await mass('distill', 'quad', '--version', '1', '--dataset', 'quadrants', '--student', 'mlp:8', '--epochs', '2', '--batch-size', '16', '--learning-rate', '0.05', '--watch', '--interval', '0.05');
    expect(out.code).toBe(0);
    expect(out.stderr).toContain('running');
    expect(out.stdout).toMatch(/^registered quad version \d+: distill of version 1, final loss [0-9.e-]+, validation accuracy [0-9.]+; not routed until you promote it\n$/);
  });

  it('refuses bad flags before sending anything (exit 2), and shows the API\'s refusal (exit 1)', async () => {
    expect(await mass('prune', 'quad', '--version', '1', '--dataset', 'quadrants')).toMatchObject({ code: 2, stderr: 'error: give exactly one of --structured <fraction> and --sparsity <fraction>\n' });
    expect(await mass('train', 'quad', '--version', '1', '--dataset', 'quadrants', '--epochs', '0')).toMatchObject({ code: 2, stderr: 'error: invalid finetune request: training.epochs: Too small: expected number to be >=1\n' });
    const refused = await mass('train', 'quad', '--version', '3', '--dataset', 'quadrants');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('op Erf (node "gelu_erf") has no gradient rule');
  });
});
