import { DynamoDBClient, QueryCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { bootPreloads, bootStagingKey, dynamoUrl, objectUrl, signedHeaders, signedRangeHeaders, startBootFetch, versionKeys } from '../../functions/core/coldstart/boot-fetch.ts';

/** sha256 of an empty body, as AWS's example publishes it for a GET. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
import { stagingKey } from '../../functions/core/artifacts/staging.ts';

const EXAMPLE_CREDENTIALS = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };

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
  it("signs AWS's published example request to its published signature (S3 API Reference, Authenticating Requests: Using the Authorization Header, Example: GET Object)", async () => {
    // AWS's S3 API Reference (sig-v4-header-based-auth): the first 10 bytes of test.txt in examplebucket,
    // us-east-1, with the documentation's example credentials and date. Nothing is sent, and the URL is
    // a loopback one: the published Host is only the header value the published signature covers (a
    // caller's headers win over the URL's host in signedHeaders), never an address the test reaches.
    const url = new URL('http://127.0.0.1:9/test.txt');
    const host = 'examplebucket.s3.amazonaws.com';
    const headers = await signedHeaders(url, { method: 'GET', headers: { host, range: 'bytes=0-9', 'x-amz-content-sha256': EMPTY_SHA256 } }, 's3', 'us-east-1', EXAMPLE_CREDENTIALS, new Date('2013-05-24T00:00:00Z'));
    expect(headers).toMatchObject({
      host,
      range: 'bytes=0-9',
      'x-amz-content-sha256': EMPTY_SHA256,
      'x-amz-date': '20130524T000000Z',
    });
    // As published, but for the ", " between the parts, which the SDK's signer writes and AWS accepts.
    expect(headers.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, ' +
        'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
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
