import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../../functions/core/aws/clients.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { seededRandom } from '../../functions/core/platform/random.ts';
import { CaptureWriter, type CaptureOffer, type CaptureRecord } from '../../functions/core/monitor/capture.ts';
import { monitoringConfigKey, readModelMonitoring, writeModelMonitoring } from '../../functions/core/monitor/policy.ts';
import { createInferenceHandler } from '../../functions/inference/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { apiEvent } from '../helpers/batch-stack.ts';

// Data capture against the S3 emulator, alone and behind the real inference handler.
let emulators: Emulators;
let s3: S3Client;
let store: ModelRepository;
const BUCKET = 'capture-test';

async function capturedRecords(prefix = 'capture/'): Promise<{ keys: string[]; records: CaptureRecord[] }> {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  const keys = (listed.Contents ?? []).map((o) => o.Key!).sort();
  const records: CaptureRecord[] = [];
  for (const key of keys) {
    const text = Buffer.from((await store.getObjectBytes(key))!).toString('utf8');
    records.push(...text.trim().split('\n').map((l) => JSON.parse(l) as CaptureRecord));
  }
  return { keys, records };
}

async function clearCapture(): Promise<void> {
  for (const key of (await capturedRecords()).keys) await store.deleteObject(key);
}

function writer(options: Partial<ConstructorParameters<typeof CaptureWriter>[0]> = {}, errors: unknown[] = []) {
  return new CaptureWriter({
    put: (key, body) => store.putObjectBytes(key, body),
    modelConfig: (model) => readModelMonitoring(store, model),
    onError: (what, error, fields) => errors.push({ what, error: error.message, ...fields }),
    ...options,
  });
}

const offer = (i: number): CaptureOffer => ({
  model: 'mnist',
  version: '1',
  manifest: { name: 'mnist', version: '1' },
  request: { id: `r${i}`, parameters: { tenant: 'a' }, inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 2], data: new Float32Array([i, i + 1]) }, { name: 'b', datatype: 'INT64', shape: [1, 1], data: new BigInt64Array([7n]) }] },
  outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 3], data: new Float32Array([0.1, 0.8, 0.1]) }, { name: 'z', datatype: 'FP32', shape: [1, 1], data: new Float32Array([2.5]) }],
});

