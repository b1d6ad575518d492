import type { Resource, Template } from './package-service.ts';
import type { IamRequest } from './aws-recorder.ts';

/**
 * A small IAM policy evaluator for the statements this stack writes: Allow and Deny, Action and
 * Resource with `*` and `?` wildcards, and StringLike / StringEquals conditions. Anything else
 * (NotAction, NotResource, another condition operator) throws, so a policy it cannot judge fails
 * the test rather than passing it.
 *
 * CloudFormation references resolve to canonical ARNs that carry logical ids instead of physical
 * names (`arn:aws:dynamodb:us-east-1:123456789012:table/RegistryTable`,
 * `arn:aws:s3:::ModelBucket/models/*`), the form aws-recorder.ts maps recorded requests to.
 */
export const PARTITION = 'aws';
export const REGION = 'us-east-1';
export const ACCOUNT = '123456789012';

export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  Resource?: unknown;
  Condition?: Record<string, Record<string, string | string[]>>;
  NotAction?: unknown;
  NotResource?: unknown;
}

/** A statement with its references resolved. */
export interface ResolvedStatement {
  sid: string;
  effect: 'Allow' | 'Deny';
  actions: string[];
  resources: string[];
  condition: Record<string, Record<string, string[]>>;
}

const asArray = <T>(value: T | T[] | undefined): T[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

/** The canonical ARN of a resource of the template, by what CloudFormation would return. */
export function canonicalArn(template: Template, logicalId: string): string {
  const resource = template.Resources[logicalId];
  if (!resource) throw new Error(`no resource ${logicalId} in the template`);
  switch (resource.Type) {
    case 'AWS::S3::Bucket':
      return `arn:${PARTITION}:s3:::${logicalId}`;
    case 'AWS::DynamoDB::Table':
      return `arn:${PARTITION}:dynamodb:${REGION}:${ACCOUNT}:table/${logicalId}`;
    case 'AWS::SQS::Queue':
      return `arn:${PARTITION}:sqs:${REGION}:${ACCOUNT}:${logicalId}`;
    case 'AWS::SNS::Topic':
      return `arn:${PARTITION}:sns:${REGION}:${ACCOUNT}:${logicalId}`;
    default:
      throw new Error(`no canonical ARN for ${logicalId} (${resource.Type})`);
  }
}

function ref(template: Template, name: string): string {
  switch (name) {
    case 'AWS::Partition':
      return PARTITION;
    case 'AWS::Region':
      return REGION;
    case 'AWS::AccountId':
      return ACCOUNT;
  }
  const resource: Resource | undefined = template.Resources[name];
  if (!resource) throw new Error(`Ref to ${name}, which the template does not define`);
  // Ref gives a bucket's or table's name, a topic's ARN (a queue's URL never appears in a policy).
  if (resource.Type === 'AWS::S3::Bucket' || resource.Type === 'AWS::DynamoDB::Table') return name;
  if (resource.Type === 'AWS::SNS::Topic') return canonicalArn(template, name);
  throw new Error(`Ref to ${name} (${resource.Type}) has no canonical value here`);
}

function getAtt(template: Template, name: string, attribute: string): string {
  if (attribute === 'Arn') return canonicalArn(template, name);
  if (attribute === 'QueueName' || attribute === 'TopicName') return name;
  throw new Error(`Fn::GetAtt ${name}.${attribute} has no canonical value here`);
}

/** Resolves Ref, Fn::GetAtt, Fn::Sub and Fn::Join to a string; anything else throws. */
export function resolve(template: Template, value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [[fn, arg]] = Object.entries(value) as [[string, unknown]];
    switch (fn) {
      case 'Ref':
        return ref(template, arg as string);
      case 'Fn::GetAtt': {
        const [name, attribute] = typeof arg === 'string' ? (arg.split('.') as [string, string]) : (arg as [string, string]);
        return getAtt(template, name, attribute);
      }
      case 'Fn::Sub': {
        const [text, variables] = typeof arg === 'string' ? [arg, {}] : (arg as [string, Record<string, unknown>]);
        return text.replace(/\$\{([^}!]+)\}/g, (_, name: string) => {
          if (name in variables) return resolve(template, (variables as Record<string, unknown>)[name]);
          const dot = name.indexOf('.');
          return dot > 0 && !name.startsWith('AWS::') ? getAtt(template, name.slice(0, dot), name.slice(dot + 1)) : ref(template, name);
        });
      }
      case 'Fn::Join': {
        const [separator, parts] = arg as [string, unknown[]];
        return parts.map((p) => resolve(template, p)).join(separator);
      }
    }
  }
  throw new Error(`cannot resolve ${JSON.stringify(value)}`);
}

