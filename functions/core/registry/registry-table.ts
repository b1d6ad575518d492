import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { isConditionFailure } from '../aws/errors.ts';
import { ConflictError } from '../platform/errors.ts';
import type { LazyClient } from '../aws/lazy-clients.ts';

/** The document client's commands, imported when first sent (see lazy-clients.ts). */
const docSdk = () => import('../aws/sdk/dynamodb.ts');

/**
 * The registry's mutable state, one DynamoDB table (pk, sk), changed only by conditional writes and
 * atomic counters, because several uploads, promotions and environments act on it at once:
 *   MODEL#<m> / COUNTER          next version number (atomic ADD: two uploads never share one)
 *   MODEL#<m> / VERSION#<000042> a registered version: status, sha256, notes, lineage, created
 *   MODEL#<m> / ALIAS#<alias>    routes (version + weight) with a revision for compare-and-set
 *   UPLOAD#<bucket/key@etag> / UPLOAD   which version an upload became (redelivered events reuse it)
 */
export interface AliasRoute {
  version: string;
  /** Share of traffic in percent; the routes of an alias add up to 100. */
  weight: number;
}

export interface AliasRecord {
  model: string;
  alias: string;
  routes: AliasRoute[];
  /** Incremented by every change; a writer must name the revision it read. */
  revision: number;
  /** The routes before the last change, for rollback. */
  previous: AliasRoute[] | null;
  updated: string;
}

export type VersionStatus = 'registered' | 'retired';

export interface VersionRecord {
  model: string;
  version: string;
  status: VersionStatus;
  sha256: string;
  bytes: number;
  notes: string;
  lineage: { sourceVersion: string; method: string; options: Record<string, unknown> } | null;
  created: string;
  /** The upload it came from, when it came from one. */
  source?: string;
}

export interface UploadRecord {
  uploadId: string;
  model: string;
  version: string;
  state: 'pending' | 'registered';
}

const pad = (version: string) => version.padStart(12, '0');

export class RegistryTable {
  readonly tableName: string;
  private readonly client: LazyClient<DynamoDBClient>;
  private docClient: Promise<DynamoDBDocumentClient> | undefined;

  /** A client, or one made on first use (lazy-clients.ts). */
  constructor(client: DynamoDBClient | LazyClient<DynamoDBClient>, tableName: string) {
    this.client = typeof client === 'function' ? client : () => Promise.resolve(client);
    this.tableName = tableName;
  }

