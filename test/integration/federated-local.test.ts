import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDynamoClient } from '../../functions/core/aws/clients.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import type { FederationRecord } from '../../functions/core/federated/federation-table.ts';
import { mlpClassifier } from '../../functions/core/federated/models.ts';
import { wireFederation } from '../../functions/core/federated/wiring.ts';
import { blobRows } from '../helpers/train-fixtures.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createFederationApiHandler } from '../../functions/federation/app.ts';
import { startLocalFederation } from '../../infra/local/federation.ts';
import type { Trigger } from '../../infra/local/triggers.ts';
import { apiEvent } from '../helpers/batch-stack.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// `mass federation simulate` as a user runs it against `npm start`'s stack: the CLI process finds the
// stack by .local/stack.json, speaks HTTP to the API, uploads by pre-signed URLs to the emulator, and
// the local stack's own pollers (infra/local/federation.ts) close rounds and run the aggregation.
// Only serverless-offline is replaced, by a plain HTTP server in front of the same API handler.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
const PREFIX = 'fedlocal';
let stack: RegistryStack;
let triggers: Trigger[];
let server: Server;
let dir: string;

function rows(count: number, seed: number): string {
  const { features, labels } = blobRows(count, seed);
  return features.map((data, row) => JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data }], label: labels[row] })).join('\n');
}

beforeAll(async () => {
  stack = await startRegistryStack(PREFIX);
  const registryTable = stack.store.registry!.tableName;
  triggers = await startLocalFederation({ awsEndpoint: stack.emulators.awsEndpoint, dynamoEndpoint: stack.emulators.dynamoEndpoint, store: stack.store, registryTable, prefix: PREFIX });
  // The API as the stack's federation function runs it (the queue names federated.yml gives it at stage local).
  const { service } = wireFederation({
    dynamo: createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint }),
    s3: stack.s3,
    sqs: stack.sqs,
    store: stack.store,
    tableName: registryTable,
    region: 'us-east-1',
    s3Endpoint: stack.emulators.awsEndpoint,
    deadlineQueueName: `${PREFIX}-federation-deadlines`,
    stepQueueName: `${PREFIX}-federated-round-steps`,
    visibilitySeconds: 960,
  });
  const api = createFederationApiHandler({ service, log: () => undefined });
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      const event = apiEvent(request.method ?? 'GET', url.pathname, chunks.length ? Buffer.concat(chunks).toString('utf8') : undefined);
      event.headers = { ...event.headers, ...(request.headers as Record<string, string>) };
      api(event, { getRemainingTimeInMillis: () => 30_000 } as Context).then(
        (out) => response.writeHead(out.statusCode ?? 200, out.headers as Record<string, string>).end(out.body),
        (error: Error) => response.writeHead(500).end(JSON.stringify({ error: error.message })),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await pushModel(stack.store, { name: 'blobs', bytes: mlpClassifier([4, 8, 3], 3) });
  await pushDataset(stack.store, { name: 'blobs-test', upload: { format: 'jsonl', rows: Buffer.from(rows(150, 2)) } });
  dir = await mkdtemp(join(tmpdir(), 'ai-mass-federated-local-'));
  await mkdir(join(dir, '.local'));
  await writeFile(join(dir, '.local', 'stack.json'), JSON.stringify({ api: `http://127.0.0.1:${port}`, bucket: stack.store.bucket, awsEndpoint: stack.emulators.awsEndpoint, dynamoEndpoint: stack.emulators.dynamoEndpoint, registryTable }));
  await writeFile(join(dir, 'rows.jsonl'), rows(300, 1));
}, 120_000);

afterAll(async () => {
  for (const trigger of triggers ?? []) await trigger.stop();
  await new Promise((resolve) => server?.close(resolve));
  await stack?.stop();
});

/** Runs `mass` in the project folder with nothing in the environment pointing it anywhere. */
function mass(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env };
  for (const name of ['AWS_ENDPOINT_URL', 'DYNAMODB_ENDPOINT_URL', 'MASS_BUCKET', 'MASS_API_URL', 'MASS_REGISTRY_TABLE', 'MASS_AUTH', 'MASS_TOKEN']) delete env[name];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, '..', '..', 'functions', 'cli', 'mass.ts'), ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('mass federation simulate against the local stack', () => {
  it('runs 2 rounds of 3 clients end to end: rounds close by the local pollers, each a registered version with lineage and a score', async () => {
    const out = await mass('federation', 'simulate', '--model', 'blobs', '--rounds', '2', '--clients', '3', '--clients-per-round', '3', '--data', 'rows.jsonl', '--partition', 'iid', '--local-epochs', '2', '--lr', '0.05', '--eval-dataset', 'blobs-test', '--seed', '2', '--interval', '1');
    expect(out.code, out.stderr).toBe(0);
    const id = /federation (f-[0-9a-f]+): 3 clients \(0 malicious\), partition iid/.exec(out.stderr)?.[1];
    expect(id).toBeDefined();
    const status = await mass('federation', 'status', id!);
    const { federation } = JSON.parse(status.stdout) as { federation: FederationRecord };
    expect(federation.state).toBe('completed');
    expect(federation.history.map((round) => [round.round, round.version, round.participants.length, round.examples])).toEqual([
      [1, '2', 3, 300],
      [2, '3', 3, 300],
    ]);
    for (const round of federation.history) expect(round.accuracy).toBeGreaterThan(1 / 3);
    const manifest = await stack.store.getManifest('blobs', '3');
    expect(manifest.lineage).toMatchObject({ sourceVersion: '2', method: 'federated', options: { federation: id, round: 2, attempt: 1 } });
  }, 300_000);
});
