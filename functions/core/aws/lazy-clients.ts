import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { traceClient } from '../platform/tracing.ts';
import { dynamoClientConfig, s3ClientConfig, type ClientOptions } from './client-config.ts';

/**
 * A client made on its first use. esbuild keeps a package that a bundle only imports dynamically
 * out of the bundle's start-up: its code is evaluated at the first call, not at import. Measured on
 * the inference function's cold start, evaluating the S3 and DynamoDB clients at import cost about
 * 30-60 ms (median of 15 imports with and without them); a warm pre-warm from the boot fetch makes
 * no SDK call at all. Any module of the bundle that imports the package statically undoes this.
 */
export type LazyClient<C> = () => Promise<C>;

function once<C>(make: () => Promise<C>): LazyClient<C> {
  let made: Promise<C> | undefined;
  return () => (made ??= make());
}

export function lazyS3Client(options: ClientOptions = {}): LazyClient<S3Client> {
  return once(async () => traceClient(new (await import('./sdk/s3.ts')).S3Client(s3ClientConfig(options))));
}

export function lazyDynamoClient(options: ClientOptions = {}): LazyClient<DynamoDBClient> {
  return once(async () => traceClient(new (await import('./sdk/dynamodb.ts')).DynamoDBClient(dynamoClientConfig(options))));
}
