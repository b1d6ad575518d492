/** The DynamoDB names the registry table uses, for a dynamic import (see sdk/s3.ts). */
export { DynamoDBClient } from '@aws-sdk/client-dynamodb';
export { DeleteCommand, DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
