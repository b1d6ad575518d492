import * as z from '../platform/zod-mini.ts';
import { tensorMetadataSchema } from '../v2/schemas.ts';
import { V2_DATATYPES } from '../v2/datatypes.ts';

/**
 * `models/<model>/<version>/manifest.json`: the one description of a registered version. The serving
 * path trusts a model file only when its sha256 equals the manifest's.
 */
export const warmupTensorSchema = z.object({
  name: z.string(),
  datatype: z.enum(V2_DATATYPES),
  shape: z.array(z.number().check(z.int(), z.nonnegative())),
  data: z.array(z.unknown()),
});

export const lineageSchema = z.object({
  sourceVersion: z.string(),
  method: z.string(),
  options: z._default(z.record(z.string(), z.unknown()), {}),
});

/**
 * The promotion gate (functions/core/evaluate/gate.ts): every limit is optional; an absent one is not
 * checked. Accuracy drop is absolute (0.01 = one point of top-1 accuracy), speedup is the baseline's
 * single-stream p50 over the candidate's.
 */
export const promotionPolicySchema = z.strictObject({
  maxAccuracyDrop: z.optional(z.number().check(z.minimum(0), z.maximum(1))),
  minSpeedup: z.optional(z.number().check(z.positive())),
  maxP99Ms: z.optional(z.number().check(z.positive())),
  maxErrorRate: z.optional(z.number().check(z.minimum(0), z.maximum(1))),
});

export const modelManifestSchema = z.object({
  name: z.string(),
  version: z.string(),
  /** A pipeline's version holds pipeline.json instead of model.onnx (functions/core/pipelines/). */
  format: z.enum(['onnx', 'pipeline']),
  sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/)),
  bytes: z.number().check(z.int(), z.positive()),
  inputs: z.array(tensorMetadataSchema),
  outputs: z.array(tensorMetadataSchema),
  irVersion: z.number().check(z.int()),
  /** Opset of the default (ai.onnx) domain. */
  opset: z.number().check(z.int()),
  producer: z.object({ name: z.string(), version: z.string() }),
  tier: z.optional(z.string()),
  lineage: z._default(z.nullable(lineageSchema), null),
  notes: z._default(z.string(), ''),
  created: z.string(),
  /** Pre-optimized artifacts by staging key (onnxruntime version + platform + arch). */
  staged: z._default(z.record(z.string(), z.object({ sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/)), bytes: z.number().check(z.int(), z.positive()) })), {}),
  /** A small valid request used for the warm-up run; zeros are used when absent. */
  warmup: z.optional(z.array(warmupTensorSchema)),
  /** Class labels by output name, for Triton's classification extension (the model's own metadata_props `labels` otherwise). */
  labels: z.optional(z.record(z.string(), z.array(z.string()))),
  /** Promotion policy for this version; absent: the model's `models/<model>/policy.json`, then the default. */
  policy: z.optional(promotionPolicySchema),
  /** Monitoring settings of this version (capture, drift thresholds, guards), checked by monitor/policy.ts. */
  monitoring: z.optional(z.unknown()),
});
export type ModelManifest = z.infer<typeof modelManifestSchema>;
export type WarmupTensor = z.infer<typeof warmupTensorSchema>;
export type Lineage = z.infer<typeof lineageSchema>;
export type PromotionPolicy = z.infer<typeof promotionPolicySchema>;
