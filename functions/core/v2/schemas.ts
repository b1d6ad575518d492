import * as z from 'zod';
import { V2_DATATYPES } from './datatypes.ts';

/**
 * The Open Inference Protocol V2 inference request header (JSON, or the JSON part of a binary
 * request). `data` stays unknown here: the codec checks it element by element against the datatype,
 * which is faster than a schema over tens of thousands of numbers.
 */

export const requestInputSchema = z.object({
  name: z.string().min(1),
  shape: z.array(z.number().int().nonnegative()),
  datatype: z.string(),
  parameters: z
    .object({ binary_data_size: z.number().int().nonnegative().optional() })
    .catchall(z.unknown())
    .optional(),
  data: z.unknown().optional(),
});

export const requestOutputSchema = z.object({
  name: z.string().min(1),
  parameters: z.object({ binary_data: z.boolean().optional() }).catchall(z.unknown()).optional(),
});

export const inferRequestHeaderSchema = z.object({
  id: z.string().optional(),
  parameters: z
    .object({ binary_data_output: z.boolean().optional() })
    .catchall(z.unknown())
    .optional(),
  inputs: z.array(requestInputSchema).min(1),
  outputs: z.array(requestOutputSchema).optional(),
});
export type InferRequestHeader = z.infer<typeof inferRequestHeaderSchema>;

export const tensorMetadataSchema = z.object({
  name: z.string(),
  datatype: z.enum(V2_DATATYPES),
  /** -1 marks a dynamic dimension, as the V2 protocol has it. */
  shape: z.array(z.number().int().min(-1)),
});
export type TensorMetadata = z.infer<typeof tensorMetadataSchema>;
