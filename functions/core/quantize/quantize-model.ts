/**
 * One entry point for every method, used by the worker, the CLI's --local mode and the tests: the
 * request (already parsed), the fp32 model's bytes, and where calibration data comes from.
 */
import { UnsupportedModelError } from '../onnx/graph-toolkit.ts';
import type { CalibrationBatches } from './calibration.ts';
import { describeByOpType, summarizeByOpType, type QuantizeResult } from './common.ts';
import { quantizeDynamic } from './dynamic.ts';
import { convertToFloat16 } from './fp16.ts';
import type { QuantizeRequest } from './options.ts';
import { quantizeStatic } from './static-qdq.ts';

/**
 * Quantizes with the request's method, and refuses (422) a result that is not worth a version: one
 * that converted nothing, or one not smaller than its source. Both refusals say, per op type, what
 * was kept and why.
 */
export async function quantizeModel(bytes: Uint8Array, request: QuantizeRequest, calibration?: (dataset: string) => Promise<CalibrationBatches>): Promise<QuantizeResult> {
  const result = await runMethod(bytes, request, calibration);
  const { report } = result;
  const byOpType = describeByOpType(summarizeByOpType(report));
  if (report.quantized.length === 0) {
    throw new UnsupportedModelError(`${request.method} converted nothing, so no version was registered${byOpType ? `: ${byOpType}` : ': the model has no node the method handles'}`);
  }
  if (report.outputBytes >= report.inputBytes) {
    throw new UnsupportedModelError(
      `the ${request.method} variant would be ${report.outputBytes} bytes, not smaller than its source's ${report.inputBytes}, so no version was registered: ${byOpType}`,
    );
  }
  return result;
}

function runMethod(bytes: Uint8Array, request: QuantizeRequest, calibration?: (dataset: string) => Promise<CalibrationBatches>): Promise<QuantizeResult> | QuantizeResult {
  switch (request.method) {
    case 'int8-dynamic':
      return quantizeDynamic(bytes, request.options);
    case 'fp16':
      return convertToFloat16(bytes, request.options);
    case 'int8-static': {
      if (!calibration) throw new Error('int8-static needs a calibration data source');
      return calibration(request.options.dataset).then((batches) => quantizeStatic(bytes, batches, request.options));
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
