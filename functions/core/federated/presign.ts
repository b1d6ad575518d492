/**
 * Pre-signed S3 URLs (SigV4 query signing with the SDK's own signer): a client downloads the global
 * model and uploads its update straight to the bucket, on a URL good for one key, one method and a
 * limited time, with no AWS credentials of its own.
 */
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { objectUrl } from '../coldstart/boot-fetch.ts';

export interface Presigner {
  url(method: 'GET' | 'PUT', key: string, expiresSeconds: number): Promise<string>;
}

export interface PresignerOptions {
  bucket: string;
  region: string;
  /** Path-style endpoint (the emulators); S3's own virtual-hosted address otherwise. */
  endpoint?: string | undefined;
  credentials: () => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string | undefined }>;
  now?: () => Date;
}

export function s3Presigner(options: PresignerOptions): Presigner {
  return {
    async url(method, key, expiresSeconds) {
      const url = objectUrl(options.bucket, key, options.region, options.endpoint);
      const signer = new SignatureV4({ service: 's3', region: options.region, credentials: await options.credentials(), sha256: Hash.bind(null, 'sha256'), uriEscapePath: false, applyChecksum: false });
      const signed = await signer.presign(
        {
          method,
          protocol: url.protocol,
          hostname: url.hostname,
          ...(url.port ? { port: Number(url.port) } : {}),
          path: url.pathname,
          query: {},
          headers: { host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
        },
        { expiresIn: expiresSeconds, signingDate: (options.now ?? (() => new Date()))() },
      );
      const query = new URLSearchParams();
      for (const [name, value] of Object.entries(signed.query ?? {})) query.set(name, Array.isArray(value) ? value.join(',') : String(value));
      return `${url.origin}${url.pathname}?${query.toString()}`;
    },
  };
}
