// End to end over `serverless package`, as serverless-esbuild's own tests do: package the real
// service offline, then assert on the generated CloudFormation and on what is inside each zip.
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLayer, type LayerManifest } from '../../layers/onnxruntime/build.ts';
import { isolated, packageService, removePackagedServices, type Packaged, type Resource, type Template } from '../helpers/package-service.ts';
import { deployInvariantViolations } from '../helpers/template-invariants.ts';
import { inferenceHandlerEmf } from '../helpers/emf.ts';
import { hasSeries, type EmfSample } from '../../functions/core/monitor/metrics-source.ts';


/** Lambda's limit on a function's unzipped code plus all its layers. */
const LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024;
const STAGE = 'test';

type Tier = 'basic' | 'standard' | 'advanced';
interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: unknown;
}

interface ZipEntry {
  name: string;
  size: number;
  read: () => Buffer;
}

/** A zip's entries from its central directory (no zip64: Lambda zips are far below 4 GiB). */
async function zipEntries(file: string): Promise<ZipEntry[]> {
  const zip = await readFile(file);
  let eocd = zip.length - 22;
  while (eocd >= 0 && zip.readUInt32LE(eocd) !== 0x06054b50) eocd -= 1;
  if (eocd < 0) throw new Error(`${file} is not a zip`);
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i += 1) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`${file}: bad central directory entry ${i}`);
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const local = zip.readUInt32LE(at + 42);
    entries.push({
      name: zip.toString('utf8', at + 46, at + 46 + nameLength),
      size: zip.readUInt32LE(at + 24),
      read: () => {
        const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
        const data = zip.subarray(start, start + compressedSize);
        return method === 0 ? data : inflateRawSync(data);
      },
    });
    at += 46 + nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
  }
  return entries;
}

const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const resourcesOfType = (t: Template, type: string): [string, Resource][] =>
  Object.entries(t.Resources).filter(([, r]) => r.Type === type);
const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

const V2_ROUTES = [
  'GET /v2',
  'GET /v2/health/live',
  'GET /v2/health/ready',
  'GET /v2/models/{name}',
  'GET /v2/models/{name}/ready',
  'POST /v2/models/{name}/infer',
  'GET /v2/models/{name}/versions',
  'GET /v2/models/{name}/versions/{version}',
  'GET /v2/models/{name}/versions/{version}/ready',
  'POST /v2/models/{name}/versions/{version}/infer',
];

const TIERS: Record<Tier, { memorySize: number; provisionedConcurrency: number | undefined; preload: string; cacheBudget: string; quantization: string }> = {
  basic: { memorySize: 1024, provisionedConcurrency: undefined, preload: '', cacheBudget: '268435456', quantization: 'none' },
  standard: { memorySize: 2048, provisionedConcurrency: 1, preload: 'mnist', cacheBudget: '536870912', quantization: 'none' },
  advanced: { memorySize: 4096, provisionedConcurrency: 2, preload: 'mnist,silero-vad', cacheBudget: '2147483648', quantization: 'int8-dynamic' },
};

const packaged = {} as Record<Tier | 'jwt', Packaged>;
let layer: LayerManifest;

beforeAll(async () => {
  layer = ensureLayer();
  const runs = await Promise.all([
    ...(Object.keys(TIERS) as Tier[]).map(async (tier) => [tier, await packageService(tier, { tier })] as const),
    (async () =>
      [
        'jwt',
        await packageService('jwt', {
          authorizer: 'jwt',
          jwtIssuerUrl: 'https://issuer.example.test/',
          jwtAudience: 'ai-mass-test',
          jwtScopePrefix: 'ai-mass',
          httpApiRateLimit: '5',
          httpApiBurstLimit: '10',
          alarmEmail: 'ops@example.test',
          tracing: 'Active',
        }),
      ] as const)(),
  ]);
  for (const [name, result] of runs) packaged[name] = result;
  console.log(`packaged ${runs.length} stacks ${isolated ? 'in a loopback-only network namespace' : 'with no namespace (unshare unavailable)'}`);
}, 700_000);

afterAll(removePackagedServices);

const standard = (): Template => packaged.standard.template;
const lambdaFunctionIds = (t: Template): string[] => resourcesOfType(t, 'AWS::Lambda::Function').filter(([id, r]) => id.endsWith('LambdaFunction') && r.Condition === undefined).map(([id]) => id);

/** The AIMass metrics an alarm reads (directly, or in its metric math), with their dimensions. */
function alarmMetrics(alarm: Resource): { name: string; dimensions: { Name: string; Value: unknown }[] }[] {
  const p = alarm.Properties as { Namespace?: string; MetricName?: string; Dimensions?: { Name: string; Value: unknown }[]; Metrics?: { MetricStat?: { Metric: { Namespace: string; MetricName: string; Dimensions?: { Name: string; Value: unknown }[] } } }[] };
  const direct = p.Namespace === 'AIMass' ? [{ name: p.MetricName!, dimensions: p.Dimensions ?? [] }] : [];
  const math = (p.Metrics ?? []).flatMap((m) => (m.MetricStat?.Metric.Namespace === 'AIMass' ? [{ name: m.MetricStat.Metric.MetricName, dimensions: m.MetricStat.Metric.Dimensions ?? [] }] : []));
  return [...direct, ...math];
}

