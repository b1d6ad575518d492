/**
 * Federations and their rounds, with no server that stays up: every step is a request, a delayed
 * message or a job step acting on the records in DynamoDB (federation-table.ts) and the objects in
 * S3. A round opens with the current global version and a seeded selection of the joined clients;
 * each selected client gets a task with pre-signed URLs for the model and for its own update; the
 * round closes when every selected client has delivered or at its deadline (a delayed SQS message),
 * and is then aggregated by a step on the job runtime (aggregation.ts). Late updates are refused;
 * a round with too few updates is retried with a new selection, or the federation pauses with the
 * reason.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConflictError, HttpError, NotFoundError } from '../platform/errors.ts';
import type { SubmitRequest } from '../jobs/runtime.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName } from '../artifacts/names.ts';
import { UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import { seededPermutation } from '../train/loop.ts';
import { buildTrainingGraph, TrainingGraphError } from '../train/training-graph.ts';
import type { ClientRecord, FederationRecord, FederationTable, RoundRecord } from './federation-table.ts';
import { readParameters } from './parameters.ts';
import type { Presigner } from './presign.ts';
import { parseFederationRequest, proximalMu, type FederationRequest } from './request.ts';
import { checkUpdate, ForbiddenError } from './update-file.ts';

export const FEDERATED_ROUND_KIND = 'federated-round';
/** SQS's longest message delay: a later deadline is reached by sending the message on again. */
const MAX_DELAY_SECONDS = 900;

export class UnauthorizedError extends HttpError {
  constructor(message: string) {
    super(401, message);
    this.name = 'UnauthorizedError';
  }
}

export interface DeadlineMessage {
  federation: string;
  round: number;
  attempt: number;
}

/** Delayed messages that come back at a round's deadline (SQS DelaySeconds in AWS). */
export interface DeadlineQueue {
  schedule(message: DeadlineMessage, delaySeconds: number): Promise<void>;
}

export interface FederationServiceDeps {
  table: FederationTable;
  store: ModelRepository;
  presigner: Presigner;
  deadlines: DeadlineQueue;
  /** Submits the aggregation job (the job runtime's submit). */
  submitJob: (submission: SubmitRequest) => Promise<unknown>;
  now?: () => number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export const updateKey = (federation: string, round: number, client: string) => `federated/${federation}/rounds/${round}/updates/${client}`;
/** What a round's masks are derived for: one context per attempt, so no mask is used twice. */
export const maskingContext = (federation: string, round: Pick<RoundRecord, 'round' | 'attempt'>) => `${federation}/${round.round}/${round.attempt}`;
export const serverStateKey = (federation: string, round: number) => `federated/${federation}/server-state/${round}.json`;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** What a selected client is asked to do in a round. */
export interface ClientTask {
  state: 'train';
  federation: string;
  round: number;
  attempt: number;
  model: string;
  globalVersion: string;
  local: FederationRequest['local'];
  mu: number;
  modelUrl: string;
  updateUrl: string;
  updateKey: string;
  deadline: string;
  secureAggregation?: { cohort: { client: string; publicKey: string }[]; context: string };
}

/** Secure aggregation after a dropout: a survivor is asked for its pair seeds with the dropped clients. */
export interface UnmaskTask {
  state: 'unmask';
  federation: string;
  round: number;
  attempt: number;
  dropped: string[];
  /** The cohort the survivor masked for (the dropped members' public keys among them). */
  cohort: { client: string; publicKey: string }[];
  context: string;
  deadline: string;
}

export type TaskAnswer = ClientTask | UnmaskTask | { state: 'wait'; round: number; retryAfterSeconds: number } | { state: 'completed' | 'paused' | 'failed'; globalVersion: string; reason?: string };

export interface SubmitAnswer {
  federation: string;
  round: number;
  client: string;
  duplicate: boolean;
  received: number;
  selected: number;
}

export class FederationService {
  private readonly deps: FederationServiceDeps;
  private readonly now: () => number;

