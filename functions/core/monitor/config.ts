import * as z from 'zod';
import { ConfigError } from '../platform/errors.ts';

const monitorConfigSchema = z.strictObject({
  /** The registry table, where job records and aliases live (REGISTRY_TABLE, set stack-wide). */
  table: z.string().min(3, 'REGISTRY_TABLE environment variable is not set'),
  /** The monitor kind's step queue (infra/serverless/monitoring.yml). */
  stepQueue: z.string().min(1, 'MONITOR_STEP_QUEUE environment variable is not set').optional(),
  dynamoEndpoint: z.string().url().optional(),
  cacheDir: z.string().min(1),
  intraOpThreads: z.number().int().positive().optional(),
  /** cloudwatch in AWS; local: the local stack's EMF file (LOCAL_METRICS_FILE). */
  metricsSource: z.enum(['cloudwatch', 'local']),
  localMetricsFile: z.string().min(1).optional(),
  namespace: z.string().min(1),
  service: z.string().min(1),
  region: z.string().min(1).optional(),
});
export type MonitorConfig = z.infer<typeof monitorConfigSchema>;

/** The monitor functions' configuration, checked once at init. */
export function readMonitorConfig(env: NodeJS.ProcessEnv = process.env): MonitorConfig {
  const parsed = monitorConfigSchema.safeParse({
    table: env.REGISTRY_TABLE ?? '',
    ...(env.MONITOR_STEP_QUEUE ? { stepQueue: env.MONITOR_STEP_QUEUE } : {}),
    ...(env.DYNAMODB_ENDPOINT_URL ? { dynamoEndpoint: env.DYNAMODB_ENDPOINT_URL } : {}),
    cacheDir: env.MODEL_CACHE_DIR ?? '/tmp/ai-mass/monitor',
    intraOpThreads: env.INTRA_OP_THREADS ? Number(env.INTRA_OP_THREADS) : undefined,
    metricsSource: env.METRICS_SOURCE ?? 'cloudwatch',
    ...(env.LOCAL_METRICS_FILE ? { localMetricsFile: env.LOCAL_METRICS_FILE } : {}),
    namespace: env.POWERTOOLS_METRICS_NAMESPACE ?? 'AIMass',
    service: env.POWERTOOLS_SERVICE_NAME ?? 'ai-mass',
    ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}),
  });
  if (!parsed.success) throw new ConfigError(`invalid monitor configuration: ${z.prettifyError(parsed.error)}`);
  if (parsed.data.metricsSource === 'local' && !parsed.data.localMetricsFile) throw new ConfigError('LOCAL_METRICS_FILE environment variable is not set (METRICS_SOURCE=local)');
  return parsed.data;
}

/** The runtime's lease and the step queue's visibility (monitoring.yml), six times the worker's 900 s timeout, as AWS advises for an SQS event source. */
export const MONITOR_VISIBILITY_SECONDS = 5400;
