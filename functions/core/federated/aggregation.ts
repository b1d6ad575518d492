/**
 * The aggregation of a closed round, as a step on the job runtime (kind `federated-round`): read
 * the global model and every accepted update (checked again: an object may have been overwritten
 * since it was accepted), run the strategy (with differential privacy or secure aggregation when
 * the federation has it), register the result as a new version with lineage (never routed until
 * promoted), evaluate it on the federation's data set, record the round and open the next.
 * Every part is idempotent: a rerun finds the registered version and the recorded round.
 */
import * as z from 'zod';
import { BadRequestError } from '../platform/errors.ts';
import { loadDataset, readDatasetManifest } from '../evaluate/datasets.ts';
import type { JobKind, StepContext } from '../jobs/kinds.ts';
import { JobStepError } from '../jobs/kinds.ts';
import type { Json } from '../jobs/record.ts';
import { pushModel } from '../registry/model-push.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { seededRandom } from '../platform/random.ts';
import { evaluateClassifier } from './evaluation.ts';
import type { FederationRecord, FederationTable, RoundRecord, RoundSummary } from './federation-table.ts';
import { readParameters, withParameters, type ParameterLayout } from './parameters.ts';
import { averageNoiseMultiplier, epsilonFromRdp, gaussianSource, nextClipNorm, privateAverage, RDP_ORDERS, sampledGaussianRdp } from './privacy.ts';
import { FEDERATED_ROUND_KIND, serverStateKey, updateKey, type FederationService } from './rounds.ts';
import { decodeFixedPoint, removeDroppedMasks, sumMasked } from './secure-aggregation.ts';
import { aggregate, type ClientWeights, type ServerState } from './strategies.ts';
import { checkUpdate } from './update-file.ts';

const requestSchema = z.strictObject({ federation: z.string().min(1).max(64), round: z.number().int().positive(), attempt: z.number().int().positive() });
type RoundJobRequest = z.infer<typeof requestSchema>;

export interface AggregationDeps {
  table: FederationTable;
  store: ModelRepository;
  service: FederationService;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

function encodeState(state: ServerState): Uint8Array {
  return Buffer.from(JSON.stringify({ round: state.round, vectors: Object.fromEntries(Object.entries(state.vectors).map(([name, values]) => [name, Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64')])) }));
}

function decodeState(bytes: Uint8Array): ServerState {
  const raw = JSON.parse(Buffer.from(bytes).toString('utf8')) as { round: number; vectors: Record<string, string> };
  return {
    round: raw.round,
    vectors: Object.fromEntries(
      Object.entries(raw.vectors).map(([name, base64]) => {
        const buffer = Buffer.from(base64, 'base64');
        return [name, new Float64Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength))];
      }),
    ),
  };
}

/** Updates read at once: S3 latency overlaps, memory stays a few updates above the vectors kept. */
const READ_CONCURRENCY = 8;

/** The aggregation's inputs: the updates whose bytes are still the ones accepted, in client order. */
async function readUpdates(deps: AggregationDeps, federation: FederationRecord, round: RoundRecord, layout: ParameterLayout) {
  const clients = Object.keys(round.updates).sort();
  const checked = new Array<ReturnType<typeof checkUpdate> | undefined>(clients.length);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < clients.length; index = next++) {
      const client = clients[index] as string;
      const bytes = await deps.store.getObjectBytes(updateKey(federation.id, round.round, client));
      checked[index] = bytes
        ? checkUpdate(bytes, { federation: federation.id, round: round.round, client, layout, maxBytes: federation.request.maxUpdateBytes as number, encoding: federation.request.secureAggregation ? 'masked' : 'float' })
        : undefined;
    }
  };
  await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, clients.length) }, worker));
  const weights: ClientWeights[] = [];
  const masked: { client: string; vector: Uint32Array }[] = [];
  const dropped: string[] = [];
  clients.forEach((client, index) => {
    const update = checked[index];
    if (!update || update.fileSha256 !== (round.updates[client] as RoundRecord['updates'][string]).sha256) {
      dropped.push(client);
      return;
    }
    if (update.masked) masked.push({ client, vector: update.masked });
    else weights.push({ client, examples: update.manifest.examples, weights: update.weights as Float64Array });
  });
  return { weights, masked, dropped };
}

/**
 * The seeded normal draws of a round's privacy noise (on the average, and on adaptive clipping's
 * count): a rerun of the step draws the same, so it registers the same version.
 */
export function roundNoise(seed: number, round: number, attempt: number, stream: 'average' | 'count'): () => number {
  const base = (seed ^ Math.imul(round, 0x27d4eb2d) ^ attempt) >>> 0;
  return gaussianSource(seededRandom(stream === 'average' ? base : (base ^ 0x5bd1e995) >>> 0));
}

