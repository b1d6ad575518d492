import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { FederationClient, FederationApiError, participate, trainLocalUpdate } from '../../functions/core/federated/client.ts';
import { mlpClassifier } from '../../functions/core/federated/models.ts';
import { readParameters } from '../../functions/core/federated/parameters.ts';
import { partitionRows, subset } from '../../functions/core/federated/partition.ts';
import { roundNoise } from '../../functions/core/federated/aggregation.ts';
import { privacySpent } from '../../functions/core/federated/privacy.ts';
import type { ClientTask } from '../../functions/core/federated/rounds.ts';
import { generateMaskingKeys, revealSeeds, type MaskingKeys } from '../../functions/core/federated/secure-aggregation.ts';
import { checkUpdate, encodeUpdate } from '../../functions/core/federated/update-file.ts';
import { blobRows } from '../helpers/train-fixtures.ts';
import { uploadedVersions } from '../../functions/core/artifacts/indexed-versions.ts';
import type { TrainingData } from '../../functions/core/train/loop.ts';
import { startFederationStack, type FederationStack } from '../helpers/federation-stack.ts';
import { checkOnnxModel } from '../helpers/onnx-checker.ts';

// Federations of a tiny MLP (4-8-3) on three Gaussian blobs, on the emulators: real S3 objects
// through pre-signed URLs, rounds in DynamoDB, deadlines as delayed SQS messages, aggregation as a
// job-runtime step. Clients train with the training engine in this process.
let stack: FederationStack;
let api: FederationClient;
const MODEL = 'blobs';

function blobs(rows: number, seed: number): TrainingData {
  const { features, labels } = blobRows(rows, seed);
  return { columns: [{ name: 'input', datatype: 'FP32', rowShape: [1, 4], rowSize: 4, data: Float32Array.from(features.flat()) }], labels: Int32Array.from(labels) };
}

const train = blobs(600, 1);
const test = blobs(300, 2);

async function join(federation: string, keys?: MaskingKeys) {
  return api.join(federation, keys?.publicKey);
}

async function taskOf(federation: string, client: { client: string; token: string }): Promise<ClientTask> {
  const task = await api.task(federation, client.client, client.token);
  if (task.state !== 'train') throw new Error(`client ${client.client} has no task: ${JSON.stringify(task)}`);
  return task;
}

/** Trains, uploads and reports, as `mass federation join` does for one round. */
async function deliver(federation: string, client: { client: string; token: string }, data: TrainingData, keys?: MaskingKeys) {
  const task = await taskOf(federation, client);
  const update = await trainLocalUpdate(task, client.client, await api.download(task.modelUrl), data, { keys });
  await api.upload(task.updateUrl, update);
  return api.submit(federation, task.round, client.client, client.token);
}

/**
 * Delivers deadline messages until the federation shows `done` (a message that arrives a moment
 * before the deadline, by the emulator's clock against ours, is sent on again, as in AWS).
 */
async function passDeadline(id: string, done: (view: Awaited<ReturnType<FederationClient['status']>>) => boolean): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    await stack.deliverDeadlines(3);
    if (done(await api.status(id))) return;
  }
  throw new Error(`federation ${id}: the deadline did not take effect`);
}

async function status(code: Promise<unknown>): Promise<number> {
  try {
    await code;
    return 200;
  } catch (error) {
    if (error instanceof FederationApiError) return error.status;
    throw error;
  }
}

