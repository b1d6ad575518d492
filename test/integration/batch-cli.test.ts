import { execFile } from 'node:child_process';
import type { Server } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBatchApiHandler } from '../../functions/batch-submit/app.ts';
import { createBatchScoreHandler } from '../../functions/batch-score/app.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { pollSqsQueue, type Trigger } from '../../infra/local/triggers.ts';
import { serveApi } from '../helpers/api-server.ts';
import { doublingRow, pushDoublingModel, startBatchStack, type BatchStack } from '../helpers/batch-stack.ts';

// `mass batch submit --watch` and `mass batch fetch` as a user runs them, against the batch API
// function behind a plain HTTP server and the score function on the shard queue.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
const run = promisify(execFile);
let stack: BatchStack;
let server: Server;
let api: string;
let dir: string;
const triggers: Trigger[] = [];

beforeAll(async () => {
  stack = await startBatchStack();
  await pushDoublingModel(stack);
  const { logger, metrics } = createObservability('batch-test');
  const handler = createBatchApiHandler({ service: stack.runtime.service(), maxBodyBytes: 1_000_000, logger, metrics });
  ({ server, url: api } = await serveApi(handler));
  const log = (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => logger[level](message, fields);
  triggers.push(await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.shardQueueUrl, handler: createBatchScoreHandler({ runtime: stack.runtime.jobs, log }) }));
  dir = await mkdtemp(join(tmpdir(), 'ai-mass-cli-'));
});

afterAll(async () => {
  await Promise.all(triggers.map((t) => t.stop()));
  server?.close();
  await stack?.stop();
  await rm(dir, { recursive: true, force: true });
});

function mass(...args: string[]) {
  return run(process.execPath, ['functions/cli/mass.ts', '--api', api, '--bucket', stack.resources.bucket, ...args], {
    env: { ...process.env, ...stack.env, MASS_AUTH: '' },
    timeout: 60_000,
  });
}

describe('mass batch', () => {
  it('submits a file, watches it to the end, and fetches the result in input order', async () => {
    // Prepare
    const file = join(dir, 'rows.jsonl');
    await writeFile(file, Array.from({ length: 500 }, (_, i) => doublingRow(i)).join('\n') + '\n');

    // Act
    const submitted = await mass('batch', 'submit', file, '--model', 'double', '--shard-bytes', '8000', '--watch');
    const id = /submitted job (j-[0-9a-f]{24}): (\d+) shard\(s\) on the lambda worker/.exec(submitted.stdout)![1]!;
    const status = await mass('batch', 'status', id, '--json');
    await mass('batch', 'fetch', id, '-o', join(dir, 'result.jsonl'));

    // Assert
    expect(submitted.stderr).toMatch(/\[#{30}\] 100% {2}\d+\/\d+ shards {2}500 rows scored, 0 failed {2}[\d,]+ rows\/s {2}succeeded/);
    expect(submitted.stdout).toContain(`state    succeeded`);
    expect(JSON.parse(status.stdout)).toMatchObject({ id, state: 'succeeded', rows: { scored: 500, failed: 0 } });
    const rows = (await readFile(join(dir, 'result.jsonl'), 'utf8')).trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 500 }, (_, i) => `r${i}`));
  });

  it('says what is wrong when the model does not exist', async () => {
    const file = join(dir, 'one.jsonl');
    await writeFile(file, doublingRow(1) + '\n');
    const failed = await mass('batch', 'submit', file, '--model', 'nosuch').catch((e: { code: number; stderr: string }) => e);
    expect(failed).toMatchObject({ code: 1, stderr: expect.stringContaining("error: 404: unknown model 'nosuch'") });
  });
});
