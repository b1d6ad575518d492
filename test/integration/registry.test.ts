import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { readFile } from 'node:fs/promises';
import { ConflictError, NotFoundError } from '../../functions/core/platform/errors.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { encodeModel, decodeModel } from '../../functions/core/onnx/model-proto.ts';
import { registerUpload, rejectionKey } from '../../functions/core/registry/register-upload.ts';
import { promote, rollback, setRoutes } from '../../functions/core/registry/rollout.ts';
import { stagingKey } from '../../functions/core/artifacts/staging.ts';
import { latestEvaluationVerdict } from '../../functions/core/evaluate/gate.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { onCommand } from '../helpers/sdk-commands.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { CreateQueueCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { jobId, quantizeJobView } from '../../functions/core/quantize/jobs.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createQuantizeRuntime } from '../../functions/core/quantize/runtime.ts';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { quantizeRequestSchema } from '../../functions/core/quantize/options.ts';
import { startQuantization } from '../../functions/core/quantize/start.ts';
import { createRegisterHandler } from '../../functions/register/app.ts';
import { createRegistryHandler } from '../../functions/registry/app.ts';
import { createRegisterFailureHandler } from '../../functions/register-failures/app.ts';
import { graph as graphOf, model as modelOf, node as nodeOf, tensorFromInt64, valueInfo } from '../../functions/core/onnx/builder.ts';
import type { Context } from 'aws-lambda';
import { s3ObjectCreatedEvent } from '../../infra/local/triggers.ts';

let stack: RegistryStack;

beforeAll(async () => {
  stack = await startRegistryStack('registry-test');
});

afterAll(async () => {
  await stack?.stop();
});

async function upload(key: string, body: Uint8Array | string, metadata: Record<string, string> = {}) {
  await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: key, Body: body, Metadata: metadata }));
  return { bucket: stack.store.bucket, key };
}

async function keysUnder(prefix: string): Promise<string[]> {
  const out = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.store.bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!).sort();
}

async function rejection(uploadKey: string): Promise<{ upload: string; reason: string }> {
  const bytes = await stack.store.getObjectBytes(rejectionKey(uploadKey));
  return JSON.parse(Buffer.from(bytes!).toString('utf8'));
}