beforeAll(async () => {
  stack = await startFederationStack('fedtest');
  api = new FederationClient('http://api.local', stack.fetch);
  await pushModel(stack.store, { name: MODEL, bytes: mlpClassifier([4, 8, 3], 3) });
  const rows = Array.from({ length: 300 }, (_, row) =>
    JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: Array.from(test.columns[0]!.data as Float32Array).slice(row * 4, row * 4 + 4) }], label: test.labels![row] }),
  );
  await pushDataset(stack.store, { name: 'blobs-test', upload: { format: 'jsonl', rows: Buffer.from(rows.join('\n')) } });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('federated rounds on the local stack', () => {
  it('a short federation improves accuracy round over round, each round a version with lineage that is not routed', async () => {
    const federation = await api.create({ model: MODEL, rounds: 3, clientsPerRound: 3, strategy: { kind: 'fedavg' }, local: { epochs: 2, batchSize: 10, learningRate: 0.1 }, evalDataset: 'blobs-test', seed: 11 });
    const clients = await Promise.all(Array.from({ length: 4 }, () => join(federation.id)));
    const shards = partitionRows(train.labels!, 4, { kind: 'iid' }, 5).map((rows) => subset(train, rows));
    const dataOf = new Map(clients.map((c, index) => [c.client, shards[index]!]));
    for (let round = 1; round <= 3; round++) {
      const { round: open } = await api.status(federation.id);
      expect(open?.round).toBe(round);
      expect(open?.selected).toHaveLength(3);
      for (const client of clients.filter((c) => open!.selected.includes(c.client))) await deliver(federation.id, client, dataOf.get(client.client)!);
      expect(await stack.runSteps()).toBe(1);
    }
    const { federation: done } = await api.status(federation.id);
    expect(done.state).toBe('completed');
    const accuracies = done.history.map((h) => h.accuracy!);
    expect(accuracies).toHaveLength(3);
    // Round over round (measured 0.81, 0.95, 0.99 on this data; the selection depends on the random client ids).
    expect(accuracies[1]).toBeGreaterThan(accuracies[0]!);
    expect(accuracies[2]).toBeGreaterThan(accuracies[1]!);
    expect(accuracies[2]).toBeGreaterThan(0.9);
    expect(done.history[2]!.loss).toBeLessThan(done.history[1]!.loss!);
    expect(done.history[1]!.loss).toBeLessThan(done.history[0]!.loss!);
    const last = await stack.store.getManifest(MODEL, done.globalVersion);
    expect(last.lineage).toMatchObject({ method: 'federated', sourceVersion: done.history[1]!.version, options: { federation: federation.id, round: 3, strategy: { kind: 'fedavg' } } });
    await checkOnnxModel((await stack.store.getModelBytes(last)).bytes);
    // Never routed: a request without a version still goes to the uploaded version 1.
    expect(uploadedVersions(await stack.store.registry!.listVersions(MODEL))).toEqual(['1']);
    // The client asked after the end hears so.
    expect((await api.task(federation.id, clients[0]!.client, clients[0]!.token)).state).toBe('completed');
  }, 180_000);

  it('refuses bad updates with 4xx and never aggregates them; a duplicate is idempotent; a late update is 409', async () => {
    const federation = await api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 2, minClients: 1, roundTimeoutSeconds: 1, seed: 3 });
    const [a, b] = [await join(federation.id), await join(federation.id)];
    const task = await taskOf(federation.id, a);
    const globalBytes = await api.download(task.modelUrl);
    const { layout, values } = readParameters(globalBytes);
    const identity = { federation: federation.id, round: 1, client: a.client, examples: 10 };
    expect(await status(api.submit(federation.id, 1, a.client, a.token))).toBe(400); // nothing uploaded yet
    const nan = Float64Array.from(values);
    nan[0] = Number.NaN;
    await api.upload(task.updateUrl, encodeUpdate(identity, layout, nan));
    expect(await status(api.submit(federation.id, 1, a.client, a.token))).toBe(400);
    const wrongShape = { entries: layout.entries.map((e, i) => (i === 0 ? { ...e, dims: [e.dims[1]!, e.dims[0]!] } : e)), length: layout.length };
    await api.upload(task.updateUrl, encodeUpdate(identity, wrongShape, values));
    expect(await status(api.submit(federation.id, 1, a.client, a.token))).toBe(400);
    await api.upload(task.updateUrl, encodeUpdate({ ...identity, client: b.client }, layout, values));
    expect(await status(api.submit(federation.id, 1, a.client, a.token))).toBe(403);
    expect(await status(api.submit(federation.id, 1, a.client, 'not-the-token'))).toBe(401);
    expect((await api.status(federation.id)).round?.received).toBe(0);

    const good = Float64Array.from(values, (value) => value + 0.25);
    await api.upload(task.updateUrl, encodeUpdate(identity, layout, good));
    expect(await api.submit(federation.id, 1, a.client, a.token)).toMatchObject({ duplicate: false, received: 1, selected: 2 });
    expect(await api.submit(federation.id, 1, a.client, a.token)).toMatchObject({ duplicate: true, received: 1 });

    // b never delivers: at the deadline the round closes with a's update alone (minClients 1).
    const bTask = await taskOf(federation.id, b);
    await passDeadline(federation.id, (view) => view.round?.state !== 'open');
    expect((await api.status(federation.id)).round?.state).toBe('aggregating');
    await api.upload(bTask.updateUrl, encodeUpdate({ ...identity, client: b.client }, layout, values));
    expect(await status(api.submit(federation.id, 1, b.client, b.token))).toBe(409);
    await stack.runSteps();
    const { federation: done } = await api.status(federation.id);
    expect(done.history[0]!.participants).toEqual([a.client]);
    // FedAvg of a's update alone is a's values (FP32 as the update file carried them).
    const aggregated = readParameters((await stack.store.getModelBytes(await stack.store.getManifest(MODEL, done.globalVersion))).bytes).values;
    expect([...aggregated]).toEqual([...Float32Array.from(good)]);
  }, 120_000);

  it('a round that times out with too few updates is retried with a new selection, then the federation pauses with the reason', async () => {
    const federation = await api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 2, minClients: 2, roundTimeoutSeconds: 1, maxRetries: 1, seed: 4 });
    const [a] = [await join(federation.id), await join(federation.id)];
    await passDeadline(federation.id, (view) => view.round?.attempt === 2);
    expect((await api.status(federation.id)).round).toMatchObject({ round: 1, attempt: 2, state: 'open', received: 0 });
    await passDeadline(federation.id, (view) => view.federation.state !== 'running');
    const { federation: paused } = await api.status(federation.id);
    expect(paused.state).toBe('paused');
    expect(paused.reason).toBe('round 1 attempt 2: 0 of 2 selected clients delivered an update before the deadline; 2 needed (after 2 attempts); resume it when enough clients are online');
    expect(await api.task(federation.id, a!.client, a!.token)).toMatchObject({ state: 'paused', reason: paused.reason });
  }, 60_000);

  it('secure aggregation: the server aggregates the masked updates into the FedAvg of the plain ones', async () => {
    const federation = await api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 3, secureAggregation: true, local: { epochs: 1, batchSize: 10, learningRate: 0.05 }, seed: 5 });
    const keys = [generateMaskingKeys(), generateMaskingKeys(), generateMaskingKeys()];
    const clients = [];
    for (const key of keys) clients.push(await join(federation.id, key));
    const shards = partitionRows(train.labels!, 3, { kind: 'iid' }, 6).map((rows) => subset(train, rows));
    const plain: Float64Array[] = [];
    for (const [index, client] of clients.entries()) {
      const task = await taskOf(federation.id, client);
      expect(task.secureAggregation?.cohort.map((m) => m.client)).toEqual([...clients.map((c) => c.client)].sort());
      const globalBytes = await api.download(task.modelUrl);
      const { layout } = readParameters(globalBytes);
      const withoutMasks = await trainLocalUpdate({ ...task, secureAggregation: undefined }, client.client, globalBytes, shards[index]!);
      plain.push(checkUpdate(withoutMasks, { federation: federation.id, round: 1, client: client.client, layout, maxBytes: 1e6, encoding: 'float' }).weights!);
      await deliver(federation.id, client, shards[index]!, keys[index]);
    }
    await stack.runSteps();
    const { federation: done } = await api.status(federation.id);
    expect(done.state).toBe('completed');
    const aggregated = readParameters((await stack.store.getModelBytes(await stack.store.getManifest(MODEL, done.globalVersion))).bytes).values;
    const mean = Float64Array.from(plain[0]!, (_, i) => plain.reduce((sum, p) => sum + p[i]!, 0) / 3); // equal shards: equal weights
    // Fixed point with 16 fractional bits on examples x delta (200 examples each): error <= 3 x 2^-17 / 600 per value, plus FP32 rounding.
    for (let i = 0; i < mean.length; i++) expect(Math.abs(aggregated[i]! - mean[i]!)).toBeLessThan(1e-6 + 1e-6 * Math.abs(mean[i]!));
  }, 120_000);

  it('secure aggregation with a dropout: the survivors reveal their seeds with the dropped client and the sum is theirs exactly', async () => {
    const federation = await api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 3, minClients: 2, roundTimeoutSeconds: 1, secureAggregation: true, local: { epochs: 1, batchSize: 10, learningRate: 0.05 }, seed: 9 });
    const keys = [generateMaskingKeys(), generateMaskingKeys(), generateMaskingKeys()];
    const clients = [];
    for (const key of keys) clients.push(await join(federation.id, key));
    const shards = partitionRows(train.labels!, 3, { kind: 'iid' }, 7).map((rows) => subset(train, rows));
    const plain: Float64Array[] = [];
    const tasks: ClientTask[] = [];
    // Clients 0 and 1 deliver; client 2 takes its task (and so its masks) and never delivers.
    for (const index of [0, 1, 2]) tasks.push(await taskOf(federation.id, clients[index]!));
    for (const index of [0, 1]) {
      const globalBytes = await api.download(tasks[index]!.modelUrl);
      const withoutMasks = await trainLocalUpdate({ ...tasks[index]!, secureAggregation: undefined }, clients[index]!.client, globalBytes, shards[index]!);
      plain.push(checkUpdate(withoutMasks, { federation: federation.id, round: 1, client: clients[index]!.client, layout: readParameters(globalBytes).layout, maxBytes: 1e6, encoding: 'float' }).weights!);
      await deliver(federation.id, clients[index]!, shards[index]!, keys[index]);
    }
    await passDeadline(federation.id, (view) => view.round?.state === 'unmasking');
    const dropped = clients[2]!;
    // The dropped client's late update is refused: its masks are about to be revealed.
    const late = await trainLocalUpdate(tasks[2]!, dropped.client, await api.download(tasks[2]!.modelUrl), shards[2]!, { keys: keys[2] });
    await api.upload(tasks[2]!.updateUrl, late);
    expect(await status(api.submit(federation.id, 1, dropped.client, dropped.token))).toBe(409);
    expect(await status(api.reveal(federation.id, 1, dropped.client, dropped.token, {}))).toBe(403);
    expect(await status(api.reveal(federation.id, 1, clients[0]!.client, clients[0]!.token, {}))).toBe(400);
    for (const index of [0, 1]) {
      const ask = await api.task(federation.id, clients[index]!.client, clients[index]!.token);
      expect(ask).toMatchObject({ state: 'unmask', round: 1, attempt: 1, dropped: [dropped.client] });
      const seeds = revealSeeds(clients[index]!.client, keys[index]!, tasks[index]!.secureAggregation!.cohort, [dropped.client], tasks[index]!.secureAggregation!.context);
      expect(await api.reveal(federation.id, 1, clients[index]!.client, clients[index]!.token, seeds)).toMatchObject({ duplicate: false, received: index + 1, selected: 2 });
    }
    await stack.runSteps();
    const { federation: done } = await api.status(federation.id);
    expect(done.state).toBe('completed');
    expect(done.history[0]!.participants).toEqual([clients[0]!.client, clients[1]!.client].sort());
    const aggregated = readParameters((await stack.store.getModelBytes(await stack.store.getManifest(MODEL, done.globalVersion))).bytes).values;
    const mean = Float64Array.from(plain[0]!, (_, i) => (plain[0]![i]! + plain[1]![i]!) / 2); // equal shards: equal weights
    for (let i = 0; i < mean.length; i++) expect(Math.abs(aggregated[i]! - mean[i]!)).toBeLessThan(1e-6 + 1e-6 * Math.abs(mean[i]!));
  }, 120_000);

  it('secure aggregation with a dropout through the client library: participants with maxRounds 1 stay to reveal their seeds', async () => {
    const federation = await api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 3, minClients: 2, roundTimeoutSeconds: 1, secureAggregation: true, local: { epochs: 1, batchSize: 10, learningRate: 0.05 }, seed: 10 });
    const keys = [generateMaskingKeys(), generateMaskingKeys(), generateMaskingKeys()];
    const clients: { client: string; token: string }[] = [];
    for (const key of keys) clients.push(await join(federation.id, key));
    await taskOf(federation.id, clients[2]!); // takes its masks, never delivers
    const shards = partitionRows(train.labels!, 3, { kind: 'iid' }, 8).map((rows) => subset(train, rows));
    const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.min(ms, 100)));
    const runs = [0, 1].map((index) => participate(api, { federation: federation.id, client: clients[index]!.client, token: clients[index]!.token, data: shards[index]!, keys: keys[index], maxRounds: 1, sleep }));
    // The stack's side: once both delivered, the deadline (the round unmasks), then the aggregation once both have revealed.
    for (let attempt = 0; attempt < 600 && (await api.status(federation.id)).round?.received !== 2; attempt++) await sleep(100);
    await passDeadline(federation.id, (view) => view.round?.state === 'unmasking' || view.round?.state === 'aggregating');
    // The last reveal closes the round and submits the aggregation job from the client's request: steps until it is done.
    for (let attempt = 0; attempt < 600 && (await api.status(federation.id)).federation.state !== 'completed'; attempt++) {
      await stack.runSteps();
      await sleep(100);
    }
    expect(await Promise.all(runs)).toEqual([
      { state: 'stopped', rounds: 1 },
      { state: 'stopped', rounds: 1 },
    ]);
    const { federation: done } = await api.status(federation.id);
    expect(done.state).toBe('completed');
    expect(done.history[0]!.participants).toEqual([clients[0]!.client, clients[1]!.client].sort());
  }, 120_000);

  it('differential privacy: the round records the epsilon the accountant gives', async () => {
    const federation = await api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 2, privacy: { clip: 1, noiseMultiplier: 1.2 }, seed: 6 });
    const clients = [await join(federation.id), await join(federation.id), await join(federation.id), await join(federation.id)];
    const { round } = await api.status(federation.id);
    for (const client of clients.filter((c) => round!.selected.includes(c.client))) await deliver(federation.id, client, subset(train, Uint32Array.from({ length: 60 }, (_, i) => i)));
    await stack.runSteps();
    const { federation: done } = await api.status(federation.id);
    // The sampling rate is the round's selection over the clients joined when it is aggregated: 2 of 4.
    expect(done.history[0]!.epsilon).toBeCloseTo(privacySpent(2 / 4, 1.2, 1, 1e-5).epsilon, 10);
    const manifest = await stack.store.getManifest(MODEL, done.globalVersion);
    expect((manifest.lineage?.options as { privacy?: { epsilon: number } }).privacy?.epsilon).toBe(done.history[0]!.epsilon);
  }, 120_000);

  it('adaptive clipping: the next round clips at the norm the noised count chose, and the version records it', async () => {
    // A first clip far below any update's norm: no update is unclipped, so b = (0 + sigma_b g) / 2 with g the round's seeded draw.
    const first = 1e-9;
    const federation = await api.create({ model: MODEL, version: '1', rounds: 2, clientsPerRound: 2, privacy: { clip: first, noiseMultiplier: 1.2, adaptive: { targetQuantile: 0.5, learningRate: 0.2, countStddev: 2 } }, seed: 7 });
    const clients = [await join(federation.id), await join(federation.id)];
    const rows = subset(train, Uint32Array.from({ length: 30 }, (_, i) => i));
    for (const client of clients) await deliver(federation.id, client, rows);
    await stack.runSteps();
    for (const client of clients) await deliver(federation.id, client, rows);
    await stack.runSteps();
    const { federation: done } = await api.status(federation.id);
    expect(done.state).toBe('completed');
    const g = roundNoise(done.seed, 1, 1, 'count')();
    const second = first * Math.exp(-0.2 * ((0 + 2 * g) / 2 - 0.5));
    expect(done.history.map((round) => round.clip)).toEqual([first, second]);
    const manifest = await stack.store.getManifest(MODEL, done.globalVersion);
    expect((manifest.lineage?.options as { privacy?: { clip: number; adaptive: boolean } }).privacy).toMatchObject({ clip: second, adaptive: true });
    // The accountant charges z = 1.2 per round at q = 2 / 2, whatever share went to the count.
    expect(done.history[1]!.epsilon).toBeCloseTo(privacySpent(1, 1.2, 2, 1e-5).epsilon, 10);
  }, 120_000);

  it('bulyan: a federation of 7 with 1 sign-flipped update aggregates the honest picks; fewer than 4f + 3 is refused at create', async () => {
    await expect(api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 6, strategy: { kind: 'bulyan', byzantine: 1 } })).rejects.toThrow('bulyan with byzantine 1 needs at least 7 updates a round (n >= 4f + 3)');
    const federation = await api.create({ model: MODEL, version: '1', rounds: 1, clientsPerRound: 7, strategy: { kind: 'bulyan', byzantine: 1 }, seed: 8 });
    const clients = [];
    for (let i = 0; i < 7; i++) clients.push(await join(federation.id));
    const { layout, values } = readParameters((await stack.store.getModelBytes(await stack.store.getManifest(MODEL, '1'))).bytes);
    // Honest updates: the global plus 0.01 k in every value; the attacker: global - 10.
    for (const [k, client] of clients.entries()) {
      const task = await taskOf(federation.id, client);
      const weights = Float64Array.from(values, (value) => (k === 6 ? value - 10 : value + 0.01 * k));
      await api.upload(task.updateUrl, encodeUpdate({ federation: federation.id, round: 1, client: client.client, examples: 10 }, layout, weights));
      await api.submit(federation.id, 1, client.client, client.token);
    }
    await stack.runSteps();
    const { federation: done } = await api.status(federation.id);
    expect(done.state).toBe('completed');
    // Krum picks 5 of the 6 honest (never the attacker); per coordinate the 3 nearest the median are averaged.
    expect(done.history[0]!.participants).toHaveLength(5);
    expect(done.history[0]!.participants).not.toContain(clients[6]!.client);
    const aggregated = readParameters((await stack.store.getModelBytes(await stack.store.getManifest(MODEL, done.globalVersion))).bytes).values;
    for (let i = 0; i < values.length; i++) expect(Math.abs(aggregated[i]! - values[i]!)).toBeLessThan(0.06);
  }, 120_000);
});
