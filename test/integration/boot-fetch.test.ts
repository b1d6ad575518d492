import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startBootFetch, type BootFetchEnv } from '../../functions/core/coldstart/boot-fetch.ts';
import { createDynamoClient, createS3Client } from '../../functions/core/aws/clients.ts';
import { IntegrityError, NotFoundError } from '../../functions/core/platform/errors.ts';
import { sha256Hex } from '../../functions/core/platform/hash.ts';
import { keys } from '../../functions/core/artifacts/keys.ts';
import type { ModelManifest } from '../../functions/core/artifacts/manifest.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import type { Downloaded } from '../../functions/core/artifacts/ranged-download.ts';
import { InferenceService } from '../../functions/core/serving/inference-service.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { registerUpload } from '../../functions/core/registry/register-upload.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { stagingKey } from '../../functions/core/artifacts/staging.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { onCommand } from '../helpers/sdk-commands.ts';
import { MONITORING_SETTING, monitoringConfigKey, readModelMonitoring, storedModelMonitoring, writeModelMonitoring } from '../../functions/core/monitor/policy.ts';
import { captureFromEnv } from '../../functions/core/monitor/capture-env.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';

let stack: RegistryStack;
let s3: S3Client;
let env: BootFetchEnv;
/** The key of every GetObject the store's own (SDK) client sends. */
let sdkGets: string[];
/** Every command a recorded registry table's (SDK) client sends. */
let registryCommands: string[];

async function register(model: string, k: number): Promise<ModelManifest> {
  await stack.store.putObjectBytes(`incoming/${model}/m.onnx`, scaleModel(k));
  const outcome = await registerUpload(stack.store, { bucket: stack.store.bucket, key: `incoming/${model}/m.onnx` });
  if (outcome.status !== 'registered') throw new Error(outcome.status);
  return outcome.manifest;
}

async function storeWith(prefetched: Map<string, Promise<Downloaded | undefined>>, registry?: RegistryTable): Promise<ModelRepository> {
  return new ModelRepository({ s3, bucket: stack.store.bucket, cacheDir: await mkdtemp(join(tmpdir(), 'boot-fetch-test-')), prefetched, registry });
}

/** A registry table on the emulator whose client records every command it sends. */
function recordedRegistry(): RegistryTable {
  const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
  onCommand(dynamo, (name) => registryCommands.push(name));
  return new RegistryTable(dynamo, stack.store.registry!.tableName);
}

beforeAll(async () => {
  stack = await startRegistryStack('boot-fetch-test');
  s3 = createS3Client({ endpoint: stack.emulators.awsEndpoint });
  onCommand(s3, (name, input) => {
    if (name === 'GetObjectCommand') sdkGets.push(input.Key as string);
  });
  env = {
    MODEL_BUCKET: stack.store.bucket,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: stack.emulators.awsEndpoint,
  };
});
afterAll(async () => {
  await stack?.stop();
});
beforeEach(() => {
  sdkGets = [];
  registryCommands = [];
});