describe('register on upload', () => {
  it('turns an upload into an immutable numbered version with manifest, staged artifact and event, then removes the upload', async () => {
    const object = await upload('incoming/scale/first.onnx', scaleModel(2), { notes: encodeURIComponent('first cut — doubles') });
    const outcome = await registerUpload(stack.store, object);
    expect(outcome.status).toBe('registered');
    if (outcome.status !== 'registered') return;
    expect(outcome.manifest.version).toBe('1');
    expect(outcome.manifest.notes).toBe('first cut — doubles');
    expect(outcome.manifest.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 2] }]);
    expect(outcome.manifest.opset).toBe(17);
    expect(outcome.manifest.producer.name).toBe('ai-mass');
    expect(Object.keys(outcome.manifest.staged)).toEqual([stagingKey()]);
    expect(await keysUnder('models/scale/')).toEqual([
      'models/scale/1/manifest.json',
      'models/scale/1/model.onnx',
      `models/scale/1/staged/${stagingKey()}.ort`,
    ]);
    expect(await keysUnder('incoming/scale/')).toEqual([]);
    const record = await stack.store.registry!.getVersion('scale', '1');
    expect(record).toMatchObject({ model: 'scale', version: '1', status: 'registered', sha256: outcome.manifest.sha256, notes: 'first cut — doubles' });
    const events = await stack.receiveEvents();
    expect(events.map((e) => [e.type, e.model, e.version, e.notes])).toEqual([['ModelVersionRegistered', 'scale', '1', 'first cut — doubles']]);
  });

  it('gives two concurrent uploads two distinct versions', async () => {
    const a = await upload('incoming/pair/a.onnx', scaleModel(3));
    const b = await upload('incoming/pair/b.onnx', scaleModel(4));
    const [ra, rb] = await Promise.all([registerUpload(stack.store, a), registerUpload(stack.store, b)]);
    const versions = [ra, rb].map((r) => (r.status === 'registered' ? r.manifest.version : r.status)).sort();
    expect(versions).toEqual(['1', '2']);
    expect((await stack.store.listVersions('pair'))).toEqual(['1', '2']);
    await stack.receiveEvents();
  });

  it('registers a redelivered event once, whether it arrives at the same time or after', async () => {
    const object = await upload('incoming/redelivered/m.onnx', scaleModel(5));
    const outcomes = await Promise.all([registerUpload(stack.store, object), registerUpload(stack.store, object)]);
    const again = await registerUpload(stack.store, object);
    expect(outcomes.filter((o) => o.status === 'registered').length).toBeGreaterThanOrEqual(1);
    expect(again.status).toBe('ignored');
    expect(await stack.store.listVersions('redelivered')).toEqual(['1']);
    await stack.receiveEvents();
  });

  it('resumes a registration that crashed part-way under the version it had claimed', async () => {
    const bytes = scaleModel(6);
    const object = await upload('incoming/resumed/m.onnx', bytes);
    const head = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.store.bucket, Prefix: object.key }));
    const eTag = head.Contents![0]!.ETag!.replace(/"/g, '');
    // The crashed attempt got as far as claiming version 7 for this upload.
    await stack.store.registry!.claimUpload({ uploadId: `${stack.store.bucket}/${object.key}@${eTag}`, model: 'resumed', version: '7', state: 'pending' });
    const outcome = await registerUpload(stack.store, object);
    expect(outcome.status === 'registered' && outcome.manifest.version).toBe('7');
    expect(await stack.store.listVersions('resumed')).toEqual(['7']);
    await stack.receiveEvents();
  });

  describe('refuses a bad upload, registers nothing, and records why', () => {
    const externalData = () => {
      const m = decodeModel(scaleModel(2));
      const k = m.graph!.initializer![0]!;
      k.rawData = new Uint8Array(0);
      k.dataLocation = 1; // EXTERNAL
      k.externalData = [{ key: 'location', value: 'weights.bin' }];
      return encodeModel(m);
    };
    it.each([
      ['truncated', 'incoming/bad/truncated.onnx', async () => (await readFile('fixtures/models/mnist/model.onnx')).subarray(0, 50_000), /^not an ONNX model: /],
      ['not ONNX', 'incoming/bad/text.onnx', async () => Buffer.from('this is not a model at all, just some text'), /^not an ONNX model: /],
      ['external data', 'incoming/bad/external.onnx', async () => externalData(), /^initializer "k" in graph main uses external data; /],
      ['an opset onnxruntime does not load', 'incoming/bad/opset.onnx', async () => scaleModel(2, 27, 11), /^onnxruntime cannot load the model: ONNX Runtime only \*guarantees\* support for models stamped with official released onnx opset versions\. Opset 27 is under development /],
      ['an IR version onnxruntime does not load', 'incoming/bad/ir.onnx', async () => scaleModel(2, 17, 14), /^onnxruntime cannot load the model: Unsupported model IR version: 14, max supported IR version: 13$/],
      ['a bad model name', 'incoming/Bad_Name/m.onnx', async () => scaleModel(2), /^invalid model name "Bad_Name" in the upload path: /],
      ['opset 2^62', 'incoming/bad/opset62.onnx', async () => scaleModel(2, 2 ** 62), /^the model could not be examined: int64 value 4611686018427387904 is outside the safe integer range of a number$/],
      ['IR version 2^62', 'incoming/bad/ir62.onnx', async () => scaleModel(2, 17, 2 ** 62), /^the model could not be examined: int64 value 4611686018427387904 is outside the safe integer range of a number$/],
      ['a key outside incoming/<model>/', 'incoming/x.onnx', async () => scaleModel(2), /^"incoming\/x\.onnx" is not where a model registers: upload it as incoming\/<model>\/<file>\.onnx \(a folder named after the model, then a file ending in \.onnx\)$/],
    ])('%s', async (_case, key, body, reason) => {
      const object = await upload(key, await body());
      const outcome = await registerUpload(stack.store, object);
      expect(outcome.status).toBe('rejected');
      const record = await rejection(key);
      expect(record.upload).toBe(key);
      expect(record.reason).toMatch(reason);
      expect(await keysUnder('models/bad/')).toEqual([]);
      expect(await stack.store.listVersions('bad')).toEqual([]);
    });

    it('over the size limit, without downloading it', async () => {
      const object = await upload('incoming/bad/big.onnx', scaleModel(2));
      const outcome = await registerUpload(stack.store, object, { maxModelBytes: 10 });
      expect(outcome.status === 'rejected' && outcome.reason).toMatch(/^model of \d+ bytes exceeds the limit of 10 bytes$/);
      expect(await stack.store.listVersions('bad')).toEqual([]);
      expect(await stack.receiveEvents()).toEqual([]);
    });
  });
});

