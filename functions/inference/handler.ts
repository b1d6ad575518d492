import { bootFetch } from './boot.ts'; // first: see boot.ts
import middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { readInferenceConfig } from '../core/platform/config.ts';
import { InferenceService } from '../core/serving/inference-service.ts';
import { ModelSessions } from '../core/sessions/model-sessions.ts';
import { modelStoreFromEnv } from '../core/registry/model-store-env.ts';
import { createObservability, MetricUnit } from '../core/platform/observability.ts';
import { captureFromEnv } from '../core/monitor/capture-env.ts';
import { createInferenceHandler } from './app.ts';
import { traced } from '../core/platform/tracing.ts';

// Lambda init: everything below runs once per environment, before the first request.
const initStarted = performance.now();
const config = readInferenceConfig();
const { logger, metrics } = createObservability();
const store = modelStoreFromEnv(config.cacheDir, { prefetched: bootFetch.downloads });
const sessions = new ModelSessions({
  store,
  intraOpThreads: config.intraOpThreads,
  onWarmupFailure: (model, version, error) => logger.warn('warm-up run failed', { model, version, error: error.message }),
  requireWarmup: true,
  onStagedFallback: (model, version, error) => logger.warn('staged artifact not used', { model, version, error: error.message }),
  ...(config.modelStaging === 'off' ? { stagingKey: 'off' } : {}),
});
/** Exported for benchmarks that compare the handler with its own session's raw run. */
export const service = new InferenceService({
  store,
  sessions,
  serviceVersion: config.serviceVersion,
  aliasTtlMs: config.aliasTtlMs,
  defaultAlias: config.defaultAlias,
  log: (level, message, fields) => logger[level](message, fields),
  bootRegistry: bootFetch.registry,
});

let initMs = 0;
/**
 * Init's asynchronous part: pre-warmed models are loaded during init, which provisioned concurrency
 * pre-pays. The packaged shim awaits it in Lambda's init phase (infra/esbuild/script-loader.ts: the
 * bundle is a CommonJS script, which has no top-level await); the handler awaits it too.
 */
export const ready: Promise<void> = service.preloadModels(config.preloadModels).then(() => {
  void store.pendingCacheWrite.then(() => store.enforceCacheBudget(config.cacheBudgetBytes)).catch(() => undefined);
  initMs = performance.now() - initStarted;
  logger.info('init complete', { initMs, preloaded: config.preloadModels, ready: service.isReady() });
});
let coldStartReported = false;

const capture = captureFromEnv(store, logger, metrics, { bootConfigs: bootFetch.modelConfigs });
export const handler = traced(middy(createInferenceHandler({ service, maxBodyBytes: config.maxBodyBytes, logger, metrics, capture }))
  .before(async () => {
    await ready;
    if (!coldStartReported) {
      coldStartReported = true;
      metrics.addMetric('ColdStartInitMs', MetricUnit.Milliseconds, initMs);
    }
  })
  .use(injectLambdaContext(logger, { resetKeys: true }))
  .use(logMetrics(metrics, { captureColdStartMetric: true })));