/** The statements of an AWS::IAM::Role's inline policies, resolved. */
export function roleStatements(template: Template, roleLogicalId: string): ResolvedStatement[] {
  const role = template.Resources[roleLogicalId];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${roleLogicalId} is not a role`);
  if (role.Properties.ManagedPolicyArns) throw new Error(`${roleLogicalId} has managed policies, which this evaluator cannot read`);
  const policies = (role.Properties.Policies ?? []) as { PolicyName: string; PolicyDocument: { Statement: Statement[] } }[];
  return policies.flatMap((policy) =>
    policy.PolicyDocument.Statement.map((s, i) => {
      if (s.NotAction !== undefined || s.NotResource !== undefined) throw new Error(`${roleLogicalId}: NotAction/NotResource are not supported`);
      const condition: ResolvedStatement['condition'] = {};
      for (const [operator, keys] of Object.entries(s.Condition ?? {})) {
        // A request here carries one value per key, so ForAllValues:StringLike is StringLike on it (and,
        // stricter than IAM, which lets a request without the key through, fails when the key is absent).
        const plain = operator === 'ForAllValues:StringLike' ? 'StringLike' : operator;
        if (plain !== 'StringLike' && plain !== 'StringEquals') throw new Error(`${roleLogicalId}: condition operator ${operator} is not supported`);
        condition[plain] = Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, asArray(v)]));
      }
      return {
        sid: s.Sid ?? `${policy.PolicyName}[${i}]`,
        effect: s.Effect,
        actions: asArray(s.Action),
        resources: asArray(s.Resource as unknown).map((r) => resolve(template, r)),
        condition,
      };
    }),
  );
}

/** IAM's wildcard match: `*` any run of characters, `?` one character. */
export function wildcardMatch(pattern: string, value: string, caseInsensitive = false): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, caseInsensitive ? 'is' : 's').test(value);
}

function conditionHolds(condition: ResolvedStatement['condition'], context: Record<string, string>): boolean {
  return Object.entries(condition).every(([operator, keys]) =>
    Object.entries(keys).every(([key, values]) => {
      const actual = context[key];
      if (actual === undefined) return false;
      return values.some((v) => (operator === 'StringLike' ? wildcardMatch(v, actual) : v === actual));
    }),
  );
}

/** Whether a statement applies to a request: action, resource and condition. */
export function statementMatches(statement: ResolvedStatement, request: IamRequest, resourcePattern?: string, actionPattern?: string): boolean {
  const actions = actionPattern ? [actionPattern] : statement.actions;
  const resources = resourcePattern ? [resourcePattern] : statement.resources;
  return (
    actions.some((a) => wildcardMatch(a, request.action, true)) &&
    resources.some((r) => wildcardMatch(r, request.resource)) &&
    conditionHolds(statement.condition, request.context)
  );
}

/** IAM's decision for one request: an explicit Deny wins, then any Allow, else an implicit deny. */
export function isAllowed(statements: ResolvedStatement[], request: IamRequest): boolean {
  if (statements.some((s) => s.effect === 'Deny' && statementMatches(s, request))) return false;
  return statements.some((s) => s.effect === 'Allow' && statementMatches(s, request));
}

/** One permission a role grants: an action on a resource pattern, in a statement. */
export interface Grant {
  sid: string;
  action: string;
  resource: string;
}

export const grantId = (g: Grant): string => `${g.sid} ${g.action} ${g.resource}`;

/** Each Allow statement's actions times its resources. */
export function grants(statements: ResolvedStatement[]): Grant[] {
  return statements.filter((s) => s.effect === 'Allow').flatMap((s) => s.actions.flatMap((action) => s.resources.map((resource) => ({ sid: s.sid, action, resource }))));
}

/** The grants no request used. */
export function unusedGrants(statements: ResolvedStatement[], requests: IamRequest[]): Grant[] {
  return grants(statements).filter((g) => {
    const statement = statements.find((s) => s.sid === g.sid)!;
    return !requests.some((r) => statementMatches(statement, r, g.resource, g.action));
  });
}
