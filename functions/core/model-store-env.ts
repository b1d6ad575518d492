import { createDynamoClient, createS3Client, createSnsClient } from './clients.ts';
import { requireEnv } from './config.ts';
import { ModelStore } from './model-store.ts';
import { SnsModelEvents } from './registry/events.ts';
import { RegistryTable } from './registry/registry-table.ts';

/**
 * The model store every function wires from its environment: MODEL_BUCKET, the registry table
 * (REGISTRY_TABLE, set stack-wide) and, where the function announces changes, the events topic.
 */
export function modelStoreFromEnv(cacheDir: string, env: NodeJS.ProcessEnv = process.env): ModelStore {
  const table = env.REGISTRY_TABLE;
  const topic = env.MODEL_EVENTS_TOPIC_ARN;
  return new ModelStore({
    s3: createS3Client(),
    bucket: requireEnv('MODEL_BUCKET', env),
    cacheDir: env.MODEL_CACHE_DIR ?? cacheDir,
    registry: table ? new RegistryTable(createDynamoClient(), table) : undefined,
    events: topic ? new SnsModelEvents(createSnsClient(), topic) : undefined,
  });
}
