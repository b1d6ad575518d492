import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';

/**
 * One logger and one metrics instance per environment (Powertools keeps per-invocation state in
 * them). Metrics are written in embedded metric format, which CloudWatch turns into metrics.
 */
export function createObservability(serviceName = process.env.POWERTOOLS_SERVICE_NAME ?? 'ai-mass') {
  const logger = new Logger({ serviceName });
  const metrics = new Metrics({ serviceName, namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'AIMass' });
  return { logger, metrics };
}

export type Observability = ReturnType<typeof createObservability>;

/** A metric with its own dimensions, so per-model figures do not take the function's dimension set. */
export function recordMetric(
  metrics: Metrics,
  name: string,
  unit: (typeof MetricUnit)[keyof typeof MetricUnit],
  value: number,
  dimensions: Record<string, string>,
): void {
  const single = metrics.singleMetric();
  for (const [k, v] of Object.entries(dimensions)) single.addDimension(k, v);
  single.addMetric(name, unit, value);
}

export { MetricUnit };
