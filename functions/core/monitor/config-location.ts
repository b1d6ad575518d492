/**
 * Where a model's monitoring config is kept, apart from its schema so that the inference function's
 * boot module can read it with the pre-warm's other requests (coldstart/boot-fetch.ts) without
 * loading zod or the SDK.
 */
export const MONITORING_SETTING = 'monitoring';

/** Where the config lives for a store without a registry table. */
export const monitoringConfigKey = (model: string) => `models/${model}/monitoring.json`;
