/**
 * Writes the Darknet-53 benchmark classifier: node scripts/write-darknet53.ts [out.onnx]
 *   [--width 1] [--size 256] [--classes 1000] [--seed 53] [--folded]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { darknet53Bytes } from '../functions/core/onnx/zoo/darknet53.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    width: { type: 'string', default: '1' },
    size: { type: 'string', default: '256' },
    classes: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '53' },
    folded: { type: 'boolean', default: false },
  },
});
const out = positionals[0] ?? 'darknet53.onnx';
const bytes = await darknet53Bytes({
  widthMultiplier: Number(values.width),
  inputSize: Number(values.size),
  classes: Number(values.classes),
  seed: Number(values.seed),
  batchNorm: values.folded ? 'folded' : 'nodes',
});
await writeFile(out, bytes);
console.log(`wrote ${out}: Darknet-53 width x${values.width}, ${values.size}x${values.size}, ${values.classes} classes, ${bytes.byteLength} bytes`);
