import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import ort, { type InferenceSession } from '../../functions/core/onnx/ort.ts';
import type { LoadedDataset } from '../../functions/core/evaluate/datasets.ts';
import { measureLatency } from '../../functions/core/tune/objectives/serving.ts';
import { quadrantMlp } from '../helpers/train-fixtures.ts';

const rows = 4;
const dataset: LoadedDataset = {
  manifest: {
    name: 'quads',
    format: 'idx',
    rows,
    labels: 'label',
    classes: 4,
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 16] }],
    sha256: '0'.repeat(64),
    bytes: rows * 16,
    files: ['datasets/quads/images.idx'],
    notes: '',
    created: '2026-12-06T00:00:00.000Z',
  },
  columns: [{ name: 'input', datatype: 'FP32', rowShape: [1, 16], rowSize: 16, data: Float32Array.from({ length: rows * 16 }, (_, i) => i % 255) }],
  labels: Int32Array.from([0, 1, 2, 3]),
};

describe('serving objective latency', () => {
  let session: InferenceSession;
  beforeAll(async () => {
    session = await ort.InferenceSession.create(quadrantMlp(8), { logSeverityLevel: 3 });
  });
  afterAll(async () => {
    await session.release();
  });

  it('times exactly the requested runs when no least window is set', async () => {
    const latency = await measureLatency(session, dataset, 2, 7, 1);
    expect(latency.runs).toBe(7);
    expect(latency.throughput).toBeCloseTo((7 * 2 * 1000) / (latency.meanMs * 7), 6);
  });

  it('keeps timing past the requested runs until the timed requests span the least window', async () => {
    // A clock that moves 1 ms at each reading: one reading at the start, two per request (start,
    // end), and past the requested runs one check before each further request. After the 5
    // requested runs it reads 11, and each further request adds 3: the check reads 11, 14, ...,
    // 29, then 32 >= 30 after 7 more.
    let t = 0;
    const now = () => t++;
    const latency = await measureLatency(session, dataset, 1, 5, 0, 30, now);
    expect(latency.runs).toBe(12);
    expect(latency.p50Ms).toBe(1);
    // A window the requested runs already span adds none.
    let u = 0;
    expect((await measureLatency(session, dataset, 1, 5, 0, 3, () => u++)).runs).toBe(5);
  });
});