export async function aggregateRound(deps: AggregationDeps, request: RoundJobRequest, progress: StepContext['progress'] = async () => undefined): Promise<RoundSummary> {
  const federation = await deps.table.getFederation(request.federation);
  const round = await deps.table.getRound(request.federation, request.round);
  if (!federation || !round || round.attempt !== request.attempt) throw new JobStepError(`federation ${request.federation} has no round ${request.round} attempt ${request.attempt}`);
  if (round.state === 'done' && round.summary) return finish(deps, federation, round.summary, { ...(round.rdp ? { rdp: round.rdp } : {}), ...(round.clipNorm !== undefined ? { clipNorm: round.clipNorm } : {}) });
  if (round.state !== 'aggregating') throw new JobStepError(`round ${request.round} of ${request.federation} is ${round.state}, not aggregating`);

  await progress(0, 4, 'reading the updates');
  const global = await deps.store.getManifest(federation.model, round.globalVersion);
  const globalBytes = (await deps.store.getModelBytes(global)).bytes;
  const { layout, values } = readParameters(globalBytes);
  const updates = await readUpdates(deps, federation, round, layout);
  const participants = federation.request.secureAggregation ? Object.keys(round.updates).sort() : updates.weights.map((u) => u.client);
  if (updates.dropped.length) deps.log?.('warn', 'updates changed after they were accepted; left out', { federation: federation.id, round: round.round, clients: updates.dropped });
  if (federation.request.secureAggregation && updates.dropped.length) throw new JobStepError(`round ${round.round}: the updates of ${updates.dropped.join(', ')} changed after they were accepted; the masks no longer cancel`);
  if (!federation.request.secureAggregation && updates.weights.length === 0) throw new JobStepError(`round ${round.round}: no update is left to aggregate`);

  await progress(1, 4, `aggregating ${participants.length} updates (${federation.request.strategy.kind})`);
  const previous = round.round > 1 ? await deps.store.getObjectBytes(serverStateKey(federation.id, round.round - 1)) : undefined;
  const state = previous ? decodeState(previous) : undefined;
  const examples = Object.values(round.updates).reduce((sum, update) => sum + update.examples, 0);
  let average: ((u: readonly ClientWeights[]) => Float64Array) | undefined;
  let inputs = updates.weights;
  let rdp = federation.rdp;
  let epsilon: number | undefined;
  let clip: number | undefined;
  let nextClip: number | undefined;
  if (federation.request.secureAggregation) {
    // Each client sent examples x (its weights - global) masked: the sum over examples is the FedAvg delta.
    const survivors = Object.keys(round.updates).length;
    if (round.dropped?.length && Object.keys(round.reveals ?? {}).length !== survivors) throw new JobStepError(`round ${round.round}: ${Object.keys(round.reveals ?? {}).length} of ${survivors} survivors revealed their seeds; the dropped clients' masks cannot all be taken out`);
    const sum = sumMasked(updates.masked.map((update) => update.vector));
    // After a dropout, the survivors' revealed seeds take the dropped clients' pair masks out.
    const revealed = Object.entries(round.reveals ?? {}).flatMap(([survivor, seeds]) => Object.entries(seeds).map(([dropped, seed]) => ({ survivor, dropped, seed: Buffer.from(seed, 'base64url') })));
    const delta = decodeFixedPoint(removeDroppedMasks(sum, revealed));
    const mean = Float64Array.from(values, (value, i) => value + (delta[i] as number) / examples);
    inputs = [{ client: 'masked-sum', examples, weights: mean }];
    average = () => mean;
  } else if (federation.request.privacy) {
    const privacy = federation.request.privacy;
    if (federation.rdp && federation.rdp.length > 0 && federation.rdp.length !== RDP_ORDERS.length) {
      throw new JobStepError(`federation ${federation.id} accounted its privacy at ${federation.rdp.length} RDP orders; this release uses ${RDP_ORDERS.length}: finish it with the release that started it`);
    }
    const normal = roundNoise(federation.seed, round.round, round.attempt, 'average');
    clip = federation.clipNorm ?? privacy.clip;
    let noiseMultiplier = privacy.noiseMultiplier;
    if (privacy.adaptive) {
      try {
        noiseMultiplier = averageNoiseMultiplier(privacy.noiseMultiplier, privacy.adaptive.countStddev ?? inputs.length / 20);
      } catch (error) {
        throw new JobStepError(`round ${round.round}: ${(error as Error).message}`);
      }
    }
    const privateMean = privateAverage(values, inputs, { clip, noiseMultiplier }, normal);
    if (privacy.adaptive) nextClip = nextClipNorm(clip, privateMean.norms, privacy.adaptive, roundNoise(federation.seed, round.round, round.attempt, 'count')).clip;
    average = () => privateMean.weights;
    const q = Math.min(1, round.selected.length / Math.max(1, federation.clients));
    rdp = RDP_ORDERS.map((alpha, index) => (federation.rdp?.[index] ?? 0) + sampledGaussianRdp(q, privacy.noiseMultiplier, alpha));
    epsilon = epsilonFromRdp(rdp, RDP_ORDERS, privacy.delta).epsilon;
  }
  const result = aggregate(federation.request.strategy, values, inputs, state, average);
  if (result.state) await deps.store.putObjectBytes(serverStateKey(federation.id, round.round), encodeState(result.state), 'application/json');
  const bytes = withParameters(globalBytes, layout, result.weights);

  await progress(2, 4, 'registering the round as a version');
  const version = await registerOnce(deps.store, federation, round, bytes, participants, epsilon, clip);

  let score: { accuracy: number; loss: number } | undefined;
  if (federation.request.evalDataset) {
    await progress(3, 4, `evaluating on ${federation.request.evalDataset}`);
    const dataset = await loadDataset(deps.store, await readDatasetManifest(deps.store, federation.request.evalDataset));
    if (!dataset.labels) throw new BadRequestError(`data set '${federation.request.evalDataset}' has no labels to evaluate the federation on`);
    score = await evaluateClassifier(bytes, dataset);
  }
  const summary: RoundSummary = {
    round: round.round,
    version,
    participants: federation.request.strategy.kind === 'multi-krum' || federation.request.strategy.kind === 'bulyan' ? result.used : participants,
    examples,
    ...(score ? { accuracy: score.accuracy, loss: score.loss } : {}),
    ...(epsilon !== undefined ? { epsilon } : {}),
    ...(clip !== undefined ? { clip } : {}),
    finished: new Date().toISOString(),
  };
  const privacyState = { ...(rdp ? { rdp } : {}), ...(nextClip !== undefined ? { clipNorm: nextClip } : {}) };
  await deps.table.moveRound(federation.id, round.round, round.attempt, 'aggregating', 'done', { summary, ...privacyState });
  await progress(4, 4, 'done');
  return finish(deps, federation, summary, privacyState);
}