describe('the boot fetch against the S3 emulator', () => {
  it("fetches a versioned pre-warm's manifest and staged artifact; the store serves both with no GET of its own", async () => {
    const registered = await register('booted', 5);
    const staged = keys.staged('booted', registered.version, stagingKey());
    const boot = startBootFetch({ ...env, PRELOAD_MODELS: `booted:${registered.version}` });
    await boot.sent;
    expect([...boot.downloads.keys()]).toEqual([keys.manifest('booted', registered.version), staged]);
    const store = await storeWith(boot.downloads);
    const manifest = await store.getManifest('booted', registered.version);
    expect(manifest).toEqual(registered);
    const artifact = await store.getStagedBytes(manifest, stagingKey());
    expect(artifact?.source).toBe('bucket');
    expect(sha256Hex(artifact!.bytes)).toBe(registered.staged[stagingKey()]!.sha256);
    expect(Buffer.compare(artifact!.bytes, (await stack.store.getObjectBytes(staged))!)).toBe(0);
    expect(sdkGets).toEqual([]);
  });

  it('finds nothing for a version that does not exist, and the store answers exactly as without it', async () => {
    const boot = startBootFetch({ ...env, PRELOAD_MODELS: 'booted:99' });
    expect(await Promise.all(boot.downloads.values())).toEqual([undefined, undefined]);
    const store = await storeWith(boot.downloads);
    await expect(store.getManifest('booted', '99')).rejects.toThrow(new NotFoundError("model 'booted' has no version '99'"));
    expect(sdkGets).toEqual([keys.manifest('booted', '99')]);
  });

  it('when the boot fetch fails (nothing listens at its endpoint), the store falls back to the SDK and loses nothing', async () => {
    const registered = await register('refused', 7);
    const boot = startBootFetch({ ...env, AWS_ENDPOINT_URL: 'http://127.0.0.1:9', PRELOAD_MODELS: `refused:${registered.version}` });
    await boot.sent;
    for (const download of boot.downloads.values()) await expect(download).rejects.toThrow(/ECONNREFUSED/);
    const store = await storeWith(boot.downloads);
    const manifest = await store.getManifest('refused', registered.version);
    expect(manifest).toEqual(registered);
    const artifact = await store.getStagedBytes(manifest, stagingKey());
    expect(sha256Hex(artifact!.bytes)).toBe(registered.staged[stagingKey()]!.sha256);
    expect(sdkGets).toEqual([keys.manifest('refused', registered.version), keys.staged('refused', registered.version, stagingKey())]);
  });

  it('refuses boot-fetched bytes that are not the ones its manifest records, as any download', async () => {
    const registered = await register('tampered', 9);
    const staged = keys.staged('tampered', registered.version, stagingKey());
    await stack.s3.send(new PutObjectCommand({ Bucket: stack.store.bucket, Key: staged, Body: Buffer.from('tampered') }));
    const boot = startBootFetch({ ...env, PRELOAD_MODELS: `tampered:${registered.version}` });
    const store = await storeWith(boot.downloads);
    const manifest = await store.getManifest('tampered', registered.version);
    await expect(store.getStagedBytes(manifest, stagingKey())).rejects.toThrow(
      new IntegrityError(`${staged} has 8 bytes, its manifest records ${registered.staged[stagingKey()]!.bytes}`),
    );
    expect(sdkGets).toEqual([]);
  });
});

describe('the boot fetch of a model pre-warmed by version, with a registry table', () => {
  it("reads the model's partition too, and the service's pre-warm loads the version with no SDK request at all", async () => {
    const registered = await register('pinned', 5);
    const withTable = { ...env, REGISTRY_TABLE: stack.store.registry!.tableName, DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint };
    const boot = startBootFetch({ ...withTable, PRELOAD_MODELS: `pinned:${registered.version}` });
    expect(await boot.registry.get('pinned')).toMatchObject({ versions: [registered.version], version: registered.version });
    const registry = recordedRegistry();
    const store = await storeWith(boot.downloads, registry);
    const service = new InferenceService({ store, sessions: new ModelSessions({ store, intraOpThreads: 1 }), serviceVersion: 't', bootRegistry: boot.registry });
    await service.preloadModels([`pinned:${registered.version}`]);
    expect(service.isReady()).toBe(true);
    expect(sdkGets).toEqual([]);
    expect(registryCommands).toEqual([]);
  });

  it('refuses a pinned version that is not registered, as without the boot fetch', async () => {
    const withTable = { ...env, REGISTRY_TABLE: stack.store.registry!.tableName, DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint };
    const registered = await register('unlisted', 6);
    const unlisted = String(Number(registered.version) + 1);
    await stack.store.putManifest({ ...registered, version: unlisted }); // a manifest without a registry record
    const boot = startBootFetch({ ...withTable, PRELOAD_MODELS: `unlisted:${unlisted}` });
    const store = await storeWith(boot.downloads, recordedRegistry());
    const service = new InferenceService({ store, sessions: new ModelSessions({ store, intraOpThreads: 1 }), serviceVersion: 't', bootRegistry: boot.registry });
    await service.preloadModels([`unlisted:${unlisted}`]);
    expect(service.isReady()).toBe(false);
    expect(registryCommands).toContain('GetItemCommand'); // the record check, as without the boot fetch
  });
});

