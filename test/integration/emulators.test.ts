import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateQueueCommand, ReceiveMessageCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { CreateTopicCommand, ListTopicsCommand } from '@aws-sdk/client-sns';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { createTable } from '../../functions/core/aws/dynamo-tables.ts';
import { createDynamoClient, createS3Client, createSnsClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { DEFAULT_MAX_MODEL_BYTES } from '../../functions/core/artifacts/validation.ts';
import { LOCAL_S3_MAX_PUT_BYTES, startEmulators, type Emulators } from '../../infra/local/emulators.ts';

let emulators: Emulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

/** How a TCP connection to host:port ends: 'connected', or the error's code. */
function tryConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** This machine's own addresses other than loopback: a connection to them never leaves the host. */
const ownAddresses = Object.values(networkInterfaces())
  .flat()
  .filter((a) => a !== undefined && !a.internal && a.family === 'IPv4')
  .map((a) => a!.address);
/**
 * On Linux all of 127.0.0.0/8 reaches this host through lo: a server bound to 127.0.0.1 refuses
 * 127.0.0.2, one bound to every interface (0.0.0.0 or ::) accepts it. So the check has an address
 * to try on a host with no other one (a container with loopback only), instead of skipping.
 */
const otherLoopback = process.platform === 'linux' ? ['127.0.0.2'] : [];
const probed = [...otherLoopback, ...ownAddresses];

describe('the local emulators', () => {
  it("listen on 127.0.0.1 only: another loopback address and the machine's other addresses refuse them", async () => {
    expect(probed, `no address other than 127.0.0.1 to probe on ${process.platform} (no interface with one, and not Linux's 127.0.0.0/8)`).not.toEqual([]);
    for (const endpoint of [emulators.awsEndpoint, emulators.dynamoEndpoint]) {
      const port = Number(new URL(endpoint).port);
      expect(await tryConnect('127.0.0.1', port)).toBe('connected');
      for (const address of probed) expect(await tryConnect(address, port), `${address}:${port}`).toBe('ECONNREFUSED');
    }
  });
});

describe('the local S3', () => {
  it('takes a single PUT of 20 MB through the SDK and gives the same bytes back', async () => {
    const s3 = createS3Client({ endpoint: emulators.awsEndpoint });
    await s3.send(new CreateBucketCommand({ Bucket: 'large-put' }));
    const body = randomBytes(20_000_000);
    await s3.send(new PutObjectCommand({ Bucket: 'large-put', Key: 'incoming/big/model.onnx', Body: body }));
    const got = await (await s3.send(new GetObjectCommand({ Bucket: 'large-put', Key: 'incoming/big/model.onnx' }))).Body!.transformToByteArray();
    expect([got.byteLength, createHash('sha256').update(got).digest('hex')]).toEqual([20_000_000, createHash('sha256').update(body).digest('hex')]);
    s3.destroy();
  });

  it('takes single PUTs as large as the model size limit', () => {
    expect(LOCAL_S3_MAX_PUT_BYTES).toBeGreaterThan(DEFAULT_MAX_MODEL_BYTES);
  });
});

describe('emulators with a data folder', () => {
  it('find their S3 objects, queues, messages, topics and tables again after a restart', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'emulator-state-'));
    const first = await startEmulators({ dataDir });
    const clients = (e: Emulators) => ({
      s3: createS3Client({ endpoint: e.awsEndpoint }),
      sqs: createSqsClient({ endpoint: e.awsEndpoint }),
      sns: createSnsClient({ endpoint: e.awsEndpoint }),
      dynamo: createDynamoClient({ endpoint: e.dynamoEndpoint }),
    });
    const before = clients(first);
    await before.s3.send(new CreateBucketCommand({ Bucket: 'kept' }));
    await before.s3.send(new PutObjectCommand({ Bucket: 'kept', Key: 'models/m/1/model.onnx', Body: 'weights' }));
    const { QueueUrl } = await before.sqs.send(new CreateQueueCommand({ QueueName: 'kept-queue' }));
    await before.sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: 'job 1' }));
    const { TopicArn } = await before.sns.send(new CreateTopicCommand({ Name: 'kept-topic' }));
    await createTable(before.dynamo, {
      TableName: 'kept-table',
      AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
    });
    await before.dynamo.send(new PutItemCommand({ TableName: 'kept-table', Item: { pk: { S: 'alias#prod' }, version: { S: '3' } } }));
    for (const client of Object.values(before)) client.destroy();
    await first.stop();

    const second = await startEmulators({ dataDir });
    const after = clients(second);
    try {
      const object = await after.s3.send(new GetObjectCommand({ Bucket: 'kept', Key: 'models/m/1/model.onnx' }));
      expect(await object.Body!.transformToString()).toBe('weights');
      const received = await after.sqs.send(new ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 0 }));
      expect(received.Messages?.map((m) => m.Body)).toEqual(['job 1']);
      expect((await after.sns.send(new ListTopicsCommand({}))).Topics?.map((t) => t.TopicArn)).toEqual([TopicArn]);
      const item = await after.dynamo.send(new GetItemCommand({ TableName: 'kept-table', Key: { pk: { S: 'alias#prod' } } }));
      expect(item.Item).toEqual({ pk: { S: 'alias#prod' }, version: { S: '3' } });
    } finally {
      for (const client of Object.values(after)) client.destroy();
      await second.stop();
    }
  });
});
