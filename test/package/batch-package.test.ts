// `serverless package` of the real service with infra/serverless/batch.yml included, offline, then
// assertions on the batch part of the CloudFormation template and on the score function's bundle.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageService, removePackagedServices, type Template } from '../helpers/package-service.ts';
import { deployInvariantViolations } from '../helpers/template-invariants.ts';

interface Statement {
  Sid?: string;
  Action: string | string[];
  Resource: unknown;
}

function statements(t: Template, role: string): Statement[] {
  const policies = t.Resources[role]!.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[];
  return policies.flatMap((p) => p.PolicyDocument.Statement);
}

const actions = (t: Template, role: string) => statements(t, role).flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action])).sort();

let plain: Template;
let gpu: Template;
let gpuDir: string;

beforeAll(async () => {
  [{ template: plain }, { template: gpu, dir: gpuDir }] = await Promise.all([
    packageService('batch-plain', {}),
    packageService('batch-gpu', { batchGpuWorkers: 'true', batchGpuVpcId: 'vpc-0abc', batchGpuSubnetIds: 'subnet-a,subnet-b' }),
  ]);
}, 700_000);

afterAll(removePackagedServices);

describe('batch functions and queues', () => {
  it('routes POST /v2/batches and GET /v2/batches/{id} to the batch API function', () => {
    const routes = Object.values(plain.Resources).filter((r) => r.Type === 'AWS::ApiGatewayV2::Route').map((r) => r.Properties.RouteKey);
    expect(routes).toEqual(expect.arrayContaining(['POST /v2/batches', 'GET /v2/batches/{id}']));
  });

  it('sends steps no delivery could run to the dead-letter queue (after more receives than the batch kind\'s 3 attempts), whose function ends them failed', () => {
    for (const queue of ['BatchShardQueue', 'BatchGpuShardQueue']) {
      expect(plain.Resources[queue]!.Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: { 'Fn::GetAtt': ['BatchShardDeadLetterQueue', 'Arn'] }, maxReceiveCount: 5 });
    }
    // Six times the score function's timeout, as AWS advises for SQS event sources.
    expect(plain.Resources.BatchScoreLambdaFunction!.Properties.Timeout).toBe(900);
    expect(plain.Resources.BatchShardQueue!.Properties.VisibilityTimeout).toBe(5400);
    const mappings = Object.values(plain.Resources).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping').map((r) => r.Properties);
    expect(mappings).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ EventSourceArn: { 'Fn::GetAtt': ['BatchShardQueue', 'Arn'] }, BatchSize: 1, FunctionResponseTypes: ['ReportBatchItemFailures'] }),
        expect.objectContaining({ EventSourceArn: { 'Fn::GetAtt': ['BatchShardDeadLetterQueue', 'Arn'] }, FunctionResponseTypes: ['ReportBatchItemFailures'] }),
        expect.objectContaining({ EventSourceArn: { 'Fn::GetAtt': ['BatchSubmitQueue', 'Arn'] }, FunctionResponseTypes: ['ReportBatchItemFailures'] }),
      ]),
    );
  });

  it('submits on S3 Object Created events under batches/incoming/', () => {
    const rule = Object.values(plain.Resources).find((r) => r.Type === 'AWS::Events::Rule' && JSON.stringify(r.Properties.EventPattern ?? null).includes('batches/'))!;
    expect(rule.Properties.EventPattern).toEqual({
      source: ['aws.s3'],
      'detail-type': ['Object Created'],
      detail: { bucket: { name: [{ Ref: 'ModelBucket' }] }, object: { key: [{ prefix: 'batches/incoming/' }] } },
    });
  });

  it('keeps job records in the registry table (the job runtime), and names its queues without a CloudFormation reference', () => {
    expect(plain.Resources.BatchTable).toBeUndefined();
    const env = (plain.Resources.BatchApiLambdaFunction!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    expect(env).toMatchObject({ REGISTRY_TABLE: 'ai-mass-test-registry', SHARD_QUEUE_NAME: 'ai-mass-test-batch-shards', GPU_WORKERS: 'false' });
    expect(env.BATCH_TABLE).toBeUndefined();
  });
});

