/**
 * The data owner's side: local training with the training engine on the owner's own rows, the
 * update file (or, under secure aggregation, its masked fixed-point delta), and the loop that asks
 * the federation for a task, downloads the global model by its pre-signed URL, trains, uploads and
 * reports, round after round. The rows never leave the process. `trainLocalUpdate` is the library
 * entry point for Node code with its own transport; `FederationClient` speaks the HTTP API.
 */
import { buildTrainingGraph } from '../train/training-graph.ts';
import { TrainingSession } from '../train/training-session.ts';
import { runTrainingLoop, type TrainingData } from '../train/loop.ts';
import { readParameters } from './parameters.ts';
import type { ClientTask, SubmitAnswer, TaskAnswer } from './rounds.ts';
import { encodeFixedPoint, maskUpdate, revealSeeds, type MaskingKeys } from './secure-aggregation.ts';
import { encodeMaskedUpdate, encodeUpdate } from './update-file.ts';
import type { FederationRecord, RoundRecord } from './federation-table.ts';

/** What a malicious client does to its delta (the simulator's robustness tests). */
export type Attack = { kind: 'sign-flip'; scale: number } | { kind: 'random'; std: number; seed: number } | { kind: 'scale'; factor: number };

export interface LocalTraining {
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** FedProx's proximal mu (0: plain local SGD). */
  mu: number;
  seed: number;
}

function rowCount(data: TrainingData): number {
  const first = data.columns[0];
  return first ? (first.data as ArrayLike<unknown>).length / first.rowSize : 0;
}

/** Trains the global model on local rows; returns the trained parameters in the global layout. */
export async function trainLocally(globalBytes: Uint8Array, data: TrainingData, options: LocalTraining): Promise<{ weights: Float64Array; global: Float64Array; examples: number }> {
  const graph = buildTrainingGraph(globalBytes, { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'sgd' }, ...(options.mu > 0 ? { proximal: { mu: options.mu } } : {}) });
  const session = await TrainingSession.create(graph, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  try {
    const result = await runTrainingLoop(session, globalBytes, data, { epochs: options.epochs, batchSize: options.batchSize, learningRate: options.learningRate, schedule: { kind: 'constant' }, seed: options.seed, validationFraction: 0 });
    return { weights: readParameters(result.model).values, global: readParameters(globalBytes).values, examples: rowCount(data) };
  } finally {
    await session.release();
  }
}

/** A malicious client's weights: the delta from the global changed by the attack. */
export function attacked(global: Float64Array, weights: Float64Array, attack: Attack): Float64Array {
  let state = attack.kind === 'random' ? attack.seed >>> 0 : 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return 1 - ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Float64Array.from(weights, (value, i) => {
    const g = global[i] as number;
    if (attack.kind === 'sign-flip') return g - attack.scale * (value - g);
    if (attack.kind === 'scale') return g + attack.factor * (value - g);
    return g + attack.std * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  });
}

export interface UpdateOptions {
  attack?: Attack | undefined;
  /** Secure aggregation: this client's masking keys (its public key was given at join). */
  keys?: MaskingKeys | undefined;
}

/**
 * The library entry point: trains on the task's terms and returns the update file to upload to
 * the task's `updateUrl` (masked when the task asks for secure aggregation).
 */
export async function trainLocalUpdate(task: Pick<ClientTask, 'federation' | 'round' | 'local' | 'mu' | 'secureAggregation'>, client: string, globalBytes: Uint8Array, data: TrainingData, options: UpdateOptions = {}): Promise<Uint8Array> {
  const trained = await trainLocally(globalBytes, data, { ...task.local, mu: task.mu, seed: (task.round * 7919) >>> 0 });
  const weights = options.attack ? attacked(trained.global, trained.weights, options.attack) : trained.weights;
  const identity = { federation: task.federation, round: task.round, client, examples: trained.examples };
  if (task.secureAggregation) {
    if (!options.keys) throw new Error('this round uses secure aggregation: the client needs the masking keys it joined with');
    const scaled = Float64Array.from(weights, (value, i) => trained.examples * (value - (trained.global[i] as number)));
    const masked = maskUpdate(client, options.keys, encodeFixedPoint(scaled), task.secureAggregation.cohort, task.secureAggregation.context);
    return encodeMaskedUpdate(identity, masked);
  }
  return encodeUpdate(identity, readParameters(globalBytes).layout, weights);
}

export class FederationApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'FederationApiError';
    this.status = status;
  }
}

export interface FederationStatus {
  federation: FederationRecord;
  round?: RoundRecord;
}

/** The federation API over HTTP, with the caller's fetch (signed, authorised, or plain locally). */
export class FederationClient {
  private readonly baseUrl: string;
  private readonly fetch: typeof fetch;

  constructor(baseUrl: string, fetchImpl: typeof fetch = fetch) {
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.fetch = fetchImpl;
  }

