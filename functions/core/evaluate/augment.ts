import type { ImageLayout } from './datasets.ts';
import { seededRandom } from '../platform/random.ts';

/**
 * The robustness families the product's design names, each at stated strengths. Strengths are in the
 * unit given, so a report reads "rotation 15 degrees: 94.1%" rather than "level 2".
 */
export const AUGMENTATIONS = [
  { family: 'geometric', kind: 'shift', unit: 'pixels right and down', strengths: [2, 4] },
  { family: 'geometric', kind: 'rotation', unit: 'degrees clockwise', strengths: [15, 30] },
  { family: 'geometric', kind: 'flip', unit: '1 = mirrored left to right', strengths: [1] },
  { family: 'photometric', kind: 'noise', unit: 'gaussian sigma, fraction of full scale', strengths: [0.1, 0.3] },
  { family: 'photometric', kind: 'blur', unit: 'gaussian sigma, pixels', strengths: [0.5, 1] },
  { family: 'colour-jitter', kind: 'brightness', unit: 'intensity factor', strengths: [0.5, 1.5] },
  { family: 'colour-jitter', kind: 'contrast', unit: 'contrast factor about the image mean', strengths: [0.5, 1.5] },
] as const;

export type AugmentationKind = (typeof AUGMENTATIONS)[number]['kind'];

type Numeric = Float32Array | Float64Array | Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array | Uint32Array;

/**
 * Applies one augmentation to rows [0, rows) of a column of images laid out channel last
 * (height, width, channels), the layout of IDX files and of flattened MNIST rows. Noise is drawn
 * from `seed`, so the same evaluation sees the same noisy images in every chunk and rerun.
 */
export function augmentImages(
  data: Numeric,
  rows: number,
  image: ImageLayout,
  kind: AugmentationKind,
  strength: number,
  seed: number,
): Numeric {
  const { height: h, width: w, channels: c, maxValue } = image;
  const size = h * w * c;
  const Ctor = data.constructor as new (n: number) => Numeric;
  const out = new Ctor(rows * size);
  const integer = !(data instanceof Float32Array || data instanceof Float64Array);
  const put = (i: number, v: number) => {
    const clamped = v < 0 ? 0 : v > maxValue ? maxValue : v;
    out[i] = integer ? Math.round(clamped) : clamped;
  };
  const at = (base: number, y: number, x: number, ch: number) =>
    y < 0 || y >= h || x < 0 || x >= w ? 0 : data[base + (y * w + x) * c + ch]!;
  const random = seededRandom(seed);
  const gaussian = () => {
    const u = 1 - random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
  };
  const kernel = kind === 'blur' ? gaussianKernel(strength) : [];
  const tmp = kind === 'blur' ? new Float64Array(size) : undefined;
  for (let r = 0; r < rows; r++) {
    const base = r * size;
    switch (kind) {
      case 'shift':
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) put(base + (y * w + x) * c + ch, at(base, y - strength, x - strength, ch));
        break;
      case 'flip':
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) put(base + (y * w + x) * c + ch, at(base, y, strength ? w - 1 - x : x, ch));
        break;
      case 'rotation': {
        // Inverse mapping about the centre with bilinear sampling; outside the source is black.
        const t = (strength * Math.PI) / 180;
        const cos = Math.cos(t);
        const sin = Math.sin(t);
        const cy = (h - 1) / 2;
        const cx = (w - 1) / 2;
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            const sx = cos * (x - cx) + sin * (y - cy) + cx;
            const sy = -sin * (x - cx) + cos * (y - cy) + cy;
            const x0 = Math.floor(sx);
            const y0 = Math.floor(sy);
            const fx = sx - x0;
            const fy = sy - y0;
            for (let ch = 0; ch < c; ch++) {
              const v =
                at(base, y0, x0, ch) * (1 - fx) * (1 - fy) +
                at(base, y0, x0 + 1, ch) * fx * (1 - fy) +
                at(base, y0 + 1, x0, ch) * (1 - fx) * fy +
                at(base, y0 + 1, x0 + 1, ch) * fx * fy;
              put(base + (y * w + x) * c + ch, v);
            }
          }
        }
        break;
      }
      case 'noise':
        for (let i = 0; i < size; i++) put(base + i, data[base + i]! + gaussian() * strength * maxValue);
        break;
      case 'blur': {
        // Separable gaussian, edges clamped.
        const radius = (kernel.length - 1) / 2;
        const clampAt = (y: number, x: number, ch: number, src: ArrayLike<number>, off: number) =>
          src[off + (Math.min(h - 1, Math.max(0, y)) * w + Math.min(w - 1, Math.max(0, x))) * c + ch]!;
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) {
          let s = 0;
          for (let k = -radius; k <= radius; k++) s += kernel[k + radius]! * clampAt(y, x + k, ch, data, base);
          tmp![(y * w + x) * c + ch] = s;
        }
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) {
          let s = 0;
          for (let k = -radius; k <= radius; k++) s += kernel[k + radius]! * clampAt(y + k, x, ch, tmp!, 0);
          put(base + (y * w + x) * c + ch, s);
        }
        break;
      }
      case 'brightness':
        for (let i = 0; i < size; i++) put(base + i, data[base + i]! * strength);
        break;
      case 'contrast': {
        let mean = 0;
        for (let i = 0; i < size; i++) mean += data[base + i]!;
        mean /= size;
        for (let i = 0; i < size; i++) put(base + i, (data[base + i]! - mean) * strength + mean);
        break;
      }
    }
  }
  return out;
}

function gaussianKernel(sigma: number): number[] {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const k = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-((i - radius) ** 2) / (2 * sigma * sigma)));
  const sum = k.reduce((a, b) => a + b, 0);
  return k.map((v) => v / sum);
}
