import { createDynamoClient, createS3Client } from './clients.ts';
import { requireEnv } from './config.ts';
import { ModelStore, type ModelStoreOptions } from './model-store.ts';
import { RegistryTable } from './registry/registry-table.ts';

/**
 * The model store every function wires from its environment: MODEL_BUCKET and the registry table
 * (REGISTRY_TABLE, set stack-wide). Functions that announce changes pass `modelEventsFromEnv()`;
 * the rest never import the SNS client, which keeps it out of the inference bundle's cold start.
 */
export function modelStoreFromEnv(
  cacheDir: string,
  options: Pick<ModelStoreOptions, 'events' | 'prefetched'> = {},
  env: NodeJS.ProcessEnv = process.env,
): ModelStore {
  const table = env.REGISTRY_TABLE;
  return new ModelStore({
    s3: createS3Client(),
    bucket: requireEnv('MODEL_BUCKET', env),
    cacheDir: env.MODEL_CACHE_DIR ?? cacheDir,
    registry: table ? new RegistryTable(createDynamoClient(), table) : undefined,
    events: options.events,
    prefetched: options.prefetched,
  });
}
