/**
 * Writes the Darknet-53 benchmark classifier: node scripts/write-darknet53.ts [out.onnx]
 *   [--width 1] [--size 256] [--classes 1000] [--seed 53] [--folded] [--residual-gamma 0.25] [--probe-images N]
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { darknet53Bytes } from '../functions/core/onnx/darknet.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    width: { type: 'string', default: '1' },
    size: { type: 'string', default: '256' },
    classes: { type: 'string', default: '1000' },
    seed: { type: 'string', default: '53' },
    folded: { type: 'boolean', default: false },
    'residual-gamma': { type: 'string' },
    'probe-images': { type: 'string' },
  },
});
const out = positionals[0] ?? 'darknet53.onnx';
const bytes = await darknet53Bytes({
  widthMultiplier: Number(values.width),
  inputSize: Number(values.size),
  classes: Number(values.classes),
  seed: Number(values.seed),
  batchNorm: values.folded ? 'folded' : 'nodes',
  ...(values['residual-gamma'] !== undefined ? { residualGamma: Number(values['residual-gamma']) } : {}),
  ...(values['probe-images'] !== undefined ? { probeImages: Number(values['probe-images']) } : {}),
});
await writeFile(out, bytes);
console.log(`wrote ${out}: Darknet-53 width x${values.width}, ${values.size}x${values.size}, ${values.classes} classes, ${bytes.byteLength} bytes`);
