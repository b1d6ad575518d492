import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Context } from 'aws-lambda';
import { createJobStepHandler } from '../../functions/adapters/job-steps.ts';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { createPkSkTable } from '../../functions/core/aws/dynamo-tables.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { JobKinds, type JobKind } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { createJobsApiHandler } from '../../functions/jobs/app.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { apiEvent, waitFor } from '../helpers/batch-stack.ts';
import { serveApi } from '../helpers/api-server.ts';
import { onCommand } from '../helpers/sdk-commands.ts';

// GET /v2/jobs/{id}, POST /v2/jobs/{id}/cancel, and `mass jobs status --watch` against them, with
// the records in dynalite and the steps on fauxqs.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';

let emulators: Emulators;
let sqs: SQSClient;
let dynamo: DynamoDBClient;
let queueUrl: string;
let table: JobTable;
let runtime: JobRuntime;
let api: ReturnType<typeof createJobsApiHandler>;
let server: Server;
let apiUrl: string;
/** The runtime's clock, moved by the toy step: rates and times are exact. */
let clock = Date.UTC(2026, 0, 1);
/** Called by the toy step after each progress report. */
let afterProgress: (done: number) => Promise<void> = async () => undefined;

const counting: JobKind = {
  name: 'count',
  parseRequest: (body) => ({ n: (body as { n: number }).n }),
  plan: () => [{ name: 'sum', handler: 'sum' }],
  steps: {
    async sum(ctx) {
      const { n } = ctx.job.request as { n: number };
      let sum = 0;
      for (let i = 0; i < n; i++) {
        clock += 1000;
        sum += i;
        await ctx.progress(i + 1, n, 'summing');
        await afterProgress(i + 1);
      }
      return { result: { sum } };
    },
  },
};

const context = { getRemainingTimeInMillis: () => 900_000 } as Context;
const log = () => undefined;

async function deliverAll(): Promise<void> {
  const handler = createJobStepHandler(runtime);
  const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
  for (const m of out.Messages ?? []) {
    const response = await handler(
      { Records: [{ messageId: m.MessageId!, receiptHandle: m.ReceiptHandle!, body: m.Body!, attributes: {} as never, messageAttributes: {}, md5OfBody: '', eventSource: 'aws:sqs', eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:jobs-api-steps', awsRegion: 'us-east-1' }] },
      context,
    );
    if (response.batchItemFailures.length === 0) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle! }));
  }
}

beforeAll(async () => {
  emulators = await startEmulators();
  sqs = createSqsClient({ endpoint: emulators.awsEndpoint });
  dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
  await createPkSkTable(dynamo, 'jobs-api-registry');
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'jobs-api-steps', Attributes: { VisibilityTimeout: '30' } }))).QueueUrl!;
  table = new JobTable(dynamo, 'jobs-api-registry');
  runtime = new JobRuntime({ table, kinds: new JobKinds([counting]), queue: new SqsStepQueue(sqs, () => 'jobs-api-steps'), visibilitySeconds: 30, reserveMs: 0, now: () => clock });
  api = createJobsApiHandler({ table, log, now: () => clock });
  ({ server, url: apiUrl } = await serveApi((event) => api(event, context)));
});

afterAll(async () => {
  server?.close();
  sqs?.destroy();
  dynamo?.destroy();
  await emulators?.stop();
});

describe('GET /v2/jobs/{id}', () => {
  it('returns the job record with its links', async () => {
    const { job } = await runtime.submit({ kind: 'count', key: 'api-1', request: { n: 2 }, parent: { model: 'mnist' } });

    const response = await api(apiEvent('GET', `/v2/jobs/${job.id}`), context);

    expect(response.statusCode).toBe(200);
    expect(response.headers).toMatchObject({ 'content-type': 'application/json' });
    expect(JSON.parse(response.body!)).toEqual({
      id: job.id,
      kind: 'count',
      state: 'queued',
      key: 'api-1',
      requestHash: job.requestHash,
      request: { n: 2 },
      parent: { model: 'mnist' },
      attempts: 0,
      stepsTotal: 1,
      stepsSucceeded: 0,
      stepsFailed: 0,
      created: new Date(clock).toISOString(),
      updated: new Date(clock).toISOString(),
      links: { self: `/v2/jobs/${job.id}`, cancel: `/v2/jobs/${job.id}/cancel` },
    });
  });

  it('reads the event as the local stack (serverless-offline) sends it, with null for absent fields', async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 1 } });
    const event = { ...apiEvent('GET', `/v2/jobs/${job.id}`), body: null, pathParameters: null, queryStringParameters: null, stageVariables: null };

    const response = await api(event as never, context);

    expect([response.statusCode, JSON.parse(response.body!).id]).toEqual([200, job.id]);
  });

  it('answers 404 for an unknown job, 400 for an invalid or malformed id, 405 for a method its path does not have, and 404 for a path it does not serve', async () => {
    const unknown = await api(apiEvent('GET', '/v2/jobs/j-0123456789abcdef'), context);
    const invalid = await api(apiEvent('GET', '/v2/jobs/Not_A_Job'), context);
    const wrongMethod = await api(apiEvent('DELETE', '/v2/jobs/j-0123456789abcdef'), context);
    const noRoute = await api(apiEvent('GET', '/v2/jobs/j-0123456789abcdef/steps'), context);
    const malformed = await api(apiEvent('GET', '/v2/jobs/j-%zz'), context);

    expect([unknown.statusCode, JSON.parse(unknown.body!)]).toEqual([404, { error: "no job 'j-0123456789abcdef'" }]);
    expect([invalid.statusCode, JSON.parse(invalid.body!)]).toEqual([400, { error: 'invalid job id "Not_A_Job": must match [a-z0-9][a-z0-9._-]{0,63}' }]);
    expect([malformed.statusCode, JSON.parse(malformed.body!)]).toEqual([400, { error: 'malformed percent-encoding in path "/v2/jobs/j-%zz"' }]);
    expect([wrongMethod.statusCode, JSON.parse(wrongMethod.body!)]).toEqual([405, { error: 'method DELETE is not allowed on /v2/jobs/j-0123456789abcdef; use GET' }]);
    expect([noRoute.statusCode, JSON.parse(noRoute.body!)]).toEqual([404, { error: 'no route for GET /v2/jobs/j-0123456789abcdef/steps' }]);
  });
});

