import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { createDynamoClient, createS3Client } from '../core/aws/clients.ts';
import { RegistryTable } from '../core/registry/registry-table.ts';
import { ModelRepository } from '../core/registry/repository.ts';
import { ObjectStore } from '../core/artifacts/object-store.ts';

/**
 * What every command needs: where the API and the bucket are. Flags win, then environment, then the
 * file `npm start` writes (.local/stack.json), so the CLI works against the local stack unconfigured.
 */
export interface CliOptions {
  api?: string;
  bucket?: string;
}

interface LocalStackFile {
  api: string;
  bucket: string;
  awsEndpoint: string;
  dynamoEndpoint: string;
  registryTable?: string;
  /** The batch functions' environment on the local stack, for `mass batch worker`. */
  batchWorkerEnv?: Record<string, string>;
}

export interface FoundLocalStack extends LocalStackFile {
  /** The project folder that holds .local/stack.json. */
  root: string;
}

/**
 * The local stack `npm start` wrote to .local/stack.json, in `cwd` or the nearest folder above it
 * (the CLI works from any subfolder of the project). A file that is there but unreadable is an error.
 */
export function localStackFile(cwd = process.cwd()): FoundLocalStack | undefined {
  for (let dir = cwd; ; dir = dirname(dir)) {
    const file = join(dir, '.local', 'stack.json');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && (error as NodeJS.ErrnoException).code !== 'ENOTDIR') throw error;
      if (dirname(dir) === dir) return undefined;
      continue;
    }
    try {
      return { ...(JSON.parse(text) as LocalStackFile), root: dir };
    } catch (error) {
      throw new CliError(`${file} is not valid JSON (${(error as Error).message}): restart the local stack with \`npm start\``);
    }
  }
}

export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

export function cliContext(options: CliOptions) {
  const local = localStackFile();
  if (local && !process.env.AWS_ENDPOINT_URL) {
    process.env.AWS_ENDPOINT_URL = local.awsEndpoint;
    process.env.DYNAMODB_ENDPOINT_URL ??= local.dynamoEndpoint;
    process.env.AWS_ACCESS_KEY_ID ??= 'test';
    process.env.AWS_SECRET_ACCESS_KEY ??= 'test';
    process.env.AWS_EC2_METADATA_DISABLED ??= 'true';
  }
  const api = (options.api ?? process.env.MASS_API_URL ?? local?.api ?? 'http://127.0.0.1:3000').replace(/\/$/, '');
  const bucket = options.bucket ?? process.env.MASS_BUCKET ?? local?.bucket;
  const registryTable = process.env.MASS_REGISTRY_TABLE ?? local?.registryTable;
  return {
    api,
    /** The local stack's project folder when the CLI talks to one. */
    localRoot: local?.root,
    store(): ModelRepository {
      if (!bucket) throw new CliError('no bucket: pass --bucket, set MASS_BUCKET, or run `npm start` for the local stack');
      return new ModelRepository({
        s3: createS3Client(),
        bucket,
        cacheDir: join(local?.root ?? process.cwd(), '.local', 'cache'),
        registry: registryTable ? new RegistryTable(createDynamoClient(), registryTable) : undefined,
      });
    },
    /** The objects of a bucket the stack wrote to (a batch result names its bucket). */
    objects(bucketName: string): ObjectStore {
      return new ObjectStore(createS3Client(), bucketName);
    },
    /** Calls the HTTP API; MASS_AUTH=iam signs with SigV4, MASS_TOKEN sends a JWT bearer token. */
    async request(method: string, path: string, body?: string | Uint8Array, headers: Record<string, string> = {}) {
      const url = new URL(api + path);
      const all: Record<string, string> = { host: url.host, ...headers };
      if (body !== undefined && !all['content-type']) all['content-type'] = 'application/json';
      if (process.env.MASS_TOKEN) all.authorization = `Bearer ${process.env.MASS_TOKEN}`;
      if (process.env.MASS_AUTH === 'iam') {
        const signer = new SignatureV4({
          service: 'execute-api',
          region: process.env.AWS_REGION ?? 'us-east-1',
          credentials: defaultProvider(),
          sha256: Hash.bind(null, 'sha256'),
        });
        const signed = await signer.sign({
          method,
          protocol: url.protocol,
          hostname: url.hostname,
          path: url.pathname,
          headers: all,
          body,
          ...(url.port ? { port: Number(url.port) } : {}),
        });
        Object.assign(all, signed.headers);
      }
      let response: Response;
      try {
        response = await fetch(url, { method, headers: all, ...(body !== undefined ? { body } : {}) });
      } catch (error) {
        throw new CliError(`cannot reach the API at ${api}: ${(error as Error).cause ?? (error as Error).message}`);
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (!response.ok) {
        let message = Buffer.from(bytes).toString('utf8');
        try {
          message = (JSON.parse(message) as { error?: string }).error ?? message;
        } catch {
          // not JSON: show it as it came
        }
        throw new CliError(`${response.status}: ${message}`);
      }
      return { response, bytes };
    },
  };
}

export type CliContext = ReturnType<typeof cliContext>;
