import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scoreRows } from '../../functions/core/batch/scoring.ts';
import { loadDataset, pushDataset } from '../../functions/core/evaluate/datasets.ts';
import { predictRange } from '../../functions/core/evaluate/runner.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import { ModelSessions } from '../../functions/core/sessions/model-sessions.ts';
import { pushPipeline } from '../../functions/core/pipelines/registry.ts';
import { pipelineSessionLoader } from '../../functions/core/pipelines/session.ts';
import { setRoutes } from '../../functions/core/registry/rollout.ts';
import { scaleModel, startRegistryStack, type RegistryStack } from '../helpers/registry-stack.ts';

// Batch scoring and evaluation load versions through ModelSessions.get; with the pipeline loader a
// pipeline version is a model to them.

let stack: RegistryStack;
let sessions: ModelSessions;

const chain = (second: { model: string; version: string }) => ({
  inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
  outputs: [{ name: 'y', source: 'b.y' }],
  steps: [
    { id: 'a', model: 'double', version: '1', inputs: { x: '$request.x' } },
    { id: 'b', ...second, inputs: { x: 'a.y' } },
  ],
});

beforeAll(async () => {
  stack = await startRegistryStack('pipeline-batch');
  await pushModel(stack.store, { name: 'double', version: '1', bytes: scaleModel(2) });
  await pushModel(stack.store, { name: 'triple', version: '1', bytes: scaleModel(3) });
  await pushModel(stack.store, { name: 'triple', version: '2', bytes: scaleModel(30) });
  sessions = new ModelSessions({ store: stack.store, intraOpThreads: 1, composite: pipelineSessionLoader(stack.store) });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('a pipeline where a model is accepted', () => {
  it('scores batch rows in order, batched, with a bad row as its own error line', async () => {
    const { manifest } = await pushPipeline(stack.store, { name: 'six', spec: chain({ model: 'triple', version: '1' }) });
    const model = await sessions.get(manifest);
    const row = (x: number[]) => JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: x }] });
    const scored = await scoreRows(model, [row([1, 2]), row([3, -1]), '{"inputs": []}', row([0.5, 0])], { format: 'jsonl', batchSize: 2 });
    expect(scored.rows).toBe(4);
    expect(scored.failed).toBe(1);
    expect(scored.body.toString('utf8').trim().split('\n').map((l) => JSON.parse(l) as { outputs?: { data: number[] }[]; error?: string }).map((l) => l.outputs?.[0]!.data ?? 'error')).toEqual([[6, 12], [18, -6], 'error', [3, 0]]);
  });

  it('is evaluated for accuracy by the evaluation runner', async () => {
    const { manifest } = await pushPipeline(stack.store, { name: 'six-eval', spec: chain({ model: 'triple', version: '1' }) });
    const rows = [[1, 2, 1], [3, -1, 0], [-2, -1, 1], [0, 5, 0]].map(([a, b, label]) => JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [a, b] }], label }));
    const datasetManifest = await pushDataset(stack.store, { name: 'pairs', upload: { format: 'jsonl', rows: Buffer.from(`${rows.join('\n')}\n`) } });
    const model = await sessions.get(manifest);
    const range = await predictRange(await loadDataset(stack.store, datasetManifest), 0, 4, model.session, undefined, { batchSize: 2, topK: 1, output: 'y' });
    // argmax of 6x per row: [6, 12] -> 1, [18, -6] -> 0, [-12, -6] -> 1, [0, 30] -> 1 (the label says 0: one miss).
    expect(range.candidate.ranked!.map((r) => r[0])).toEqual([1, 0, 1, 1]);
    expect(range.candidate.errors).toBe(0);
  });

  it('refuses a step that follows an alias in the middle of a canary', async () => {
    await setRoutes({ store: stack.store }, { model: 'triple', alias: 'live', routes: [{ version: '1', weight: 90 }, { version: '2', weight: 10 }], revision: 0 });
    const { manifest } = await pushPipeline(stack.store, { name: 'canaried', spec: chain({ model: 'triple', version: 'live' }) });
    await expect(sessions.get(manifest)).rejects.toMatchObject({
      statusCode: 400,
      message: "pipeline 'canaried' version '1' step 'b' follows 'triple' live, which routes to versions 1 and 2: pin one for batch scoring and evaluation",
    });
  });
});
