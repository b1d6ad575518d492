import { GetQueueAttributesCommand, PurgeQueueCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createBatchApiHandler, createBatchSubmitQueueHandler, createBatchUploadHandler } from '../../functions/batch-submit/app.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';
import { pollSqsQueue, watchS3Prefix, type Trigger } from '../../infra/local/triggers.ts';
import { apiEvent, doublingRow, getText, pushDoublingModel, putText, startBatchStack, waitFor, type BatchStack } from '../helpers/batch-stack.ts';

// Submission through its three doors (API, upload, submit queue); nothing scores here, so the
// shards stay on the queue where they can be counted.
process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
let stack: BatchStack;
let api: ReturnType<typeof createBatchApiHandler>;
const triggers: Trigger[] = [];

async function queuedShards(): Promise<number> {
  const out = await stack.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: stack.resources.shardQueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }),
  );
  return Number(out.Attributes!.ApproximateNumberOfMessages);
}

async function post(body: unknown) {
  const response = await api(apiEvent('POST', '/v2/batches', body));
  return { status: response.statusCode, body: JSON.parse(response.body!) };
}

beforeAll(async () => {
  stack = await startBatchStack();
  await pushDoublingModel(stack);
  const { logger, metrics } = createObservability('batch-test');
  const service = stack.runtime.service();
  api = createBatchApiHandler({ service, maxBodyBytes: 1_000_000, logger, metrics });
  await putText(stack, 'batches/inputs/rows.jsonl', Array.from({ length: 100 }, (_, i) => doublingRow(i)).join('\n') + '\n');
  triggers.push(
    await watchS3Prefix({ s3: stack.s3, bucket: stack.resources.bucket, prefix: 'batches/incoming/', handler: createBatchUploadHandler({ service, s3: stack.s3, logger }), intervalMs: 100 }),
    await pollSqsQueue({ sqs: stack.sqs, queueUrl: stack.resources.submitQueueUrl, handler: createBatchSubmitQueueHandler({ service, logger }) }),
  );
});

beforeEach(async () => {
  await stack.sqs.send(new PurgeQueueCommand({ QueueUrl: stack.resources.shardQueueUrl }));
});

afterAll(async () => {
  await Promise.all(triggers.map((t) => t.stop()));
  await stack?.stop();
});

describe('POST /v2/batches', () => {
  it('returns the same job for a duplicate submission with the same idempotency key, and enqueues its shards once', async () => {
    const request = { model: 'double', input: 'batches/inputs/rows.jsonl', shard_bytes: 1024, idempotency_key: 'nightly-2026-12-01' };
    const first = await post(request);
    const second = await post(request);
    expect(first.status).toBe(202);
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    expect(second.body.created).toBe(first.body.created);
    expect(await queuedShards()).toBe(first.body.shards.total);
  });

  it('refuses the same idempotency key with a different request (409)', async () => {
    await post({ model: 'double', input: 'batches/inputs/rows.jsonl', idempotency_key: 'k-409' });
    const reused = await post({ model: 'double', input: 'batches/inputs/rows.jsonl', idempotency_key: 'k-409', batch_size: 8 });
    expect(reused.status).toBe(409);
    expect(reused.body.error).toMatch(/^batch job 'j-[0-9a-f]{24}' already exists for this idempotency key with a different request/);
  });

  it('refuses an input that does not exist (404), and enqueues nothing', async () => {
    const missing = await post({ model: 'double', input: 's3://test-models/batches/inputs/nope.jsonl' });
    expect(missing).toEqual({ status: 404, body: { error: 'input s3://test-models/batches/inputs/nope.jsonl does not exist' } });
    expect(await queuedShards()).toBe(0);
  });

  it('refuses a model that does not exist (404), or a version it does not have', async () => {
    expect(await post({ model: 'nosuch', input: 'batches/inputs/rows.jsonl' })).toEqual({ status: 404, body: { error: "unknown model 'nosuch'" } });
    expect(await post({ model: 'double', version: '9', input: 'batches/inputs/rows.jsonl' })).toEqual({
      status: 404,
      body: { error: "model 'double' has no version '9'" },
    });
  });

  it('refuses malformed requests with the reason (400)', async () => {
    expect(await post({ model: 'double' })).toEqual({ status: 400, body: { error: 'invalid batch request: give exactly one of input (an S3 location), inputs (a list of them) or rows (inline)' } });
    expect((await post({ model: 'Double!', input: 'batches/inputs/rows.jsonl' })).body.error).toBe(
      'invalid batch request at model: must match [a-z0-9][a-z0-9._-]{0,63}',
    );
    expect((await post({ model: 'double', input: 's3://elsewhere/batches/inputs/rows.jsonl' })).body.error).toBe(
      "input must be in this deployment's bucket 'test-models', not 'elsewhere'",
    );
    expect((await post({ model: 'double', input: 'models/double/1/model.onnx' })).body.error).toBe(
      "input key 'models/double/1/model.onnx' must be under batches/inputs/ or batches/incoming/",
    );
    expect((await post({ model: 'double', input: 'batches/inputs/rows.jsonl', format: 'csv', outputs: ['nope'] })).body.error).toBe(
      "unknown output 'nope'; model 'double' has outputs: y",
    );
    const notJson = await api(apiEvent('POST', '/v2/batches', '{"model":'));
    expect(notJson.statusCode).toBe(400);
  });

  it('accepts inline rows and reports an unknown job with 404', async () => {
    const inline = await post({ model: 'double', rows: [JSON.parse(doublingRow(1)), JSON.parse(doublingRow(2))] });
    expect(inline.status).toBe(202);
    expect(inline.body.input).toBe(`s3://test-models/batches/${inline.body.id}/input.jsonl`);
    const unknown = await api(apiEvent('GET', '/v2/batches/j-nothing'));
    expect([unknown.statusCode, JSON.parse(unknown.body!)]).toEqual([404, { error: "unknown batch job 'j-nothing'" }]);
  });

  it('writes inline rows out as they came: an id beyond 2^53, 20-digit values and bare NaN tokens, digit for digit', async () => {
    const row = '{"id":9007199254740993,"inputs":[{"name":"x","data":[NaN,-Infinity,0.10000000000000000555,1e400]}]}';
    const response = await api(apiEvent('POST', '/v2/batches', `{"model":"double","rows":[${row}, {"inputs":[{"name":"x","data":[1,2,3,4]}]}]}`));
    expect(response.statusCode).toBe(202);
    const { id } = JSON.parse(response.body!) as { id: string };
    expect(await getText(stack, `batches/${id}/input.jsonl`)).toBe(`${row}\n{"inputs":[{"name":"x","data":[1,2,3,4]}]}\n`);
    await waitFor('its shard to be queued', async () => ((await queuedShards()) === 1 ? true : undefined), 10_000);
  });
});

