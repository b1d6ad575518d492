import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SNSClient } from '@aws-sdk/client-sns';
import { traceClient } from '../platform/tracing.ts';
import { clientConfig, dynamoClientConfig, s3ClientConfig, type ClientOptions } from './client-config.ts';

export type { ClientOptions } from './client-config.ts';

export function createS3Client(options: ClientOptions = {}): S3Client {
  return traceClient(new S3Client(s3ClientConfig(options)));
}

export function createSqsClient(options: ClientOptions = {}): SQSClient {
  return traceClient(new SQSClient(clientConfig(options)));
}

export function createDynamoClient(options: ClientOptions = {}): DynamoDBClient {
  return traceClient(new DynamoDBClient(dynamoClientConfig(options)));
}

export function createSnsClient(options: ClientOptions = {}): SNSClient {
  return traceClient(new SNSClient(clientConfig(options)));
}
