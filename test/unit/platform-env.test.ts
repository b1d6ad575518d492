import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/platform/errors.ts';
import { readEnv } from '../../functions/core/platform/env.ts';
import { parsedConfig, readInferenceConfig } from '../../functions/core/platform/config.ts';
import * as zc from 'zod';

describe('readEnv: the stack variables, each with its one schema', () => {
  it('reads the named variables, an empty one as unset', () => {
    expect(readEnv(['MODEL_BUCKET', 'REGISTRY_TABLE', 'MODEL_CACHE_DIR'], { MODEL_BUCKET: 'b', REGISTRY_TABLE: '' })).toEqual({ MODEL_BUCKET: 'b', REGISTRY_TABLE: undefined, MODEL_CACHE_DIR: undefined });
  });

  it('fails with the name of each missing or malformed variable', () => {
    expect(() => readEnv(['MODEL_BUCKET'], {})).toThrow(ConfigError);
    expect(() => readEnv(['MODEL_BUCKET'], {})).toThrow(/MODEL_BUCKET/);
    expect(() => readEnv(['MODEL_EVENTS_TOPIC_ARN'], { MODEL_EVENTS_TOPIC_ARN: 'my-topic' })).toThrow('invalid environment: MODEL_EVENTS_TOPIC_ARN: expected an SNS topic ARN');
    expect(readEnv(['MODEL_EVENTS_TOPIC_ARN'], { MODEL_EVENTS_TOPIC_ARN: 'arn:aws:sns:us-east-1:000000000000:ai-mass-events' }).MODEL_EVENTS_TOPIC_ARN).toBe('arn:aws:sns:us-east-1:000000000000:ai-mass-events');
  });
});

describe('readInferenceConfig', () => {
  it('reads MODEL_STAGING as on or off and refuses anything else', () => {
    expect(readInferenceConfig({ MODEL_BUCKET: 'b' }).modelStaging).toBe('on');
    expect(readInferenceConfig({ MODEL_BUCKET: 'b', MODEL_STAGING: 'off' }).modelStaging).toBe('off');
    expect(() => readInferenceConfig({ MODEL_BUCKET: 'b', MODEL_STAGING: 'no' })).toThrow(/invalid inference configuration/);
  });
});

describe('parsedConfig', () => {
  const schema = zc.strictObject({ table: zc.string().min(1, 'REGISTRY_TABLE is not set'), seconds: zc.number().int() });
  it('returns the parsed configuration', () => {
    expect(parsedConfig('demo', schema.safeParse({ table: 't', seconds: 3 }))).toEqual({ table: 't', seconds: 3 });
  });
  it('names every issue, led by its path when asked', () => {
    const bad = schema.safeParse({ table: '', seconds: 1.5 });
    expect(() => parsedConfig('demo', bad)).toThrow(new ConfigError('invalid demo configuration: REGISTRY_TABLE is not set; Invalid input: expected int, received number'));
    expect(() => parsedConfig('demo', bad, { paths: true })).toThrow(new ConfigError('invalid demo configuration: table: REGISTRY_TABLE is not set; seconds: Invalid input: expected int, received number'));
  });
});
