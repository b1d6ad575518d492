import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { isConditionFailure } from '../aws/errors.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../platform/errors.ts';
import type { LazyClient } from '../aws/lazy-clients.ts';
import { NAME_PATTERN } from '../artifacts/names.ts';
import { evaluateMetrics, parseStudyConfig, Study, type StudyConfig } from './study.ts';
import type { Trial, TrialState } from './trial.ts';

const docSdk = () => import('../aws/sdk/dynamodb.ts');

/**
 * Studies and their trials in the registry table, so any number of workers (Lambda trial workers,
 * the container worker) run one study with no server to keep. Changed only by conditional writes and
 * atomic counters:
 *   STUDY#<id> / STUDY              the configuration (as JSON, so every value comes back exactly) and created
 *   STUDY#<id> / COUNTER            next: the next trial number (atomic ADD, never reused);
 *                                   issued: trials that count against the budget (ADD under a condition)
 *   STUDY#<id> / TRIAL#<number, 12> one trial: params, state, worker, lease, intermediate values by step
 * A worker asks: the counter gives it a number and a place in the budget in one conditional update,
 * the study rebuilt from the stored trials proposes that number's configuration (samplers keep no
 * state), and a put on the condition that no trial has that number records it.
 */
export interface StoredTrial extends Trial {
  worker: string;
  /** Epoch milliseconds after which a running trial whose worker stopped reporting is failed. */
  leaseUntil: number;
}

export interface StudyTableOptions {
  /** Milliseconds a worker holds a trial between two of its calls (ask, report). */
  leaseMs?: number;
  now?: () => number;
}

export interface StudyRecord {
  id: string;
  config: StudyConfig;
  created: string;
  /** Epoch milliseconds after which no trial starts (a time budget). */
  deadline?: number;
  extra?: Record<string, unknown>;
  /** The job running the study. */
  job?: string;
  /** Written when the study ended. */
  outcome?: { report: string; reportHtml: string; registered?: { model: string; version: string } };
}

const ANNOTATIONS = ['job', 'outcome'] as const;

const pad = (n: number) => String(n).padStart(12, '0');
/** The active studies' list: one item per study whose job has not ended. */
const ACTIVE_KEY = 'STUDIES';
const studyKey = (id: string) => `STUDY#${id}`;

export class StudyTable {
  readonly tableName: string;
  private readonly client: LazyClient<DynamoDBClient>;
  /** Milliseconds a worker holds a trial between two of its calls (ask, report, renew). */
  readonly leaseMs: number;
  private readonly now: () => number;
  private docClient: Promise<DynamoDBDocumentClient> | undefined;

  constructor(client: DynamoDBClient | LazyClient<DynamoDBClient>, tableName: string, options: StudyTableOptions = {}) {
    this.client = typeof client === 'function' ? client : () => Promise.resolve(client);
    this.tableName = tableName;
    this.leaseMs = options.leaseMs ?? 15 * 60 * 1000;
    this.now = options.now ?? Date.now;
  }