beforeAll(async () => {
  emulators = await startEmulators();
  s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  store = new ModelRepository({ s3, bucket: BUCKET, cacheDir: await mkdtemp(join(tmpdir(), 'capture-test-')) });
  await pushModel(store, { name: 'mnist', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
});

afterAll(async () => {
  await emulators?.stop();
});

describe('data capture', () => {
  it('does no capture work on the response path: a sampled request is recorded in a later turn of the event loop', async () => {
    await writeModelMonitoring(store, 'mnist', { capture: { enabled: true, samplingRate: 0.5 } });
    try {
      const puts: string[] = [];
      const draws = [0.9, 0.9, 0.1];
      const capture = writer({ put: async (key) => void puts.push(key), random: () => draws.shift()!, maxRecords: 1 });
      // The first offer waits for the model's settings; once they are in, later offers decide on the spot.
      capture.offer(offer(0)); // drawn 0.9: not sampled
      await capture.flush();
      expect(puts).toEqual([]);
      capture.offer(offer(1)); // drawn 0.9: not sampled
      capture.offer(offer(2)); // drawn 0.1: sampled; its record (and, at one record a batch, its write) comes later
      expect(draws).toEqual([]);
      await Promise.resolve();
      await Promise.resolve();
      expect(puts).toEqual([]);
      await new Promise((resolve) => setImmediate(resolve));
      expect(puts).toHaveLength(1);
      expect(puts[0]).toMatch(/^capture\/mnist\/1\/\d{4}-\d\d-\d\d\/\d{6}-[0-9a-f]{12}\.jsonl$/);
    } finally {
      await writeModelMonitoring(store, 'mnist', {});
    }
  });

  it('captures nothing for a model that has not opted in', async () => {
    await clearCapture();
    const capture = writer();
    for (let i = 0; i < 20; i++) capture.offer(offer(i));
    await capture.flush();
    expect((await capturedRecords()).keys).toEqual([]);
  });

  it('captures the sampled share of requests: exactly those whose draw fell under the rate', async () => {
    await clearCapture();
    await writeModelMonitoring(store, 'mnist', { capture: { enabled: true, samplingRate: 0.1 } });
    const capture = writer({ random: seededRandom(7), maxRecords: 50 });
    for (let i = 0; i < 1000; i++) capture.offer(offer(i));
    await capture.flush();
    const draws = seededRandom(7);
    const expected = Array.from({ length: 1000 }, (_, i) => i).filter(() => draws() < 0.1).map((i) => `r${i}`);
    const { keys, records } = await capturedRecords();
    expect(expected.length).toBeGreaterThan(80);
    expect(expected.length).toBeLessThan(120);
    expect(records.map((r) => r.id).sort()).toEqual(expected.sort());
    // Batched: 50 records per object, the rest in one last object, under capture/<model>/<version>/<date>/.
    expect(keys.length).toBe(Math.ceil(expected.length / 50));
    const today = new Date().toISOString().slice(0, 10);
    for (const key of keys) expect(key).toMatch(new RegExp(`^capture/mnist/1/${today}/\\d{6}-[0-9a-f]{12}\\.jsonl$`));
  });

  it('drops the fields it is told to and keeps summaries of the rest', async () => {
    await clearCapture();
    await writeModelMonitoring(store, 'mnist', { capture: { enabled: true, samplingRate: 1, dropFields: ['id', 'inputs.b', 'outputs.z'] } });
    const capture = writer();
    capture.offer(offer(3));
    await capture.flush();
    const { records } = await capturedRecords();
    expect(records).toEqual([
      {
        at: expect.any(String),
        model: 'mnist',
        version: '1',
        parameters: { tenant: 'a' },
        inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 2], features: [{ name: 'a[0]', kind: 'numeric', values: [3] }, { name: 'a[1]', kind: 'numeric', values: [4] }] }],
        outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 3], features: [{ name: 'y.class', kind: 'categorical', values: ['1'] }, { name: 'y.score', kind: 'numeric', values: [expect.closeTo(0.8, 6)] }] }],
      },
    ]);
  });

  it('keeps whole tensors when told to (64-bit integers as decimal strings)', async () => {
    await clearCapture();
    await writeModelMonitoring(store, 'mnist', { capture: { enabled: true, samplingRate: 1, tensors: 'whole', dropFields: ['parameters'] } });
    const capture = writer();
    capture.offer(offer(1));
    await capture.flush();
    const [record] = (await capturedRecords()).records;
    expect(record!.id).toBe('r1');
    expect(record!.parameters).toBeUndefined();
    expect(record!.inputs).toEqual([
      { name: 'a', datatype: 'FP32', shape: [1, 2], data: [1, 2] },
      { name: 'b', datatype: 'INT64', shape: [1, 1], data: ['7'] },
    ]);
    expect(record!.outputs[1]).toEqual({ name: 'z', datatype: 'FP32', shape: [1, 1], data: [2.5] });
  });

  it('refuses a monitoring config that is not valid, naming the field', async () => {
    await expect(writeModelMonitoring(store, 'mnist', { capture: { samplingRate: 2 } } as never)).rejects.toThrow('the config is not a valid monitoring config: capture.samplingRate:');
    await expect(writeModelMonitoring(store, 'mnist', { capture: { dropFields: ['request'] } } as never)).rejects.toThrow('a dropped field is id, parameters, inputs.<name> or outputs.<name>');
    await expect(writeModelMonitoring(store, 'nobody', { capture: { enabled: true } })).rejects.toThrow("unknown model 'nobody'");
  });

  it('captures behind the inference handler without changing its answers', async () => {
    await clearCapture();
    await writeModelMonitoring(store, 'mnist', { capture: { enabled: true, samplingRate: 1 } });
    const sessions = new ModelSessions({ store, intraOpThreads: 1 });
    const service = new InferenceService({ store, sessions, serviceVersion: 'test' });
    const { logger, metrics } = createObservability('ai-mass-test');
    logger.setLogLevel('SILENT');
    const capture = writer();
    const withCapture = createInferenceHandler({ service, maxBodyBytes: 1 << 20, logger, metrics, capture });
    const without = createInferenceHandler({ service, maxBodyBytes: 1 << 20, logger, metrics });
    const body = { id: 'req-1', inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 784], data: Array.from({ length: 1568 }, (_, i) => (i % 784) / 784) }] };
    const a = await withCapture(apiEvent('POST', '/v2/models/mnist/infer', body));
    const b = await without(apiEvent('POST', '/v2/models/mnist/infer', body));
    expect(a).toEqual(b);
    expect(a.statusCode).toBe(200);
    await capture.flush();
    const { records } = await capturedRecords();
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ model: 'mnist', version: '1', id: 'req-1' });
    expect(records[0]!.inputs[0]!.features!.map((f) => [f.name, f.values.length]).slice(0, 3)).toEqual([['input.mean', 2], ['input.std', 2], ['input.grid[0,0]', 2]]);
    const classes = JSON.parse(a.body!).outputs[0].data as number[];
    const top = [0, 1].map((r) => String(classes.slice(r * 10, r * 10 + 10).indexOf(Math.max(...classes.slice(r * 10, r * 10 + 10)))));
    expect(records[0]!.outputs[0]!.features![0]).toEqual({ name: 'probabilities.class', kind: 'categorical', values: top });
  });

  it('never fails a request: a write the bucket refuses and an unreadable config are reported, the answer stands', async () => {
    const missing = new ModelRepository({ s3, bucket: 'no-such-bucket', cacheDir: await mkdtemp(join(tmpdir(), 'capture-missing-')) });
    const errors: { what: string; error: string; model: string }[] = [];
    const broken = new CaptureWriter({
      put: (key, body) => missing.putObjectBytes(key, body),
      modelConfig: async () => ({ capture: { enabled: true, samplingRate: 1, tensors: 'summary', dropFields: [] } }),
      onError: (what, error, fields) => errors.push({ what, error: error.message, ...(fields as { model: string }) }),
    });
    broken.offer(offer(1));
    await broken.flush();
    expect(errors).toEqual([{ what: 'write', error: expect.stringContaining('bucket'), model: 'mnist', version: '1', records: 1, key: expect.stringMatching(/^capture\/mnist\/1\//) }]);

    await store.putObjectBytes(monitoringConfigKey('mnist'), Buffer.from('{"capture": '));
    const configErrors: { what: string; error: string }[] = [];
    const capture = writer({ configTtlMs: 60_000 }, configErrors);
    for (let i = 0; i < 3; i++) capture.offer(offer(i));
    await capture.flush();
    // Reported once per config period, and capture is off meanwhile.
    expect(configErrors).toEqual([{ what: 'config', error: expect.stringContaining('models/mnist/monitoring.json is not JSON'), model: 'mnist' }]);
    await store.deleteObject(monitoringConfigKey('mnist'));
  });
});