describe('the boot fetch of a model pre-warmed by name', () => {
  let byName: BootFetchEnv;
  beforeAll(async () => {
    byName = { ...env, REGISTRY_TABLE: stack.store.registry!.tableName, DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint };
    await register('named', 2); // version 1
    await register('named', 3); // version 2
  });

  it('without a default alias, reads the registry and fetches the highest registered version', async () => {
    const boot = startBootFetch({ ...byName, PRELOAD_MODELS: 'named' });
    await boot.sent;
    const read = await boot.registry.get('named');
    expect(read).toMatchObject({ versions: ['1', '2'], aliases: new Map(), version: '2' });
    expect([...boot.downloads.keys()]).toEqual([keys.manifest('named', '2'), keys.staged('named', '2', stagingKey())]);
  });

  it("follows the default alias, and the service's pre-warm loads that version with no SDK request at all", async () => {
    await stack.store.registry!.setAlias('named', 'prod', [{ version: '1', weight: 100 }], 0, null, new Date('2026-12-01T00:00:00Z'));
    const boot = startBootFetch({ ...byName, PRELOAD_MODELS: 'named' });
    const registry = recordedRegistry();
    const store = await storeWith(boot.downloads, registry);
    const service = new InferenceService({ store, sessions: new ModelSessions({ store, intraOpThreads: 1 }), serviceVersion: 't', bootRegistry: boot.registry });
    await service.preloadModels(['named']);
    expect(service.isReady()).toBe(true);
    const read = await boot.registry.get('named');
    expect(read?.version).toBe('1');
    expect([...read!.aliases.values()].map((a) => [a.alias, a.routes, a.revision])).toEqual([['prod', [{ version: '1', weight: 100 }], 1]]);
    // The next request without a version is routed from the boot's read (cached), through prod.
    expect((await service.loadModel('named')).version).toBe('1');
    expect(sdkGets).toEqual([]);
    expect(registryCommands).toEqual([]);
  });

  it('when the registry read fails (no such table), the pre-warm reads the registry and the bucket itself', async () => {
    const boot = startBootFetch({ ...byName, REGISTRY_TABLE: 'no-such-table', PRELOAD_MODELS: 'named' });
    await expect(boot.registry.get('named')).rejects.toThrow(/HTTP 400.*ResourceNotFoundException/);
    expect(boot.downloads.size).toBe(0);
    const registry = recordedRegistry();
    const store = await storeWith(boot.downloads, registry);
    const service = new InferenceService({ store, sessions: new ModelSessions({ store, intraOpThreads: 1 }), serviceVersion: 't', bootRegistry: boot.registry });
    await service.preloadModels(['named']);
    expect(service.isReady()).toBe(true);
    expect((await service.loadModel('named')).version).toBe('1');
    expect(registryCommands).toEqual(['QueryCommand', 'QueryCommand']);
    // The artifact's prefetch starts first, its first two parts at once.
    expect(sdkGets).toEqual([keys.staged('named', '1', stagingKey()), keys.staged('named', '1', stagingKey()), keys.manifest('named', '1')]);
  });
});