describe('aliases and rollout', () => {
  beforeAll(async () => {
    for (const k of [10, 20]) await registerUpload(stack.store, await upload(`incoming/roll/v${k}.onnx`, scaleModel(k)));
    await stack.receiveEvents();
  });

  it('lets exactly one of two concurrent promotions from the same revision win; the other gets 409', async () => {
    const first = await promote({ store: stack.store }, { model: 'roll', version: '1' });
    expect(first).toMatchObject({ routes: [{ version: '1', weight: 100 }], revision: 1 });
    const results = await Promise.allSettled([
      setRoutes({ store: stack.store }, { model: 'roll', alias: 'prod', routes: [{ version: '2', weight: 100 }], revision: 1 }),
      setRoutes({ store: stack.store }, { model: 'roll', alias: 'prod', routes: [{ version: '1', weight: 50 }, { version: '2', weight: 50 }], revision: 1 }),
    ]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(ConflictError);
    expect(lost.reason.statusCode).toBe(409);
    expect(lost.reason.message).toBe("alias 'prod' of model 'roll' changed since revision 1: read it again and retry");
    expect((await stack.store.registry!.getAlias('roll', 'prod'))!.revision).toBe(2);
  });

  it('splits 1,000 routed requests by the canary weight, and keeps a sticky caller on one side', async () => {
    const current = await stack.store.registry!.getAlias('roll', 'prod');
    await setRoutes({ store: stack.store }, { model: 'roll', alias: 'prod', routes: [{ version: '1', weight: 100 }], revision: current!.revision });
    await promote({ store: stack.store }, { model: 'roll', version: '2', canaryWeight: 10 });
    const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store }), serviceVersion: 't' });
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const v = await service.resolveVersion('roll');
      counts[v] = (counts[v] ?? 0) + 1;
    }
    // Binomial(1000, 0.1): standard deviation 9.5, so ±40 is over four of them.
    expect(counts['2']).toBeGreaterThan(60);
    expect(counts['2']).toBeLessThan(140);
    expect(counts['1']! + counts['2']!).toBe(1000);
    const sticky = new Set<string>();
    for (let i = 0; i < 50; i++) sticky.add(await service.resolveVersion('roll', undefined, 'caller-42'));
    expect(sticky.size).toBe(1);
    // An explicit version still wins over the alias, and an alias works as a version segment.
    expect(await service.resolveVersion('roll', '1')).toBe('1');
    expect(['1', '2']).toContain(await service.resolveVersion('roll', 'prod'));
  });

  it('rolls back to the routes before the last change and announces each step', async () => {
    await stack.receiveEvents();
    const before = await stack.store.registry!.getAlias('roll', 'prod');
    const rolled = await rollback({ store: stack.store }, { model: 'roll' });
    expect(rolled.routes).toEqual(before!.previous);
    expect(rolled.revision).toBe(before!.revision + 1);
    const events = await stack.receiveEvents();
    expect(events.map((e) => [e.type, e.alias, e.routes])).toEqual([['ModelRolledBack', 'prod', before!.previous]]);
  });

  it('refuses to promote a version whose latest evaluation failed, unless forced', async () => {
    await stack.s3.send(new PutObjectCommand({
      Bucket: stack.store.bucket,
      Key: keys.evalReport('roll', '2', '20261201T000000Z-test'),
      Body: JSON.stringify({ evaluatedAt: '2026-12-01T00:00:00Z', gate: { passed: false, reasons: ['accuracy dropped 2.1 points; the policy allows 0.5'] } }),
    }));
    const deps = { store: stack.store, gate: latestEvaluationVerdict };
    await expect(promote(deps, { model: 'roll', version: '2', canaryWeight: 20 })).rejects.toMatchObject({
      statusCode: 422,
      message: "version '2' of 'roll' failed its latest evaluation (evals/roll/2/20261201T000000Z-test/report.json): accuracy dropped 2.1 points; the policy allows 0.5; promote with force to override",
    });
    const forced = await promote(deps, { model: 'roll', version: '2', canaryWeight: 20, force: true });
    expect(forced.routes).toEqual([{ version: '1', weight: 80 }, { version: '2', weight: 20 }]);
  });

  it('is seen by a warm environment once the alias cache bound has passed, and not before', async () => {
    let clock = 1_000_000;
    const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store }), serviceVersion: 't', aliasTtlMs: 2_000, now: () => clock });
    const current = await stack.store.registry!.getAlias('roll', 'prod');
    await setRoutes({ store: stack.store }, { model: 'roll', alias: 'prod', routes: [{ version: '1', weight: 100 }], revision: current!.revision });
    expect(await service.resolveVersion('roll')).toBe('1');
    const next = await stack.store.registry!.getAlias('roll', 'prod');
    await setRoutes({ store: stack.store }, { model: 'roll', alias: 'prod', routes: [{ version: '2', weight: 100 }], revision: next!.revision });
    clock += 1_999;
    expect(await service.resolveVersion('roll')).toBe('1');
    clock += 2;
    expect(await service.resolveVersion('roll')).toBe('2');
  });

  const routeProd = async (version: string) => {
    const current = await stack.store.registry!.getAlias('roll', 'prod');
    await setRoutes({ store: stack.store }, { model: 'roll', alias: 'prod', routes: [{ version, weight: 100 }], revision: current!.revision });
  };

  /**
   * A service on its own clock, over a registry client that records each DynamoDB command it sends,
   * warmed by one read with prod at version 1: `perRead` is the commands one registry read takes.
   */
  async function warmRecordingService() {
    let clock = 5_000_000;
    const commands: string[] = [];
    const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
    onCommand(dynamo, (name) => commands.push(name));
    const store = new ModelRepository({ s3: stack.s3, bucket: stack.store.bucket, cacheDir: stack.store.cacheDir, registry: new RegistryTable(dynamo, stack.store.registry!.tableName) });
    const service = new InferenceService({ store, sessions: new ModelSessions({ store }), serviceVersion: 't', aliasTtlMs: 2_000, now: () => clock });
    await routeProd('1');
    expect(await service.resolveVersion('roll')).toBe('1');
    expect(commands.length).toBeGreaterThan(0);
    return { service, commands, perRead: commands.length, advance: (ms: number) => (clock += ms) };
  }

  it('past half the bound, answers from its cache and reads the registry in the background, once: the next requests get the new route', async () => {
    const { service, commands, perRead, advance } = await warmRecordingService();
    await routeProd('2');
    advance(999);
    expect(await service.resolveVersion('roll')).toBe('1');
    expect(commands).toHaveLength(perRead); // under half the bound: no read at all
    advance(1);
    expect(await service.resolveVersion('roll')).toBe('1'); // not waiting on the read it started
    await vi.waitFor(async () => expect(await service.resolveVersion('roll')).toBe('2'));
    expect(commands).toHaveLength(2 * perRead);
  });

  it('does not join a registry read that started longer ago than the bound (an environment frozen mid-read): it reads again', async () => {
    const { service, commands, perRead, advance } = await warmRecordingService();
    advance(1_500);
    expect(await service.resolveVersion('roll')).toBe('1'); // starts a background read, still in flight below
    advance(60_000); // thawed a minute later
    expect(await service.resolveVersion('roll')).toBe('1');
    await vi.waitFor(() => expect(commands).toHaveLength(3 * perRead)); // the first read, then two, none joined
  });
});

