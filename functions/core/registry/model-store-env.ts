import { readEnv } from '../platform/env.ts';
import { lazyDynamoClient, lazyS3Client } from '../aws/lazy-clients.ts';
import { RegistryTable } from './registry-table.ts';
import { ModelRepository, type ModelRepositoryOptions } from './repository.ts';

/**
 * The model store every function wires from its environment: MODEL_BUCKET and the registry table
 * (REGISTRY_TABLE, set stack-wide). Functions that announce changes pass `modelEventsFromEnv()`;
 * the rest never import the SNS client, which keeps it out of the inference bundle's cold start.
 * Its S3 and DynamoDB clients are made on first use (lazy-clients.ts); `prefetched` hands it the
 * downloads a boot fetch started.
 */
export function modelStoreFromEnv(
  cacheDir: string,
  options: Pick<ModelRepositoryOptions, 'events' | 'prefetched'> = {},
  env: NodeJS.ProcessEnv = process.env,
): ModelRepository {
  const vars = readEnv(['MODEL_BUCKET', 'REGISTRY_TABLE', 'MODEL_CACHE_DIR'], env);
  return new ModelRepository({
    s3: lazyS3Client(),
    bucket: vars.MODEL_BUCKET,
    cacheDir: vars.MODEL_CACHE_DIR ?? cacheDir,
    registry: vars.REGISTRY_TABLE ? new RegistryTable(lazyDynamoClient(), vars.REGISTRY_TABLE) : undefined,
    events: options.events,
    prefetched: options.prefetched,
  });
}
