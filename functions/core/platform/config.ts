import * as z from './zod-mini.ts';
import { ConfigError } from './errors.ts';
import { PARSED_ONCE } from './zod-options.ts';

/** Fail-fast read of one required variable, as Powertools' example app does. */
export function requireEnv(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name];
  if (value === undefined || value === '') throw new ConfigError(`${name} environment variable is not set`);
  return value;
}

/** A zod `safeParse` result, classic or mini. */
type ParseResult<T> = { success: true; data: T } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } };

/**
 * A function's configuration as parsed once at init, or a ConfigError naming every issue ("invalid
 * <what> configuration: ..."; each issue led by its path when `paths`): a bad setting fails the cold
 * start, not a request.
 */
export function parsedConfig<T>(what: string, parsed: ParseResult<T>, { paths = false } = {}): T {
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => (paths ? `${i.path.join('.')}: ${i.message}` : i.message));
  throw new ConfigError(`invalid ${what} configuration: ${issues.join('; ')}`);
}

const modelRef = z.string().check(z.regex(/^[a-z0-9][a-z0-9._-]{0,63}(:[a-z0-9][a-z0-9._-]{0,63})?$/, 'expected name or name:version'));

const inferenceConfigSchema = z.object({
  bucket: z.string().check(z.minLength(1)),
  preloadModels: z.array(modelRef),
  maxBodyBytes: z.number().check(z.int(), z.positive()),
  cacheDir: z.string().check(z.minLength(1)),
  intraOpThreads: z.optional(z.number().check(z.int(), z.positive())),
  serviceVersion: z.string(),
  aliasTtlMs: z.number().check(z.int(), z.nonnegative()),
  defaultAlias: z.string().check(z.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/)),
  /** The tier's /tmp budget: least recently used cached files are evicted beyond it. */
  cacheBudgetBytes: z.number().check(z.int(), z.positive()),
  /** MODEL_STAGING=off serves model.onnx even where a staged artifact matches (diagnosis, benchmarks). */
  modelStaging: z.enum(['on', 'off']),
});
export type InferenceConfig = z.infer<typeof inferenceConfigSchema>;

/** Lambda's synchronous invocation payload limit; API Gateway's own is 10 MB. */
export const DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024;

export function readInferenceConfig(env: NodeJS.ProcessEnv = process.env): InferenceConfig {
  const parsed = inferenceConfigSchema.safeParse({
    bucket: requireEnv('MODEL_BUCKET', env),
    preloadModels: (env.PRELOAD_MODELS ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    maxBodyBytes: env.MAX_BODY_BYTES ? Number(env.MAX_BODY_BYTES) : DEFAULT_MAX_BODY_BYTES,
    cacheDir: env.MODEL_CACHE_DIR ?? '/tmp/ai-mass/models',
    intraOpThreads: env.INTRA_OP_THREADS ? Number(env.INTRA_OP_THREADS) : undefined,
    serviceVersion: env.SERVICE_VERSION ?? '0.1.0',
    aliasTtlMs: env.ALIAS_TTL_MS ? Number(env.ALIAS_TTL_MS) : 5_000,
    defaultAlias: env.DEFAULT_ALIAS ?? 'prod',
    cacheBudgetBytes: env.MODEL_CACHE_BUDGET_BYTES ? Number(env.MODEL_CACHE_BUDGET_BYTES) : 512 * 1024 * 1024,
    modelStaging: env.MODEL_STAGING ?? 'on',
  }, PARSED_ONCE);
  if (!parsed.success) {
    throw new ConfigError(`invalid inference configuration: ${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}
