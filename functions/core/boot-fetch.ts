import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { keys } from './keys.ts';
import { isValidName } from './names.ts';
import { downloadRanged, totalFromContentRange, type Downloaded, type RangeReader, type RangeResponse } from './ranged-download.ts';

/**
 * The boot fetch: the GETs a cold start's pre-warm needs, sent before the rest of the bundle is
 * evaluated and without the SDK. For every PRELOAD_MODELS entry that names its version ("mnist:3")
 * the manifest and the staged artifact have fixed keys, so they can be asked for at once; they are
 * signed with the SDK's own SigV4 signer and sent on node:http(s). Measured on a cold start, the
 * SDK's clients, endpoint rules and middleware cost more CPU before the first byte than the 15 MB
 * transfer itself; here the bytes are in before the bundle's init asks for them.
 *
 * It only ever saves time: the store takes each result once, checks it exactly as an SDK download
 * (manifest schema, artifact size and sha256), and falls back to the SDK for anything missing,
 * refused or failed. Entries without a version (resolved through the registry's aliases) and
 * environments without credentials in the environment go the ordinary way.
 */
export interface BootFetchEnv {
  PRELOAD_MODELS?: string | undefined;
  MODEL_BUCKET?: string | undefined;
  MODEL_STAGING?: string | undefined;
  AWS_REGION?: string | undefined;
  AWS_ENDPOINT_URL?: string | undefined;
  AWS_ENDPOINT_URL_S3?: string | undefined;
  AWS_ACCESS_KEY_ID?: string | undefined;
  AWS_SECRET_ACCESS_KEY?: string | undefined;
  AWS_SESSION_TOKEN?: string | undefined;
}

/** A stalled connection gives up after this long (the SDK path then tries). */
const IDLE_TIMEOUT_MS = 5_000;

/**
 * The staging key of the onnxruntime this process will load (registry/staging.ts's stagingKey(),
 * which needs onnxruntime loaded), from onnxruntime-node's package.json: reading it costs no
 * module evaluation. A test holds the two equal.
 */
export function bootStagingKey(): string {
  const require = createRequire(import.meta.url);
  const pkg = join(dirname(require.resolve('onnxruntime-node')), '..', 'package.json');
  const { version } = JSON.parse(readFileSync(pkg, 'utf8')) as { version: string };
  return `ort-${version}-${process.platform}-${process.arch}`;
}

/** The keys a pre-warm of these models reads first: each versioned entry's manifest and staged artifact. */
export function bootFetchKeys(preloadModels: string, stagingKey: string | undefined): string[] {
  const out: string[] = [];
  for (const ref of preloadModels.split(',').map((s) => s.trim())) {
    const [name, version, extra] = ref.split(':');
    if (!name || !version || extra !== undefined || !isValidName(name) || !isValidName(version)) continue;
    out.push(keys.manifest(name, version));
    if (stagingKey) out.push(keys.staged(name, version, stagingKey));
  }
  return out;
}

/** sha256 of an empty body: a GET's payload hash, as in S3's own signing examples. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export interface BootCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

/** The headers of a SigV4-signed ranged GET of `url` (S3's signing: the path as sent, not escaped again). */
export async function signedRangeHeaders(
  url: URL,
  range: string,
  region: string,
  credentials: BootCredentials,
  signingDate = new Date(),
): Promise<Record<string, string>> {
  const signer = new SignatureV4({ service: 's3', region, credentials, sha256: Hash.bind(null, 'sha256'), uriEscapePath: false });
  const signed = await signer.sign(
    {
      method: 'GET',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query: {},
      headers: { host: url.host, range, 'x-amz-content-sha256': EMPTY_SHA256 },
    },
    { signingDate },
  );
  return signed.headers;
}

/** Where an object is fetched: path style at a configured endpoint (as createS3Client), else S3's own host. */
export function objectUrl(bucket: string, key: string, region: string, endpoint: string | undefined): URL {
  const base = endpoint ? new URL(`${endpoint.replace(/\/$/, '')}/${bucket}/`) : new URL(`https://${bucket}.s3.${region}.amazonaws.com/`);
  return new URL(key.split('/').map(encodeURIComponent).join('/'), base);
}

export interface BootFetch {
  /** The downloads by key, for ModelStore's `prefetched`. None rejects unseen. */
  downloads: Map<string, Promise<Downloaded | undefined>>;
  /** Settles once every first request is written to its socket (or failed): then the bundle may go on. */
  sent: Promise<void>;
}

/** Starts the boot fetch for this environment; with nothing to fetch, `downloads` is empty. */
export function startBootFetch(env: BootFetchEnv = process.env): BootFetch {
  const downloads = new Map<string, Promise<Downloaded | undefined>>();
  const { MODEL_BUCKET: bucket, AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = env;
  if (!env.PRELOAD_MODELS || !bucket || !accessKeyId || !secretAccessKey) return { downloads, sent: Promise.resolve() };
  let stagingKey: string | undefined;
  try {
    stagingKey = env.MODEL_STAGING === 'off' ? undefined : bootStagingKey();
  } catch {
    stagingKey = undefined; // onnxruntime not resolvable from here: the ordinary load will say why
  }
  const wanted = bootFetchKeys(env.PRELOAD_MODELS, stagingKey);
  if (wanted.length === 0) return { downloads, sent: Promise.resolve() };
  const region = env.AWS_REGION ?? 'us-east-1';
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const credentials = { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN };
  const transport = objectUrl(bucket, 'x', region, endpoint).protocol === 'https:' ? https : http;
  const agent = new transport.Agent({ keepAlive: true, maxSockets: 8 });
  const sent: Promise<void>[] = [];
  const reader = (key: string): RangeReader => {
    const url = objectUrl(bucket, key, region, endpoint);
    // The first call comes synchronously from downloadRanged: its request's write is what `sent` waits for.
    let markSent: (() => void) | undefined;
    sent.push(new Promise<void>((done) => (markSent = done)));
    return async (start, end) => {
      const wrote = markSent;
      markSent = undefined;
      try {
        const headers = await signedRangeHeaders(url, `bytes=${start}-${end}`, region, credentials);
        return await new Promise<RangeResponse | undefined>((resolve, reject) => {
          const request = transport.get(url, { agent, headers, timeout: IDLE_TIMEOUT_MS }, (response) => {
            const status = response.statusCode ?? 0;
            if (status === 404) {
              response.resume();
              resolve(undefined);
            } else if (status !== 200 && status !== 206) {
              response.resume();
              reject(new Error(`boot fetch of ${key}: HTTP ${status}`));
            } else {
              const length = response.headers['content-length'];
              const total = totalFromContentRange(response.headers['content-range']) ?? (start === 0 && length ? Number(length) : undefined);
              resolve({ total, body: response });
            }
          });
          request.on('timeout', () => request.destroy(new Error(`boot fetch of ${key}: no data for ${IDLE_TIMEOUT_MS} ms`)));
          request.on('error', reject);
          if (wrote) request.once('finish', wrote).once('error', wrote);
        });
      } finally {
        wrote?.(); // signing failed, or the request ended before its write was seen: nothing to wait for
      }
    };
  };
  for (const key of wanted) {
    const download = downloadRanged(key, reader(key));
    download.catch(() => undefined); // the store falls back to the SDK; nothing rejects unseen
    downloads.set(key, download);
  }
  // Idle keep-alive sockets would outlive the boot fetch: close them once every download settled.
  void Promise.allSettled(downloads.values()).then(() => agent.destroy());
  return { downloads, sent: Promise.all(sent).then(() => undefined) };
}