describe('least privilege', () => {
  it('gives each batch function its own role with only what it does', () => {
    expect(plain.Resources.BatchScoreLambdaFunction!.Properties.Role).toEqual({ 'Fn::GetAtt': ['BatchScoreRole', 'Arn'] });
    expect(actions(plain, 'BatchApiRole')).toEqual([
      'dynamodb:GetItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem',
      'logs:CreateLogStream', 'logs:PutLogEvents',
      's3:GetObject', 's3:GetObject', 's3:ListBucket', 's3:PutObject',
      'sqs:GetQueueUrl', 'sqs:SendMessage',
    ]);
    // Versions and aliases are read from the registry table, never written.
    expect(statements(plain, 'BatchApiRole').find((st) => st.Sid === 'ReadRegistry')).toEqual({
      Sid: 'ReadRegistry', Effect: 'Allow', Action: 'dynamodb:Query', Resource: { 'Fn::GetAtt': ['RegistryTable', 'Arn'] },
    });
    expect(statements(plain, 'BatchApiRole').find((st) => st.Sid === 'ReadRegisteredVersions')).toEqual({
      Sid: 'ReadRegisteredVersions', Effect: 'Allow', Action: 'dynamodb:GetItem', Resource: { 'Fn::GetAtt': ['RegistryTable', 'Arn'] },
    });
    // The score function cannot create jobs or steps, sends only a job's merge step to its own queue, and writes only under batches/.
    const score = actions(plain, 'BatchScoreRole');
    expect(score).not.toContain('dynamodb:PutItem');
    const sends = statements(plain, 'BatchScoreRole').filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).includes('sqs:SendMessage'));
    expect(sends.map((s) => s.Resource)).toEqual([[{ 'Fn::GetAtt': ['BatchShardQueue', 'Arn'] }]]);
    const writes = statements(plain, 'BatchScoreRole').filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).includes('s3:PutObject'));
    expect(writes.map((s) => s.Resource)).toEqual([{ 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${ModelBucket}/batches/*' }]);
  });
});

describe('the GPU service', () => {
  it('exists only with --param batchGpuWorkers=true', () => {
    expect(plain.Conditions!.BatchGpuEnabled).toEqual({ 'Fn::Equals': ['false', 'true'] });
    expect(gpu.Conditions!.BatchGpuEnabled).toEqual({ 'Fn::Equals': ['true', 'true'] });
    const ecs = Object.entries(gpu.Resources).filter(([, r]) => r.Type.startsWith('AWS::ECS::') || r.Type.startsWith('AWS::ApplicationAutoScaling::'));
    expect(ecs.length).toBeGreaterThanOrEqual(7);
    expect(ecs.every(([, r]) => r.Condition === 'BatchGpuEnabled')).toBe(true);
  });

  it('runs one GPU per task, starts at zero, and stops gracefully', () => {
    expect(gpu.Resources.BatchGpuService!.Properties).toMatchObject({ DesiredCount: 0 });
    const container = (gpu.Resources.BatchGpuTaskDefinition!.Properties.ContainerDefinitions as Record<string, unknown>[])[0]!;
    expect(container).toMatchObject({ ResourceRequirements: [{ Type: 'GPU', Value: '1' }], StopTimeout: 120 });
    expect(container.Environment).toEqual(expect.arrayContaining([{ Name: 'EXECUTION_PROVIDER', Value: 'cuda' }, { Name: 'WORKER_QUEUE_URL', Value: { Ref: 'BatchGpuShardQueue' } }]));
    expect(gpu.Resources.BatchGpuAutoScalingGroup!.Properties).toMatchObject({ MinSize: '0', VPCZoneIdentifier: { 'Fn::Split': [',', 'subnet-a,subnet-b'] } });
    expect(gpu.Resources.BatchGpuCapacityProvider!.Properties).toMatchObject({ AutoScalingGroupProvider: { ManagedScaling: { Status: 'ENABLED', TargetCapacity: 100 } } });
  });

  it('scales on backlog per task (shards and container job steps), and to zero when the queues are empty', () => {
    expect(gpu.Resources.BatchGpuScalableTarget!.Properties).toMatchObject({ MinCapacity: 0, ScalableDimension: 'ecs:service:DesiredCount' });
    const high = gpu.Resources.BatchGpuBacklogHighAlarm!.Properties.Metrics as { Id: string; Expression?: string }[];
    expect(high.find((m) => m.Id === 'backlogpertask')!.Expression).toBe('(FILL(visible, 0) + FILL(inflight, 0) + FILL(cvisible, 0) + FILL(cinflight, 0)) / IF(FILL(tasks, 0) > 0, FILL(tasks, 0), 1)');
    expect(gpu.Resources.BatchGpuScaleToZeroPolicy!.Properties).toMatchObject({
      StepScalingPolicyConfiguration: { AdjustmentType: 'ExactCapacity', StepAdjustments: [{ MetricIntervalUpperBound: 0, ScalingAdjustment: 0 }] },
    });
    expect(gpu.Resources.BatchGpuQueueEmptyAlarm!.Properties).toMatchObject({ EvaluationPeriods: 15, AlarmActions: [{ Ref: 'BatchGpuScaleToZeroPolicy' }] });
  });
});

describe('what AWS checks at deploy', () => {
  it('holds with and without the GPU service (the GPU alarms act on their scaling policies)', () => {
    expect(deployInvariantViolations(plain)).toEqual([]);
    expect(deployInvariantViolations(gpu)).toEqual([]);
    expect(plain.Resources.BatchShardDeadLetterQueue!.Properties.VisibilityTimeout).toBe(1800);
    expect(plain.Resources.BatchDeadLetterLambdaFunction!.Properties.Timeout).toBe(300);
  });
});

describe('the score function bundle', () => {
  it('leaves onnxruntime-node to the layer', async () => {
    const zip = await readFile(path.join(gpuDir, 'batchScore.zip'));
    expect(zip.includes(Buffer.from('onnxruntime_binding.node'))).toBe(false);
    expect(zip.includes(Buffer.from('functions/batch-score/handler.mjs'))).toBe(true);
  });
});