/** Whether samples hold the series: the metric with exactly these dimension names and these values. */
function emits(samples: readonly EmfSample[], name: string, dimensions: readonly { Name: string; Value: unknown }[]): boolean {
  const names = dimensions.map((d) => d.Name).filter((n) => n !== 'service');
  return samples.some((s) => s.name === name && hasSeries(s, names) && s.dimensionSets.some((set) => set.includes('service')) && dimensions.every((d) => s.dimensions[d.Name] === d.Value));
}
const inference = (t: Template): Resource => {
  const fn = t.Resources.InferenceLambdaFunction;
  if (!fn) throw new Error('InferenceLambdaFunction is missing');
  return fn;
};

describe('serverless package (standard tier, IAM auth)', () => {
  it('routes the Open Inference Protocol paths and the version listing to the inference function with IAM auth', () => {
    const routes = resourcesOfType(standard(), 'AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);
    const byKey = new Map(routes.map((r) => [r.RouteKey as string, r]));

    for (const key of V2_ROUTES) {
      expect(byKey.get(key), key).toMatchObject({
        AuthorizationType: 'AWS_IAM',
        Target: { 'Fn::Join': ['/', ['integrations', { Ref: 'HttpApiIntegrationInference' }]] },
      });
    }
    expect(resourcesOfType(standard(), 'AWS::ApiGatewayV2::Authorizer')).toEqual([]);
  });

  it('runs nodejs24.x on x86_64 with the onnxruntime layer resolved from SSM at deploy time', () => {
    const props = inference(standard()).Properties;

    expect(props.Runtime).toBe('nodejs24.x');
    expect(props.Architectures).toEqual(['x86_64']);
    expect(props.Handler).toBe('functions/inference/handler.handler');
    expect(props.Layers).toEqual([{ Ref: 'OnnxruntimeLayerArn' }]);
    expect(standard().Parameters?.OnnxruntimeLayerArn).toMatchObject({
      Type: 'AWS::SSM::Parameter::Value<String>',
      Default: `/ai-mass/${STAGE}/onnxruntime-layer-arn`,
    });
    // A layer defined in this stack would make `package` call CloudFormation.
    expect(resourcesOfType(standard(), 'AWS::Lambda::LayerVersion')).toEqual([]);
  });

  it('sets the environment the inference config reads', () => {
    const variables = (inference(standard()).Properties.Environment as { Variables: Record<string, unknown> }).Variables;

    expect(variables).toEqual({
      MODEL_BUCKET: { Ref: 'ModelBucket' },
      PRELOAD_MODELS: 'mnist',
      POWERTOOLS_SERVICE_NAME: 'ai-mass',
      POWERTOOLS_METRICS_NAMESPACE: 'AIMass',
      POWERTOOLS_TRACE_ENABLED: 'false',
      MAX_BODY_BYTES: '6291456',
      REGISTRY_TABLE: 'ai-mass-test-registry',
      MODEL_CACHE_BUDGET_BYTES: '536870912',
      GLIBC_TUNABLES: 'glibc.malloc.top_pad=67108864',
    });
  });

  it('gives the inference role only GetObject under models/, PutObject under capture/ and a Query of the registry table', () => {
    const t = standard();
    const role = inference(t).Properties.Role as { 'Fn::GetAtt': [string, string] };
    const roleResource = t.Resources[role['Fn::GetAtt'][0]];
    expect(roleResource?.Type).toBe('AWS::IAM::Role');
    const statements = (roleResource?.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[]).flatMap(
      (p) => p.PolicyDocument.Statement,
    );
    const s3 = statements.filter((s) => asArray(s.Action).some((a) => a.startsWith('s3:')));

    expect(s3).toEqual([
      {
        Sid: 'ReadModels',
        Effect: 'Allow',
        Action: 's3:GetObject',
        Resource: { 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${ModelBucket}/models/*' },
      },
      // Data capture (docs/monitoring.md).
      {
        Sid: 'WriteCapture',
        Effect: 'Allow',
        Action: 's3:PutObject',
        Resource: { 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${ModelBucket}/capture/*' },
      },
    ]);
    const actions = statements.flatMap((s) => asArray(s.Action));
    expect(actions.filter((a) => a === '*' || a.endsWith(':*'))).toEqual([]);
    expect(actions.filter((a) => !a.startsWith('s3:'))).toEqual(['logs:CreateLogStream', 'logs:PutLogEvents', 'dynamodb:Query']);
    // Versions and aliases: one Query of the model's partition, on the registry table alone.
    expect(statements.find((s) => s.Sid === 'ReadRegistry')).toEqual({
      Sid: 'ReadRegistry',
      Effect: 'Allow',
      Action: 'dynamodb:Query',
      Resource: { 'Fn::GetAtt': ['RegistryTable', 'Arn'] },
    });
    expect(statements.every((s) => s.Effect === 'Allow' && JSON.stringify(s.Resource) !== '"*"')).toBe(true);
    // No shared default role that every function would inherit.
    expect(t.Resources.IamRoleLambdaExecution).toBeUndefined();
    expect(resourcesOfType(t, 'AWS::IAM::Policy')).toEqual([]);
  });

  it('keeps the model bucket private, encrypted, versioned and TLS-only', () => {
    const t = standard();
    const bucket = t.Resources.ModelBucket?.Properties;
    const policy = resourcesOfType(t, 'AWS::S3::BucketPolicy').find(([, r]) => JSON.stringify(r.Properties.Bucket) === '{"Ref":"ModelBucket"}');

    expect(bucket?.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    expect(bucket?.BucketEncryption).toEqual({
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
    expect(bucket?.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket?.OwnershipControls).toEqual({ Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] });
    expect((policy?.[1].Properties.PolicyDocument as { Statement: Statement[] }).Statement).toContainEqual({
      Sid: 'DenyInsecureTransport',
      Effect: 'Deny',
      Principal: '*',
      Action: 's3:*',
      Resource: [{ 'Fn::GetAtt': ['ModelBucket', 'Arn'] }, { 'Fn::Sub': '${ModelBucket.Arn}/*' }],
      Condition: { Bool: { 'aws:SecureTransport': 'false' } },
    });
  });

  it('keeps a retention on the function log group', () => {
    expect(standard().Resources.InferenceLogGroup?.Properties).toMatchObject({
      LogGroupName: `/aws/lambda/ai-mass-${STAGE}-inference`,
      RetentionInDays: 30,
    });
  });
});

describe('registry', () => {
  const roleStatements = (t: Template, role: string) =>
    (t.Resources[role]!.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[]).flatMap((p) => p.PolicyDocument.Statement);

  it('registers uploads from EventBridge Object Created events for incoming/*.onnx and incoming/*/pipeline.json', () => {
    const t = standard();
    const rules = resourcesOfType(t, 'AWS::Events::Rule').map(([, r]) => r.Properties);
    // Schedules (monitoring.yml) are rules without a pattern.
    const rule = rules.find((r) => (JSON.stringify(r.EventPattern) ?? '').includes('incoming/*.onnx'));
    expect(rule?.EventPattern).toEqual({
      source: ['aws.s3'],
      'detail-type': ['Object Created'],
      detail: { bucket: { name: [{ Ref: 'ModelBucket' }] }, object: { key: [{ wildcard: 'incoming/*.onnx' }, { wildcard: 'incoming/*/pipeline.json' }] } },
    });
    expect(t.Resources.ModelBucket?.Properties.NotificationConfiguration).toEqual({ EventBridgeConfiguration: { EventBridgeEnabled: true } });
  });

  it('lets the register role touch only uploads, versions, rejections, the registry table, the events topic and its failure queue', () => {
    const statements = roleStatements(standard(), 'RegisterRole');
    const resources = statements.filter((s) => s.Sid).map((s) => [s.Sid, asArray(s.Action), s.Resource]);
    expect(resources).toEqual([
      ['ReadAndRemoveUploads', ['s3:GetObject', 's3:DeleteObject'], { 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${ModelBucket}/incoming/*' }],
      ['WriteVersions', ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], { 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${ModelBucket}/models/*' }],
      ['WriteRejections', ['s3:PutObject'], { 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${ModelBucket}/rejections/*' }],
      ['Registry', ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query'], { 'Fn::GetAtt': ['RegistryTable', 'Arn'] }],
      ['Announce', ['sns:Publish'], { Ref: 'ModelEventsTopic' }],
      ['StartDefaultQuantization', ['dynamodb:GetItem', 'dynamodb:PutItem'], { 'Fn::GetAtt': ['RegistryTable', 'Arn'] }],
      ['QueueDefaultQuantization', ['sqs:GetQueueUrl', 'sqs:SendMessage'], { 'Fn::GetAtt': ['QuantizeStepQueue', 'Arn'] }],
      ['OnFailureDestination', ['sqs:SendMessage'], { 'Fn::GetAtt': ['RegisterFailuresQueue', 'Arn'] }],
    ]);
  });

  it('routes alias reads, changes, promotions and rollbacks to the registry function', () => {
    const routes = resourcesOfType(standard(), 'AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);
    const keysToRegistry = routes
      .filter((r) => JSON.stringify(r.Target).includes('HttpApiIntegrationRegistry'))
      .map((r) => r.RouteKey)
      .sort();
    expect(keysToRegistry).toEqual([
      'GET /v2/models/{name}/aliases/{alias}',
      'GET /v2/pipelines/{name}',
      'GET /v2/pipelines/{name}/versions/{version}',
      'POST /v2/models/{name}/aliases/{alias}/promote',
      'POST /v2/models/{name}/aliases/{alias}/rollback',
      'PUT /v2/models/{name}/aliases/{alias}',
      'PUT /v2/pipelines/{name}',
    ]);
  });

  it('keeps the registry table (pk/sk, point-in-time recovery) and an encrypted events topic', () => {
    const t = standard();
    expect(t.Resources.RegistryTable?.Properties).toMatchObject({
      TableName: 'ai-mass-test-registry',
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }, { AttributeName: 'sk', KeyType: 'RANGE' }],
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
    expect((t.Resources.RegistryTable as { DeletionPolicy?: string } | undefined)?.DeletionPolicy).toBe('Retain');
    expect(t.Resources.ModelEventsTopic?.Properties).toEqual({ TopicName: 'ai-mass-test-model-events', KmsMasterKeyId: 'alias/aws/sns' });
  });
});

describe('tiers', () => {
  it.each(Object.entries(TIERS))('%s sets memory, provisioned concurrency, pre-warmed models, cache budget and quantization policy', (tier, expected) => {
    const t = packaged[tier as Tier].template;
    const props = inference(t).Properties;
    const aliases = resourcesOfType(t, 'AWS::Lambda::Alias');

    expect(props.MemorySize).toBe(expected.memorySize);
    const variables = (props.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(variables.PRELOAD_MODELS).toBe(expected.preload);
    expect(variables.MODEL_CACHE_BUDGET_BYTES).toBe(expected.cacheBudget);
    const register = t.Resources.RegisterLambdaFunction!.Properties.Environment as { Variables: Record<string, unknown> };
    expect(register.Variables.DEFAULT_QUANTIZATION).toBe(expected.quantization);
    if (expected.provisionedConcurrency === undefined) {
      expect(aliases).toEqual([]);
    } else {
      expect(aliases.map(([, a]) => a.Properties.ProvisionedConcurrencyConfig)).toEqual([
        { ProvisionedConcurrentExecutions: expected.provisionedConcurrency },
      ]);
    }
  });
});

describe('authorizer=jwt', () => {
  it('replaces IAM auth with one JWT authorizer on every route', () => {
    const t = packaged.jwt.template;
    const authorizers = resourcesOfType(t, 'AWS::ApiGatewayV2::Authorizer');
    const routes = resourcesOfType(t, 'AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);

    expect(authorizers.map(([, a]) => a.Properties)).toEqual([
      expect.objectContaining({
        AuthorizerType: 'JWT',
        IdentitySource: ['$request.header.Authorization'],
        JwtConfiguration: { Issuer: 'https://issuer.example.test/', Audience: ['ai-mass-test'] },
      }),
    ]);
    const [authorizerId] = authorizers[0] ?? [];
    for (const key of V2_ROUTES) {
      expect(routes.find((r) => r.RouteKey === key), key).toMatchObject({
        AuthorizationType: 'JWT',
        AuthorizerId: { Ref: authorizerId },
      });
    }
  });

  it('asks for a read, infer or manage scope by route (prefix by parameter); iam mode has no scopes', () => {
    const scopes = (t: Template) =>
      Object.fromEntries(resourcesOfType(t, 'AWS::ApiGatewayV2::Route').map(([, r]) => [r.Properties.RouteKey as string, r.Properties.AuthorizationScopes ?? null]));
    const read = ['ai-mass/read'];
    const infer = ['ai-mass/infer'];
    const manage = ['ai-mass/manage'];
    expect(scopes(packaged.jwt.template)).toEqual({
      'GET /v2': read,
      'GET /v2/health/live': read,
      'GET /v2/health/ready': read,
      'GET /v2/models/{name}': read,
      'GET /v2/models/{name}/ready': read,
      'GET /v2/models/{name}/versions': read,
      'GET /v2/models/{name}/versions/{version}': read,
      'GET /v2/models/{name}/versions/{version}/ready': read,
      'GET /v2/models/{name}/config': read,
      'GET /v2/models/{name}/versions/{version}/config': read,
      // Every other method and path under /v2 reaches the inference handler for its 404 or 405.
      'ANY /v2': read,
      'ANY /v2/{proxy+}': read,
      'POST /v2/models/{name}/infer': infer,
      'POST /v2/models/{name}/versions/{version}/infer': infer,
      'GET /v2/models/{name}/aliases/{alias}': manage,
      'PUT /v2/models/{name}/aliases/{alias}': manage,
      'POST /v2/models/{name}/aliases/{alias}/promote': manage,
      'POST /v2/models/{name}/aliases/{alias}/rollback': manage,
      'PUT /v2/pipelines/{name}': manage,
      'GET /v2/pipelines/{name}': manage,
      'GET /v2/pipelines/{name}/versions/{version}': manage,
      'POST /v2/models/{name}/versions/{version}/evaluate': manage,
      'GET /v2/models/{name}/versions/{version}/evaluations/{id}': manage,
      'GET /v2/models/{name}/versions/{version}/evaluations/{id}/report.html': manage,
      'POST /v2/models/{name}/versions/{version}/quantize': manage,
      'POST /v2/models/{name}/versions/{version}/train': manage,
      'POST /v2/models/{name}/versions/{version}/monitor': manage,
      'GET /v2/models/{name}/quantizations/{job}': manage,
      'POST /v2/batches': manage,
      'GET /v2/batches/{id}': manage,
      'GET /v2/jobs/{id}': manage,
      'POST /v2/jobs/{id}/cancel': manage,
      'POST /v2/federations': manage,
      'GET /v2/federations/{id}': manage,
      'GET /v2/federations/{id}/rounds/{round}': manage,
      'POST /v2/federations/{id}/resume': manage,
      'POST /v2/federations/{id}/clients': infer,
      'GET /v2/federations/{id}/clients/{client}/task': infer,
      'POST /v2/federations/{id}/rounds/{round}/updates/{client}': infer,
      'POST /v2/studies': manage,
      'GET /v2/studies/{id}': manage,
    });
    expect(Object.values(scopes(standard())).every((s) => s === null)).toBe(true);
  });
});

describe('what AWS checks at deploy', () => {
  it('holds for every packaged configuration: queues outlast their consumers sixfold, mappings and destinations agree with their roles, every alarm acts', () => {
    for (const [name, run] of Object.entries(packaged)) expect(deployInvariantViolations(run.template), name).toEqual([]);
  });

  it('catches the shard dead-letter queue at the default 30 s visibility, an alarm with no action and a role that cannot poll its queue', () => {
    const t = structuredClone(standard());
    delete t.Resources.BatchShardDeadLetterQueue!.Properties.VisibilityTimeout;
    delete t.Resources.BatchDeadShardsAlarm!.Properties.AlarmActions;
    const consume = (t.Resources.BatchScoreRole!.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[])[0]!.PolicyDocument.Statement.find((s) => s.Sid === 'ConsumeShards')!;
    consume.Action = (consume.Action as string[]).filter((a) => a !== 'sqs:DeleteMessage');

    expect(deployInvariantViolations(t)).toEqual([
      "BatchScoreEventSourceMappingSQSBatchShardQueue: BatchScoreLambdaFunction's role does not allow sqs:DeleteMessage on BatchShardQueue",
      "BatchDeadLetterEventSourceMappingSQSBatchShardDeadLetterQueue: BatchShardDeadLetterQueue has a visibility timeout of 30 s, below six times BatchDeadLetterLambdaFunction's timeout of 300 s (1800 s)",
      'BatchDeadShardsAlarm: has no alarm action',
    ]);
  });

  it('sends failed register and batch-upload events to a dead-letter queue of their own, each with an alarm', () => {
    const t = standard();
    // registerFailures drains the register function's queue (a rejection record per failed upload), so
    // its alarm counts messages sent to it; batch-upload's queue is only read by people.
    for (const [fn, queue, alarm, metric, statistic] of [
      ['RegisterLambdaFunction', 'RegisterFailuresQueue', 'RegisterFailuresAlarm', 'NumberOfMessagesSent', 'Sum'],
      ['BatchUploadLambdaFunction', 'BatchUploadFailuresQueue', 'BatchUploadFailuresAlarm', 'ApproximateNumberOfMessagesVisible', 'Maximum'],
    ] as const) {
      const config = resourcesOfType(t, 'AWS::Lambda::EventInvokeConfig').find(([, r]) => JSON.stringify(r.Properties.FunctionName) === JSON.stringify({ Ref: fn }));
      expect(config?.[1].Properties.DestinationConfig, fn).toEqual({ OnFailure: { Destination: { 'Fn::GetAtt': [queue, 'Arn'] } } });
      expect(t.Resources[queue]?.Properties.MessageRetentionPeriod).toBe(1209600);
      expect(t.Resources[alarm]?.Properties).toMatchObject({
        Namespace: 'AWS/SQS',
        MetricName: metric,
        Statistic: statistic,
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queue, 'QueueName'] } }],
        Threshold: 0,
        ComparisonOperator: 'GreaterThanThreshold',
        AlarmActions: [{ Ref: 'AlarmTopic' }],
      });
    }
    // What registerFailures cannot record goes on to a dead-letter queue of its own, which alarms.
    expect(t.Resources.RegisterFailuresQueue?.Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: { 'Fn::GetAtt': ['RegisterFailuresDeadLetterQueue', 'Arn'] }, maxReceiveCount: 5 });
    expect(t.Resources.RegisterFailuresDeadLetterAlarm?.Properties).toMatchObject({ MetricName: 'ApproximateNumberOfMessagesVisible', AlarmActions: [{ Ref: 'AlarmTopic' }] });
  });
});

describe('operations', () => {
  it('throttles the HTTP API stage by parameter, 100 requests/s with bursts of 200 by default', () => {
    expect(standard().Resources.HttpApiStage?.Properties.DefaultRouteSettings).toEqual({ ThrottlingRateLimit: 100, ThrottlingBurstLimit: 200 });
    expect(packaged.jwt.template.Resources.HttpApiStage?.Properties.DefaultRouteSettings).toEqual({ ThrottlingRateLimit: '5', ThrottlingBurstLimit: '10' });
  });

  it('writes a JSON access log line per request (request id, route, status, latency) to a log group with retention', () => {
    const stage = standard().Resources.HttpApiStage!.Properties.AccessLogSettings as { DestinationArn: unknown; Format: string };
    expect(stage.DestinationArn).toEqual({ 'Fn::GetAtt': ['HttpApiLogGroup', 'Arn'] });
    expect(JSON.parse(stage.Format)).toMatchObject({
      requestId: '$context.requestId',
      routeKey: '$context.routeKey',
      status: '$context.status',
      responseLatency: '$context.responseLatency',
      integrationLatency: '$context.integrationLatency',
    });
    expect(standard().Resources.HttpApiLogGroup?.Properties).toEqual({ LogGroupName: `/aws/http-api/ai-mass-${STAGE}`, RetentionInDays: 30 });
  });

  it('sends every alarm to one alarm topic, subscribed by email only when alarmEmail is given', () => {
    const t = standard();
    expect(t.Resources.AlarmTopic?.Properties).toEqual({ TopicName: `ai-mass-${STAGE}-alarms` });
    // The GPU service's alarms (only with batchGpuWorkers=true) act on its scaling policies instead.
    const notifying = resourcesOfType(t, 'AWS::CloudWatch::Alarm').filter(([, alarm]) => alarm.Condition !== 'BatchGpuEnabled');
    // Every function's errors and throttles (infra/serverless/monitoring-plugin.mjs), asserted below.
    const functionAlarms = new Set(lambdaFunctionIds(t).flatMap((id) => [id.replace(/LambdaFunction$/, 'ErrorsAlarm'), id.replace(/LambdaFunction$/, 'ThrottlesAlarm')]));
    expect(notifying.map(([id]) => id).filter((id) => !functionAlarms.has(id)).sort()).toEqual([
      'AccountConcurrencyAlarm', 'BatchDeadShardsAlarm', 'BatchSubmitDeadLetterAlarm', 'BatchUploadFailuresAlarm', 'CanaryRollbackAlarm', 'CaptureFailuresAlarm', 'ContainerStepsDeadLetterAlarm', 'EvaluateDeadLetterAlarm', 'FederationStepDeadLetterQueueDepthAlarm', 'Http5xxRateAlarm',
      'InferenceColdStartRateAlarm', 'InferenceLatencyP99Alarm', 'InferenceProvisionedSpilloverAlarm', 'InferenceRuntimeFailuresAlarm', 'ModelDriftAlarm', 'MonitorStepDeadLetterQueueDepthAlarm', 'QuantizeDeadLetterAlarm', 'RegisterFailuresAlarm', 'RegisterFailuresDeadLetterAlarm', 'TrainStepsDeadLetterAlarm',
      'TuneStepsDeadLetterQueueDepthAlarm',
    ]);
    // The series the inference function emits with the service dimension alone (functions/inference/app.ts).
    expect(t.Resources.InferenceRuntimeFailuresAlarm!.Properties).toMatchObject({
      Namespace: 'AIMass', MetricName: 'InferenceRuntimeFailures', Dimensions: [{ Name: 'service', Value: 'ai-mass' }], Statistic: 'Sum', Threshold: 1,
    });
    for (const [id, alarm] of notifying) expect(alarm.Properties.AlarmActions, id).toEqual([{ Ref: 'AlarmTopic' }]);
    expect(t.Conditions?.AlarmEmailGiven).toEqual({ 'Fn::Not': [{ 'Fn::Equals': ['', ''] }] });
    expect(packaged.jwt.template.Conditions?.AlarmEmailGiven).toEqual({ 'Fn::Not': [{ 'Fn::Equals': ['ops@example.test', ''] }] });
    expect(packaged.jwt.template.Resources.AlarmEmailSubscription).toEqual({
      Type: 'AWS::SNS::Subscription',
      Condition: 'AlarmEmailGiven',
      Properties: { TopicArn: { Ref: 'AlarmTopic' }, Protocol: 'email', Endpoint: 'ops@example.test' },
    });
  });
});

describe('monitoring', () => {
  it("alarms on every function's errors and throttles and on every dead-letter queue's depth", () => {
    const t = standard();
    for (const id of lambdaFunctionIds(t)) {
      const name = t.Resources[id]!.Properties.FunctionName;
      for (const [suffix, metric] of [['ErrorsAlarm', 'Errors'], ['ThrottlesAlarm', 'Throttles']]) {
        expect(t.Resources[id.replace(/LambdaFunction$/, suffix!)]?.Properties, `${id} ${metric}`).toMatchObject({
          Namespace: 'AWS/Lambda', MetricName: metric, Dimensions: [{ Name: 'FunctionName', Value: name }], Statistic: 'Sum', Threshold: 1, AlarmActions: [{ Ref: 'AlarmTopic' }],
        });
      }
    }
    const deadLetterQueues = new Set(resourcesOfType(t, 'AWS::SQS::Queue').map(([, q]) => (q.Properties.RedrivePolicy as { deadLetterTargetArn?: { 'Fn::GetAtt'?: string[] } } | undefined)?.deadLetterTargetArn?.['Fn::GetAtt']?.[0]).filter(Boolean));
    expect(deadLetterQueues.size).toBeGreaterThan(5);
    for (const queue of deadLetterQueues) {
      const watched = resourcesOfType(t, 'AWS::CloudWatch::Alarm').some(([, a]) => a.Properties.Namespace === 'AWS/SQS' && JSON.stringify(a.Properties.Dimensions).includes(`"${queue}"`));
      expect(watched, `${queue} has a depth alarm`).toBe(true);
    }
  });

  it('names the metrics and dimensions the inference handler really emits (its EMF output), and those the monitor functions emit', async () => {
    const t = standard();
    const emitted = await inferenceHandlerEmf(`ai-mass-${STAGE}-inference`);
    const referenced = resourcesOfType(t, 'AWS::CloudWatch::Alarm').flatMap(([id, a]) => alarmMetrics(a).map((m) => ({ id, ...m })));
    // Emitted by the drift job and the canary guard, each with the service dimension alone beside its per-model series (monitor tests).
    const monitorSeries = ['ModelDrift', 'CanaryRollbacks'];
    expect([...new Set(referenced.map((r) => r.name))].sort()).toEqual(['CanaryRollbacks', 'CaptureFailures', 'ColdStart', 'InferenceLatency', 'InferenceRuntimeFailures', 'ModelDrift']);
    for (const r of referenced) {
      if (monitorSeries.includes(r.name)) expect(r.dimensions, r.id).toEqual([{ Name: 'service', Value: 'ai-mass' }]);
      else expect(emits(emitted, r.name, r.dimensions), `${r.id}: ${r.name} ${JSON.stringify(r.dimensions)} in ${JSON.stringify(emitted.map((e) => [e.name, e.dimensionSets]))}`).toBe(true);
    }
  }, 120_000);

  it('has one dashboard of per-model requests, latency percentiles, errors, cold starts and drift', () => {
    const body = (standard().Resources.MonitoringDashboard!.Properties.DashboardBody as { 'Fn::Sub': string })['Fn::Sub'];
    const dashboard = JSON.parse(body.replaceAll('${AWS::Region}', 'us-east-1').replaceAll('${AWS::StackName}', 'ai-mass-test')) as { widgets: { properties: { title: string; metrics: unknown[] } }[] };
    expect(dashboard.widgets.map((w) => w.properties.title)).toEqual([
      'Requests by model and version',
      'Latency p50 / p90 / p99 by model (ms)',
      'Runtime failures (500) by model and errors by class',
      'Cold starts and init time (ms)',
      'Drift (1 = drifted) and largest drift score by model and version',
      'Lambda errors and throttles, canary rollbacks, capture failures',
    ]);
    const searched = [...body.matchAll(/MetricName=\\"([A-Za-z]+)\\"/g)].map((m) => m[1]);
    expect(new Set(searched)).toEqual(new Set(['InferenceLatency', 'InferenceRuntimeFailures', 'Errors', 'ColdStart', 'ColdStartInitMs', 'ModelDrift', 'DriftScore']));
    expect(standard().Resources.MonitoringDashboard!.Properties.DashboardName).toBe(`ai-mass-${STAGE}`);
  });

  it("turns X-Ray on by parameter, and then lets every function's role send traces", () => {
    for (const id of lambdaFunctionIds(standard())) expect(standard().Resources[id]!.Properties.TracingConfig, id).toEqual({ Mode: 'PassThrough' });
    const active = packaged.jwt.template;
    for (const id of lambdaFunctionIds(active)) expect(active.Resources[id]!.Properties.TracingConfig, id).toEqual({ Mode: 'Active' });
    // The Powertools Tracer (platform/tracing.ts) is imported only where the parameter turns it on.
    const traceEnv = (t: Template, id: string) => (t.Resources[id]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables.POWERTOOLS_TRACE_ENABLED;
    for (const id of lambdaFunctionIds(standard())) expect(traceEnv(standard(), id), id).toBe('false');
    for (const id of lambdaFunctionIds(active)) expect(traceEnv(active, id), id).toBe('true');
    expect(active.Conditions?.TracingActive).toEqual({ 'Fn::Equals': ['Active', 'Active'] });
    expect(standard().Conditions?.TracingActive).toEqual({ 'Fn::Equals': ['PassThrough', 'Active'] });
    const roles = [...new Set(lambdaFunctionIds(active).map((id) => (active.Resources[id]!.Properties.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0]))].sort();
    expect(active.Resources.TracingPolicy).toMatchObject({ Condition: 'TracingActive', Properties: { Roles: roles.map((r) => ({ Ref: r })) } });
  });

  it("keeps a retention on every function's log group", () => {
    const groups = resourcesOfType(standard(), 'AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThanOrEqual(lambdaFunctionIds(standard()).length);
    for (const [id, group] of groups) expect(group.Properties.RetentionInDays, id).toBe(30);
  });

  it('runs drift reports on a schedule and the canary guard every minute', () => {
    const rules = resourcesOfType(standard(), 'AWS::Events::Rule').map(([, r]) => [r.Properties.ScheduleExpression, JSON.stringify(r.Properties.Targets)]);
    expect(rules).toEqual(expect.arrayContaining([
      ['rate(1 day)', expect.stringContaining('MonitorScheduleLambdaFunction')],
      ['rate(1 minute)', expect.stringContaining('CanaryGuardLambdaFunction')],
    ]));
  });
});

describe('artifacts', () => {
  it('keeps onnxruntime-node out of every function zip and fits the Lambda size limit with the layer', async () => {
    const sizes: Record<string, number> = {};
    for (const tier of ['basic', 'standard'] as const) {
      const zips = (await readdir(packaged[tier].dir)).filter((f) => f.endsWith('.zip'));
      expect(zips).toContain('inference.zip');
      for (const zip of zips) {
        const file = path.join(packaged[tier].dir, zip);
        const entries = await zipEntries(file);
        const names = entries.map((e) => e.name);

        expect(names.filter((n) => /onnxruntime|\.node$|\.so(\.|$)/.test(n)), zip).toEqual([]);
        // Each zip: its handler shim, the bundle beside it as a script, and the bundle's code cache.
        const shim = entries.find((e) => /^functions\/[a-z-]+\/handler\.mjs$/.test(e.name));
        expect(shim, zip).toBeDefined();
        const dir = path.posix.dirname(shim!.name);
        const shimText = shim!.read().toString('utf8');
        expect(shimText, zip).toMatch(/^\/\/ Generated at packaging \(infra\/esbuild\/plugins\.ts\)/);
        expect(shimText, zip).toContain('app: "./handler.app.cjs"');
        expect(names.filter((n) => n.startsWith(`${dir}/handler.app.cjs`)).sort(), zip).toEqual([`${dir}/handler.app.cjs`, `${dir}/handler.app.cjs.map`, `${dir}/handler.app.cjs.v8-cache`]);
        expect(names.filter((n) => n.startsWith('functions/') && !n.startsWith(`${dir}/`)), zip).toEqual([]);
        // Only the inference handler has a boot module (functions/inference/boot.ts): its shim loads it first.
        const boot = `${dir}/handler.boot.cjs`;
        expect(names.includes(boot) && names.includes(`${boot}.v8-cache`), zip).toBe(zip === 'inference.zip');
        expect(shimText.includes('boot: "./handler.boot.cjs"'), zip).toBe(zip === 'inference.zip');
        const bundle = entries.find((e) => e.name === `${dir}/handler.app.cjs`);
        expect(bundle, zip).toBeDefined();
        const text = bundle?.read().toString('utf8') ?? '';
        // Bundled by mistake, onnxruntime-node would bring the loader of its native binding along.
        expect(text).not.toContain('onnxruntime_binding');
        expect(text.startsWith("var __aiMassImportMetaUrl = require('node:url').pathToFileURL(__filename).href;")).toBe(true);

        sizes[zip] = Math.max(sizes[zip] ?? 0, entries.reduce((sum, e) => sum + e.size, 0));
        console.log(`${tier}/${zip}: ${mib((await readFile(file)).length)} zipped, ${mib(sizes[zip])} unzipped`);
      }
    }
    const largest = Math.max(...Object.values(sizes));
    const total = layer.unzippedBytes + largest;
    console.log(
      `layer ${mib(layer.unzippedBytes)} + largest function ${mib(largest)} = ${mib(total)}; ` +
        `margin ${mib(LAMBDA_UNZIPPED_LIMIT - total)} under 250 MiB`,
    );

    expect(total).toBeLessThan(LAMBDA_UNZIPPED_LIMIT);
  });

  it('makes every code cache from a training run that went through (the inference one with its emulators)', async () => {
    for (const [name, run] of Object.entries(packaged)) {
      // Every function that ships a handler shim wrote its marker: a training that failed writes its
      // caches all the same, but no marker (train-code-cache.ts exits 1 before it).
      const zips = (await readdir(run.dir)).filter((f) => f.endsWith('.zip'));
      const functions = new Set<string>();
      for (const zip of zips) {
        for (const entry of await zipEntries(path.join(run.dir, zip))) {
          const shim = /^functions\/([a-z-]+)\/handler\.mjs$/.exec(entry.name);
          if (shim) functions.add(shim[1]!);
        }
      }
      expect(functions.has('inference'), name).toBe(true);
      expect(run.codeCachesTrained, name).toEqual([...functions].sort((a, b) => a.localeCompare(b)).map((fn) => ({ function: fn, training: fn === 'inference' ? 'inference' : null })));
    }
  });

  it("ships the inference function with code caches from its training run that a fresh process of this Node accepts", async () => {
    const entries = await zipEntries(path.join(packaged.standard.dir, 'inference.zip'));
    const unpacked = await mkdtemp(path.join(tmpdir(), 'inference-zip-'));
    for (const e of entries.filter((entry) => entry.name.startsWith('functions/inference/'))) {
      await mkdir(path.join(unpacked, path.dirname(e.name)), { recursive: true });
      await writeFile(path.join(unpacked, e.name), e.read());
    }
    const dir = path.join(unpacked, 'functions', 'inference');
    // The training served a real pre-warm and requests (infra/esbuild/cache-training/inference.ts):
    // far more compiled code than the top level alone.
    expect((await stat(path.join(dir, 'handler.app.cjs.v8-cache'))).size).toBeGreaterThan(300_000);
    // Init then fails at connect (closed loopback port): the scripts have been compiled by then.
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(path.join(dir, 'handler.mjs')).href)}).catch(() => {}); process.exit(0);`], {
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        PATH: process.env.PATH, AI_MASS_CODE_CACHE_DEBUG: '1', AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_MAX_ATTEMPTS: '1', MODEL_BUCKET: 'none', PRELOAD_MODELS: '', POWERTOOLS_LOG_LEVEL: 'SILENT', NODE_PATH: path.join(process.cwd(), 'node_modules'),
      },
    });
    expect(run.stderr).toContain(`code cache for ${path.join(dir, 'handler.boot.cjs')}: accepted\n`);
    expect(run.stderr).toContain(`code cache for ${path.join(dir, 'handler.app.cjs')}: accepted\n`);
  });
});