describe('staged artifacts', () => {
  it('serves from the staged artifact when its key matches, from model.onnx when it does not, with equal outputs', async () => {
    const manifest = await stack.store.getManifest('scale', '1');
    const staged = await new ModelSessions({ store: stack.store }).get(manifest);
    const plain = await new ModelSessions({ store: stack.store, stagingKey: 'ort-0.0.0-linux-riscv' }).get(manifest);
    expect(staged.artifact).toBe('staged');
    expect(plain.artifact).toBe('onnx');
    const ort = (await import('onnxruntime-node')).default;
    const x = new ort.Tensor('float32', new Float32Array([1, 2]), [1, 2]);
    expect(Array.from((await staged.session.run({ x })).y!.data as Float32Array)).toEqual([2, 4]);
    expect(Array.from((await plain.session.run({ x })).y!.data as Float32Array)).toEqual([2, 4]);
  });

  it('falls back to model.onnx when the staged artifact fails its hash check', async () => {
    const manifest = await stack.store.getManifest('pair', '1');
    await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: keys.staged('pair', '1', stagingKey()), Body: Buffer.from('tampered') }));
    const fallbacks: string[] = [];
    const loaded = await new ModelSessions({ store: stack.store, onStagedFallback: (_m, _v, e) => fallbacks.push(e.name) }).get(manifest);
    expect(loaded.artifact).toBe('onnx');
    expect(fallbacks).toEqual(['IntegrityError']);
  });
});

