import type { Template } from './package-service.ts';
import { canonicalArn, isAllowed, resolve, roleStatements } from './iam-policy.ts';

/**
 * What AWS checks when the stack deploys (or advises, and we hold ourselves to), over a packaged
 * template. Each violation is one line naming the resources; an empty list means none.
 *
 * - An SQS event source mapping names a function and a queue of this stack; the queue's visibility
 *   timeout is at least six times the function's timeout (AWS's advice; Lambda refuses a mapping
 *   whose visibility timeout is below the function's timeout); the function's role may receive,
 *   delete and read the attributes of that queue (Lambda checks the role when it creates the mapping).
 * - A dead-letter queue is FIFO exactly when its source queue is (SQS refuses the redrive otherwise).
 * - An asynchronous on-failure destination exists in the stack and the function's role may send to
 *   it (Lambda checks when the configuration is created).
 * - Every alarm has an action, and each action is a resource of this stack.
 */

/** Lambda's default timeout when a function sets none. */
const LAMBDA_DEFAULT_TIMEOUT = 3;
/** SQS's default visibility timeout when a queue sets none. */
const SQS_DEFAULT_VISIBILITY = 30;
/** What Lambda's event source mapping calls on the queue with the function's role. */
const EVENT_SOURCE_ACTIONS = ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'];

const logicalIdOf = (value: unknown): string | undefined => {
  if (value && typeof value === 'object') {
    const v = value as { Ref?: string; 'Fn::GetAtt'?: [string, string] | string };
    if (typeof v.Ref === 'string') return v.Ref;
    const att = v['Fn::GetAtt'];
    if (att) return Array.isArray(att) ? att[0] : att.split('.')[0];
  }
  return undefined;
};

/** The role a function of the template runs with: `{Fn::GetAtt: [Role, Arn]}`. */
export function functionRole(template: Template, functionLogicalId: string): string | undefined {
  return logicalIdOf(template.Resources[functionLogicalId]?.Properties.Role);
}

export function deployInvariantViolations(template: Template): string[] {
  const violations: string[] = [];
  const resources = template.Resources;
  const typeOf = (id: string | undefined) => (id ? resources[id]?.Type : undefined);
  const roleAllows = (fn: string, action: string, resourceId: string): boolean => {
    const role = functionRole(template, fn);
    if (!role || typeOf(role) !== 'AWS::IAM::Role') return false;
    return isAllowed(roleStatements(template, role), { action, resource: canonicalArn(template, resourceId), context: {} });
  };

  for (const [id, mapping] of Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::EventSourceMapping')) {
    const fn = logicalIdOf(mapping.Properties.FunctionName);
    const queue = logicalIdOf(mapping.Properties.EventSourceArn);
    if (typeOf(fn) !== 'AWS::Lambda::Function') {
      violations.push(`${id}: its function ${JSON.stringify(mapping.Properties.FunctionName)} is not a function of this stack`);
      continue;
    }
    if (typeOf(queue) !== 'AWS::SQS::Queue') {
      violations.push(`${id}: its event source ${JSON.stringify(mapping.Properties.EventSourceArn)} is not a queue of this stack`);
      continue;
    }
    const timeout = Number(resources[fn!]!.Properties.Timeout ?? LAMBDA_DEFAULT_TIMEOUT);
    const visibility = Number(resources[queue!]!.Properties.VisibilityTimeout ?? SQS_DEFAULT_VISIBILITY);
    if (visibility < 6 * timeout) {
      violations.push(`${id}: ${queue} has a visibility timeout of ${visibility} s, below six times ${fn}'s timeout of ${timeout} s (${6 * timeout} s)`);
    }
    for (const action of EVENT_SOURCE_ACTIONS) {
      if (!roleAllows(fn!, action, queue!)) violations.push(`${id}: ${fn}'s role does not allow ${action} on ${queue}`);
    }
  }

  for (const [id, queue] of Object.entries(resources).filter(([, r]) => r.Type === 'AWS::SQS::Queue')) {
    const redrive = queue.Properties.RedrivePolicy as { deadLetterTargetArn?: unknown } | undefined;
    if (!redrive) continue;
    const target = logicalIdOf(redrive.deadLetterTargetArn);
    if (typeOf(target) !== 'AWS::SQS::Queue') {
      violations.push(`${id}: its dead-letter target ${JSON.stringify(redrive.deadLetterTargetArn)} is not a queue of this stack`);
    } else if (Boolean(queue.Properties.FifoQueue) !== Boolean(resources[target!]!.Properties.FifoQueue)) {
      violations.push(`${id}: its dead-letter queue ${target} must be FIFO exactly when it is`);
    }
  }

  for (const [id, config] of Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::EventInvokeConfig')) {
    const fn = logicalIdOf(config.Properties.FunctionName);
    const destinations = (config.Properties.DestinationConfig ?? {}) as Record<string, { Destination: unknown }>;
    for (const [kind, { Destination }] of Object.entries(destinations)) {
      const target = logicalIdOf(Destination);
      if (typeOf(target) !== 'AWS::SQS::Queue') {
        violations.push(`${id}: its ${kind} destination ${JSON.stringify(Destination)} is not a queue of this stack`);
      } else if (!roleAllows(fn!, 'sqs:SendMessage', target!)) {
        violations.push(`${id}: ${fn}'s role does not allow sqs:SendMessage on its ${kind} destination ${target}`);
      }
    }
  }

  for (const [id, alarm] of Object.entries(resources).filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm')) {
    const actions = (alarm.Properties.AlarmActions ?? []) as unknown[];
    if (actions.length === 0) violations.push(`${id}: has no alarm action`);
    for (const action of actions) {
      const target = logicalIdOf(action);
      if (!target || !resources[target]) violations.push(`${id}: its action ${JSON.stringify(action)} is not a resource of this stack`);
    }
  }
  return violations;
}

/** A function's environment with its references resolved the way a local run names them. */
export function functionEnvironment(template: Template, functionLogicalId: string, refs: Record<string, string>): Record<string, string> {
  const variables = ((template.Resources[functionLogicalId]?.Properties.Environment as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {});
  return Object.fromEntries(
    Object.entries(variables).map(([k, v]) => {
      const id = logicalIdOf(v);
      if (id && refs[id] !== undefined) return [k, refs[id]];
      return [k, resolve(template, v)];
    }),
  );
}