  constructor(deps: FederationServiceDeps) {
    this.deps = deps;
    this.now = deps.now ?? Date.now;
  }

  private log(level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown> = {}): void {
    this.deps.log?.(level, message, fields);
  }

  async get(id: string): Promise<FederationRecord> {
    assertValidName(id, 'job id');
    const record = await this.deps.table.getFederation(id);
    if (!record) throw new NotFoundError(`no federation '${id}'`);
    return record;
  }

  async getRound(id: string, round: number): Promise<RoundRecord> {
    const record = await this.deps.table.getRound(id, round);
    if (!record) throw new NotFoundError(`federation '${id}' has no round ${round}`);
    return record;
  }

  /** Starts a federation from a model version; the first round opens once enough clients joined. */
  async create(body: unknown): Promise<FederationRecord> {
    const request = parseFederationRequest(body);
    const versions = await this.deps.store.listVersions(request.model);
    const version = request.version ?? versions.at(-1);
    if (!version || !versions.includes(version)) throw new NotFoundError(request.version ? `model '${request.model}' has no version '${request.version}'` : `model '${request.model}' has no versions`);
    const manifest = await this.deps.store.getManifest(request.model, version);
    const { bytes } = await this.deps.store.getModelBytes(manifest);
    try {
      // Refused now, with the reason, rather than by every client later.
      buildTrainingGraph(bytes, { loss: { kind: 'cross-entropy' }, optimizer: { kind: 'sgd' }, ...(proximalMu(request.strategy) > 0 ? { proximal: { mu: proximalMu(request.strategy) } } : {}) });
    } catch (error) {
      if (error instanceof TrainingGraphError) throw new UnsupportedModelError(`model '${request.model}' version ${version} cannot train on the clients: ${error.message}`);
      throw error;
    }
    const { layout } = readParameters(bytes);
    const payloadBytes = layout.entries.reduce((sum, entry) => sum + entry.length * (entry.dtype === 'float64' ? 8 : 4), 0);
    const stamp = new Date(this.now()).toISOString();
    const record: FederationRecord = {
      id: `f-${randomBytes(10).toString('hex')}`,
      model: request.model,
      request: { ...request, maxUpdateBytes: request.maxUpdateBytes ?? payloadBytes + 1024 * 1024 },
      state: 'waiting',
      globalVersion: version,
      sourceVersion: version,
      round: 0,
      clients: 0,
      seed: request.seed ?? randomBytes(4).readUInt32LE(0),
      history: [],
      created: stamp,
      updated: stamp,
    };
    if (request.privacy) record.rdp = [];
    await this.deps.table.createFederation(record);
    this.log('info', 'federation created', { federation: record.id, model: record.model, version });
    return record;
  }

  /** A data owner joins: a client id and a token (shown once; only its sha256 is kept). */
  async join(id: string, body: { publicKey?: string | undefined } = {}): Promise<{ federation: string; client: string; token: string }> {
    const federation = await this.get(id);
    if (federation.state === 'completed' || federation.state === 'failed') throw new ConflictError(`federation '${id}' is ${federation.state}; it takes no more clients`);
    if (federation.request.secureAggregation && !body.publicKey) throw new HttpError(400, `federation '${id}' uses secure aggregation: join with a masking public key`);
    if (body.publicKey !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(body.publicKey)) throw new HttpError(400, 'publicKey must be a raw X25519 public key, 32 bytes in base64url');
    const client = `c-${randomBytes(8).toString('hex')}`;
    const token = randomBytes(32).toString('base64url');
    const record: ClientRecord = { client, tokenSha256: sha256(token), ...(body.publicKey ? { publicKey: body.publicKey } : {}), joined: new Date(this.now()).toISOString() };
    const updated = await this.deps.table.addClient(id, record);
    if (!updated) throw new ConflictError(`client id ${client} is taken; join again`);
    this.log('info', 'client joined', { federation: id, client, clients: updated.clients });
    await this.maybeStart(updated);
    return { federation: id, client, token };
  }

