/**
 * The evaluation's augmentation families (functions/core/evaluate/augment.ts, the one source of
 * truth for what each does and at which strengths) applied to training batches on the fly: each row
 * is augmented with `probability`, by one of the chosen kinds at one of its stated strengths (shifts
 * and rotations in either direction), drawn under the seed and the step, so a resumed run sees the
 * same batches as an uninterrupted one.
 */
import ort from '../onnx/ort.ts';
import { AUGMENTATIONS, augmentImages, type AugmentationKind } from '../evaluate/augment.ts';
import type { ImageLayout } from '../evaluate/datasets.ts';
import { seededRandom } from '../platform/random.ts';
import type { LoopOptions } from './loop.ts';

export interface TrainingAugmentation {
  kinds: readonly AugmentationKind[];
  /** The share of rows augmented (each row drawn on its own). */
  probability: number;
  /** Strengths drawn from instead of the family's stated ones, by kind (a tuning trial searches them). */
  strengths?: Partial<Record<AugmentationKind, readonly number[]>>;
}

const SIGNED: ReadonlySet<AugmentationKind> = new Set(['shift', 'rotation']);

export function augmentationBatches(augmentation: TrainingAugmentation, column: string, image: ImageLayout, seed: number): NonNullable<LoopOptions['prepareBatch']> {
  const families = augmentation.kinds.map((kind) => {
    const family = AUGMENTATIONS.find((a) => a.kind === kind);
    if (!family) throw new RangeError(`unknown augmentation "${kind}"`);
    const strengths = augmentation.strengths?.[kind] ?? family.strengths;
    if (strengths.length === 0) throw new RangeError(`augmentation "${kind}" has no strength to draw`);
    return { kind: family.kind, strengths };
  });
  const size = image.height * image.width * image.channels;
  return (feeds, rows, step) => {
    const tensor = feeds[column];
    if (!tensor) throw new RangeError(`the batch has no input "${column}" to augment`);
    const data = Float32Array.from(tensor.data as Float32Array);
    if (data.length !== rows.length * size) throw new RangeError(`input "${column}" rows hold ${data.length / rows.length} values; the image layout says ${size}`);
    const random = seededRandom((seed ^ Math.imul(step + 1, 0x85ebca6b)) >>> 0);
    for (let row = 0; row < rows.length; row++) {
      const draw = random();
      const family = families[Math.floor(random() * families.length)]!;
      const strength = (family.strengths[Math.floor(random() * family.strengths.length)] as number) * (SIGNED.has(family.kind) && random() < 0.5 ? -1 : 1);
      const noiseSeed = Math.floor(random() * 2 ** 32);
      if (draw >= augmentation.probability) continue;
      const one = data.subarray(row * size, (row + 1) * size);
      one.set(augmentImages(one, 1, image, family.kind, strength, noiseSeed) as Float32Array);
    }
    return { ...feeds, [column]: new ort.Tensor('float32', data, tensor.dims as number[]) };
  };
}

/** Hooks run one after the other (augmentation, then the teacher on the augmented batch). */
export function chainBatches(...hooks: (LoopOptions['prepareBatch'] | undefined)[]): LoopOptions['prepareBatch'] {
  const present = hooks.filter((h): h is NonNullable<LoopOptions['prepareBatch']> => h !== undefined);
  if (present.length === 0) return undefined;
  return async (feeds, rows, step) => {
    let current = feeds;
    for (const hook of present) current = await hook(current, rows, step);
    return current;
  };
}
