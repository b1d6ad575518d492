import { isConditionFailure } from '../aws/errors.ts';
import { createPkSkTable } from '../aws/dynamo-tables.ts';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, type PutCommandInput, QueryCommand, UpdateCommand, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import type { BatchJobRecord, BatchShardRecord, JobState } from './schemas.ts';

/**
 * Job state and shard completion in DynamoDB. Every change that must happen once is a conditional
 * write on a single item (dynalite, the local emulator, has no transactions, and none are needed):
 * a shard counts towards its job only if its index is not yet in the job's done or dead set, and
 * only the writer that claims the `merging` state merges.
 */
/** Adds `#k = :k` for each defined attribute of `set` (names aliased: several are reserved words). */
function addSets(set: Record<string, unknown>, names: Record<string, string>, values: Record<string, unknown>, sets: string[]): void {
  for (const [k, v] of Object.entries(set)) {
    if (v === undefined) continue;
    names[`#${k}`] = k;
    values[`:${k}`] = v;
    sets.push(`#${k} = :${k}`);
  }
}

const jobKey = (jobId: string) => ({ pk: `JOB#${jobId}`, sk: 'JOB' });
const shardKey = (jobId: string, shard: number) => ({ pk: `JOB#${jobId}`, sk: `SHARD#${String(shard).padStart(6, '0')}` });

/** Creates the table as serverless.yml declares it; the local stack and tests call this. */
export async function createBatchTable(dynamo: DynamoDBClient, tableName: string): Promise<void> {
  await createPkSkTable(dynamo, tableName);
}

export interface ShardCompletion {
  /** True for the one write that counted this shard; false when it had been counted before. */
  counted: boolean;
  job: BatchJobRecord;
}

function strip<T>(item: Record<string, unknown> | undefined): T | undefined {
  if (!item) return undefined;
  const { pk: _pk, sk: _sk, ...rest } = item;
  return rest as T;
}

export class BatchJobStore {
  readonly doc: DynamoDBDocumentClient;
  readonly table: string;
  private readonly now: () => number;

  constructor(options: { dynamo: DynamoDBClient; table: string; now?: () => number }) {
    this.doc = DynamoDBDocumentClient.from(options.dynamo, { marshallOptions: { removeUndefinedValues: true } });
    this.table = options.table;
    this.now = options.now ?? Date.now;
  }