  private async authenticate(id: string, client: string, token: string | undefined): Promise<ClientRecord> {
    if (!token) throw new UnauthorizedError('a client token is required (header x-mass-client-token, as join returned it)');
    assertValidName(client, 'job id');
    const record = await this.deps.table.getClient(id, client);
    const given = Buffer.from(sha256(token), 'hex');
    if (!record || !timingSafeEqual(given, Buffer.from(record.tokenSha256, 'hex'))) throw new UnauthorizedError(`the token is not client ${client}'s in federation '${id}'`);
    return record;
  }

  private selectionSize(federation: FederationRecord, joined: number): number {
    const { clientsPerRound, clientFraction } = federation.request;
    return clientsPerRound ?? Math.max(federation.request.minClients ?? 1, Math.ceil((clientFraction as number) * joined));
  }

  private minimum(federation: FederationRecord, selected: number): number {
    // A masked sum of one client is that client's update: secure aggregation needs two survivors.
    if (federation.request.secureAggregation) return Math.min(selected, Math.max(2, federation.request.minClients ?? Math.ceil(selected / 2)));
    const strategy = federation.request.strategy;
    // Bulyan refuses fewer than 4f + 3 updates: a round closes with no fewer.
    const floor = strategy.kind === 'bulyan' ? 4 * strategy.byzantine + 3 : 1;
    return Math.min(selected, federation.request.minClients ?? Math.max(floor, Math.ceil(selected / 2)));
  }

  private async maybeStart(federation: FederationRecord): Promise<void> {
    if (federation.state !== 'waiting' || federation.clients < this.selectionSize(federation, federation.clients)) return;
    await this.openRound(federation, 1, 1);
    await this.deps.table.setFederation(federation.id, ['waiting'], { state: 'running', round: 1, updated: new Date(this.now()).toISOString() });
  }

  /** Opens an attempt of a round with a seeded selection of the clients joined by now. */
  private async openRound(federation: FederationRecord, round: number, attempt: number): Promise<RoundRecord | undefined> {
    const clients = (await this.deps.table.listClients(federation.id)).map((c) => c.client).sort();
    const count = Math.min(clients.length, this.selectionSize(federation, clients.length));
    const order = seededPermutation(clients.length, (federation.seed ^ Math.imul(round, 0x9e3779b1) ^ Math.imul(attempt, 0x85ebca6b)) >>> 0);
    const selected = Array.from(order.subarray(0, count), (index) => clients[index] as string).sort();
    const stamp = new Date(this.now()).toISOString();
    const record: RoundRecord = {
      federation: federation.id,
      round,
      attempt,
      state: 'open',
      globalVersion: federation.globalVersion,
      selected,
      deadline: this.now() + federation.request.roundTimeoutSeconds * 1000,
      updates: {},
      received: 0,
      opened: stamp,
      updated: stamp,
    };
    if (!(await this.deps.table.openRound(record))) return undefined;
    await this.deps.deadlines.schedule({ federation: federation.id, round, attempt }, Math.min(MAX_DELAY_SECONDS, federation.request.roundTimeoutSeconds));
    this.log('info', 'round opened', { federation: federation.id, round, attempt, selected: selected.length, globalVersion: federation.globalVersion });
    return record;
  }

