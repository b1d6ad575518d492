// A serverless plugin (serverless.yml `plugins`) that gives every function of the stack, whoever's
// file declares it, the alarms docs/monitoring.md promises: its errors, its throttles, and every
// dead-letter queue's depth. Generated from the compiled template after the resource files are
// merged, so a function added later is watched without anyone remembering to write its alarms.

/** Logical id of the alarm topic every alarm notifies (serverless.yml). */
const ALARM_TOPIC = 'AlarmTopic';

const alarm = (description, namespace, metric, dimensions, statistic, threshold) => ({
  Type: 'AWS::CloudWatch::Alarm',
  Properties: {
    AlarmDescription: description,
    Namespace: namespace,
    MetricName: metric,
    Dimensions: dimensions,
    Statistic: statistic,
    Period: 300,
    EvaluationPeriods: 1,
    Threshold: threshold,
    ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    TreatMissingData: 'notBreaching',
    AlarmActions: [{ Ref: ALARM_TOPIC }],
  },
});

/** The logical id a RedrivePolicy's deadLetterTargetArn names (Fn::GetAtt [Queue, Arn]). */
const deadLetterTarget = (queue) => queue.Properties?.RedrivePolicy?.deadLetterTargetArn?.['Fn::GetAtt']?.[0];

/** Whether an alarm already watches a queue's depth (the resource files declare most of them). */
function watchesQueue(resources, queueId) {
  return Object.values(resources).some(
    (r) =>
      r.Type === 'AWS::CloudWatch::Alarm' &&
      r.Properties?.Namespace === 'AWS/SQS' &&
      (r.Properties?.Dimensions ?? []).some((d) => d.Name === 'QueueName' && JSON.stringify(d.Value).includes(`"${queueId}"`)),
  );
}

export function addFunctionAlarms(resources) {
  const added = [];
  for (const [id, resource] of Object.entries({ ...resources })) {
    if (resource.Type !== 'AWS::Lambda::Function' || !id.endsWith('LambdaFunction')) continue;
    const base = id.slice(0, -'LambdaFunction'.length);
    const name = resource.Properties.FunctionName;
    const conditioned = (a) => (resource.Condition ? { ...a, Condition: resource.Condition } : a);
    const dims = [{ Name: 'FunctionName', Value: name }];
    resources[`${base}ErrorsAlarm`] = conditioned(alarm(`${name}: invocations failed (Lambda Errors)`, 'AWS/Lambda', 'Errors', dims, 'Sum', 1));
    resources[`${base}ThrottlesAlarm`] = conditioned(alarm(`${name}: invocations throttled (concurrency limit reached)`, 'AWS/Lambda', 'Throttles', dims, 'Sum', 1));
    added.push(`${base}ErrorsAlarm`, `${base}ThrottlesAlarm`);
  }
  const deadLetterQueues = new Set(Object.values(resources).filter((r) => r.Type === 'AWS::SQS::Queue').map(deadLetterTarget).filter(Boolean));
  for (const queueId of deadLetterQueues) {
    if (watchesQueue(resources, queueId)) continue;
    const id = `${queueId}DepthAlarm`;
    const dims = [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }];
    resources[id] = alarm(`${queueId}: messages no consumer could handle`, 'AWS/SQS', 'ApproximateNumberOfMessagesVisible', dims, 'Maximum', 1);
    if (resources[queueId].Condition) resources[id].Condition = resources[queueId].Condition;
    added.push(id);
  }
  // Every function's role may send X-Ray traces when tracing is on (the policy's condition).
  const tracing = resources.TracingPolicy;
  if (tracing) {
    const roles = Object.values(resources).filter((r) => r.Type === 'AWS::Lambda::Function').map((r) => r.Properties.Role?.['Fn::GetAtt']?.[0]).filter(Boolean);
    tracing.Properties.Roles = [...new Set(roles)].sort().map((role) => ({ Ref: role }));
  }
  return added;
}

export default class MonitoringPlugin {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = {
      'after:aws:package:finalize:mergeCustomProviderResources': () => {
        addFunctionAlarms(this.serverless.service.provider.compiledCloudFormationTemplate.Resources);
      },
    };
  }
}