describe('the tier default quantization policy', () => {
  it('starts a quantize job for each new upload and queues it for the worker', async () => {
    const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
    await createPkSkTable(dynamo, 'policy-jobs');
    const queueUrl = (await stack.sqs.send(new CreateQueueCommand({ QueueName: 'policy-quantize' }))).QueueUrl!;
    const { runtime, table } = createQuantizeRuntime({ store: stack.store, dynamo, sqs: stack.sqs, table: 'policy-jobs', stepQueue: 'policy-quantize', visibilitySeconds: 60 });
    const request = quantizeRequestSchema.parse({ method: 'int8-dynamic' });
    const deps = { store: stack.store, runtime, workerMemoryMiB: 3008 };
    const { logger, metrics } = createObservability('registry-test');
    logger.setLogLevel('SILENT');
    const handler = createRegisterHandler({
      store: stack.store, logger, metrics, maxModelBytes: 1 << 20,
      defaultQuantization: {
        method: 'int8-dynamic',
        start: async (model, version) => {
          const { job, created } = await startQuantization(deps, model, version, request);
          return { job: { job: job.id }, created };
        },
      },
    });
    await upload('incoming/policy/m.onnx', scaleModel(9));
    const [outcome] = await handler(s3ObjectCreatedEvent(stack.store.bucket, { key: 'incoming/policy/m.onnx', size: 1, eTag: '' }));
    expect(outcome?.status).toBe('registered');
    const job = quantizeJobView((await table.getJob(jobId('policy', '1', request)))!);
    expect(job).toMatchObject({ model: 'policy', sourceVersion: '1', method: 'int8-dynamic', state: 'queued' });
    const messages = await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
    expect(messages.Messages?.map((m) => JSON.parse(m.Body!))).toEqual([{ job: job.job, step: 'quantize' }]);
    // The policy never routes traffic: no alias exists for the model.
    expect(await stack.store.registry!.listAliases('policy')).toEqual([]);
    await stack.receiveEvents();
  });
});

const VERSION_RULE = 'versions are canonical decimal numbers (1, 2, 3, ...; no leading zeros, at most 12 digits)';

describe('versions are canonical decimal numbers everywhere', () => {
  it.each(['01', '0001', 'prod', '1.0'])('an upload asking for version %s is refused, writes nothing under models/ and takes no number', async (version) => {
    const model = `meta-${version.replace(/\W/g, 'x')}`;
    const key = `incoming/${model}/m.onnx`;
    const outcome = await registerUpload(stack.store, await upload(key, scaleModel(2), { version }));
    const reason = `invalid version ${JSON.stringify(version)} in the upload's metadata: ${VERSION_RULE}`;
    expect(outcome).toEqual({ status: 'rejected', reason, rejectionKey: rejectionKey(key) });
    expect((await rejection(key)).reason).toBe(reason);
    expect(await keysUnder(`models/${model}/`)).toEqual([]);
    expect(await stack.store.registry!.allocateVersion(model)).toBe('1');
  });

  it('a refused upload burns no version number: the next good upload is version 1', async () => {
    expect((await registerUpload(stack.store, await upload('incoming/burn/bad.onnx', 'not a model'))).status).toBe('rejected');
    expect((await registerUpload(stack.store, await upload('incoming/burn/bad2.onnx', scaleModel(2, 17, 14)))).status).toBe('rejected');
    const good = await registerUpload(stack.store, await upload('incoming/burn/good.onnx', scaleModel(2)));
    expect(good.status === 'registered' && good.manifest.version).toBe('1');
    await stack.receiveEvents();
  });

  it('alias routes refuse padded and non-numeric versions and numeric aliases with 400 naming the rule', async () => {
    const deps = { store: stack.store };
    await expect(promote(deps, { model: 'scale', version: '01' })).rejects.toMatchObject({ statusCode: 400, message: `invalid version "01": ${VERSION_RULE}` });
    await expect(setRoutes(deps, { model: 'scale', alias: 'prod', routes: [{ version: '0001', weight: 100 }], revision: 0 })).rejects.toMatchObject({
      statusCode: 400,
      message: `invalid version "0001": ${VERSION_RULE}`,
    });
    await expect(setRoutes(deps, { model: 'scale', alias: 'prod', routes: [{ version: 'prod', weight: 100 }], revision: 0 })).rejects.toMatchObject({
      statusCode: 400,
      message: `invalid version "prod": ${VERSION_RULE}`,
    });
    await expect(promote(deps, { model: 'scale', version: '1', alias: '01' })).rejects.toMatchObject({
      statusCode: 400,
      message: 'invalid alias "01": an alias cannot be a number, numbers name versions',
    });
    expect(await stack.store.registry!.listAliases('scale')).toEqual([]);
  });

  it('inference refuses a padded version with 400 and serves only versions the registry records', async () => {
    const service = new InferenceService({ store: stack.store, sessions: new ModelSessions({ store: stack.store }), serviceVersion: 't' });
    await expect(service.resolveVersion('scale', '01')).rejects.toMatchObject({ statusCode: 400, message: `invalid version "01": ${VERSION_RULE}` });
    // Files under models/ghost/1/ that no registration wrote (or finished): a manifest, the model, no record.
    const manifest = await stack.store.getManifest('scale', '1');
    await stack.store.putManifest({ ...manifest, name: 'ghost' });
    await stack.store.putObjectBytes(keys.modelFile('ghost', '1'), scaleModel(2));
    await expect(stack.store.getManifest('ghost', '1')).rejects.toThrow(new NotFoundError("model 'ghost' has no version '1'"));
    await expect(service.loadModel('ghost', '1')).rejects.toMatchObject({ statusCode: 404, message: "unknown model 'ghost'" });
    await expect(service.loadModel('ghost')).rejects.toMatchObject({ statusCode: 404, message: "unknown model 'ghost'" });
  });
});