  /** The client's task in the open round, or what to do instead (wait, or stop). */
  async task(id: string, client: string, token: string | undefined): Promise<TaskAnswer> {
    const federation = await this.get(id);
    await this.authenticate(id, client, token);
    if (federation.state === 'completed' || federation.state === 'paused' || federation.state === 'failed') {
      return { state: federation.state, globalVersion: federation.globalVersion, ...(federation.reason ? { reason: federation.reason } : {}) };
    }
    const round = federation.round > 0 ? await this.deps.table.getRound(id, federation.round) : undefined;
    if (round?.state === 'unmasking' && round.updates[client] && !round.reveals?.[client]) {
      return { state: 'unmask', federation: id, round: round.round, attempt: round.attempt, dropped: round.dropped ?? [], cohort: await this.cohort(id, round), context: maskingContext(id, round), deadline: new Date(round.deadline).toISOString() };
    }
    if (!round || round.state !== 'open' || !round.selected.includes(client) || round.updates[client]) {
      return { state: 'wait', round: federation.round, retryAfterSeconds: 2 };
    }
    const secondsLeft = Math.max(1, Math.ceil((round.deadline - this.now()) / 1000));
    const expires = Math.min(7 * 86_400, secondsLeft + 60);
    const key = updateKey(id, round.round, client);
    const task: ClientTask = {
      state: 'train',
      federation: id,
      round: round.round,
      attempt: round.attempt,
      model: federation.model,
      globalVersion: round.globalVersion,
      local: federation.request.local,
      mu: proximalMu(federation.request.strategy),
      modelUrl: await this.deps.presigner.url('GET', `models/${federation.model}/${round.globalVersion}/model.onnx`, expires),
      updateUrl: await this.deps.presigner.url('PUT', key, expires),
      updateKey: key,
      deadline: new Date(round.deadline).toISOString(),
    };
    if (federation.request.secureAggregation) task.secureAggregation = { cohort: await this.cohort(id, round), context: maskingContext(id, round) };
    return task;
  }

  private async cohort(id: string, round: RoundRecord): Promise<{ client: string; publicKey: string }[]> {
    const members = await Promise.all(round.selected.map((member) => this.deps.table.getClient(id, member)));
    return members.map((member) => ({ client: member?.client as string, publicKey: member?.publicKey as string }));
  }

  /**
   * A survivor's pair seeds with the dropped clients (secure aggregation after a dropout): checked
   * to be exactly one 32-byte seed per dropped client and recorded once; the same seeds again are
   * answered the same. When every survivor has revealed, the round goes to aggregation.
   */
  async reveal(id: string, roundNumber: number, client: string, token: string | undefined, seeds: Record<string, string>): Promise<SubmitAnswer> {
    const federation = await this.get(id);
    await this.authenticate(id, client, token);
    const round = await this.getRound(id, roundNumber);
    const answer = (current: RoundRecord, duplicate: boolean): SubmitAnswer => ({ federation: id, round: roundNumber, client, duplicate, received: current.revealed ?? 0, selected: Object.keys(current.updates).length });
    const known = round.reveals?.[client];
    if (known) {
      if (JSON.stringify(Object.entries(known).sort()) === JSON.stringify(Object.entries(seeds).sort())) return answer(round, true);
      throw new ConflictError(`client ${client} already revealed its seeds for round ${roundNumber}`);
    }
    if (round.state !== 'unmasking' || federation.round !== roundNumber) throw new ConflictError(`round ${roundNumber} of federation '${id}' is ${round.state}, not waiting for seeds`);
    if (!round.updates[client]) throw new ForbiddenError(`client ${client} delivered no update to round ${roundNumber}; only survivors reveal seeds`);
    const dropped = [...(round.dropped ?? [])].sort();
    const given = Object.keys(seeds).sort();
    if (JSON.stringify(given) !== JSON.stringify(dropped)) throw new HttpError(400, `reveal exactly one seed for each dropped client (${dropped.join(', ')}); got ${given.join(', ') || 'none'}`);
    for (const [member, seed] of Object.entries(seeds)) if (!/^[A-Za-z0-9_-]{43}$/.test(seed)) throw new HttpError(400, `the seed for ${member} must be 32 bytes, base64url`);
    const accepted = await this.deps.table.acceptReveal(id, roundNumber, round.attempt, client, seeds);
    if (!accepted) {
      const now = await this.getRound(id, roundNumber);
      if (now.reveals?.[client] && JSON.stringify(Object.entries(now.reveals[client]).sort()) === JSON.stringify(Object.entries(seeds).sort())) return answer(now, true);
      throw new ConflictError(`round ${roundNumber} of federation '${id}' stopped waiting for seeds; they came too late`);
    }
    this.log('info', 'seeds revealed', { federation: id, round: roundNumber, client, revealed: accepted.revealed });
    if ((accepted.revealed ?? 0) >= Object.keys(accepted.updates).length) await this.close(federation, accepted);
    return answer(accepted, false);
  }