describe('POST /v2/jobs/{id}/cancel', () => {
  it('cancels a queued job, answers the same again, and refuses a job that has ended', async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 1 } });

    const cancelled = await api(apiEvent('POST', `/v2/jobs/${job.id}/cancel`), context);
    const again = await api(apiEvent('POST', `/v2/jobs/${job.id}/cancel`), context);

    expect(cancelled.statusCode).toBe(200);
    expect(JSON.parse(cancelled.body!)).toMatchObject({ id: job.id, state: 'cancelled', error: 'cancelled by request', finished: new Date(clock).toISOString() });
    expect([again.statusCode, JSON.parse(again.body!)]).toEqual([200, JSON.parse(cancelled.body!)]);
    await deliverAll(); // its step, still queued, does nothing
    const ended = (await runtime.submit({ kind: 'count', request: { n: 1 } })).job;
    await deliverAll();
    const refused = await api(apiEvent('POST', `/v2/jobs/${ended.id}/cancel`), context);
    expect([refused.statusCode, JSON.parse(refused.body!)]).toEqual([409, { error: `job '${ended.id}' has already ended (succeeded); only a queued or running job can be cancelled` }]);
  });
});

describe('the jobs API role', () => {
  it('allows exactly the DynamoDB calls the function makes', async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 1 } });
    const made = new Set<string>();
    const client = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
    onCommand(client, (name) => made.add(`dynamodb:${name.replace(/Command$/, '')}`));
    const observed = createJobsApiHandler({ table: new JobTable(client, 'jobs-api-registry'), log });

    expect((await observed(apiEvent('GET', `/v2/jobs/${job.id}`), context)).statusCode).toBe(200);
    expect((await observed(apiEvent('POST', `/v2/jobs/${job.id}/cancel`), context)).statusCode).toBe(200);
    client.destroy();

    const yml = await readFile('infra/serverless/jobs.yml', 'utf8');
    const allowed = [...yml.matchAll(/^\s+- (dynamodb:\w+)$/gm)].map((m) => m[1]);
    expect([...made].sort()).toEqual(['dynamodb:GetItem', 'dynamodb:UpdateItem']);
    expect(allowed.sort()).toEqual([...made].sort());
  });
});

describe('mass jobs status --watch', () => {
  it('shows one progress line per change until the job ends, then prints its result', async () => {
    const { job } = await runtime.submit({ kind: 'count', request: { n: 4 } });
    const cli = spawn(process.execPath, ['functions/cli/mass.ts', '--api', apiUrl, 'jobs', 'status', job.id, '--watch', '--interval', '0.02'], {
      env: { ...process.env, MASS_AUTH: '', MASS_TOKEN: '' },
    });
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    cli.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(cli, 'exit');
    // Each report waits until the CLI has shown it, so that every change is seen.
    afterProgress = async (done) => {
      await waitFor(`the CLI to show ${done}/4`, async () => (stderr.includes(` ${done}/4`) ? true : undefined), 45_000, 10);
    };
    await waitFor('the CLI to show the queued job', async () => (stderr.includes('queued') ? true : undefined), 45_000, 10);

    await deliverAll();
    const [code] = await exited;

    const lines = stderr.trimEnd().split('\n').filter((line) => line !== `${job.id} running [--------------------] 0% 0/1`);
    expect(lines).toEqual([
      `${job.id} queued [--------------------] 0% 0/1`,
      `${job.id} running [#####---------------] 25% 1/4 summing`,
      `${job.id} running [##########----------] 50% 2/4 0.5/s eta 4s summing`,
      `${job.id} running [###############-----] 75% 3/4 0.7/s eta 2s summing`,
      `${job.id} running [####################] 100% 4/4 0.8/s summing`,
      `${job.id} succeeded [####################] 100% 4/4 0.8/s summing`,
    ]);
    expect(stdout).toBe('{"sum":6}\n');
    expect(code).toBe(0);
  }, 120_000); // the CLI's own start-up is slow on a loaded machine
});
