import * as z from './zod-mini.ts';
import { ConfigError } from './errors.ts';
import { PARSED_ONCE } from './zod-options.ts';

const nonEmpty = z.string().check(z.minLength(1));

/**
 * The variables the stack sets that more than one function reads, each with its one schema: a
 * function's config picks those it needs (`readEnv(['MODEL_BUCKET', ...])`), so a missing or
 * malformed one fails the cold start with its name, never a request. zod/mini: the inference
 * function reads these on its cold start.
 */
export const STACK_VARIABLES = {
  MODEL_BUCKET: nonEmpty,
  /** The registry table (versions, aliases, jobs); set stack-wide. Without it versions are listed from the bucket. */
  REGISTRY_TABLE: z.optional(nonEmpty),
  MODEL_CACHE_DIR: z.optional(nonEmpty),
  MODEL_EVENTS_TOPIC_ARN: z.optional(z.string().check(z.regex(/^arn:[^:]+:sns:[^:]*:[^:]*:[^:]+$/, 'expected an SNS topic ARN'))),
} as const;

type StackVariable = keyof typeof STACK_VARIABLES;
type Read<K extends StackVariable> = { [P in K]: z.infer<(typeof STACK_VARIABLES)[P]> };

/** The named variables, checked: a ConfigError naming each one that is missing or malformed. */
export function readEnv<K extends StackVariable>(names: readonly K[], env: NodeJS.ProcessEnv = process.env): Read<K> {
  const shape = Object.fromEntries(names.map((name) => [name, STACK_VARIABLES[name]]));
  const values = Object.fromEntries(names.map((name) => [name, env[name] === '' ? undefined : env[name]]));
  const parsed = z.object(shape).safeParse(values, PARSED_ONCE);
  if (!parsed.success) {
    throw new ConfigError(`invalid environment: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data as Read<K>;
}
