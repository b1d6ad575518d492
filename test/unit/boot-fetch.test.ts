import { createHash, createHmac } from 'node:crypto';
import { DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { bootPreloads, bootStagingKey, dynamoUrl, objectUrl, signedRangeHeaders, startBootFetch, versionKeys } from '../../functions/core/boot-fetch.ts';
import { stagingKey } from '../../functions/core/registry/staging.ts';

/**
 * SigV4 as AWS's documentation spells it (canonical request, string to sign, derived key), written
 * with node:crypto alone: an oracle independent of the SDK's signer that the boot fetch uses. Each
 * header's value is trimmed; the path is used as sent (S3 does not escape it again).
 */
function referenceSignature(request: { method: string; url: URL; headers: Record<string, string>; payloadSha256: string }, region: string, service: string, secret: string, amzDate: string): string {
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
  const hmac = (key: string | Buffer, text: string) => createHmac('sha256', key).update(text).digest();
  const names = Object.keys(request.headers).map((n) => n.toLowerCase()).sort();
  const value = (name: string) => Object.entries(request.headers).find(([n]) => n.toLowerCase() === name)![1].trim();
  const canonical = [request.method, request.url.pathname, '', names.map((n) => `${n}:${value(n)}\n`).join(''), names.join(';'), request.payloadSha256].join('\n');
  const day = amzDate.slice(0, 8);
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  return createHmac('sha256', key).update(toSign).digest('hex');
}

const EXAMPLE_CREDENTIALS = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };
const EMPTY_SHA256 = createHash('sha256').update('').digest('hex');

/** Where an SDK client would send a command: its request, stopped before anything is sent. */
async function sdkRequestUrl(client: S3Client | DynamoDBClient, send: () => Promise<unknown>): Promise<string> {
  let url: string | undefined;
  (client.middlewareStack as S3Client['middlewareStack']).add(
    () => async (args) => {
      const request = args.request as { protocol: string; hostname: string; port?: number; path: string };
      url = `${request.protocol}//${request.hostname}${request.port ? `:${request.port}` : ''}${request.path}`;
      throw new Error('stopped before sending');
    },
    { step: 'build', name: 'captureUrl' },
  );
  await expect(send()).rejects.toThrow('stopped before sending');
  return url!;
}

describe('boot fetch signing', () => {
  it('signs a ranged GET as SigV4 specifies: the signature an independent computation gives, over host, range, payload hash and date', async () => {
    const url = objectUrl('bkt', 'models/a b+/1/x.ort', 'eu-west-1', 'http://127.0.0.1:4566');
    const headers = await signedRangeHeaders(url, 'bytes=0-9', 'eu-west-1', EXAMPLE_CREDENTIALS, new Date('2013-05-24T00:00:00Z'));
    expect(headers['x-amz-date']).toBe('20130524T000000Z');
    expect(headers['x-amz-content-sha256']).toBe(EMPTY_SHA256);
    const signature = referenceSignature(
      { method: 'GET', url, headers: { host: '127.0.0.1:4566', range: 'bytes=0-9', 'x-amz-content-sha256': EMPTY_SHA256, 'x-amz-date': '20130524T000000Z' }, payloadSha256: EMPTY_SHA256 },
      'eu-west-1',
      's3',
      EXAMPLE_CREDENTIALS.secretAccessKey,
      '20130524T000000Z',
    );
    expect(headers.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/eu-west-1/s3/aws4_request, ' +
        `SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=${signature}`,
    );
  });

  it('sends and signs the session token of temporary credentials (a Lambda role)', async () => {
    const headers = await signedRangeHeaders(objectUrl('b', 'k', 'eu-west-1', 'http://127.0.0.1:4566'), 'bytes=0-1', 'eu-west-1', {
      accessKeyId: 'AKID',
      secretAccessKey: 'secret',
      sessionToken: 'token-1',
    });
    expect(headers['x-amz-security-token']).toBe('token-1');
    expect(headers.authorization).toContain('SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token,');
    expect(headers.authorization).toContain('/eu-west-1/s3/aws4_request');
  });

  it('addresses the bucket and the table as the SDK clients do: path style at an endpoint, else their regional hosts', async () => {
    expect(objectUrl('bkt', 'models/m/1/manifest.json', 'us-east-1', 'http://127.0.0.1:4566').href).toBe('http://127.0.0.1:4566/bkt/models/m/1/manifest.json');
    expect(objectUrl('bkt', 'models/m/1/manifest.json', 'us-east-1', 'http://127.0.0.1:4566/').href).toBe('http://127.0.0.1:4566/bkt/models/m/1/manifest.json');
    expect(dynamoUrl('eu-west-1', 'http://127.0.0.1:8000').href).toBe('http://127.0.0.1:8000/');
    // With no endpoint configured (as in AWS), the URL the SDK's own endpoint rules give, captured
    // before the request is sent: nothing leaves the machine.
    const region = 'eu-west-1';
    const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };
    const s3 = new S3Client({ region, credentials });
    expect(objectUrl('bkt', 'models/a b+/1/x.ort', region, undefined).href).toBe(await sdkRequestUrl(s3, () => s3.send(new GetObjectCommand({ Bucket: 'bkt', Key: 'models/a b+/1/x.ort' }))));
    const dynamo = new DynamoDBClient({ region, credentials });
    expect(dynamoUrl(region, undefined).href).toBe(await sdkRequestUrl(dynamo, () => dynamo.send(new QueryCommand({ TableName: 't', KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': { S: 'x' } } }))));
  });
});

describe('what the boot fetch asks for', () => {
  it('the staging key it computes without loading onnxruntime is the one the store uses', () => {
    expect(bootStagingKey()).toBe(stagingKey());
  });

  it('reads the pre-warm entries it can serve: by name or name:version, names it would refuse skipped', () => {
    expect(bootPreloads('mnist:3, silero-vad ,Bad:1,a:b:c,x:1..2,ok:Bad')).toEqual([{ name: 'mnist', version: '3' }, { name: 'silero-vad' }]);
    expect(bootPreloads('')).toEqual([]);
    expect(versionKeys('mnist', '3', 'ort-k')).toEqual(['models/mnist/3/manifest.json', 'models/mnist/3/staged/ort-k.ort']);
    expect(versionKeys('mnist', '3', undefined)).toEqual(['models/mnist/3/manifest.json']);
  });

  it('starts nothing without credentials in the environment, a bucket, or a versioned entry', async () => {
    const env = { PRELOAD_MODELS: 'mnist:1', MODEL_BUCKET: 'b', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's', AWS_ENDPOINT_URL: 'http://127.0.0.1:9' };
    for (const without of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'MODEL_BUCKET', 'PRELOAD_MODELS'] as const) {
      const fetch = startBootFetch({ ...env, [without]: undefined });
      expect(fetch.downloads.size).toBe(0);
      await fetch.sent;
    }
    // By name it needs the registry table to resolve the version.
    const unversioned = startBootFetch({ ...env, PRELOAD_MODELS: 'mnist' });
    expect(unversioned.downloads.size).toBe(0);
    expect(unversioned.registry.size).toBe(0);
  });
});
