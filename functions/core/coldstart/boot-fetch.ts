import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { http1Request, type Http1Response } from './http1-client.ts';
import { keys } from '../artifacts/keys.ts';
import { isValidName } from '../artifacts/names.ts';
import { IntegrityError } from '../platform/errors.ts';
import { ARTIFACT_FIRST_PARTS, downloadRanged, totalFromContentRange, type Downloaded, type RangeReader, type RangeResponse } from '../artifacts/ranged-download.ts';
import { registeredVersions, uploadedVersions } from '../artifacts/indexed-versions.ts';
import { recordsOfModel, type AliasRecord } from '../registry/registry-table.ts';
import { DEFAULT_ALIAS, defaultVersion } from '../registry/routing.ts';

/**
 * The boot fetch: the requests a cold start's pre-warm needs, sent before the rest of the bundle is
 * evaluated and without the SDK's clients. A PRELOAD_MODELS entry that names its version ("mnist:3")
 * has fixed keys, so its manifest and staged artifact are asked for at once; an entry by name
 * ("mnist") first reads the model's partition of the registry table (one DynamoDB Query), picks the
 * version as a request without one would go (default alias, else highest), then fetches that. All of
 * it is signed with the SDK's own SigV4 signer, with the environment's credentials (a Lambda's
 * role), and sent by http1-client.ts, which reads each body straight into the model's buffer.
 * Measured on a cold start, the SDK's clients, endpoint rules and middleware were the largest block
 * of our own CPU time before the first byte.
 *
 * It only ever saves time: the store takes each download once and checks it exactly as an SDK
 * download (manifest schema, artifact size and sha256); the service takes the registry read as its
 * first cached read of the model; anything missing, refused or failed falls back to the SDK.
 */
export interface BootFetchEnv {
  PRELOAD_MODELS?: string | undefined;
  MODEL_BUCKET?: string | undefined;
  MODEL_STAGING?: string | undefined;
  REGISTRY_TABLE?: string | undefined;
  DEFAULT_ALIAS?: string | undefined;
  AWS_REGION?: string | undefined;
  AWS_ENDPOINT_URL?: string | undefined;
  AWS_ENDPOINT_URL_S3?: string | undefined;
  DYNAMODB_ENDPOINT_URL?: string | undefined;
  AWS_ACCESS_KEY_ID?: string | undefined;
  AWS_SECRET_ACCESS_KEY?: string | undefined;
  AWS_SESSION_TOKEN?: string | undefined;
}

/** What the boot fetch read of a model pre-warmed by name. */
export interface BootRegistryRead {
  /** Registered versions, lowest first, and the aliases by name: what the service's alias cache holds. */
  versions: string[];
  /** The versions a user uploaded (registry-table.ts uploadedVersions): the default route without a default alias. */
  uploaded: string[];
  aliases: Map<string, AliasRecord>;
  /** The version the pre-warm loads (and whose files were fetched). */
  version: string;
  /** When the registry answered (ms since the epoch), for the alias cache's time to live. */
  at: number;
}

/**
 * A model-wide config read at boot for its first use: the registry table's setting item (`setting`:
 * undefined when unset) or, without a table, the object's bytes (`object`: undefined when absent).
 */
export type BootModelConfig = { setting: unknown } | { object: Uint8Array | undefined };

/** Where a model-wide config is kept, so the boot fetch can read it with the rest (e.g. monitoring). */
export interface BootModelConfigLocation {
  /** The registry table's `SETTING#<name>` item of the model's partition. */
  setting: string;
  /** The object read instead when there is no registry table. */
  objectKey: (model: string) => string;
}

/** The most a model-wide config object may hold to be read at boot (a larger one is read by the SDK). */
const MODEL_CONFIG_MAX_BYTES = 1024 * 1024;