/** Records the round on the federation (once) and opens the next round or ends the federation. */
async function finish(deps: AggregationDeps, federation: FederationRecord, summary: RoundSummary, privacyState: { rdp?: number[]; clipNorm?: number }): Promise<RoundSummary> {
  const recorded = await deps.table.recordRound(federation.id, summary, { globalVersion: summary.version, updated: new Date().toISOString(), ...privacyState });
  const current = recorded ?? (await deps.table.getFederation(federation.id));
  if (current && current.state === 'running' && current.round === summary.round && current.globalVersion === summary.version) {
    await deps.service.advance(current, summary.round);
  }
  deps.log?.('info', 'round aggregated', { federation: federation.id, ...summary, participants: summary.participants.length });
  return summary;
}

/** The round's version: found by its lineage when a previous attempt of this step registered it. */
async function registerOnce(store: ModelRepository, federation: FederationRecord, round: RoundRecord, bytes: Uint8Array, participants: string[], epsilon: number | undefined, clip: number | undefined): Promise<string> {
  for (const version of (await store.listVersions(federation.model)).reverse()) {
    const manifest = await store.getManifest(federation.model, version).catch(() => undefined);
    const options = manifest?.lineage?.options as { federation?: string; round?: number; attempt?: number } | undefined;
    if (manifest?.lineage?.method === 'federated' && options?.federation === federation.id && options.round === round.round && options.attempt === round.attempt) return version;
  }
  const privacy = federation.request.privacy;
  const manifest = await pushModel(store, {
    name: federation.model,
    bytes,
    notes: `federation ${federation.id} round ${round.round}${round.round === federation.request.rounds ? ' (the last)' : ''}: ${federation.request.strategy.kind} of ${participants.length} updates; not routed until evaluated and promoted`,
    lineage: {
      sourceVersion: round.globalVersion,
      method: 'federated',
      options: {
        federation: federation.id,
        round: round.round,
        attempt: round.attempt,
        participants,
        strategy: federation.request.strategy,
        secureAggregation: federation.request.secureAggregation,
        ...(privacy && epsilon !== undefined ? { privacy: { clip: clip ?? privacy.clip, noiseMultiplier: privacy.noiseMultiplier, epsilon, delta: privacy.delta, ...(privacy.adaptive ? { adaptive: true } : {}) } } : {}),
      },
    },
  });
  return manifest.version;
}

/** The job kind: one `aggregate` step per closed round. */
export function federatedRoundKind(deps: () => AggregationDeps): JobKind {
  return {
    name: FEDERATED_ROUND_KIND,
    parseRequest(body) {
      const parsed = requestSchema.safeParse(body);
      if (!parsed.success) throw new BadRequestError(`invalid federated round job: ${z.prettifyError(parsed.error)}`);
      return parsed.data as Json;
    },
    plan: () => [{ name: 'aggregate', handler: 'aggregate' }],
    steps: {
      async aggregate(context) {
        const summary = await aggregateRound(deps(), requestSchema.parse(context.job.request), context.progress);
        return { result: summary as unknown as Json };
      },
    },
    maxAttempts: 3,
  };
}