  /** A conditional write's outcome: true when it was made, false when its condition did not hold. */
  private async conditionally(write: Promise<unknown>): Promise<boolean> {
    try {
      await write;
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  async get(jobId: string): Promise<BatchJobRecord | undefined> {
    const out = await this.doc.send(new GetCommand({ TableName: this.table, Key: jobKey(jobId), ConsistentRead: true }));
    return strip<BatchJobRecord>(out.Item);
  }

  /** Writes the whole job record under `condition`; false when the condition did not hold. */
  private putJob(job: BatchJobRecord, condition: Pick<PutCommandInput, 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>) {
    return this.conditionally(this.doc.send(new PutCommand({ TableName: this.table, Item: { ...jobKey(job.jobId), ...job }, ...condition })));
  }

  /** A conditional update of the job record; false when the condition did not hold. */
  private updateJob(jobId: string, update: Pick<UpdateCommandInput, 'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>) {
    return this.conditionally(this.doc.send(new UpdateCommand({ TableName: this.table, Key: jobKey(jobId), ...update })));
  }

  /** Creates the job; false when a job with this id already exists (a resubmission). */
  async create(job: BatchJobRecord): Promise<boolean> {
    return this.putJob(job, { ConditionExpression: 'attribute_not_exists(pk)' });
  }

  /** Replaces the `failed` record of a refused upload when the same name is uploaded again. */
  async replaceRefused(job: BatchJobRecord): Promise<boolean> {
    return this.putJob(job, {
      ConditionExpression: '#state = :failed AND requestHash = :refused',
      ExpressionAttributeNames: { '#state': 'state' },
      ExpressionAttributeValues: { ':failed': 'failed', ':refused': '' },
    });
  }

  /** Moves a job from one state to another; false when it was not in `from` any more. */
  async transition(jobId: string, from: JobState, to: JobState, set: Partial<BatchJobRecord> = {}): Promise<boolean> {
    const names: Record<string, string> = { '#state': 'state' };
    const values: Record<string, unknown> = { ':from': from, ':to': to };
    const sets = ['#state = :to'];
    addSets(set, names, values, sets);
    return this.updateJob(jobId, {
      UpdateExpression: `SET ${sets.join(', ')}`,
      ConditionExpression: '#state = :from',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  /** A worker began (or began again) on a shard: counts the attempt and stamps the job's start once. */
  async shardStarted(jobId: string, shard: number): Promise<number> {
    const now = this.now();
    const out = await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: shardKey(jobId, shard),
        UpdateExpression: 'ADD attempts :one SET #shard = :shard, startedAt = if_not_exists(startedAt, :now), #state = if_not_exists(#state, :running)',
        ExpressionAttributeNames: { '#state': 'state', '#shard': 'shard' },
        ExpressionAttributeValues: { ':one': 1, ':shard': shard, ':now': now, ':running': 'running' },
        ReturnValues: 'ALL_NEW',
      }),
    );
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: jobKey(jobId),
        UpdateExpression: 'SET startedAt = if_not_exists(startedAt, :now)',
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeValues: { ':now': now },
      }),
    );
    return Number(out.Attributes?.attempts ?? 1);
  }

  async shardFailed(jobId: string, shard: number, message: string): Promise<void> {
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: shardKey(jobId, shard),
        UpdateExpression: 'SET lastError = :error, #shard = :shard',
        ExpressionAttributeNames: { '#shard': 'shard' },
        ExpressionAttributeValues: { ':error': message.slice(0, 2000), ':shard': shard },
      }),
    );
  }

  /**
   * Records a scored shard: the shard item first (its row count is what the merge numbers rows by),
   * then the job's counters, conditionally, so a retried shard is never counted twice.
   */
  async completeShard(jobId: string, shard: number, rows: number, rowsFailed: number): Promise<ShardCompletion> {
    const now = this.now();
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: shardKey(jobId, shard),
        UpdateExpression: 'SET #state = :done, #shard = :shard, #rows = :rows, rowsFailed = :failed, finishedAt = :now',
        ConditionExpression: 'attribute_not_exists(#state) OR #state <> :dead',
        ExpressionAttributeNames: { '#state': 'state', '#rows': 'rows', '#shard': 'shard' },
        ExpressionAttributeValues: { ':done': 'done', ':dead': 'dead', ':shard': shard, ':rows': rows, ':failed': rowsFailed, ':now': now },
      }),
    ).catch((error: unknown) => {
      // Declared dead (DLQ) while this late attempt ran: the job has already accounted for it.
      if (!isConditionFailure(error)) throw error;
    });
    return this.countShard(jobId, shard, 'done', rows - rowsFailed, rowsFailed);
  }

  /** A shard the dead-letter queue gave up on; counted once, like a scored one. */
  async markShardDead(jobId: string, shard: number): Promise<ShardCompletion & { lastError?: string }> {
    const out = await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        Key: shardKey(jobId, shard),
        UpdateExpression: 'SET #state = :dead, #shard = :shard, finishedAt = :now',
        ConditionExpression: 'attribute_not_exists(#state) OR #state <> :done',
        ExpressionAttributeNames: { '#state': 'state', '#shard': 'shard' },
        ExpressionAttributeValues: { ':dead': 'dead', ':done': 'done', ':shard': shard, ':now': this.now() },
        ReturnValues: 'ALL_NEW',
      }),
    ).catch((error: unknown) => {
      if (isConditionFailure(error)) return undefined;
      throw error;
    });
    if (!out) return { counted: false, job: (await this.get(jobId))! };
    const lastError = out.Attributes?.lastError as string | undefined;
    const completion = await this.countShard(jobId, shard, 'dead', 0, 0);
    return { ...completion, ...(lastError !== undefined ? { lastError } : {}) };
  }

  private async countShard(jobId: string, shard: number, as: 'done' | 'dead', scored: number, failed: number): Promise<ShardCompletion> {
    const set = as === 'done' ? 'doneShards' : 'deadShards';
    const counter = as === 'done' ? 'shardsDone' : 'shardsDead';
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: jobKey(jobId),
          UpdateExpression: `ADD ${set} :set, ${counter} :one, rowsScored :scored, rowsFailed :failed SET updatedAt = :now`,
          ConditionExpression: 'attribute_exists(pk) AND NOT contains(doneShards, :idx) AND NOT contains(deadShards, :idx)',
          ExpressionAttributeValues: { ':set': new Set([shard]), ':one': 1, ':scored': scored, ':failed': failed, ':idx': shard, ':now': this.now() },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return { counted: true, job: strip<BatchJobRecord>(out.Attributes)! };
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      const job = await this.get(jobId);
      if (!job) throw new Error(`batch job ${jobId} does not exist`, { cause: error });
      return { counted: false, job };
    }
  }

  /**
   * Claims the merge: from `running`, or from `merging` whose lease ran out (its merger died). The
   * caller that gets true, and only it, merges and then finishes the job with the same token. Callers
   * claim only after seeing every shard counted (DynamoDB conditions cannot add counters up), which
   * stays true once true.
   */
  async claimMerge(jobId: string, token: string, leaseMs: number): Promise<boolean> {
    const now = this.now();
    return this.updateJob(jobId, {
      UpdateExpression: 'SET #state = :merging, mergeToken = :token, mergeLeaseUntil = :until',
      ConditionExpression: '(#state = :running OR (#state = :merging AND mergeLeaseUntil < :now))',
      ExpressionAttributeNames: { '#state': 'state' },
      ExpressionAttributeValues: { ':merging': 'merging', ':running': 'running', ':token': token, ':until': now + leaseMs, ':now': now },
    });
  }

  async finish(jobId: string, token: string, state: JobState, set: Partial<BatchJobRecord>): Promise<boolean> {
    const names: Record<string, string> = { '#state': 'state' };
    const values: Record<string, unknown> = { ':state': state, ':merging': 'merging', ':token': token, ':now': this.now() };
    const sets = ['#state = :state', 'finishedAt = :now'];
    addSets(set, names, values, sets);
    return this.updateJob(jobId, {
      UpdateExpression: `SET ${sets.join(', ')} REMOVE mergeToken, mergeLeaseUntil`,
      ConditionExpression: '#state = :merging AND mergeToken = :token',
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }

  async shards(jobId: string): Promise<BatchShardRecord[]> {
    const items: BatchShardRecord[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const out = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :shard)',
          ExpressionAttributeValues: { ':pk': `JOB#${jobId}`, ':shard': 'SHARD#' },
          ConsistentRead: true,
          ExclusiveStartKey: start,
        }),
      );
      for (const item of out.Items ?? []) items.push(strip<BatchShardRecord>(item)!);
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }
}
