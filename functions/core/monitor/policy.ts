import * as z from '../platform/zod-mini.ts';
import { BadRequestError, NotFoundError } from '../platform/errors.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName } from '../artifacts/names.ts';
import { PARSED_ONCE } from '../platform/zod-options.ts';
import { MONITORING_SETTING, monitoringConfigKey } from './config-location.ts';

/**
 * A model's monitoring settings: data capture (opt-in), the drift thresholds, and the canary guard
 * of each alias (off unless enabled). Model-wide in the registry table (written by `mass monitor
 * capture|guard`; see readModelMonitoring), and per version in the manifest's `monitoring` (the
 * policy the version was registered with), which wins section by section.
 */
const FIELD = /^(id|parameters|(inputs|outputs)\.[^/]{1,128})$/;

/**
 * The schemas, built on first use: every inference function loads this module (data capture), and a
 * model without a monitoring config never parses one (building them at load was part of each cold start).
 */
function buildSchemas() {
  const captureConfigSchema = z.strictObject({
    enabled: z._default(z.boolean(), false),
    /** Share of requests captured, 0..1. */
    samplingRate: z._default(z.number().check(z.minimum(0), z.maximum(1)), 0.1),
    /** summary: per-row features (what drift needs, small); whole: every tensor's data as sent. */
    tensors: z._default(z.enum(['summary', 'whole']), 'summary'),
    /** What a captured record leaves out: `id`, `parameters`, `inputs.<name>`, `outputs.<name>`. */
    dropFields: z._default(z.array(z.string().check(z.regex(FIELD, 'a dropped field is id, parameters, inputs.<name> or outputs.<name>'))), []),
  });
  const driftPolicySchema = z.strictObject({
    /** A feature drifts when its population stability index reaches this (0.2: "significant shift"). */
    psi: z._default(z.number().check(z.positive()), 0.2),
    /** ... or its Jensen-Shannon divergence in bits reaches this. */
    jensenShannon: z._default(z.number().check(z.positive(), z.maximum(1)), 0.1),
    /** ... or its KS p-value is below this, divided among the numeric features (Bonferroni). */
    ksAlpha: z._default(z.number().check(z.positive(), z.maximum(0.5)), 0.01),
    /** Fewer captured rows than this: the report says so and finds no drift. PSI has a small-sample bias of about (bins - 1) / n (0.045 at 200 rows against the 0.2 threshold). */
    minSamples: z._default(z.number().check(z.int(), z.positive()), 200),
    /** Days of capture one report reads (ending with its date). */
    windowDays: z._default(z.number().check(z.int(), z.positive(), z.maximum(31)), 1),
  });
  const guardPolicySchema = z.strictObject({
    enabled: z._default(z.boolean(), false),
    /** The sliding window both versions are compared over. */
    windowSeconds: z._default(z.number().check(z.int(), z.minimum(30), z.maximum(3600)), 300),
    /** Requests the canary (and the stable version) must have served in the window before a verdict. */
    minRequests: z._default(z.number().check(z.int(), z.positive()), 50),
    /** Rolled back when the canary's error rate exceeds the stable one's by more than this. */
    maxErrorRateIncrease: z._default(z.number().check(z.minimum(0), z.maximum(1)), 0.02),
    /** ... or its p99 latency exceeds the stable one's times this. */
    maxP99Ratio: z._default(z.number().check(z.minimum(1)), 1.5),
    /** ... and by more than this many milliseconds, so that jitter on a fast model is no breach. */
    minP99IncreaseMs: z._default(z.number().check(z.minimum(0)), 20),
    /** ... or, where both versions capture data, a prediction feature's Jensen-Shannon divergence (bits) from the stable one's exceeds this. */
    maxPredictionJs: z._default(z.number().check(z.positive(), z.maximum(1)), 0.1),
    /** Captured prediction rows each version needs in the window before their distributions are compared (the divergence of two samples of 100 from one distribution over 10 bins is about 0.03 bits). */
    minPredictions: z._default(z.number().check(z.int(), z.positive()), 100),
  });
  const monitoringConfigSchema = z.strictObject({
    capture: z.optional(captureConfigSchema),
    drift: z.optional(driftPolicySchema),
    guards: z.optional(z.record(z.string().check(z.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'an alias name')), guardPolicySchema)),
  });
  return { captureConfigSchema, driftPolicySchema, guardPolicySchema, monitoringConfigSchema };
}
type Schemas = ReturnType<typeof buildSchemas>;
let built: Schemas | undefined;
const schemas = (): Schemas => (built ??= buildSchemas());