  private async call<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
    const response = await this.fetch(`${this.baseUrl}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { 'x-mass-client-token': token } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    if (!response.ok) {
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: the text as it came
      }
      throw new FederationApiError(response.status, `${method} ${path}: ${response.status} ${message}`);
    }
    return JSON.parse(text) as T;
  }

  async create(request: unknown): Promise<FederationRecord> {
    return (await this.call<FederationStatus>('POST', '/v2/federations', request)).federation;
  }

  status(id: string): Promise<FederationStatus> {
    return this.call('GET', `/v2/federations/${encodeURIComponent(id)}`);
  }

  join(id: string, publicKey?: string): Promise<{ federation: string; client: string; token: string }> {
    return this.call('POST', `/v2/federations/${encodeURIComponent(id)}/clients`, publicKey ? { publicKey } : {});
  }

  task(id: string, client: string, token: string): Promise<TaskAnswer> {
    return this.call('GET', `/v2/federations/${encodeURIComponent(id)}/clients/${encodeURIComponent(client)}/task`, undefined, token);
  }

  submit(id: string, round: number, client: string, token: string): Promise<SubmitAnswer> {
    return this.call('POST', `/v2/federations/${encodeURIComponent(id)}/rounds/${round}/updates/${encodeURIComponent(client)}`, {}, token);
  }

  /** A survivor's pair seeds with the clients that dropped out of a secure-aggregation round. */
  reveal(id: string, round: number, client: string, token: string, seeds: Record<string, string>): Promise<SubmitAnswer> {
    return this.call('POST', `/v2/federations/${encodeURIComponent(id)}/rounds/${round}/updates/${encodeURIComponent(client)}`, { unmask: seeds }, token);
  }

  /** Downloads the task's global model and uploads the update by the task's pre-signed URLs. */
  async download(url: string): Promise<Uint8Array> {
    const response = await this.fetch(url);
    if (!response.ok) throw new FederationApiError(response.status, `downloading the global model: ${response.status} ${await response.text()}`);
    return new Uint8Array(await response.arrayBuffer());
  }

  async upload(url: string, bytes: Uint8Array): Promise<void> {
    const response = await this.fetch(url, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
    if (!response.ok) throw new FederationApiError(response.status, `uploading the update: ${response.status} ${await response.text()}`);
  }
}

export interface ParticipateOptions extends UpdateOptions {
  federation: string;
  client: string;
  token: string;
  data: TrainingData;
  /** Stop after this many rounds trained (default: until the federation ends). */
  maxRounds?: number;
  onRound?: (task: ClientTask, answer: SubmitAnswer) => void;
  sleep?: (ms: number) => Promise<void>;
  signal?: AbortSignal;
}

/** `mass federation join`'s loop: train every round this client is selected for, until the federation ends. */
export async function participate(client: FederationClient, options: ParticipateOptions): Promise<{ state: string; rounds: number }> {
  const sleep = options.sleep ?? ((ms: number) => new Promise((resolve) => setTimeout(resolve, ms)));
  let rounds = 0;
  const masked = new Map<string, NonNullable<ClientTask['secureAggregation']>>();
  // After its last masked round a client stays until that round is over: a dropout may need its seeds.
  let lingering: number | undefined;
  while (!options.signal?.aborted) {
    const task = await client.task(options.federation, options.client, options.token);
    if (lingering !== undefined && task.state !== 'unmask' && !(task.state === 'wait' && task.round <= lingering)) return { state: 'stopped', rounds };
    if (task.state === 'wait') {
      await sleep(task.retryAfterSeconds * 1000);
      continue;
    }
    if (task.state === 'unmask') {
      if (!options.keys) throw new Error('the round asks for the seeds of secure aggregation: the client needs the masking keys it joined with');
      // The cohort this client masked for, not the one the answer names: a server cannot add strangers.
      const own = masked.get(`${task.round}/${task.attempt}`);
      if (!own) throw new Error(`round ${task.round} attempt ${task.attempt} asks for seeds this client never masked with`);
      await client.reveal(options.federation, task.round, options.client, options.token, revealSeeds(options.client, options.keys, own.cohort, task.dropped, own.context));
      continue;
    }
    if (task.state !== 'train') return { state: task.state, rounds };
    if (task.secureAggregation) masked.set(`${task.round}/${task.attempt}`, task.secureAggregation);
    const globalBytes = await client.download(task.modelUrl);
    const update = await trainLocalUpdate(task, options.client, globalBytes, options.data, options);
    await client.upload(task.updateUrl, update);
    const answer = await client.submit(options.federation, task.round, options.client, options.token);
    rounds++;
    options.onRound?.(task, answer);
    if (options.maxRounds !== undefined && rounds >= options.maxRounds) {
      if (!task.secureAggregation) return { state: 'stopped', rounds };
      lingering = task.round;
    }
  }
  return { state: 'aborted', rounds };
}
