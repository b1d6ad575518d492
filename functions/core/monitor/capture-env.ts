import type { Logger } from '@aws-lambda-powertools/logger';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import * as z from '../platform/zod-mini.ts';
import { parsedConfig } from '../platform/config.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { MetricUnit, recordMetric } from '../platform/observability.ts';
import { PARSED_ONCE } from '../platform/zod-options.ts';
import { CaptureWriter } from './capture.ts';
import { readModelMonitoring, storedModelMonitoring, type MonitoringConfig } from './policy.ts';
import type { BootModelConfig } from '../coldstart/boot-fetch.ts';

/** Counted service-wide when a capture batch or a model's monitoring config cannot be read or written. */
export const CAPTURE_FAILURE_METRIC = 'CaptureFailures';

const captureEnvSchema = z.object({
  /** Records per written object (fewer when a batch grows old; see capture.ts). */
  batchRecords: z.number().check(z.int(), z.positive()),
  batchMaxAgeMs: z.number().check(z.int(), z.positive()),
});

/**
 * The inference function's capture writer: objects through the model store, failures logged and
 * counted. A model's first config read is the boot fetch's when it made one (`bootConfigs`): a cold
 * start's first request would otherwise load the SDK's clients for it, on the CPU the answer needs.
 */
export function captureFromEnv(
  store: ModelRepository,
  logger: Logger,
  metrics: Metrics,
  options: { bootConfigs?: Map<string, Promise<BootModelConfig | undefined>>; env?: NodeJS.ProcessEnv } = {},
): CaptureWriter {
  const { bootConfigs = new Map<string, Promise<BootModelConfig | undefined>>(), env = process.env } = options;
  const parsed = captureEnvSchema.safeParse(
    {
      batchRecords: env.CAPTURE_BATCH_RECORDS ? Number(env.CAPTURE_BATCH_RECORDS) : 200,
      batchMaxAgeMs: env.CAPTURE_BATCH_MAX_AGE_MS ? Number(env.CAPTURE_BATCH_MAX_AGE_MS) : 60_000,
    },
    PARSED_ONCE,
  );
  const config = parsedConfig('capture', parsed, { paths: true });
  return new CaptureWriter({
    put: (key, body) => store.putObjectBytes(key, body, 'application/x-ndjson'),
    modelConfig: async (model): Promise<MonitoringConfig> => {
      const boot = bootConfigs.get(model);
      bootConfigs.delete(model); // once: later reads see later changes
      const read = boot && (await boot.catch(() => undefined));
      return read ? storedModelMonitoring(model, read) : readModelMonitoring(store, model);
    },
    maxRecords: config.batchRecords,
    maxAgeMs: config.batchMaxAgeMs,
    onError: (what, error, fields) => {
      const message = {
        write: 'captured records lost: the batch could not be written',
        config: 'monitoring config unreadable: capture off for this model',
        record: 'a sampled request could not be recorded',
      }[what];
      logger.error(message, { ...fields, error: error.message });
      recordMetric(metrics, CAPTURE_FAILURE_METRIC, MetricUnit.Count, 1, {});
    },
  });
}