  /**
   * The client says its update is in the bucket: it is read, checked against the global model and
   * recorded once. The same update again is answered the same (idempotent); another update for the
   * same round is a 409, as is any update after the round closed.
   */
  async submit(id: string, roundNumber: number, client: string, token: string | undefined): Promise<SubmitAnswer> {
    const federation = await this.get(id);
    await this.authenticate(id, client, token);
    const round = await this.getRound(id, roundNumber);
    const key = updateKey(id, roundNumber, client);
    const answer = (current: RoundRecord, duplicate: boolean): SubmitAnswer => ({ federation: id, round: roundNumber, client, duplicate, received: current.received, selected: current.selected.length });
    const known = round.updates[client];
    if (known) {
      const bytes = await this.deps.store.getObjectBytes(key);
      if (bytes && createHash('sha256').update(bytes).digest('hex') === known.sha256) return answer(round, true);
      throw new ConflictError(`client ${client} already delivered an update for round ${roundNumber}; updates are immutable`);
    }
    if (round.state !== 'open' || federation.round !== roundNumber) throw new ConflictError(`round ${roundNumber} of federation '${id}' is closed (${round.state}); the update came too late`);
    if (!round.selected.includes(client)) throw new ForbiddenError(`client ${client} is not selected for round ${roundNumber}`);
    const bytes = await this.deps.store.getObjectBytes(key);
    if (!bytes) throw new HttpError(400, `no update at ${key}: upload it with the task's updateUrl first`);
    const { layout } = readParameters((await this.deps.store.getModelBytes(await this.deps.store.getManifest(federation.model, round.globalVersion))).bytes);
    const checked = checkUpdate(bytes, { federation: id, round: roundNumber, client, layout, maxBytes: federation.request.maxUpdateBytes as number, encoding: federation.request.secureAggregation ? 'masked' : 'float' });
    const accepted = await this.deps.table.acceptUpdate(id, roundNumber, round.attempt, client, { sha256: checked.fileSha256, examples: checked.manifest.examples, accepted: new Date(this.now()).toISOString() });
    if (!accepted) {
      const now = await this.getRound(id, roundNumber);
      if (now.updates[client]?.sha256 === checked.fileSha256) return answer(now, true);
      if (now.updates[client]) throw new ConflictError(`client ${client} already delivered an update for round ${roundNumber}; updates are immutable`);
      throw new ConflictError(`round ${roundNumber} of federation '${id}' closed while the update was checked; it came too late`);
    }
    this.log('info', 'update accepted', { federation: id, round: roundNumber, client, received: accepted.received, selected: accepted.selected.length });
    if (accepted.received >= accepted.selected.length) await this.close(federation, accepted);
    return answer(accepted, false);
  }

  /** Ends collection and hands the round to the aggregation job (idempotent by its key). */
  private async close(federation: FederationRecord, round: RoundRecord): Promise<void> {
    const job = `${federation.id}.r${round.round}.a${round.attempt}`;
    const moved = round.state === 'aggregating' ? round : await this.deps.table.moveRound(federation.id, round.round, round.attempt, round.state === 'unmasking' ? 'unmasking' : 'open', 'aggregating', { job });
    if (!moved) return;
    await this.deps.submitJob({ kind: FEDERATED_ROUND_KIND, key: job, request: { federation: federation.id, round: round.round, attempt: round.attempt }, parent: { model: federation.model, version: round.globalVersion } });
    this.log('info', 'round closed for aggregation', { federation: federation.id, round: round.round, received: moved.received });
  }

