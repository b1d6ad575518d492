import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SNSClient } from '@aws-sdk/client-sns';

/**
 * Every AWS client takes its endpoint from configuration. In AWS the variable is unset and the SDK's
 * own resolution applies; tests and the local stack set AWS_ENDPOINT_URL to a loopback emulator.
 * Path-style addressing because the emulators serve every bucket on one host.
 */
export interface ClientOptions {
  endpoint?: string | undefined;
  region?: string | undefined;
}

function common(options: ClientOptions) {
  const endpoint = options.endpoint ?? process.env.AWS_ENDPOINT_URL;
  return {
    region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
    ...(endpoint ? { endpoint } : {}),
  };
}

export function createS3Client(options: ClientOptions = {}): S3Client {
  const base = common(options);
  return new S3Client({ ...base, forcePathStyle: 'endpoint' in base });
}

export function createSqsClient(options: ClientOptions = {}): SQSClient {
  return new SQSClient(common(options));
}

export function createDynamoClient(options: ClientOptions = {}): DynamoDBClient {
  const endpoint = options.endpoint ?? process.env.DYNAMODB_ENDPOINT_URL;
  return new DynamoDBClient({ ...common(options), ...(endpoint ? { endpoint } : {}) });
}

export function createSnsClient(options: ClientOptions = {}): SNSClient {
  return new SNSClient(common(options));
}
