import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, PutCommand, UpdateCommand, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { isConditionFailure } from '../aws/errors.ts';

/** An item without its table keys. */
export function strip<T>(item: Record<string, unknown> | undefined): T | undefined {
  if (!item) return undefined;
  const { pk: _pk, sk: _sk, ...rest } = item;
  return rest as T;
}

export type ConditionalUpdate = Pick<UpdateCommandInput, 'UpdateExpression' | 'ConditionExpression' | 'ExpressionAttributeNames' | 'ExpressionAttributeValues'>;

/**
 * A (pk, sk) table changed only by conditional writes: each write returns what it changed, or
 * undefined / false when its condition did not hold (a lost race, or a state that moved on); any
 * other failure is thrown. The job runtime's and the federations' records build on it.
 */
export class ConditionalTable {
  readonly doc: DynamoDBDocumentClient;
  readonly tableName: string;

  constructor(dynamo: DynamoDBClient, tableName: string) {
    this.doc = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
    this.tableName = tableName;
  }

  /** Every attribute is written as `#name` (several, like state, owner and segments, are reserved words); the names are filled in here. */
  protected async update<T>(key: Record<string, string>, update: ConditionalUpdate): Promise<T | undefined> {
    const names: Record<string, string> = { ...update.ExpressionAttributeNames };
    for (const [alias, name] of `${update.UpdateExpression} ${update.ConditionExpression ?? ''}`.matchAll(/#(\w+)/g)) names[alias] ??= name!;
    try {
      const out = await this.doc.send(new UpdateCommand({ TableName: this.tableName, Key: key, ...update, ExpressionAttributeNames: names, ReturnValues: 'ALL_NEW' }));
      return strip<T>(out.Attributes);
    } catch (error) {
      if (isConditionFailure(error)) return undefined;
      throw error;
    }
  }

  /** Writes an item that does not exist yet, or (`orIf`) whose stored version meets a further condition. */
  protected async putIfAbsent(item: Record<string, unknown>, orIf?: { condition: string; values: Record<string, unknown> }): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          ConditionExpression: orIf ? `attribute_not_exists(pk) OR ${orIf.condition}` : 'attribute_not_exists(pk)',
          ...(orIf ? { ExpressionAttributeValues: orIf.values } : {}),
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }
}
