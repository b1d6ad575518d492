/**
 * The S3 names the object store uses (artifacts/object-store.ts), for a dynamic import (lazy-clients.ts): re-exported by name so
 * the bundle holds these and what they need, where `import('@aws-sdk/client-s3')` would keep every
 * command of the client.
 */
export { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
export { Upload } from '@aws-sdk/lib-storage';