describe('a version the platform made is never served to a request without a version until promoted', () => {
  it('after a quantize job, unversioned requests still go to the source, with and without a prod alias; the variant inherits the warm-up', async () => {
    const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
    await createPkSkTable(dynamo, 'routing-jobs');
    await stack.sqs.send(new CreateQueueCommand({ QueueName: 'routing-quantize' }));
    const store = stack.store;
    const { runtime, table } = createQuantizeRuntime({ store, dynamo, sqs: stack.sqs, table: 'routing-jobs', stepQueue: 'routing-quantize', visibilitySeconds: 60 });
    const mnist = new Uint8Array(await readFile('fixtures/models/mnist/model.onnx'));
    const warmup = [{ name: 'input', datatype: 'FP32' as const, shape: [1, 784], data: Array.from({ length: 784 }, (_, i) => i % 256) }];
    const source = await pushModel(store, { name: 'surprise', bytes: mnist, warmup });
    expect(source.inputs.map((i) => i.name)).toEqual(['input']);
    const request = quantizeRequestSchema.parse({ method: 'int8-dynamic' });
    const { job } = await startQuantization({ store, runtime, workerMemoryMiB: 3008 }, 'surprise', '1', request);
    // The worker's part, as its step message would start it.
    expect(await runtime.runStep({ job: job.id, step: 'quantize' }, { remainingMs: () => 900_000 })).toBe('succeeded');
    const done = quantizeJobView((await table.getJob(job.id))!);
    expect(done).toMatchObject({ state: 'succeeded', resultVersion: '2' });
    const variant = await store.getManifest('surprise', '2');
    expect(variant.lineage).toMatchObject({ sourceVersion: '1', method: 'int8-dynamic' });
    expect(variant.warmup).toEqual(warmup);
    expect((await new ModelSessions({ store }).get(variant)).version).toBe('2'); // its warm-up runs

    const service = new InferenceService({ store, sessions: new ModelSessions({ store }), serviceVersion: 't', aliasTtlMs: 0 });
    const unversioned = async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) seen.add(await service.resolveVersion('surprise', undefined, `caller-${i}`));
      return [...seen].sort();
    };
    // No prod alias: the highest version a user uploaded, never the variant.
    expect(await unversioned()).toEqual(['1']);
    expect(await service.resolveVersion('surprise', '2')).toBe('2'); // asked for by number, it serves
    // Another alias pointing at the variant changes nothing for requests without a version.
    await promote({ store }, { model: 'surprise', version: '2', alias: 'staging' });
    expect(await unversioned()).toEqual(['1']);
    // A later upload by the user is the new default; the variant still is not.
    const third = await pushModel(store, { name: 'surprise', bytes: mnist.slice(), notes: 'same weights, uploaded again' });
    expect(third.version).toBe('3');
    expect(await unversioned()).toEqual(['3']);
    // With a prod alias, its routes alone decide; promoting the variant into them is what serves it.
    await promote({ store }, { model: 'surprise', version: '1' });
    expect(await unversioned()).toEqual(['1']);
    await promote({ store }, { model: 'surprise', version: '2' });
    expect(await unversioned()).toEqual(['2']);
    await stack.receiveEvents();
  });
});

