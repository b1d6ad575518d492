import * as z from 'zod';
import { tensorMetadataSchema } from './v2/schemas.ts';
import { V2_DATATYPES } from './v2/datatypes.ts';

/**
 * `models/<model>/<version>/manifest.json`: the one description of a registered version. The serving
 * path trusts a model file only when its sha256 equals the manifest's.
 */
export const warmupTensorSchema = z.object({
  name: z.string(),
  datatype: z.enum(V2_DATATYPES),
  shape: z.array(z.number().int().nonnegative()),
  data: z.array(z.unknown()),
});

export const lineageSchema = z.object({
  sourceVersion: z.string(),
  method: z.string(),
  options: z.record(z.string(), z.unknown()).default({}),
});

/**
 * The promotion gate (functions/core/evaluate/gate.ts): every limit is optional; an absent one is not
 * checked. Accuracy drop is absolute (0.01 = one point of top-1 accuracy), speedup is the baseline's
 * single-stream p50 over the candidate's.
 */
export const promotionPolicySchema = z.strictObject({
  maxAccuracyDrop: z.number().min(0).max(1).optional(),
  minSpeedup: z.number().positive().optional(),
  maxP99Ms: z.number().positive().optional(),
  maxErrorRate: z.number().min(0).max(1).optional(),
});

export const modelManifestSchema = z.object({
  name: z.string(),
  version: z.string(),
  format: z.literal('onnx'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().positive(),
  inputs: z.array(tensorMetadataSchema),
  outputs: z.array(tensorMetadataSchema),
  irVersion: z.number().int(),
  /** Opset of the default (ai.onnx) domain. */
  opset: z.number().int(),
  producer: z.object({ name: z.string(), version: z.string() }),
  tier: z.string().optional(),
  lineage: lineageSchema.nullable().default(null),
  notes: z.string().default(''),
  created: z.string(),
  /** Pre-optimized artifacts by staging key (onnxruntime version + platform + arch). */
  staged: z.record(z.string(), z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), bytes: z.number().int().positive() })).default({}),
  /** A small valid request used for the warm-up run; zeros are used when absent. */
  warmup: z.array(warmupTensorSchema).optional(),
  /** Promotion policy for this version; absent: the model's `models/<model>/policy.json`, then the default. */
  policy: promotionPolicySchema.optional(),
});
export type ModelManifest = z.infer<typeof modelManifestSchema>;
export type WarmupTensor = z.infer<typeof warmupTensorSchema>;
export type Lineage = z.infer<typeof lineageSchema>;
export type PromotionPolicy = z.infer<typeof promotionPolicySchema>;
