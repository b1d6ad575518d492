import type { S3Event } from 'aws-lambda';
import type { UploadedObject } from '../core/registry/register-upload.ts';

/** EventBridge's "Object Created" from S3: how the deployed stack delivers uploads of its own bucket. */
export interface S3ObjectCreatedDetailEvent {
  source: 'aws.s3';
  'detail-type': 'Object Created';
  detail: { bucket: { name: string }; object: { key: string; size?: number; etag?: string } };
}


/** S3 event keys are URL-encoded with '+' for spaces. */
export function decodeS3Key(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}

/** The objects an S3 notification or an EventBridge event names, keys decoded. */
export function uploadedObjects(event: S3Event | S3ObjectCreatedDetailEvent): UploadedObject[] {
  if ('Records' in event) {
    return event.Records.map((r) => ({ bucket: r.s3.bucket.name, key: decodeS3Key(r.s3.object.key), size: r.s3.object.size, eTag: r.s3.object.eTag }));
  }
  const { bucket, object } = event.detail;
  return [{ bucket: bucket.name, key: decodeS3Key(object.key), size: object.size, eTag: object.etag }];
}
