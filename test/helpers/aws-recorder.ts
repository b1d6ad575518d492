import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';

/**
 * What a function asks of AWS, as IAM sees it: one HTTP request to S3, SQS, SNS or DynamoDB, its
 * operation, and the IAM actions on resources that it needs. Recorded on the wire (a proxy in front
 * of the emulators, one per function) rather than in the SDK, because not every request goes through
 * the SDK: the inference function's boot fetch signs its own S3 GETs and DynamoDB Query.
 */
export interface AwsCall {
  /** e.g. `s3 GetObject`, `dynamodb Query`, `sqs SendMessage`, `sns Publish`. */
  operation: string;
  /** The physical name the request named: bucket/key, table, queue or topic. */
  target: string;
  permissions: IamRequest[];
}

/** One action on one resource, with the condition keys the request carries. */
export interface IamRequest {
  action: string;
  /** An ARN in the canonical form of iam-policy.ts (logical ids for the stack's resources). */
  resource: string;
  context: Record<string, string>;
}

/** Maps the physical names the function uses (bucket, table, queue, topic) to canonical ARNs. */
export interface ResourceNames {
  bucketArn(bucket: string): string;
  tableArn(table: string): string;
  queueArn(queueName: string): string;
  topicArn(physicalArn: string): string;
}

export class UnmappedRequestError extends Error {
  constructor(what: string) {
    super(`no IAM mapping for ${what}: add it to test/helpers/aws-recorder.ts`);
    this.name = 'UnmappedRequestError';
  }
}

const form = (body: string) => new URLSearchParams(body);

/** SQS names a queue by URL (…/<account>/<name>) or, in GetQueueUrl, by name. */
function queueNameOf(input: { QueueUrl?: string; QueueName?: string }): string {
  if (input.QueueName) return input.QueueName;
  if (input.QueueUrl) return input.QueueUrl.split('/').pop()!;
  throw new UnmappedRequestError('an SQS request without QueueUrl or QueueName');
}

function dynamoCall(operation: string, body: Record<string, unknown>, names: ResourceNames): AwsCall {
  const action = (op: string) => `dynamodb:${op}`;
  const on = (table: string, index?: string) => names.tableArn(table) + (index ? `/index/${index}` : '');
  switch (operation) {
    case 'GetItem':
    case 'PutItem':
    case 'UpdateItem':
    case 'DeleteItem':
    case 'Query':
    case 'Scan':
    case 'DescribeTable': {
      const table = body.TableName as string;
      // The partition key an item request names, or a Query's key condition sets equal, for policies
      // that confine a role to some partitions (dynamodb:LeadingKeys); a Scan names none, so such a
      // condition never holds for it.
      const pk = (body.Key as Record<string, { S?: string }> | undefined)?.pk?.S ?? (body.Item as Record<string, { S?: string }> | undefined)?.pk?.S ?? queriedPartition(body);
      return { operation: `dynamodb ${operation}`, target: table, permissions: [{ action: action(operation), resource: on(table, body.IndexName as string | undefined), context: pk !== undefined ? { 'dynamodb:LeadingKeys': pk } : {} }] };
    }
    case 'TransactWriteItems': {
      const items = body.TransactItems as Record<string, { TableName: string }>[];
      const kinds: Record<string, string> = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem' };
      const permissions = items.flatMap((item) =>
        Object.entries(item).map(([kind, spec]) => {
          if (!kinds[kind]) throw new UnmappedRequestError(`TransactWriteItems ${kind}`);
          return { action: action(kinds[kind]), resource: on(spec.TableName), context: {} };
        }),
      );
      return { operation: 'dynamodb TransactWriteItems', target: [...new Set(permissions.map((p) => p.resource))].join(','), permissions };
    }
    case 'BatchGetItem':
    case 'BatchWriteItem': {
      const tables = Object.keys(body.RequestItems as Record<string, unknown>);
      const ops = operation === 'BatchGetItem' ? ['BatchGetItem'] : ['BatchWriteItem'];
      return { operation: `dynamodb ${operation}`, target: tables.join(','), permissions: tables.flatMap((t) => ops.map((op) => ({ action: action(op), resource: on(t), context: {} }))) };
    }
    default:
      throw new UnmappedRequestError(`dynamodb ${operation}`);
  }
}