export interface BootFetch {
  /**
   * The downloads by key, for ModelStore's `prefetched`; a name's entries join once its version is
   * known (before its `registry` read resolves). None rejects unseen.
   */
  downloads: Map<string, Promise<Downloaded | undefined>>;
  /**
   * Registry reads of the models pre-warmed by name, or by version with a registry table (the service's
   * first cached read of the model); undefined when the read failed or found none.
   */
  registry: Map<string, Promise<BootRegistryRead | undefined>>;
  /** Model-wide configs of the models pre-warmed, when a location was given; undefined when not read. */
  modelConfigs: Map<string, Promise<BootModelConfig | undefined>>;
  /** Settles once every first request is written to its socket (or failed): then the bundle may go on. */
  sent: Promise<void>;
}

/** A stalled connection gives up after this long (the SDK path then tries). */
const IDLE_TIMEOUT_MS = 5_000;

/** sha256 of an empty body: a GET's payload hash, as in S3's own signing examples. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export interface BootCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

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

/** The pre-warm entries the boot fetch can serve: valid names, with their version when one is named. */
export function bootPreloads(preloadModels: string): { name: string; version?: string }[] {
  const out: { name: string; version?: string }[] = [];
  for (const ref of preloadModels.split(',').map((s) => s.trim())) {
    const [name, version, extra] = ref.split(':');
    if (!name || extra !== undefined || !isValidName(name) || (version !== undefined && !isValidName(version))) continue;
    out.push(version === undefined ? { name } : { name, version });
  }
  return out;
}

/** What a pre-warm of one version reads first: its manifest, and its staged artifact when staging is on. */
export function versionKeys(name: string, version: string, stagingKey: string | undefined): string[] {
  return stagingKey ? [keys.manifest(name, version), keys.staged(name, version, stagingKey)] : [keys.manifest(name, version)];
}

/** SigV4 headers for a request to `url` (the path signed as sent: S3 and DynamoDB escape nothing again). */
export async function signedHeaders(
  url: URL,
  request: { method: string; headers: Record<string, string>; body?: string },
  service: 's3' | 'dynamodb',
  region: string,
  credentials: BootCredentials,
  signingDate = new Date(),
): Promise<Record<string, string>> {
  const signer = new SignatureV4({ service, region, credentials, sha256: Hash.bind(null, 'sha256'), uriEscapePath: false });
  const signed = await signer.sign(
    {
      method: request.method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query: {},
      headers: { host: url.host, ...request.headers },
      ...(request.body !== undefined ? { body: request.body } : {}),
    },
    { signingDate },
  );
  return signed.headers;
}

/** The headers of a SigV4-signed ranged GET of an S3 object. */
export function signedRangeHeaders(url: URL, range: string, region: string, credentials: BootCredentials, signingDate = new Date()) {
  return signedHeaders(url, { method: 'GET', headers: { range, 'x-amz-content-sha256': EMPTY_SHA256 } }, 's3', region, credentials, signingDate);
}

/** Where an object is fetched: path style at a configured endpoint (as createS3Client), else S3's own host. */
export function objectUrl(bucket: string, key: string, region: string, endpoint: string | undefined): URL {
  const base = endpoint ? new URL(`${endpoint.replace(/\/$/, '')}/${bucket}/`) : new URL(`https://${bucket}.s3.${region}.amazonaws.com/`);
  return new URL(key.split('/').map(encodeURIComponent).join('/'), base);
}

/** Where DynamoDB is reached: its configured endpoint (as createDynamoClient), else the regional one. */
export function dynamoUrl(region: string, endpoint: string | undefined): URL {
  return new URL(endpoint ? `${endpoint.replace(/\/$/, '')}/` : `https://dynamodb.${region}.amazonaws.com/`);
}

/** A GET's body into out[at..]: RangeResponse.readInto over http1-client. */
function readResponseInto(key: string, response: Http1Response, out: Uint8Array, at: number, limit: number): Promise<number> {
  const length = response.contentLength;
  if (length === undefined) {
    response.discard();
    return Promise.reject(new Error(`${key}: the response's body is not framed by Content-Length`)); // the SDK path then reads it
  }
  if (at + length > limit) {
    response.discard();
    return Promise.reject(new IntegrityError(`${key}: range ${at}-${limit - 1} returned ${length} bytes, more than ${limit - at}`));
  }
  return response.readInto(out.subarray(at, at + length)).then(() => length);
}

