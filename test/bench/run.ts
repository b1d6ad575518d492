// `npm run bench [-- name ...]`: every benchmark (or the named ones), one after another, each writing
// bench/results/<name>.json. They are not tests: figures are medians of ratios against a baseline
// measured side by side in the same run.
import { runBatchBench } from './batch.ts';
import { runEvaluateBench } from './evaluate.ts';
import { runFederatedBench } from './federated.ts';
import { runInferenceBench } from './inference.ts';
import { runMonitorBench } from './monitor.ts';
import { runPipelineBench } from './pipeline.ts';
import { runQuantizeBench } from './quantize.ts';
import { runRegistryBench } from './registry.ts';
import { runRouterBench } from './router.ts';
import { runTrainBench } from './train.ts';
import { runTuneBench } from './tune.ts';

const benches: Record<string, () => Promise<Record<string, unknown>>> = {
  inference: runInferenceBench,
  registry: runRegistryBench,
  batch: runBatchBench,
  quantize: runQuantizeBench,
  evaluate: runEvaluateBench,
  tune: runTuneBench,
  router: runRouterBench,
  train: runTrainBench,
  federated: runFederatedBench,
  monitor: runMonitorBench,
  pipeline: runPipelineBench,
};

const asked = process.argv.slice(2);
const unknown = asked.filter((name) => !(name in benches));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(benches).join(', ')}`);
  process.exit(2);
}
for (const name of asked.length > 0 ? asked : Object.keys(benches)) {
  const started = performance.now();
  console.log(`\n== ${name}`);
  await benches[name]!();
  console.log(`(${((performance.now() - started) / 1000).toFixed(0)} s)`);
}
process.exit(0);