describe('an upload to batches/incoming/<job>.jsonl', () => {
  it('submits a job named after the file, with its options from the object metadata', async () => {
    await putText(stack, 'batches/incoming/upload-one.jsonl', doublingRow(7) + '\n', { model: 'double', 'batch-size': '16' });
    const job = await waitFor('the upload to be submitted', async () => {
      return stack.runtime.service().get('upload-one').catch(() => undefined);
    }, 10_000);
    expect(job).toMatchObject({ id: 'upload-one', state: 'running', model: 'double', version: '1', batch_size: 16, shards: { total: 1 } });
    // Its shard is sent after the job record is readable: waited for here, so it cannot land in the
    // next test's queue after that test's purge.
    await waitFor('its shard to be queued', async () => ((await queuedShards()) === 1 ? true : undefined), 10_000);
  });

  it('records a refused upload as a failed job that says why', async () => {
    await putText(stack, 'batches/incoming/upload-bad.jsonl', doublingRow(7) + '\n', { model: 'missing-model' });
    const job = await waitFor('the upload to be refused', () => stack.runtime.service().get('upload-bad').catch(() => undefined), 10_000);
    expect(job).toMatchObject({ id: 'upload-bad', state: 'failed', reason: "the upload was refused: unknown model 'missing-model'" });

    // Uploading it again, fixed, under the same name replaces the refusal with a real job.
    await putText(stack, 'batches/incoming/upload-bad.jsonl', doublingRow(8) + '\n', { model: 'double' });
    const fixed = await waitFor('the fixed upload to be submitted', async () => {
      const view = await stack.runtime.service().get('upload-bad');
      return view.state === 'failed' ? undefined : view;
    }, 10_000);
    expect(fixed).toMatchObject({ id: 'upload-bad', state: 'running', model: 'double', shards: { total: 1 } });
    await waitFor('its shard to be queued', async () => ((await queuedShards()) === 1 ? true : undefined), 10_000);
  });
});

describe('a message on the submit queue', () => {
  it('submits a job, and a redelivery of the same message is the same job', async () => {
    const body = JSON.stringify({ model: 'double', input: 'batches/inputs/rows.jsonl', idempotency_key: 'from-queue' });
    await stack.sqs.send(new SendMessageCommand({ QueueUrl: stack.resources.submitQueueUrl, MessageBody: body }));
    await stack.sqs.send(new SendMessageCommand({ QueueUrl: stack.resources.submitQueueUrl, MessageBody: body }));
    const expected = (await post({ model: 'double', input: 'batches/inputs/rows.jsonl', idempotency_key: 'from-queue' })).body;
    await waitFor('the queue to drain', async () => {
      const out = await stack.sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: stack.resources.submitQueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
      );
      return Number(out.Attributes!.ApproximateNumberOfMessages) + Number(out.Attributes!.ApproximateNumberOfMessagesNotVisible) === 0 ? true : undefined;
    }, 10_000);
    expect(await queuedShards()).toBe(expected.shards.total);
  });
});