describe('the registry API checks names before any table call', () => {
  function registryApi() {
    const commands: string[] = [];
    const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
    onCommand(dynamo, (name) => commands.push(name));
    const store = new ModelRepository({ s3: stack.s3, bucket: stack.store.bucket, cacheDir: stack.store.cacheDir, registry: new RegistryTable(dynamo, stack.store.registry!.tableName) });
    const { logger } = createObservability('registry-test');
    logger.setLogLevel('SILENT');
    const handler = createRegistryHandler({ store, logger });
    const call = async (method: string, rawPath: string, body?: string) => {
      const response = await handler(apiEvent(method, rawPath, body), {} as Context);
      return { status: response.statusCode, body: JSON.parse(String(response.body)) as { error?: string } };
    };
    return { call, commands };
  }

  const long = 'a'.repeat(2000);
  it.each([
    ['GET', `/v2/models/${long}/aliases/prod`, undefined, `invalid model name "${'a'.repeat(80)}...": must match [a-z0-9][a-z0-9._-]{0,63}`],
    ['GET', `/v2/models/scale/aliases/${long}`, undefined, `invalid alias "${'a'.repeat(80)}...": must match [a-z0-9][a-z0-9._-]{0,63}`],
    ['GET', '/v2/models/Bad_Name/aliases/prod', undefined, 'invalid model name "Bad_Name": must match [a-z0-9][a-z0-9._-]{0,63}'],
    ['GET', '/v2/models/scale/aliases/01', undefined, 'invalid alias "01": an alias cannot be a number, numbers name versions'],
    ['POST', `/v2/models/${long}/aliases/prod/promote`, JSON.stringify({ version: '1' }), `invalid model name "${'a'.repeat(80)}...": must match [a-z0-9][a-z0-9._-]{0,63}`],
    ['PUT', '/v2/models/scale/aliases/prod', JSON.stringify({ routes: [{ version: '01', weight: 100 }], revision: 0 }), `invalid version "01": ${VERSION_RULE}`],
    ['POST', '/v2/models/scale/aliases/prod/promote', JSON.stringify({ version: 'prod' }), `invalid version "prod": ${VERSION_RULE}`],
  ])('%s %s: 400 with the rule, nothing sent to the table', async (method, path, body, error) => {
    const { call, commands } = registryApi();
    expect(await call(method, path, body)).toEqual({ status: 400, body: { error } });
    expect(commands).toEqual([]);
  });

  it('a valid name with no such alias is a 404', async () => {
    const { call } = registryApi();
    expect(await call('GET', '/v2/models/scale/aliases/nothing')).toEqual({ status: 404, body: { error: "model 'scale' has no alias 'nothing'" } });
  });
});

describe('an upload whose registration failed every retry still gets an answer', () => {
  const failureHandler = () => {
    const { logger } = createObservability('registry-test');
    logger.setLogLevel('SILENT');
    return createRegisterFailureHandler({ store: stack.store, logger });
  };

  it('the on-failure destination writes a rejection record that says registration failed on the server', async () => {
    const key = 'incoming/crashed/m.onnx';
    await upload(key, scaleModel(2));
    const outcomes = await failureHandler()({
      requestContext: { condition: 'RetriesExhausted', approximateInvokeCount: 3 },
      requestPayload: s3ObjectCreatedEvent(stack.store.bucket, { key, size: 1, eTag: 'abc' }),
      responsePayload: { errorType: 'Runtime.OutOfMemory', errorMessage: 'Runtime exited with error: signal: killed' },
    });
    const reason = 'registration failed on the server after its retries (Runtime.OutOfMemory: Runtime exited with error: signal: killed (3 attempts)); upload the model again, and if it fails again, report it';
    expect(outcomes).toEqual([{ status: 'rejected', reason, rejectionKey: rejectionKey(key) }]);
    expect((await rejection(key)).reason).toBe(reason);
  });

  it('writes nothing for an upload that did get registered, and keeps an earlier rejection as it is', async () => {
    const key = 'incoming/late/m.onnx';
    const put = await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: key, Body: scaleModel(3) }));
    expect((await registerUpload(stack.store, { bucket: stack.store.bucket, key })).status).toBe('registered');
    const handler = failureHandler();
    const record = (k: string, eTag: string) => ({ requestPayload: s3ObjectCreatedEvent(stack.store.bucket, { key: k, size: 1, eTag }), responsePayload: { errorType: 'Error', errorMessage: 'timeout' } });
    expect(await handler(record(key, put.ETag!))).toEqual([{ status: 'already-registered', model: 'late', version: '1' }]);
    expect(await stack.store.getObjectBytes(rejectionKey(key))).toBeUndefined();
    const refusedKey = 'incoming/late/refused.onnx';
    const refused = await registerUpload(stack.store, await upload(refusedKey, 'not a model'));
    expect(await handler(record(refusedKey, 'x'))).toEqual([refused]);
    await stack.receiveEvents();
  });
});

