import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateTopicCommand, type SNSClient } from '@aws-sdk/client-sns';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';

/**
 * The registry resources of infra/serverless/registry.yml on the local emulators: the registry
 * table (dynalite) and the model events topic (fauxqs SNS). Idempotent.
 */
export interface LocalRegistryResources {
  table: string;
  topicArn: string;
}

export async function createLocalRegistryResources(options: { dynamo: DynamoDBClient; sns: SNSClient; prefix?: string }): Promise<LocalRegistryResources> {
  const prefix = options.prefix ?? 'ai-mass-local';
  const table = `${prefix}-registry`;
  await new RegistryTable(options.dynamo, table).ensureTable();
  const { TopicArn } = await options.sns.send(new CreateTopicCommand({ Name: `${prefix}-model-events` }));
  return { table, topicArn: TopicArn! };
}
