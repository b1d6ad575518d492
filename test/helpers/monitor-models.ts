import { attr, graph, model, node, tensorFromFloat32, valueInfo } from '../../functions/core/onnx/builder.ts';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vi } from 'vitest';
import { encodeModel } from '../../functions/core/onnx/model-proto.ts';
import { LocalMetricsStore } from '../../functions/core/monitor/metrics-source.ts';
import { createObservability } from '../../functions/core/platform/observability.ts';

/** y = data[int(x)]: answers for x in {0, 1}; onnxruntime fails (a 500) for any other value. */
export function gatherModel(): Uint8Array {
  return encodeModel(
    model({
      graph: graph({
        name: 'gather',
        nodes: [node('Cast', ['x'], ['i'], { to: attr.int(7) }), node('Gather', ['data', 'i'], ['y'], { axis: attr.int(0) })],
        inputs: [valueInfo('x', 'float32', ['n', 2])],
        outputs: [valueInfo('y', 'float32', ['n', 2])],
        initializers: [tensorFromFloat32('data', [2], [10, 20])],
      }),
      opset: 17,
      irVersion: 8,
    }),
  );
}

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