function sqsCall(operation: string, body: Record<string, unknown>, names: ResourceNames): AwsCall {
  const known = ['GetQueueUrl', 'SendMessage', 'SendMessageBatch', 'ReceiveMessage', 'DeleteMessage', 'DeleteMessageBatch', 'ChangeMessageVisibility', 'ChangeMessageVisibilityBatch', 'GetQueueAttributes'];
  if (!known.includes(operation)) throw new UnmappedRequestError(`sqs ${operation}`);
  const queue = queueNameOf(body as { QueueUrl?: string; QueueName?: string });
  // IAM authorizes the batch forms with the single-message actions.
  const iamAction = operation.replace(/Batch$/, '');
  return { operation: `sqs ${operation}`, target: queue, permissions: [{ action: `sqs:${iamAction}`, resource: names.queueArn(queue), context: {} }] };
}

function snsCall(operation: string, params: URLSearchParams | Record<string, unknown>, names: ResourceNames): AwsCall {
  const get = (k: string) => (params instanceof URLSearchParams ? params.get(k) : (params[k] as string | undefined)) ?? undefined;
  if (operation !== 'Publish') throw new UnmappedRequestError(`sns ${operation}`);
  const topic = get('TopicArn');
  if (!topic) throw new UnmappedRequestError('sns Publish without TopicArn');
  return { operation: 'sns Publish', target: topic, permissions: [{ action: 'sns:Publish', resource: names.topicArn(topic), context: {} }] };
}

