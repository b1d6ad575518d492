import * as z from './zod-mini.ts';
import { ConfigError } from './errors.ts';
import { PARSED_ONCE } from './zod-options.ts';

const nonEmpty = z.string().check(z.minLength(1));
const positiveInteger = z.string().check(z.regex(/^[1-9][0-9]{0,15}$/, 'expected a positive whole number'));

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
  /** Request bodies over this many bytes are refused before they are parsed (functions that take bodies). */
  MAX_BODY_BYTES: z.optional(positiveInteger),
  /** The largest model file registration takes. */
  MAX_MODEL_BYTES: z.optional(positiveInteger),
  /** The inference function's memory in this deployment (the tier's memorySize). */
  SERVING_MEMORY_MB: z.optional(positiveInteger),
  /** The tier's quantization of each new upload. */
  DEFAULT_QUANTIZATION: z.optional(z.enum(['none', 'int8-dynamic', 'fp16'])),
  /** X-Ray through the Powertools Tracer (platform/tracing.ts): 'true' where the stage's `tracing` parameter is Active. */
  POWERTOOLS_TRACE_ENABLED: z.optional(z.enum(['true', 'false'])),
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
