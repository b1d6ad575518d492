import { describe, expect, it } from 'vitest';
import { bootPreloads, bootStagingKey, dynamoUrl, objectUrl, signedRangeHeaders, startBootFetch, versionKeys } from '../../functions/core/boot-fetch.ts';
import { stagingKey } from '../../functions/core/registry/staging.ts';

describe('boot fetch signing', () => {
  it("signs a ranged GET exactly as S3's documented example (GET Object, bytes=0-9)", async () => {
    // docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "Example: GET Object"
    const headers = await signedRangeHeaders(
      new URL('https://examplebucket.s3.amazonaws.com/test.txt'), // the example's global host
      'bytes=0-9',
      'us-east-1',
      { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
      new Date('2013-05-24T00:00:00Z'),
    );
    expect(headers.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, ' +
        'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, ' +
        'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    );
    expect(headers['x-amz-date']).toBe('20130524T000000Z');
  });

  it('sends and signs the session token of temporary credentials (a Lambda role)', async () => {
    const headers = await signedRangeHeaders(objectUrl('b', 'k', 'eu-west-1', undefined), 'bytes=0-1', 'eu-west-1', {
      accessKeyId: 'AKID',
      secretAccessKey: 'secret',
      sessionToken: 'token-1',
    });
    expect(headers['x-amz-security-token']).toBe('token-1');
    expect(headers.authorization).toContain('SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token,');
    expect(headers.authorization).toContain('/eu-west-1/s3/aws4_request');
  });

  it('addresses the bucket as the SDK client does: path style at an endpoint, else its S3 host', () => {
    expect(objectUrl('bkt', 'models/m/1/manifest.json', 'us-east-1', 'http://127.0.0.1:4566').href).toBe('http://127.0.0.1:4566/bkt/models/m/1/manifest.json');
    expect(objectUrl('bkt', 'models/m/1/manifest.json', 'us-east-1', 'http://127.0.0.1:4566/').href).toBe('http://127.0.0.1:4566/bkt/models/m/1/manifest.json');
    expect(objectUrl('bkt', 'models/a b+/1/x.ort', 'eu-west-1', undefined).href).toBe('https://bkt.s3.eu-west-1.amazonaws.com/models/a%20b%2B/1/x.ort');
    expect(dynamoUrl('eu-west-1', undefined).href).toBe('https://dynamodb.eu-west-1.amazonaws.com/');
    expect(dynamoUrl('eu-west-1', 'http://127.0.0.1:8000').href).toBe('http://127.0.0.1:8000/');
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
