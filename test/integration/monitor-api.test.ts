import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { createDynamoClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import { createJobsApiHandler } from '../../functions/jobs/app.ts';
import { createMonitorApiHandler } from '../../functions/monitor/app.ts';
import { createLocalMonitor, type LocalMonitor } from '../../infra/local/monitor.ts';
import { idxFiles, loadMnist, PIXELS } from '../helpers/mnist-drift.ts';
import { startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';
import { apiEvent } from '../helpers/batch-stack.ts';

// POST /v2/models/{name}/versions/{version}/monitor: monitoring jobs on request, through the monitor
// function's handler, the job runtime on the emulators and the jobs API that follows them.
let stack: RegistryStack;
let monitor: LocalMonitor;
let api: ReturnType<typeof createMonitorApiHandler>;
let jobs: ReturnType<typeof createJobsApiHandler>;
const today = new Date().toISOString().slice(0, 10);
const log = () => undefined;
const context = {} as never;

async function post(path: string, body?: unknown, raw?: string) {
  const event = apiEvent('POST', path, body);
  const response = await api(raw === undefined ? event : { ...event, body: raw }, context);
  return { status: response.statusCode!, body: JSON.parse(response.body!) as Record<string, unknown>, location: response.headers?.location as string | undefined };
}

async function queued(): Promise<number> {
  const out = await createSqsClient({ endpoint: stack.emulators.awsEndpoint }).send(new GetQueueAttributesCommand({ QueueUrl: monitor.queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return Number(out.Attributes!.ApproximateNumberOfMessages) + Number(out.Attributes!.ApproximateNumberOfMessagesNotVisible);
}

/** Runs the monitor queue's steps until the job ends, then reads it through GET /v2/jobs/{id}. */
async function follow(location: string) {
  for (let round = 0; round < 50; round++) {
    const job = JSON.parse((await jobs(apiEvent('GET', location), context)).body!) as { state: string; result?: Record<string, unknown> };
    if (!['queued', 'running'].includes(job.state)) return job;
    await monitor.pollOnce(1);
  }
  throw new Error(`${location} did not end`);
}

beforeAll(async () => {
  stack = await startRegistryStack('monitor-api');
  const dynamo = createDynamoClient({ endpoint: stack.emulators.dynamoEndpoint });
  monitor = await createLocalMonitor({ store: stack.store, sqs: createSqsClient({ endpoint: stack.emulators.awsEndpoint }), dynamo, table: stack.store.registry!.tableName, prefix: 'monitor-api', metricsFile: `/tmp/monitor-api-${process.pid}/metrics.jsonl`, intraOpThreads: 1 });
  api = createMonitorApiHandler({ store: stack.store, runtime: monitor.runtime, maxBodyBytes: 4096, log });
  jobs = createJobsApiHandler({ table: new JobTable(dynamo, stack.store.registry!.tableName), log });
  await pushModel(stack.store, { name: 'mnist', version: '1', bytes: await readFile('fixtures/models/mnist/model.onnx') });
  const mnist = await loadMnist();
  await pushDataset(stack.store, { name: 'mnist-tiny', upload: { format: 'idx', ...idxFiles(mnist.pixels, Array.from({ length: 40 }, (_, i) => i)), inputName: 'input', shape: [1, PIXELS] } });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

describe('POST /v2/models/{name}/versions/{version}/monitor', () => {
  it('refuses bad input with a 4xx that says what was wrong, and queues nothing', async () => {
    const refused = [
      [await post('/v2/models/mnist/versions/9/monitor', {}), 404, /version/],
      [await post('/v2/models/nope/versions/1/monitor', {}), 404, /nope/],
      [await post('/v2/models/mnist/versions/1/monitor', { task: 'explode' }), 400, /invalid monitoring job: task/],
      [await post('/v2/models/mnist/versions/1/monitor', { task: 'drift', date: '6 Dec' }), 400, 'invalid monitoring job: date: date must be YYYY-MM-DD'],
      [await post('/v2/models/mnist/versions/1/monitor', { task: 'baseline' }), 400, /invalid monitoring job: dataset/],
      [await post('/v2/models/mnist/versions/1/monitor', { model: 'other' }), 400, 'the model and version come from the path; leave them out of the body'],
      [await post('/v2/models/mnist/versions/1/monitor', [1]), 400, /must be a JSON object/],
      [await post('/v2/models/mnist/versions/1/monitor', undefined, '{"task":'), 400, /JSON/],
      [await post('/v2/models/Bad!/versions/1/monitor', {}), 400, /model name/],
      // A drift report needs the version's baseline.
      [await post('/v2/models/mnist/versions/1/monitor', {}), 409, /has no baseline.*POST this route with \{"task": "baseline"/],
    ] as const;
    for (const [response, status, message] of refused) {
      expect(response.status, JSON.stringify(response.body)).toBe(status);
      expect(response.body.error).toMatch(message);
    }
    expect((await api(apiEvent('GET', '/v2/models/mnist/versions/1/monitor'), context)).statusCode).toBe(405);
    expect(await queued()).toBe(0);
  });

  it('starts a baseline and then a drift report, answering 202 with the job that GET /v2/jobs/{id} follows to its end', async () => {
    const baseline = await post('/v2/models/mnist/versions/1/monitor', { task: 'baseline', dataset: 'mnist-tiny' });
    expect(baseline).toMatchObject({ status: 202, body: { kind: 'monitor', state: 'queued', request: { task: 'baseline', model: 'mnist', version: '1', dataset: 'mnist-tiny' } } });
    expect(baseline.location).toBe(`/v2/jobs/${baseline.body.id as string}`);
    expect(await follow(baseline.location!)).toMatchObject({ state: 'succeeded', result: { baseline: 'models/mnist/1/monitoring/baseline.json', rows: 40 } });

    // No body: a drift report of today's capture (none here: too few samples to judge, no drift).
    const drift = await post('/v2/models/mnist/versions/1/monitor');
    expect(drift).toMatchObject({ status: 202, body: { state: 'queued', request: { task: 'drift', model: 'mnist', version: '1' } } });
    expect(await follow(drift.location!)).toMatchObject({ state: 'succeeded', result: { drift: false, enough: false, samples: 0, report: `monitoring/mnist/1/${today}/report.json` } });
    expect(await stack.store.getObjectBytes(`monitoring/mnist/1/${today}/report.html`)).toBeDefined();
  });

  it('is what `mass monitor drift <model> --version V --watch` starts and follows to its result', async () => {
    const child = spawn(process.execPath, ['functions/cli/mass.ts', 'monitor', 'drift', 'mnist', '--version', '1', '--watch', '--interval', '0.2'], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ENDPOINT_URL: stack.emulators.awsEndpoint,
        DYNAMODB_ENDPOINT_URL: stack.emulators.dynamoEndpoint,
        MASS_BUCKET: stack.store.bucket,
        MASS_REGISTRY_TABLE: stack.store.registry!.tableName,
        MASS_MONITOR_QUEUE: 'monitor-api-monitor-steps',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    let code: number | null | undefined;
    // The worker's part (the local stack's monitor loop does this): run its steps until the CLI is done.
    while (code === undefined) {
      await monitor.pollOnce(0);
      code = await Promise.race([exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 200))]);
    }
    // The progress lines (stderr, one per change without a terminal), then the result (stdout).
    expect([code, stderr.trim().split('\n').at(-1)]).toEqual([0, expect.stringMatching(/^j-[0-9a-f]+ succeeded \[#+\] 100% 1\/1$/)]);
    expect(stderr).not.toMatch(/error/i);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toMatchObject({ drift: false, enough: false, report: `monitoring/mnist/1/${today}/report.json` });
  }, 60_000);
});