/** Starts the boot fetch for this environment; with nothing to fetch, both maps are empty. */
export function startBootFetch(env: BootFetchEnv = process.env, options: { modelConfig?: BootModelConfigLocation } = {}): BootFetch {
  const downloads = new Map<string, Promise<Downloaded | undefined>>();
  const registry = new Map<string, Promise<BootRegistryRead | undefined>>();
  const modelConfigs = new Map<string, Promise<BootModelConfig | undefined>>();
  const nothing = { downloads, registry, modelConfigs, sent: Promise.resolve() };
  const { MODEL_BUCKET: bucket, AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = env;
  if (!env.PRELOAD_MODELS || !bucket || !accessKeyId || !secretAccessKey) return nothing;
  const table = env.REGISTRY_TABLE;
  const preloads = bootPreloads(env.PRELOAD_MODELS).filter((p) => p.version !== undefined || table);
  if (preloads.length === 0) return nothing;
  let stagingKey: string | undefined;
  try {
    stagingKey = env.MODEL_STAGING === 'off' ? undefined : bootStagingKey();
  } catch {
    stagingKey = undefined; // onnxruntime not resolvable from here: the ordinary load will say why
  }
  const region = env.AWS_REGION ?? 'us-east-1';
  const s3Endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  const credentials = { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN };
  const sent: Promise<void>[] = [];
  /** True while this function runs: the requests sent meanwhile are the ones `sent` covers. */
  let starting = true;
  /** A promise for `sent`, taken synchronously; the request resolves it once written. */
  const sentMark = () => {
    let mark!: () => void;
    sent.push(new Promise<void>((done) => (mark = done)));
    return mark;
  };
  /** Sends one request; resolves with the response once its head is in. `wrote` is told when it is on the wire. */
  const send = (url: URL, method: string, headers: Promise<Record<string, string>>, wrote: (() => void) | undefined, body?: string) =>
    http1Request(url, { method, headers, body, idleTimeoutMs: IDLE_TIMEOUT_MS, onWritten: wrote });

  /** `awaited`: `sent` waits for the requests it sends while the boot fetch starts (every part asked for at once). */
  const reader = (key: string, awaited: boolean): RangeReader => {
    const url = objectUrl(bucket, key, region, s3Endpoint);
    return async (start, end) => {
      const wrote = awaited && starting ? sentMark() : undefined;
      try {
        // Connecting starts now; the request is written once signed.
        const response = await send(url, 'GET', signedRangeHeaders(url, `bytes=${start}-${end}`, region, credentials), wrote);
        const { status } = response;
        if (status === 200 || status === 206) {
          const total = totalFromContentRange(response.headers.get('content-range')) ?? (start === 0 ? response.contentLength : undefined);
          return { total, readInto: (out, at, limit) => readResponseInto(key, response, out, at, limit), discard: () => response.discard() } satisfies RangeResponse;
        }
        response.discard();
        if (status === 404) return undefined;
        if (status === 416) return 'beyond-end';
        throw new Error(`boot fetch of ${key}: HTTP ${status}`);
      } finally {
        wrote?.(); // signing failed, or the request ended before its write was seen: nothing to wait for
      }
    };
  };
  /** Starts a version's downloads; `sent` waits for their first requests when `awaited` (known at boot). */
  const fetchVersion = (name: string, version: string, awaited: boolean) => {
    for (const key of versionKeys(name, version, stagingKey)) {
      const firstParts = key === keys.manifest(name, version) ? 1 : ARTIFACT_FIRST_PARTS;
      const download = downloadRanged(key, reader(key, awaited), { firstParts });
      download.catch(() => undefined); // the store falls back to the SDK; nothing rejects unseen
      downloads.set(key, download);
    }
  };

  /** One Query of the model's partition; undefined when it needs more than one page (the SDK then reads it). */
  const queryModel = async (model: string, wrote: (() => void) | undefined): Promise<Record<string, unknown>[] | undefined> => {
    const url = dynamoUrl(region, env.DYNAMODB_ENDPOINT_URL ?? env.AWS_ENDPOINT_URL);
    const body = JSON.stringify({
      TableName: table,
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': { S: `MODEL#${model}` } },
    });
    const headers = signedHeaders(
      url,
      { method: 'POST', headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'DynamoDB_20120810.Query' }, body },
      'dynamodb',
      region,
      credentials,
    );
    const response = await send(url, 'POST', headers, wrote, body);
    const text = await response.text();
    if (response.status !== 200) throw new Error(`boot registry read of ${model}: HTTP ${response.status}: ${text.slice(0, 200)}`);
    const page = JSON.parse(text) as { Items?: Record<string, never>[]; LastEvaluatedKey?: unknown };
    if (page.LastEvaluatedKey) return undefined;
    return (page.Items ?? []).map((item) => unmarshall(item));
  };

  const location = options.modelConfig;
  /** The model-wide config's item among a Query's items (the partition's, or the setting's prefix). */
  const settingOf = (items: Record<string, unknown>[] | undefined, setting: string): BootModelConfig | undefined =>
    items && { setting: items.find((item) => item.sk === `SETTING#${setting}`)?.value };
  /** The config object, without a registry table: its bytes, undefined when absent (404). */
  const readConfigObject = async (key: string): Promise<BootModelConfig | undefined> => {
    const url = objectUrl(bucket, key, region, s3Endpoint);
    const response = await send(url, 'GET', signedRangeHeaders(url, `bytes=0-${MODEL_CONFIG_MAX_BYTES - 1}`, region, credentials), undefined);
    if (response.status === 404) {
      response.discard();
      return { object: undefined };
    }
    const length = response.contentLength;
    const total = totalFromContentRange(response.headers.get('content-range')) ?? length;
    if ((response.status !== 200 && response.status !== 206) || length === undefined || total !== length) {
      response.discard();
      return undefined; // refused, unframed, or larger than the range asked for: the SDK reads it
    }
    const bytes = new Uint8Array(length);
    await response.readInto(bytes);
    return { object: bytes };
  };
  const readModelConfig = (name: string, read: () => Promise<BootModelConfig | undefined>) => {
    const config = read();
    config.catch(() => undefined); // the first use then reads it itself
    modelConfigs.set(name, config);
  };

  for (const preload of preloads) {
    const pinned = preload.version;
    if (pinned !== undefined) fetchVersion(preload.name, pinned, true);
    if (pinned !== undefined && !table) {
      if (location) readModelConfig(preload.name, () => readConfigObject(location.objectKey(preload.name)));
      continue;
    }
    // The model's partition: the version to load (by name), the records that say a pinned version is
    // registered (no GetItem of the SDK's on the way to its session), and the model-wide settings.
    const wrote = pinned === undefined ? sentMark() : undefined;
    const partition = queryModel(preload.name, wrote).finally(() => wrote?.());
    partition.catch(() => undefined); // read and config below say what became of it
    if (location) readModelConfig(preload.name, async () => settingOf(await partition, location.setting));
    const read = (async (): Promise<BootRegistryRead | undefined> => {
      const items = await partition;
      if (!items) return undefined;
      const records = recordsOfModel(items);
      const versions = registeredVersions(records.versions);
      const uploaded = uploadedVersions(records.versions);
      const aliases = new Map(records.aliases.map((a) => [a.alias, a]));
      const version = pinned ?? defaultVersion(uploaded, aliases, env.DEFAULT_ALIAS ?? DEFAULT_ALIAS);
      if (!version) return undefined;
      if (pinned === undefined) fetchVersion(preload.name, version, false); // started before this read resolves
      return { versions, uploaded, aliases, version, at: Date.now() };
    })();
    read.catch(() => undefined); // the service then reads the registry itself
    registry.set(preload.name, read);
  }
  starting = false;
  return { downloads, registry, modelConfigs, sent: Promise.all(sent).then(() => undefined) };
}