  private doc(): Promise<DynamoDBDocumentClient> {
    this.docClient ??= Promise.all([this.client(), docSdk()]).then(([client, { DynamoDBDocumentClient }]) =>
      DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } }),
    );
    return this.docClient;
  }

  /** Creates the table when it does not exist (local stack and tests; serverless.yml declares it in AWS). */
  async ensureTable(): Promise<void> {
    const { createPkSkTable } = await import('../aws/dynamo-tables.ts');
    await createPkSkTable(await this.client(), this.tableName);
  }

  /** The next version number of a model; unique under any number of concurrent callers. */
  async allocateVersion(model: string): Promise<string> {
    const { UpdateCommand } = await docSdk();
    const out = await (await this.doc()).send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: `MODEL#${model}`, sk: 'COUNTER' },
        UpdateExpression: 'ADD #next :one',
        ExpressionAttributeNames: { '#next': 'next' },
        ExpressionAttributeValues: { ':one': 1 },
        ReturnValues: 'UPDATED_NEW',
      }),
    );
    return String(out.Attributes!.next);
  }

  /** Moves the counter up to at least `version`, for versions registered under an explicit number. */
  async reserveVersion(model: string, version: number): Promise<void> {
    const { UpdateCommand } = await docSdk();
    try {
      await (await this.doc()).send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: `MODEL#${model}`, sk: 'COUNTER' },
          UpdateExpression: 'SET #next = :v',
          ConditionExpression: 'attribute_not_exists(#next) OR #next < :v',
          ExpressionAttributeNames: { '#next': 'next' },
          ExpressionAttributeValues: { ':v': version },
        }),
      );
    } catch (error) {
      if (!(isConditionFailure(error))) throw error; // already at or past it
    }
  }

  /**
   * Claims an upload: the first caller gets `undefined` and records the version it allocated; a
   * redelivered event for the same object gets the existing record back.
   */
  async claimUpload(record: UploadRecord): Promise<UploadRecord | undefined> {
    const { GetCommand, PutCommand } = await docSdk();
    try {
      await (await this.doc()).send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: `UPLOAD#${record.uploadId}`, sk: 'UPLOAD', ...record },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return undefined;
    } catch (error) {
      if (!(isConditionFailure(error))) throw error;
      const existing = await (await this.doc()).send(new GetCommand({ TableName: this.tableName, Key: { pk: `UPLOAD#${record.uploadId}`, sk: 'UPLOAD' } }));
      return existing.Item as UploadRecord;
    }
  }

  async getUpload(uploadId: string): Promise<UploadRecord | undefined> {
    const { GetCommand } = await docSdk();
    const out = await (await this.doc()).send(new GetCommand({ TableName: this.tableName, Key: { pk: `UPLOAD#${uploadId}`, sk: 'UPLOAD' }, ConsistentRead: true }));
    return out.Item ? strip<UploadRecord>(out.Item) : undefined;
  }

  async markUploadRegistered(uploadId: string): Promise<void> {
    const { UpdateCommand } = await docSdk();
    await (await this.doc()).send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: `UPLOAD#${uploadId}`, sk: 'UPLOAD' },
        UpdateExpression: 'SET #state = :registered',
        ExpressionAttributeNames: { '#state': 'state' },
        ExpressionAttributeValues: { ':registered': 'registered' },
      }),
    );
  }

  /** Records a version; writing the same version twice with the same sha256 is a no-op. */
  async putVersion(record: VersionRecord): Promise<void> {
    const { PutCommand } = await docSdk();
    try {
      await (await this.doc()).send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: `MODEL#${record.model}`, sk: `VERSION#${pad(record.version)}`, ...record },
          ConditionExpression: 'attribute_not_exists(pk) OR sha256 = :sha',
          ExpressionAttributeValues: { ':sha': record.sha256 },
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) {
        throw new ConflictError(`model '${record.model}' already has a version '${record.version}' with different content; versions are immutable`);
      }
      throw error;
    }
  }

  async getVersion(model: string, version: string): Promise<VersionRecord | undefined> {
    const { GetCommand } = await docSdk();
    const out = await (await this.doc()).send(new GetCommand({ TableName: this.tableName, Key: { pk: `MODEL#${model}`, sk: `VERSION#${pad(version)}` } }));
    return out.Item ? strip<VersionRecord>(out.Item) : undefined;
  }

  /** Versions lowest first. */
  async listVersions(model: string): Promise<VersionRecord[]> {
    return (await this.queryPrefix(model, 'VERSION#')).map((i) => strip<VersionRecord>(i));
  }

  async listAliases(model: string): Promise<AliasRecord[]> {
    return (await this.queryPrefix(model, 'ALIAS#')).map((i) => strip<AliasRecord>(i));
  }

  async getAlias(model: string, alias: string): Promise<AliasRecord | undefined> {
    const { GetCommand } = await docSdk();
    const out = await (await this.doc()).send(new GetCommand({ TableName: this.tableName, Key: { pk: `MODEL#${model}`, sk: `ALIAS#${alias}` }, ConsistentRead: true }));
    return out.Item ? strip<AliasRecord>(out.Item) : undefined;
  }

  /**
   * Compare-and-set of an alias: succeeds only when the stored revision is still `expectedRevision`
   * (0 for an alias that does not exist yet); otherwise 409, so no change is ever lost.
   */
  async setAlias(model: string, alias: string, routes: AliasRoute[], expectedRevision: number, previous: AliasRoute[] | null, now: Date): Promise<AliasRecord> {
    const { PutCommand } = await docSdk();
    const record: AliasRecord = { model, alias, routes, revision: expectedRevision + 1, previous, updated: now.toISOString() };
    try {
      await (await this.doc()).send(
        new PutCommand({
          TableName: this.tableName,
          Item: { pk: `MODEL#${model}`, sk: `ALIAS#${alias}`, ...record },
          ConditionExpression: expectedRevision === 0 ? 'attribute_not_exists(pk)' : 'revision = :expected',
          ...(expectedRevision === 0 ? {} : { ExpressionAttributeValues: { ':expected': expectedRevision } }),
        }),
      );
    } catch (error) {
      if (isConditionFailure(error)) {
        throw new ConflictError(`alias '${alias}' of model '${model}' changed since revision ${expectedRevision}: read it again and retry`);
      }
      throw error;
    }
    return record;
  }

  /**
   * A model-wide setting (`MODEL#<m> / SETTING#<name>`: monitoring, ...), undefined when unset. Read
   * by Query, which every role that routes a model's requests already has (a missing item is no error).
   */
  async getModelSetting(model: string, name: string): Promise<unknown> {
    const item = (await this.queryPrefix(model, `SETTING#${name}`)).find((i) => i.sk === `SETTING#${name}`);
    return item?.value;
  }

  async putModelSetting(model: string, name: string, value: unknown, now: Date): Promise<void> {
    const { PutCommand } = await docSdk();
    await (await this.doc()).send(new PutCommand({ TableName: this.tableName, Item: { pk: `MODEL#${model}`, sk: `SETTING#${name}`, value, updated: now.toISOString() } }));
  }

  private async queryPrefix(model: string, prefix: string): Promise<Record<string, unknown>[]> {
    const { QueryCommand } = await docSdk();
    const items: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const page = await (await this.doc()).send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
          ExpressionAttributeValues: { ':pk': `MODEL#${model}`, ':prefix': prefix },
          ExclusiveStartKey: start,
        }),
      );
      items.push(...(page.Items ?? []));
      start = page.LastEvaluatedKey;
    } while (start);
    return items;
  }
}

/**
 * A model's version and alias records from the items of its partition (MODEL#<m>), in sort-key order:
 * what listVersions and listAliases read, for a caller that queried the partition itself (the boot fetch).
 */
export function recordsOfModel(items: readonly Record<string, unknown>[]): { versions: VersionRecord[]; aliases: AliasRecord[] } {
  const bySk = [...items].sort((a, b) => (String(a.sk) < String(b.sk) ? -1 : String(a.sk) > String(b.sk) ? 1 : 0));
  return {
    versions: bySk.filter((i) => String(i.sk).startsWith('VERSION#')).map((i) => strip<VersionRecord>(i)),
    aliases: bySk.filter((i) => String(i.sk).startsWith('ALIAS#')).map((i) => strip<AliasRecord>(i)),
  };
}

function strip<T>(item: Record<string, unknown>): T {
  const { pk: _pk, sk: _sk, ...rest } = item;
  return rest as T;
}
