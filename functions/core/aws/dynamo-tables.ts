import {
  CreateTableCommand,
  type CreateTableCommandInput,
  type DynamoDBClient,
  ResourceInUseException,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';

/**
 * Creates a table and returns once it is ACTIVE: DynamoDB (and dynalite, whose status flips on a
 * timer that a data folder's disk writes can delay) refuses writes to a CREATING table. A table that
 * already exists is left as it is. The local stack and tests call this; deployed stacks get their
 * tables from CloudFormation, which waits the same way.
 */
export async function createTable(dynamo: DynamoDBClient, input: CreateTableCommandInput): Promise<void> {
  try {
    await dynamo.send(new CreateTableCommand(input));
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
  }
  await waitUntilTableExists({ client: dynamo, minDelay: 0.05, maxDelay: 0.5, maxWaitTime: 30 }, { TableName: input.TableName });
}

/** A table keyed (pk, sk), on demand, as the stack's yml declares the registry and batch tables. */
export async function createPkSkTable(dynamo: DynamoDBClient, tableName: string): Promise<void> {
  await createTable(dynamo, {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'sk', AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ],
  });
}