export type CaptureConfig = z.infer<Schemas['captureConfigSchema']>;
export type DriftPolicy = z.infer<Schemas['driftPolicySchema']>;
export type GuardPolicy = z.infer<Schemas['guardPolicySchema']>;
export type MonitoringConfig = z.infer<Schemas['monitoringConfigSchema']>;
export type MonitoringConfigInput = z.input<Schemas['monitoringConfigSchema']>;

/** The defaults, a fresh object each call. */
export const defaultCapture = (): CaptureConfig => schemas().captureConfigSchema.parse({});
export const defaultDrift = (): DriftPolicy => schemas().driftPolicySchema.parse({});
export const defaultGuard = (): GuardPolicy => schemas().guardPolicySchema.parse({});

export { MONITORING_SETTING, monitoringConfigKey };

/** Checks a monitoring config; a bad one is the caller's 400, naming the field. */
export function parseMonitoringConfig(value: unknown, where: string): MonitoringConfig {
  const parsed = schemas().monitoringConfigSchema.safeParse(value, PARSED_ONCE);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new BadRequestError(`${where} is not a valid monitoring config: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
  }
  return parsed.data;
}

/**
 * The model-wide config, or an empty one when the model has none: the registry table's
 * `MODEL#<model> / SETTING#monitoring` item (mutable state lives in DynamoDB, and a missing item is
 * no error for a role without s3:ListBucket, where a missing S3 object is a 403); without a table
 * (tools on a bare bucket), `models/<model>/monitoring.json`.
 */
export async function readModelMonitoring(store: ModelRepository, model: string): Promise<MonitoringConfig> {
  const name = assertValidName(model, 'model name');
  if (store.registry) return storedModelMonitoring(name, { setting: await store.registry.getModelSetting(name, MONITORING_SETTING) });
  return storedModelMonitoring(name, { object: await store.getObjectBytes(monitoringConfigKey(name)) });
}

/** The config as it was read: the table's setting (undefined when unset) or the object's bytes (undefined when absent). */
export function storedModelMonitoring(name: string, stored: { setting: unknown } | { object: Uint8Array | undefined }): MonitoringConfig {
  if ('setting' in stored) return stored.setting === undefined ? {} : parseMonitoringConfig(stored.setting, `the monitoring setting of '${name}'`);
  const key = monitoringConfigKey(name);
  const bytes = stored.object;
  if (!bytes) return {};
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    throw new BadRequestError(`${key} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  return parseMonitoringConfig(json, key);
}

/** Writes the model-wide config (checked first); the model must exist. */
export async function writeModelMonitoring(store: ModelRepository, model: string, config: MonitoringConfigInput, now = new Date()): Promise<MonitoringConfig> {
  const name = assertValidName(model, 'model name');
  const parsed = parseMonitoringConfig(config, 'the config');
  if ((await store.listVersions(name)).length === 0) throw new NotFoundError(`unknown model '${name}'`);
  if (store.registry) await store.registry.putModelSetting(name, MONITORING_SETTING, parsed, now);
  else await store.putObjectBytes(monitoringConfigKey(name), Buffer.from(`${JSON.stringify(parsed, null, 2)}\n`), 'application/json');
  return parsed;
}

/** A version's settings: its manifest's `monitoring` sections over the model-wide ones. */
export function effectiveMonitoring(modelWide: MonitoringConfig, manifest: Pick<ModelManifest, 'name' | 'version'> & { monitoring?: unknown }): MonitoringConfig {
  const own = manifest.monitoring === undefined ? {} : parseMonitoringConfig(manifest.monitoring, `the manifest of ${manifest.name} ${manifest.version}`);
  return { ...modelWide, ...own };
}
