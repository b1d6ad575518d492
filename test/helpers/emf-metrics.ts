import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vi } from 'vitest';
import { LocalMetricsStore } from '../../functions/core/monitor/metrics-source.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';

/**
 * A local metrics store fed with Powertools' real EMF lines: POWERTOOLS_DEV makes Powertools write
 * them through the global console, which hands them to the store (metrics stay on: dev mode alone
 * would turn them off). Kept for the test file: single-metric instances (the runtime failures) are
 * made per request and read it then. Call in beforeAll; afterAll undoes it with vi.unstubAllEnvs()
 * and vi.restoreAllMocks().
 */
export async function emfMetricsStore(prefix: string) {
  const metricsStore = new LocalMetricsStore(join(await mkdtemp(join(tmpdir(), `${prefix}-`)), 'metrics.jsonl'));
  vi.stubEnv('POWERTOOLS_DEV', 'true');
  vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'false');
  vi.spyOn(console, 'log').mockImplementation((line: unknown) => metricsStore.ingest(`${String(line)}\n`));
  const { logger, metrics } = createObservability('ai-mass');
  logger.setLogLevel('SILENT');
  return { metricsStore, logger, metrics, publish: () => metrics.publishStoredMetrics() };
}