  /** A round's deadline message: close it, retry it, or pause the federation. */
  async deadline(message: DeadlineMessage): Promise<'not-due' | 'closed' | 'unmasking' | 'retried' | 'paused' | 'nothing'> {
    const federation = await this.deps.table.getFederation(message.federation);
    const round = await this.deps.table.getRound(message.federation, message.round);
    if (!federation || !round || round.attempt !== message.attempt) return 'nothing';
    if (round.state === 'aggregating') {
      await this.close(federation, round); // a close that died before its job was submitted
      return 'closed';
    }
    if (round.state !== 'open' && round.state !== 'unmasking') return 'nothing';
    const left = round.deadline - this.now();
    if (left > 0) {
      await this.deps.deadlines.schedule(message, Math.min(MAX_DELAY_SECONDS, Math.ceil(left / 1000)));
      return 'not-due';
    }
    const minimum = this.minimum(federation, round.selected.length);
    let reason: string;
    if (round.state === 'unmasking') {
      const survivors = Object.keys(round.updates).length;
      reason = `round ${round.round} attempt ${round.attempt}: ${round.revealed ?? 0} of ${survivors} survivors revealed their seeds with the ${round.dropped?.length ?? 0} dropped clients before the deadline; all are needed to unmask the sum`;
    } else if (round.received >= minimum && federation.request.secureAggregation && round.received < round.selected.length) {
      // Masks of the clients that dropped are still in the sum: the survivors are asked for their seeds with them.
      const dropped = round.selected.filter((client) => !round.updates[client]);
      const deadline = this.now() + federation.request.roundTimeoutSeconds * 1000;
      if (!(await this.deps.table.moveRound(federation.id, round.round, round.attempt, 'open', 'unmasking', { dropped, reveals: {}, revealed: 0, deadline }))) return 'nothing';
      await this.deps.deadlines.schedule(message, Math.min(MAX_DELAY_SECONDS, federation.request.roundTimeoutSeconds));
      this.log('info', 'round unmasking after dropouts', { federation: federation.id, round: round.round, attempt: round.attempt, dropped: dropped.length });
      return 'unmasking';
    } else if (round.received >= minimum) {
      await this.close(federation, round);
      return 'closed';
    } else {
      reason = `round ${round.round} attempt ${round.attempt}: ${round.received} of ${round.selected.length} selected clients delivered an update before the deadline; ${minimum} needed`;
    }
    if (!(await this.deps.table.moveRound(federation.id, round.round, round.attempt, round.state, 'timed-out', { reason }))) return 'nothing';
    this.log('warn', 'round timed out', { federation: federation.id, round: round.round, attempt: round.attempt, received: round.received, minimum });
    if (round.attempt <= federation.request.maxRetries) {
      await this.openRound(federation, round.round, round.attempt + 1);
      return 'retried';
    }
    await this.deps.table.setFederation(federation.id, ['running'], { state: 'paused', reason: `${reason} (after ${round.attempt} attempts); resume it when enough clients are online`, updated: new Date(this.now()).toISOString() });
    return 'paused';
  }

  /** A paused federation tries its current round again, with a new selection. */
  async resume(id: string): Promise<FederationRecord> {
    const federation = await this.get(id);
    if (federation.state !== 'paused') throw new ConflictError(`federation '${id}' is ${federation.state}, not paused`);
    const round = await this.getRound(id, federation.round);
    const resumed = await this.deps.table.setFederation(id, ['paused'], { state: 'running', reason: '', updated: new Date(this.now()).toISOString() });
    if (!resumed) throw new ConflictError(`federation '${id}' changed while resuming; read it again`);
    await this.openRound(resumed, round.round, round.attempt + 1);
    return resumed;
  }

  /** After a round's aggregation (the federation as recorded, with the new global version): the next round, or the federation's end. */
  async advance(federation: FederationRecord, finishedRound: number): Promise<void> {
    if (finishedRound < federation.request.rounds) {
      await this.openRound(federation, finishedRound + 1, 1);
      await this.deps.table.setFederation(federation.id, ['running'], { round: finishedRound + 1, updated: new Date(this.now()).toISOString() }, finishedRound);
    } else {
      await this.deps.table.setFederation(federation.id, ['running'], { state: 'completed', updated: new Date(this.now()).toISOString() }, finishedRound);
    }
  }
}
