import * as z from '../platform/zod-mini.ts';
import { V2_DATATYPES } from './datatypes.ts';

/**
 * The Open Inference Protocol V2 inference request header (JSON, or the JSON part of a binary
 * request). `data` stays unknown here: the codec checks it element by element against the datatype,
 * which is faster than a schema over tens of thousands of numbers.
 */

export const requestInputSchema = z.object({
  name: z.string().check(z.minLength(1)),
  shape: z.array(z.number().check(z.int(), z.nonnegative())),
  datatype: z.string(),
  parameters: z.optional(z.catchall(z.object({ binary_data_size: z.optional(z.number().check(z.int(), z.nonnegative())) }), z.unknown())),
  data: z.optional(z.unknown()),
});

export const requestOutputSchema = z.object({
  name: z.string().check(z.minLength(1)),
  parameters: z.optional(z.catchall(z.object({ binary_data: z.optional(z.boolean()) }), z.unknown())),
});

export const inferRequestHeaderSchema = z.object({
  id: z.optional(z.string()),
  parameters: z.optional(z.catchall(z.object({ binary_data_output: z.optional(z.boolean()) }), z.unknown())),
  // Empty for a model without inputs; the service checks the inputs against the model's.
  inputs: z.array(requestInputSchema),
  outputs: z.optional(z.array(requestOutputSchema)),
});
export type InferRequestHeader = z.infer<typeof inferRequestHeaderSchema>;

export const tensorMetadataSchema = z.object({
  name: z.string(),
  datatype: z.enum(V2_DATATYPES),
  /** -1 marks a dynamic dimension, as the V2 protocol has it. */
  shape: z.array(z.number().check(z.int(), z.minimum(-1))),
  /** Set when the tensor stands for a sequence, map or optional of the model: how (onnx/non-tensor.ts). */
  parameters: z.optional(z.record(z.string(), z.string())),
});
export type TensorMetadata = z.infer<typeof tensorMetadataSchema>;