describe('a model the tier cannot hold is refused at registration, with the reason', () => {
  const refusal = async (key: string, body: Uint8Array, servingMemoryMiB?: number) => {
    await stack.store.putObjectBytes(key, body);
    const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key }, { servingMemoryMiB });
    expect(outcome.status).toBe('rejected');
    expect(await stack.store.listVersions(key.split('/')[1]!)).toEqual([]);
    return outcome.status === 'rejected' ? outcome.reason : '';
  };
  const encoded = (nodes: ReturnType<typeof nodeOf>[], outputs: ReturnType<typeof valueInfo>[], initializers: Parameters<typeof graphOf>[0]['initializers'] = [], valueInfos: ReturnType<typeof valueInfo>[] = []) =>
    encodeModel(modelOf({ graph: { ...graphOf({ name: 'g', nodes, inputs: [], outputs, initializers }), valueInfo: valueInfos }, opset: 17, irVersion: 8 }));

  it('a ConstantOfShape of 100 GB from a constant shape (a file of a few hundred bytes)', async () => {
    const body = encoded([nodeOf('ConstantOfShape', ['shape'], ['y'], {}, 'big')], [valueInfo('y', 'float32', ['a', 'b'])], [tensorFromInt64('shape', [2], [25, 1_000_000_000])]);
    expect(await refusal('incoming/alloc-cos/m.onnx', body)).toBe(
      'the output of node "big" (ConstantOfShape) in graph main declares 95367 MiB, more than the 2048 MiB of memory this deployment\'s tier serves with',
    );
  });

  it('a sparse initializer whose dense shape is 4 TB', async () => {
    const m = modelOf({ graph: graphOf({ name: 'g', nodes: [nodeOf('Identity', ['s'], ['y'])], inputs: [], outputs: [valueInfo('y', 'float32', ['a', 'b'])] }), opset: 17, irVersion: 8 });
    m.graph!.sparseInitializer = [{ values: { name: 's', dataType: 1, dims: [1], floatData: [1] }, indices: { dataType: 7, dims: [1], int64Data: [0] }, dims: [1_000_000, 1_000_000] }];
    expect(await refusal('incoming/alloc-sparse/m.onnx', encodeModel(m))).toBe(
      'sparse initializer "s" in graph main declares 3814697 MiB, more than the 2048 MiB of memory this deployment\'s tier serves with',
    );
  });

  it('a graph output of a static shape larger than memory', async () => {
    const body = encoded([nodeOf('Identity', ['k'], ['y'])], [valueInfo('y', 'float32', [4])], [tensorFromInt64('k', [1], [1])], [valueInfo('huge', 'float32', [1_000_000, 1_000])]);
    expect(await refusal('incoming/alloc-value/m.onnx', body, 1024)).toBe(
      'value "huge" in graph main declares 3815 MiB, more than the 1024 MiB of memory this deployment\'s tier serves with',
    );
  });

  it('a model file larger than the tier serves', async () => {
    const mnist = new Uint8Array(await readFile('fixtures/models/mnist/model.onnx'));
    expect(await refusal('incoming/too-big/m.onnx', mnist, 150)).toBe(
      'model of 14 MiB is larger than this deployment\'s tier serves: at most 10 MiB with 150 MiB of memory (README "Tiers"); use a larger tier or a smaller model',
    );
  });
});
