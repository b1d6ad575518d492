/**
 * One entry point for every method, used by the worker, the CLI's --local mode and the tests: the
 * request (already parsed), the fp32 model's bytes, and where calibration data comes from.
 */
import type { CalibrationBatches } from './calibration.ts';
import type { QuantizeResult } from './common.ts';
import { quantizeDynamic } from './dynamic.ts';
import { convertToFloat16 } from './fp16.ts';
import type { QuantizeRequest } from './options.ts';
import { quantizeStatic } from './static-qdq.ts';

export async function quantizeModel(bytes: Uint8Array, request: QuantizeRequest, calibration?: (dataset: string) => Promise<CalibrationBatches>): Promise<QuantizeResult> {
  switch (request.method) {
    case 'int8-dynamic':
      return quantizeDynamic(bytes, request.options);
    case 'fp16':
      return convertToFloat16(bytes, request.options);
    case 'int8-static': {
      if (!calibration) throw new Error('int8-static needs a calibration data source');
      return quantizeStatic(bytes, await calibration(request.options.dataset), request.options);
    }
  }
}

/**
 * Peak memory a method needs for a model of `bytes`, in MiB: the decoded proto, its fp32 arrays, the
 * output and, for static quantization, an onnxruntime session whose every activation is an output.
 * Measured on the MNIST MLP and Darknet-53 with a margin; the API refuses what exceeds the worker.
 */
export function estimatedMemoryMiB(bytes: number, method: QuantizeRequest['method']): number {
  const factor = method === 'int8-static' ? 8 : method === 'fp16' ? 4 : 5;
  return Math.ceil((bytes * factor) / 2 ** 20) + 300;
}
