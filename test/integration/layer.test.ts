// Loads the built layer the way Lambda does: from a directory with no node_modules of its own, with
// NODE_PATH pointing at the layer's nodejs/node_modules (on Lambda, /opt/nodejs/node_modules), and
// runs a real model through it. If the pruning in build.ts dropped a file the runtime needs, this fails.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLayer, LAYER_NODE_MODULES } from '../../layers/onnxruntime/build.ts';

const execFileAsync = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..', '..');
const sileroModel = path.join(root, 'node_modules', '@jjhbw', 'silero-vad', 'weights', 'silero_vad.onnx');

// Runs in the child. CommonJS resolution honours NODE_PATH and ESM resolution does not, so the layer
// is reached through createRequire, as a handler outside Lambda's own loader must do too.
const PROBE = `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const resolved = { ort: require.resolve('onnxruntime-node'), common: require.resolve('onnxruntime-common') };
const ort = require('onnxruntime-node');
const session = await ort.InferenceSession.create(process.argv[2]);
const results = await session.run({
  input: new ort.Tensor('float32', new Float32Array(512), [1, 512]),
  state: new ort.Tensor('float32', new Float32Array(2 * 1 * 128), [2, 1, 128]),
  sr: new ort.Tensor('int64', BigInt64Array.from([16000n]), []),
});
const outputs = Object.fromEntries(
  Object.entries(results).map(([name, t]) => [name, { type: t.type, dims: t.dims, first: Number(t.data[0]) }]),
);
console.log(JSON.stringify({ resolved, inputNames: session.inputNames, outputNames: session.outputNames, outputs }));
`;

interface ProbeResult {
  resolved: { ort: string; common: string };
  inputNames: string[];
  outputNames: string[];
  outputs: Record<string, { type: string; dims: number[]; first: number }>;
}

let cwd: string;
let probe: ProbeResult;

beforeAll(async () => {
  ensureLayer();
  cwd = await mkdtemp(path.join(tmpdir(), 'ai-mass-layer-'));
  await writeFile(path.join(cwd, 'probe.mjs'), PROBE);
  const { stdout } = await execFileAsync(process.execPath, ['probe.mjs', sileroModel], {
    cwd,
    // Only what Lambda would set: no inherited NODE_PATH or NODE_OPTIONS pointing back at the repo.
    env: { PATH: process.env.PATH, NODE_PATH: LAYER_NODE_MODULES },
    timeout: 60_000,
  });
  probe = JSON.parse(stdout) as ProbeResult;
});

afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

describe('onnxruntime layer', () => {
  it('resolves onnxruntime-node and onnxruntime-common from the layer, not the repository', () => {
    expect(probe.resolved.ort).toBe(path.join(LAYER_NODE_MODULES, 'onnxruntime-node', 'dist', 'index.js'));
    expect(probe.resolved.common).toBe(path.join(LAYER_NODE_MODULES, 'onnxruntime-common', 'dist', 'cjs', 'index.js'));
  });

  it('runs silero-vad on one silent 512-sample frame with the golden outputs', () => {
    expect(probe.inputNames).toEqual(['input', 'state', 'sr']);
    expect(probe.outputNames).toEqual(['output', 'stateN']);
    expect(probe.outputs.output).toMatchObject({ type: 'float32', dims: [1, 1] });
    expect(probe.outputs.stateN).toMatchObject({ type: 'float32', dims: [2, 1, 128] });

    const speech = probe.outputs.output?.first ?? Number.NaN;
    expect(Number.isFinite(speech)).toBe(true);
    expect(speech).toBeGreaterThanOrEqual(0);
    expect(speech).toBeLessThanOrEqual(1);
    // Golden values from onnxruntime-node 1.30.0, linux/x64.
    expect(speech).toBeCloseTo(0.00059, 5);
    expect(probe.outputs.stateN?.first).toBeCloseTo(-0.76159, 5);
  });
});
