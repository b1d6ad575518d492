/**
 * One measurement in a fresh process, so its peak resident set is the work's and nothing else's:
 * `register` registers the upload at MEMORY_PEAK_KEY (registerUpload, as the register function
 * runs it); `serve` loads MEMORY_PEAK_MODEL version 1 as the inference function does (ModelSessions,
 * staged artifact, warm-up). Prints `RESULT {...}` with the resident set after imports (`baseRssBytes`)
 * and the process's peak (`peakRssBytes`: VmHWM, the high-water mark of this process's own memory;
 * getrusage's maxrss would start from the spawning process's, which Linux carries across exec).
 */
import { readFileSync } from 'node:fs';
import { createDynamoClient, createS3Client } from '../../functions/core/aws/clients.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { registerUpload } from '../../functions/core/registry/register-upload.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} environment variable is not set`);
  return value;
};

const baseRssBytes = process.memoryUsage().rss;
const store = new ModelRepository({
  s3: createS3Client({ endpoint: env('MEMORY_PEAK_AWS_ENDPOINT') }),
  bucket: env('MEMORY_PEAK_BUCKET'),
  cacheDir: env('MEMORY_PEAK_CACHE_DIR'),
  registry: new RegistryTable(createDynamoClient({ endpoint: env('MEMORY_PEAK_DYNAMO_ENDPOINT') }), env('MEMORY_PEAK_TABLE')),
});
const started = performance.now();
const servingMemoryMiB = process.env.MEMORY_PEAK_SERVING_MB ? Number(process.env.MEMORY_PEAK_SERVING_MB) : undefined;
let detail: Record<string, unknown>;
if (process.argv[2] === 'register') {
  const outcome = await registerUpload(store, { bucket: store.bucket, key: env('MEMORY_PEAK_KEY') }, { maxModelBytes: Number(env('MEMORY_PEAK_MAX_BYTES')), servingMemoryMiB });
  detail = outcome.status === 'registered' ? { status: outcome.status, version: outcome.manifest.version, bytes: outcome.manifest.bytes } : { ...outcome };
} else {
  const manifest = await store.getManifest(env('MEMORY_PEAK_MODEL'), '1');
  const loaded = await new ModelSessions({ store }).get(manifest);
  detail = { status: 'served', artifact: loaded.artifact, bytes: manifest.bytes };
}
const ms = performance.now() - started;
const highWaterKiB = Number(/^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
console.log(`RESULT ${JSON.stringify({ ...detail, ms, baseRssBytes, peakRssBytes: highWaterKiB * 1024 })}`);
process.exit(0);