/** S3 REST (path style, as every client here addresses the emulator): method, path and query to an operation. */
function s3Call(method: string, url: URL, headers: IncomingMessage['headers'], body: string, names: ResourceNames): AwsCall {
  const [, encodedBucket = '', ...rest] = url.pathname.split('/');
  const bucket = decodeURIComponent(encodedBucket);
  const key = rest.length ? decodeURIComponent(rest.join('/')) : '';
  const q = url.searchParams;
  const bucketArn = names.bucketArn(bucket);
  const object = `${bucketArn}/${key}`;
  const one = (operation: string, action: string, resource: string, context: Record<string, string> = {}): AwsCall => ({
    operation: `s3 ${operation}`,
    target: key ? `${bucket}/${key}` : bucket,
    permissions: [{ action, resource, context }],
  });
  if (!key) {
    if (method === 'GET' && (q.get('list-type') === '2' || [...q.keys()].every((k) => ['prefix', 'delimiter', 'max-keys', 'continuation-token', 'start-after', 'encoding-type', 'fetch-owner', 'x-id'].includes(k)))) {
      return one('ListObjectsV2', 's3:ListBucket', bucketArn, q.has('prefix') ? { 's3:prefix': q.get('prefix')! } : {});
    }
    if (method === 'HEAD') return one('HeadBucket', 's3:ListBucket', bucketArn);
    if (method === 'POST' && q.has('delete')) {
      const keys = [...body.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>'));
      return { operation: 's3 DeleteObjects', target: bucket, permissions: keys.map((k) => ({ action: 's3:DeleteObject', resource: `${bucketArn}/${k}`, context: {} })) };
    }
    throw new UnmappedRequestError(`S3 ${method} on bucket ${bucket}?${q.toString()}`);
  }
  const subresources = [...q.keys()].filter((k) => k !== 'x-id' && k !== 'partNumber' && k !== 'uploadId');
  if (subresources.length && !(method === 'POST' && subresources.join() === 'uploads')) throw new UnmappedRequestError(`S3 ${method} ${key}?${q.toString()}`);
  switch (method) {
    case 'GET':
      return one('GetObject', 's3:GetObject', object);
    case 'HEAD':
      return one('HeadObject', 's3:GetObject', object);
    case 'PUT': {
      const source = headers['x-amz-copy-source'];
      if (typeof source === 'string') {
        const decoded = decodeURIComponent(source.replace(/^\//, '').split('?')[0]!);
        const slash = decoded.indexOf('/');
        return {
          operation: 's3 CopyObject',
          target: `${bucket}/${key}`,
          permissions: [
            { action: 's3:PutObject', resource: object, context: {} },
            { action: 's3:GetObject', resource: `${names.bucketArn(decoded.slice(0, slash))}/${decoded.slice(slash + 1)}`, context: {} },
          ],
        };
      }
      return q.has('uploadId') ? one('UploadPart', 's3:PutObject', object) : one('PutObject', 's3:PutObject', object);
    }
    case 'POST':
      if (q.has('uploads')) return one('CreateMultipartUpload', 's3:PutObject', object);
      if (q.has('uploadId')) return one('CompleteMultipartUpload', 's3:PutObject', object);
      break;
    case 'DELETE':
      return q.has('uploadId') ? one('AbortMultipartUpload', 's3:AbortMultipartUpload', object) : one('DeleteObject', 's3:DeleteObject', object);
  }
  throw new UnmappedRequestError(`S3 ${method} ${key}?${q.toString()}`);
}

/** The AWS call an HTTP request makes (exported for the recorder's own unit test). */
export function awsCallOf(method: string, path: string, headers: IncomingMessage['headers'], body: string, names: ResourceNames): AwsCall {
  const target = headers['x-amz-target'];
  if (typeof target === 'string') {
    const [prefix = '', operation = ''] = target.split('.');
    const json = (body ? JSON.parse(body) : {}) as Record<string, unknown>;
    if (prefix.startsWith('DynamoDB_')) return dynamoCall(operation, json, names);
    if (prefix === 'AmazonSQS') return sqsCall(operation, json, names);
    if (prefix === 'AmazonSimpleNotificationService') return snsCall(operation, json, names);
    throw new UnmappedRequestError(`X-Amz-Target ${target}`);
  }
  const url = new URL(path, 'http://emulator');
  const contentType = String(headers['content-type'] ?? '');
  if (method === 'POST' && url.pathname === '/' && contentType.startsWith('application/x-www-form-urlencoded')) {
    const params = form(body);
    const action = params.get('Action') ?? '';
    if (params.has('TopicArn') || action === 'Publish') return snsCall(action, params, names);
    throw new UnmappedRequestError(`query-protocol action ${action}`);
  }
  return s3Call(method, url, headers, body, names);
}

export interface Recorder {
  /** A loopback endpoint for one function: every request through it is recorded under `fn`. */
  endpointFor(fn: string): Promise<string>;
  calls(fn: string): AwsCall[];
  functions(): string[];
  /** Requests that could not be mapped to IAM (each fails the test that reads it). */
  errors: Error[];
  stop(): Promise<void>;
}

/**
 * Proxies in front of the emulators: DynamoDB's JSON protocol goes to dynalite, everything else to
 * fauxqs. Requests and answers pass unchanged; only the mapping to IAM is recorded.
 */
export function startRecorder(options: { awsEndpoint: string; dynamoEndpoint: string; names: ResourceNames }): Recorder {
  const servers: Server[] = [];
  const byFunction = new Map<string, AwsCall[]>();
  const errors: Error[] = [];
  return {
    errors,
    async endpointFor(fn) {
      const calls: AwsCall[] = [];
      byFunction.set(fn, calls);
      const server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          const target = String(req.headers['x-amz-target'] ?? '');
          const upstream = new URL(target.startsWith('DynamoDB_') ? options.dynamoEndpoint : options.awsEndpoint);
          try {
            // Bodies of uploads are not needed to map them; parse text only where the protocol is text.
            const text = target || String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded') || req.url?.includes('delete') ? body.toString('utf8') : '';
            calls.push(awsCallOf(req.method!, req.url!, req.headers, text, options.names));
          } catch (error) {
            errors.push(new Error(`${fn}: ${(error as Error).message}`));
          }
          const headers = { ...req.headers, 'content-length': String(body.length) };
          delete headers['transfer-encoding'];
          const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (answer) => {
            res.writeHead(answer.statusCode!, answer.headers);
            answer.pipe(res);
          });
          forward.on('error', (error) => {
            res.destroy(error);
          });
          forward.end(body);
        });
      });
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('recorder did not bind a port');
      return `http://127.0.0.1:${address.port}`;
    },
    calls: (fn) => byFunction.get(fn) ?? [],
    functions: () => [...byFunction.keys()],
    async stop() {
      await Promise.all(
        servers.map(async (s) => {
          s.closeAllConnections();
          s.close();
          await once(s, 'close').catch(() => undefined);
        }),
      );
    },
  };
}

/** The partition a Query's KeyConditionExpression names (`pk = :v`, the name possibly a placeholder). */
function queriedPartition(body: Record<string, unknown>): string | undefined {
  const expression = body.KeyConditionExpression as string | undefined;
  if (!expression) return undefined;
  const names = (body.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const values = (body.ExpressionAttributeValues ?? {}) as Record<string, { S?: string }>;
  for (const match of expression.matchAll(/(#?[A-Za-z0-9_]+)\s*=\s*(:[A-Za-z0-9_]+)/g)) {
    if ((names[match[1]!] ?? match[1]) === 'pk') return values[match[2]!]?.S;
  }
  return undefined;
}
