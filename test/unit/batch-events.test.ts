import { describe, expect, it } from 'vitest';
import { uploadRequest } from '../../functions/batch-submit/app.ts';
import { uploadedObjects } from '../../functions/adapters/s3-events.ts';
import { encodeS3EventKey, s3ObjectCreatedEvent } from '../../infra/local/triggers.ts';

describe('upload events', () => {
  it('name the same object whether S3 notified directly or through EventBridge', () => {
    const key = 'batches/incoming/night run+1.jsonl';
    const direct = s3ObjectCreatedEvent('models', { key, size: 10, eTag: '"abc"' });
    const bridged = {
      source: 'aws.s3' as const,
      'detail-type': 'Object Created' as const,
      detail: { bucket: { name: 'models' }, object: { key: encodeS3EventKey(key), size: 10, etag: 'abc' } },
    };
    expect(direct.Records[0]!.s3.object.key).toBe('batches/incoming/night+run%2B1.jsonl');
    expect(uploadedObjects(direct)).toEqual([{ bucket: 'models', key, size: 10, eTag: 'abc' }]);
    expect(uploadedObjects(bridged)).toEqual([{ bucket: 'models', key, size: 10, eTag: 'abc' }]);
  });

  it('take their options from object metadata', () => {
    expect(uploadRequest('batches/incoming/a.csv', { model: 'm', 'batch-size': '32', 'csv-header': 'true', outputs: 'y, z' })).toEqual({
      model: 'm',
      input: 'batches/incoming/a.csv',
      batch_size: 32,
      csv_header: true,
      outputs: ['y', 'z'],
    });
    expect(() => uploadRequest('batches/incoming/a.jsonl', {})).toThrow('the upload has no x-amz-meta-model metadata naming the model to score with');
    expect(() => uploadRequest('batches/incoming/a.jsonl', { model: 'm', 'shard-bytes': 'lots' })).toThrow('metadata shard-bytes must be an integer, got "lots"');
  });
});