describe("the boot fetch of a pre-warmed model's monitoring config (read with the rest, for data capture's first request)", () => {
  const location = { modelConfig: { setting: MONITORING_SETTING, objectKey: monitoringConfigKey } };
  const config = { capture: { enabled: true, samplingRate: 1 } };

  it('without a registry table, reads the config object; an absent one is read as absent; both as the SDK path reads them', async () => {
    const registered = await register('watched', 4);
    const pinned = { ...env, PRELOAD_MODELS: `watched:${registered.version}` };
    const absent = startBootFetch(pinned, location);
    expect(await absent.modelConfigs.get('watched')).toEqual({ object: undefined });
    await stack.store.putObjectBytes(monitoringConfigKey('watched'), Buffer.from(JSON.stringify(config)));
    const boot = startBootFetch(pinned, location);
    const read = await boot.modelConfigs.get('watched');
    expect(Buffer.from((read as { object: Uint8Array }).object).toString('utf8')).toBe(JSON.stringify(config));
    const bare = await storeWith(new Map());
    expect(storedModelMonitoring('watched', read!)).toEqual(await readModelMonitoring(bare, 'watched'));
    expect(storedModelMonitoring('watched', read!).capture).toMatchObject(config.capture);
  });

  it("with a registry table, takes the setting from the model's partition, by name or pinned", async () => {
    const withTable = { ...env, REGISTRY_TABLE: stack.store.registry!.tableName, DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint };
    await register('tabled', 6);
    expect(await startBootFetch({ ...withTable, PRELOAD_MODELS: 'tabled' }, location).modelConfigs.get('tabled')).toEqual({ setting: undefined });
    expect(await startBootFetch({ ...withTable, PRELOAD_MODELS: 'tabled:1' }, location).modelConfigs.get('tabled')).toEqual({ setting: undefined });
    await writeModelMonitoring(stack.store, 'tabled', config);
    const stored = await stack.store.registry!.getModelSetting('tabled', MONITORING_SETTING);
    expect(await startBootFetch({ ...withTable, PRELOAD_MODELS: 'tabled' }, location).modelConfigs.get('tabled')).toEqual({ setting: stored });
    expect(await startBootFetch({ ...withTable, PRELOAD_MODELS: 'tabled:1' }, location).modelConfigs.get('tabled')).toEqual({ setting: stored });
    // Without a location, nothing more is read.
    expect(startBootFetch({ ...withTable, PRELOAD_MODELS: 'tabled' }).modelConfigs.size).toBe(0);
  });

  it("data capture's first read of the model's config is the boot fetch's: the request is captured with no SDK read of the config", async () => {
    const registered = await register('captured', 8);
    await stack.store.putObjectBytes(monitoringConfigKey('captured'), Buffer.from(JSON.stringify(config)));
    const boot = startBootFetch({ ...env, PRELOAD_MODELS: `captured:${registered.version}` }, location);
    const store = await storeWith(new Map());
    const { logger, metrics } = createObservability();
    const capture = captureFromEnv(store, logger, metrics, { bootConfigs: boot.modelConfigs });
    capture.offer({
      model: 'captured', version: registered.version, manifest: registered,
      request: { id: 'r1', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Float32Array([1]) }] },
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 1], data: new Float32Array([2]) }],
    });
    await capture.flush();
    expect(sdkGets).toEqual([]);
    expect(boot.modelConfigs.has('captured')).toBe(false); // taken once; later reads are the SDK's
    const written = await s3.send(new ListObjectsV2Command({ Bucket: stack.store.bucket, Prefix: `capture/captured/${registered.version}/` }));
    expect(written.KeyCount).toBe(1);
  });

  it('when the boot read fails (no such table), capture reads the config itself and still captures', async () => {
    const boot = startBootFetch({ ...env, REGISTRY_TABLE: 'no-such-table', DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint, PRELOAD_MODELS: 'watched:1' }, location);
    await expect(boot.modelConfigs.get('watched')).rejects.toThrow(/HTTP 400.*ResourceNotFoundException/);
    const store = await storeWith(new Map());
    const { logger, metrics } = createObservability();
    const capture = captureFromEnv(store, logger, metrics, { bootConfigs: boot.modelConfigs });
    capture.offer({
      model: 'watched', version: '1', manifest: { name: 'watched', version: '1' } as ModelManifest,
      request: { id: 'r2', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: new Float32Array([1]) }] },
      outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 1], data: new Float32Array([2]) }],
    });
    await capture.flush();
    expect(sdkGets).toEqual([monitoringConfigKey('watched')]);
    const written = await s3.send(new ListObjectsV2Command({ Bucket: stack.store.bucket, Prefix: 'capture/watched/1/' }));
    expect(written.KeyCount).toBe(1);
  });
});
