/**
 * One source of truth for what a quantization request may say: the API, the worker, the CLI and the
 * tests all parse with these schemas, so an option that one accepts the others understand.
 */
import * as z from 'zod';
import { NAME_PATTERN } from '../artifacts/names.ts';

export const QUANTIZE_METHODS = ['int8-dynamic', 'int8-static', 'fp16'] as const;
export type QuantizeMethod = (typeof QUANTIZE_METHODS)[number];

/** Mixed precision: nodes (by name) and op types that keep fp32 whatever the method. */
export const excludeSchema = z
  .object({
    nodes: z.array(z.string().min(1)).default([]),
    opTypes: z.array(z.string().min(1)).default([]),
  })
  .strict();
export type Exclusions = z.infer<typeof excludeSchema>;
const noExclusions = (): Exclusions => ({ nodes: [], opTypes: [] });

/** Ops int8-dynamic can rewrite: MatMul and Gemm to DynamicQuantizeMatMul, LSTM to DynamicQuantizeLSTM, Conv to ConvInteger. */
export const DYNAMIC_OP_TYPES = ['MatMul', 'Gemm', 'LSTM', 'Conv'] as const;

export const int8DynamicOptionsSchema = z
  .object({
    /** One scale per output channel (MatMul/Gemm column, Conv filter) rather than one per tensor. */
    perChannel: z.boolean().default(true),
    /** Symmetric weights (zero point 0) or asymmetric (min..max mapped onto the full range). */
    symmetric: z.boolean().default(true),
    /** Conv weights are always uint8: onnxruntime's ConvInteger kernel takes no int8 filter. LSTM weights are always int8. */
    weightType: z.enum(['int8', 'uint8']).default('int8'),
    /** 7-bit weights, for CPUs whose int8 dot product can saturate (AVX2 without VNNI, when accuracy suffers). */
    reduceRange: z.boolean().default(true),
    /**
     * Conv is not in the default: onnxruntime runs ConvInteger slower than fp32 Conv on x86 CPUs, so
     * a convolutional model would get slower. int8-static (QDQ, fused into QLinearConv) is the
     * method for convolutions; list Conv here to force ConvInteger anyway.
     */
    opTypes: z.array(z.enum(DYNAMIC_OP_TYPES)).default(['MatMul', 'Gemm', 'LSTM']),
    /**
     * com.microsoft: DynamicQuantizeMatMul, onnxruntime's fused kernel (measured fastest, see
     * docs/quantization.md). onnx: DynamicQuantizeLinear + MatMulInteger + Cast + Mul, standard ops only.
     */
    operatorPattern: z.enum(['com.microsoft', 'onnx']).default('com.microsoft'),
    exclude: excludeSchema.default(noExclusions),
  })
  .strict();
export type Int8DynamicOptions = z.infer<typeof int8DynamicOptionsSchema>;

export const CALIBRATION_METHODS = ['minmax', 'percentile', 'entropy'] as const;

export const int8StaticOptionsSchema = z
  .object({
    /** A data set in the bucket, datasets/<name>/ (JSONL rows of V2 inputs, or IDX images). */
    dataset: z.string().regex(NAME_PATTERN, 'a data set name: [a-z0-9][a-z0-9._-]{0,63}'),
    calibration: z.enum(CALIBRATION_METHODS).default('minmax'),
    /** For percentile calibration: the share of values kept inside the range. */
    percentile: z.number().gt(90).max(100).default(99.999),
    /** Calibration samples read from the data set (the first N). */
    samples: z.number().int().min(1).max(10_000).default(128),
    /** Calibration batch size; memory grows with it. */
    batchSize: z.number().int().min(1).max(256).default(16),
    perChannel: z.boolean().default(true),
    /** Activations: uint8 asymmetric is what onnxruntime's x86 QLinear kernels run fastest. */
    activationType: z.enum(['uint8', 'int8']).default('uint8'),
    activationSymmetric: z.boolean().default(false),
    weightSymmetric: z.boolean().default(true),
    reduceRange: z.boolean().default(false),
    opTypes: z
      .array(z.enum(['Conv', 'MatMul', 'Gemm', 'Add', 'Mul', 'LeakyRelu', 'Relu', 'Sigmoid', 'GlobalAveragePool', 'AveragePool', 'MaxPool', 'Concat']))
      .default(['Conv', 'MatMul', 'Gemm', 'Add', 'LeakyRelu', 'GlobalAveragePool', 'AveragePool', 'MaxPool', 'Concat']),
    /** Fold BatchNormalization into the Conv before it first, as exporters do for inference. */
    foldBatchNorm: z.boolean().default(true),
    exclude: excludeSchema.default(noExclusions),
  })
  .strict();
export type Int8StaticOptions = z.infer<typeof int8StaticOptionsSchema>;

/** Ops kept in fp32 by default: no useful fp16 kernel, or float16 loses what they need (ranges, indices, reductions to scalars). */
export const DEFAULT_FP16_BLOCKED_OPS = [
  'Range',
  'RandomUniform',
  'RandomUniformLike',
  'RandomNormal',
  'RandomNormalLike',
  'Multinomial',
  'NonMaxSuppression',
  'TopK',
  'Resize',
  'Upsample',
  'RoiAlign',
  'STFT',
  'DFT',
  'CumSum',
  'Einsum',
] as const;

export const fp16OptionsSchema = z
  .object({
    /** Op types kept in fp32 (in addition to the defaults unless `replaceDefaultBlockList`). */
    blockOps: z.array(z.string().min(1)).default([]),
    replaceDefaultBlockList: z.boolean().default(false),
    exclude: excludeSchema.default(noExclusions),
  })
  .strict();
export type Fp16Options = z.infer<typeof fp16OptionsSchema>;

export const quantizeRequestSchema = z.discriminatedUnion('method', [
  z.object({ method: z.literal('int8-dynamic'), options: int8DynamicOptionsSchema.default(() => int8DynamicOptionsSchema.parse({})) }).strict(),
  z.object({ method: z.literal('int8-static'), options: int8StaticOptionsSchema }).strict(),
  z.object({ method: z.literal('fp16'), options: fp16OptionsSchema.default(() => fp16OptionsSchema.parse({})) }).strict(),
]);
export type QuantizeRequest = z.infer<typeof quantizeRequestSchema>;
export type QuantizeRequestInput = z.input<typeof quantizeRequestSchema>;

/** True when a node is excluded from quantization by name or op type. */
export function isExcluded(exclude: Exclusions, node: { name?: string | null; opType?: string | null }): boolean {
  return (!!node.name && exclude.nodes.includes(node.name)) || exclude.opTypes.includes(node.opType ?? '');
}

/** The ai.onnx opset a request needs the model to import already (the API refuses older models with 422). */
export function minimumOpset(request: QuantizeRequest): number {
  switch (request.method) {
    case 'int8-dynamic':
      return 11;
    case 'int8-static':
      return request.options.perChannel ? 13 : 10;
    case 'fp16':
      return 7;
  }
}