  private doc(): Promise<DynamoDBDocumentClient> {
    this.docClient ??= Promise.all([this.client(), docSdk()]).then(([client, { DynamoDBDocumentClient }]) =>
      DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } }),
    );
    return this.docClient;
  }

  /**
   * Records a new study; its configuration is checked first, and an id already taken is a conflict.
   * `extra` (the objective, the job that runs it) is kept beside the configuration as JSON. The study
   * joins the active list first, so the scheduled sweep finds every study that may have trials.
   */
  async createStudy(id: string, input: unknown, extra?: Record<string, unknown>): Promise<StudyConfig> {
    if (!NAME_PATTERN.test(id)) throw new BadRequestError(`study id '${id}' must match [a-z0-9][a-z0-9._-]{0,63}`);
    const config = parseStudyConfig(input);
    const { PutCommand } = await docSdk();
    const created = this.now();
    await (await this.doc()).send(new PutCommand({ TableName: this.tableName, Item: { pk: ACTIVE_KEY, sk: `ACTIVE#${id}`, id } }));
    try {
      await (await this.doc()).send(
        new PutCommand({
          TableName: this.tableName,
          Item: {
            pk: studyKey(id),
            sk: 'STUDY',
            id,
            config: JSON.stringify(config),
            created: new Date(created).toISOString(),
            ...(config.timeBudgetSeconds !== undefined ? { deadline: created + config.timeBudgetSeconds * 1000 } : {}),
            ...(extra ? { extra: JSON.stringify(extra) } : {}),
          },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) throw new ConflictError(`study '${id}' already exists`);
      throw error;
    }
    return config;
  }

  async getConfig(id: string): Promise<StudyConfig> {
    return (await this.getStudyRecord(id)).config;
  }

  /** The study's record: configuration, creation time, deadline (epoch ms, with a time budget) and extra. */
  async getStudyRecord(id: string): Promise<StudyRecord> {
    const { GetCommand } = await docSdk();
    const out = await (await this.doc()).send(new GetCommand({ TableName: this.tableName, Key: { pk: studyKey(id), sk: 'STUDY' }, ConsistentRead: true }));
    if (!out.Item) throw new NotFoundError(`study '${id}' does not exist`);
    return {
      id,
      config: JSON.parse(out.Item.config as string) as StudyConfig,
      created: out.Item.created as string,
      ...(out.Item.deadline !== undefined ? { deadline: out.Item.deadline as number } : {}),
      ...(out.Item.extra !== undefined ? { extra: JSON.parse(out.Item.extra as string) as Record<string, unknown> } : {}),
      ...Object.fromEntries(ANNOTATIONS.filter((k) => out.Item![k] !== undefined).map((k) => [k, JSON.parse(out.Item![k] as string) as unknown])),
    };
  }

  /** Records on the study what ran it and what came of it (the job, the report's keys, a registered winner). */
  async annotate(id: string, fields: Record<string, unknown>): Promise<void> {
    const { UpdateCommand } = await docSdk();
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    const sets = Object.entries(fields).map(([key, value], i) => {
      names[`#k${i}`] = key;
      values[`:v${i}`] = JSON.stringify(value);
      return `#k${i} = :v${i}`;
    });
    await (await this.doc()).send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: studyKey(id), sk: 'STUDY' },
        UpdateExpression: `SET ${sets.join(', ')}`,
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: values,
      }),
    );
  }

  /** Ids of the studies that may still have running trials (the scheduled sweep's list). */
  async listActive(): Promise<string[]> {
    const { QueryCommand } = await docSdk();
    const ids: string[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await (await this.doc()).send(
        new QueryCommand({ TableName: this.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': ACTIVE_KEY }, ConsistentRead: true, ExclusiveStartKey: start }),
      );
      ids.push(...(out.Items ?? []).map((item) => item.id as string));
      start = out.LastEvaluatedKey;
    } while (start);
    return ids;
  }

  /** Takes a study off the active list once its job has ended (its trials are all over). */
  async deactivate(id: string): Promise<void> {
    const { DeleteCommand } = await docSdk();
    await (await this.doc()).send(new DeleteCommand({ TableName: this.tableName, Key: { pk: ACTIVE_KEY, sk: `ACTIVE#${id}` } }));
  }

  /**
   * The scheduled sweep: fails the expired trials of every active study (their budget places come
   * back) and drops from the list a study that was never written (its create failed after the list).
   */
  async sweep(): Promise<Record<string, number[]>> {
    const failed: Record<string, number[]> = {};
    for (const id of await this.listActive()) {
      const exists = await this.getStudyRecord(id).then(
        () => true,
        (error: unknown) => {
          if (error instanceof NotFoundError) return false;
          throw error;
        },
      );
      if (exists) failed[id] = await this.failExpired(id);
      else await this.deactivate(id);
    }
    return failed;
  }

  /** Every trial of a study in number order, read consistently. */
  async listTrials(id: string): Promise<StoredTrial[]> {
    const { QueryCommand } = await docSdk();
    const trials: StoredTrial[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await (await this.doc()).send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :trial)',
          ExpressionAttributeValues: { ':pk': studyKey(id), ':trial': 'TRIAL#' },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      trials.push(...(out.Items ?? []).map(fromItem));
      start = out.LastEvaluatedKey;
    } while (start);
    return trials;
  }

  /** The study as a worker rebuilds it: its configuration and stored trials. */
  async loadStudy(id: string): Promise<Study> {
    const [config, trials] = await Promise.all([this.getConfig(id), this.listTrials(id)]);
    return new Study(config, trials);
  }

  /**
   * Starts the next trial for `worker`: undefined when the budget is spent or the sampler has nothing
   * left. Concurrent callers never share a number and never together exceed the budget.
   */
  async ask(id: string, worker: string): Promise<StoredTrial | undefined> {
    const { config, deadline } = await this.getStudyRecord(id);
    if (deadline !== undefined && this.now() >= deadline) return undefined;
    const number = await this.allocate(id, config.maxTrials);
    if (number === undefined) return undefined;
    // The counter already holds this trial's place in the budget, so the study's own budget check,
    // which may read trials that other workers have since failed, is not repeated here.
    const params = new Study({ ...config, maxTrials: undefined }, await this.listTrials(id)).propose(number);
    if (!params) {
      await this.returnPlace(id);
      return undefined;
    }
    const trial: StoredTrial = { number, params, state: 'running', intermediate: {}, worker, leaseUntil: this.now() + this.leaseMs };
    const { PutCommand } = await docSdk();
    try {
      await (await this.doc()).send(
        new PutCommand({ TableName: this.tableName, Item: toItem(id, trial), ConditionExpression: 'attribute_not_exists(pk)' }),
      );
    } catch (error) {
      if (isConditionFailure(error)) throw new ConflictError(`study '${id}' already has a trial ${number}`);
      throw error;
    }
    return trial;
  }

  /**
   * Records an intermediate value of the worker's running trial and renews its lease; when the
   * study's pruner says so the trial ends as pruned and the answer says to stop.
   */
  async report(id: string, number: number, worker: string, step: number, value: number): Promise<{ prune: boolean }> {
    if (!Number.isInteger(step) || step < 0) throw new BadRequestError(`trial ${number}: step must be an integer of at least 0, got ${step}`);
    if (!Number.isFinite(value)) throw new BadRequestError(`trial ${number}: intermediate value ${value} is not a finite number`);
    await this.updateRunning(id, number, worker, {
      update: 'SET #intermediate.#step = :value, #lease = :lease',
      names: { '#intermediate': 'intermediate', '#step': String(step), '#lease': 'leaseUntil' },
      values: { ':value': value, ':lease': this.now() + this.leaseMs },
    });
    const study = await this.loadStudy(id);
    if (!study.pruner) return { prune: false };
    const trial = study.trials.find((t) => t.number === number)!;
    const decision = study.pruner.decide(trial, study.trials.filter((t) => t.number !== number), study.directions[0]!);
    if (decision.prune || decision.rungs) {
      await this.updateRunning(id, number, worker, {
        update: decision.prune ? 'SET #rungs = :rungs, #state = :pruned' : 'SET #rungs = :rungs',
        names: { '#rungs': 'rungs' },
        values: { ':rungs': decision.rungs ?? trial.rungs ?? [], ...(decision.prune ? { ':pruned': 'pruned' } : {}) },
      });
    }
    return { prune: decision.prune };
  }

  /**
   * Renews the lease of the worker's running trial: a worker whose trial may outlast the lease
   * between two reports (the container worker has no 15-minute limit) keeps it while it runs.
   */
  async renew(id: string, number: number, worker: string): Promise<void> {
    await this.updateRunning(id, number, worker, { update: 'SET #lease = :lease', names: { '#lease': 'leaseUntil' }, values: { ':lease': this.now() + this.leaseMs } });
  }

  /** Completes the worker's running trial with its measured metrics. */
  async tell(id: string, number: number, worker: string, metrics: Record<string, number>): Promise<StoredTrial> {
    const config = await this.getConfig(id);
    const { values, violations } = evaluateMetrics(config, number, metrics);
    const out = await this.updateRunning(id, number, worker, {
      update: 'SET #state = :complete, #metrics = :metrics, #values = :values, #violations = :violations',
      names: { '#metrics': 'metrics', '#values': 'values', '#violations': 'violations' },
      values: { ':complete': 'complete', ':metrics': JSON.stringify(metrics), ':values': JSON.stringify(values), ':violations': JSON.stringify(violations) },
      returnNew: true,
    });
    return fromItem(out!);
  }

  /**
   * Fails every running trial whose lease has passed (its worker died or hung) and gives its place
   * in the budget back. Returns the numbers it failed. A place is returned after the trial is failed:
   * a process stopped between the two writes loses that one place, never counts one twice.
   */
  async failExpired(id: string): Promise<number[]> {
    const now = this.now();
    const expired = (await this.listTrials(id)).filter((t) => t.state === 'running' && t.leaseUntil < now);
    const failed: number[] = [];
    const { UpdateCommand } = await docSdk();
    for (const trial of expired) {
      try {
        await (await this.doc()).send(
          new UpdateCommand({
            TableName: this.tableName,
            Key: { pk: studyKey(id), sk: `TRIAL#${pad(trial.number)}` },
            UpdateExpression: 'SET #state = :failed, #error = :error',
            ConditionExpression: '#state = :running AND #lease < :now',
            ExpressionAttributeNames: { '#state': 'state', '#lease': 'leaseUntil', '#error': 'error' },
            ExpressionAttributeValues: { ':failed': 'failed', ':running': 'running', ':now': now, ':error': `worker '${trial.worker}' stopped reporting; its lease ran out` },
          }),
        );
      } catch (error) {
        if (isConditionFailure(error)) continue; // reported or finished meanwhile, or failed by another caller
        throw error;
      }
      await this.returnPlace(id);
      failed.push(trial.number);
    }
    return failed;
  }

  /**
   * Fails the worker's running trial with the reason its objective gave, and gives its place in the
   * budget back (as for an expired lease).
   */
  async fail(id: string, number: number, worker: string, reason: string): Promise<void> {
    await this.updateRunning(id, number, worker, { update: 'SET #state = :failed, #error = :error', names: { '#error': 'error' }, values: { ':failed': 'failed', ':error': reason.slice(0, 1000) } });
    await this.returnPlace(id);
  }

  /** Takes a trial number and, under a budget, a place in it, in one conditional update. */
  private async allocate(id: string, maxTrials: number | undefined): Promise<number | undefined> {
    const { UpdateCommand } = await docSdk();
    try {
      const out = await (await this.doc()).send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: studyKey(id), sk: 'COUNTER' },
          UpdateExpression: 'ADD #next :one, #issued :one',
          ...(maxTrials === undefined ? {} : { ConditionExpression: 'attribute_not_exists(#issued) OR #issued < :max' }),
          ExpressionAttributeNames: { '#next': 'next', '#issued': 'issued' },
          ExpressionAttributeValues: { ':one': 1, ...(maxTrials === undefined ? {} : { ':max': maxTrials }) },
          ReturnValues: 'UPDATED_NEW',
        }),
      );
      return (out.Attributes!.next as number) - 1;
    } catch (error) {
      if (isConditionFailure(error)) return undefined;
      throw error;
    }
  }

  private async returnPlace(id: string): Promise<void> {
    const { UpdateCommand } = await docSdk();
    await (await this.doc()).send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: studyKey(id), sk: 'COUNTER' },
        UpdateExpression: 'ADD #issued :minus',
        ExpressionAttributeNames: { '#issued': 'issued' },
        ExpressionAttributeValues: { ':minus': -1 },
      }),
    );
  }

  /** Sends an update conditioned on the trial running under this worker; otherwise says why not. */
  /**
   * Applies `change` to the worker's running trial, on condition that it is still running and still
   * the worker's; otherwise says why it is not (404 or 409). `returnNew`: the trial as written.
   */
  private async updateRunning(id: string, number: number, worker: string, change: { update: string; names: Record<string, string>; values: Record<string, unknown>; returnNew?: boolean }): Promise<Record<string, unknown> | undefined> {
    const { UpdateCommand } = await docSdk();
    try {
      const out = await (await this.doc()).send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: studyKey(id), sk: `TRIAL#${pad(number)}` },
          UpdateExpression: change.update,
          ConditionExpression: '#state = :running AND #worker = :worker',
          ExpressionAttributeNames: { ...change.names, '#state': 'state', '#worker': 'worker' },
          ExpressionAttributeValues: { ...change.values, ':running': 'running', ':worker': worker },
          ...(change.returnNew ? { ReturnValues: 'ALL_NEW' as const } : {}),
        }),
      );
      return out.Attributes;
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      const { GetCommand } = await docSdk();
      const current = await (await this.doc()).send(new GetCommand({ TableName: this.tableName, Key: { pk: studyKey(id), sk: `TRIAL#${pad(number)}` }, ConsistentRead: true }));
      if (!current.Item) throw new NotFoundError(`study '${id}' has no trial ${number}`);
      const trial = fromItem(current.Item);
      if (trial.state !== 'running') throw new ConflictError(`trial ${number} is ${trial.state}, not running`);
      throw new ConflictError(`trial ${number} belongs to worker '${trial.worker}', not '${worker}'`);
    }
  }
}

function toItem(id: string, t: StoredTrial): Record<string, unknown> {
  return {
    pk: studyKey(id),
    sk: `TRIAL#${pad(t.number)}`,
    number: t.number,
    params: JSON.stringify(t.params),
    state: t.state,
    intermediate: t.intermediate,
    worker: t.worker,
    leaseUntil: t.leaseUntil,
  };
}

function fromItem(item: Record<string, unknown>): StoredTrial {
  const parse = <T>(key: string) => (item[key] === undefined ? undefined : (JSON.parse(item[key] as string) as T));
  const trial: StoredTrial = {
    number: item.number as number,
    params: parse<Trial['params']>('params')!,
    state: item.state as TrialState,
    intermediate: (item.intermediate ?? {}) as Record<string, number>,
    worker: item.worker as string,
    leaseUntil: item.leaseUntil as number,
  };
  const metrics = parse<Record<string, number>>('metrics');
  if (metrics) Object.assign(trial, { metrics, values: parse<number[]>('values'), violations: parse<number[]>('violations') });
  if (item.rungs) trial.rungs = item.rungs as number[];
  if (item.error !== undefined) trial.error = item.error as string;
  return trial;
}
