import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/platform/errors.ts';
import { readTrainConfig } from '../../functions/core/train/config.ts';
import { parseStudent } from '../../functions/cli/commands/train.ts';

describe('the train function configuration', () => {
  it('reads the environment with its defaults', () => {
    expect(readTrainConfig({ REGISTRY_TABLE: 'ai-mass-dev-registry', MODEL_BUCKET: 'ai-mass-dev-models', TRAIN_STEPS_QUEUE_NAME: 'ai-mass-dev-train-steps' })).toEqual({
      table: 'ai-mass-dev-registry',
      bucket: 'ai-mass-dev-models',
      stepQueue: 'ai-mass-dev-train-steps',
      visibilitySeconds: 960,
      intraOpThreads: 0,
      pauseMarginSeconds: 20,
    });
  });

  it('fails the cold start naming what is missing or wrong', () => {
    expect(() => readTrainConfig({ MODEL_BUCKET: 'ai-mass-dev-models', TRAIN_VISIBILITY_SECONDS: '10' })).toThrow(ConfigError);
    expect(() => readTrainConfig({ MODEL_BUCKET: 'ai-mass-dev-models', TRAIN_VISIBILITY_SECONDS: '10' })).toThrow(
      'invalid train configuration: table: REGISTRY_TABLE environment variable is not set; stepQueue: TRAIN_STEPS_QUEUE_NAME environment variable is not set; visibilitySeconds: Too small: expected number to be >=30',
    );
  });
});

describe('mass distill --student', () => {
  it('reads an MLP, a Darknet width and a registered version', () => {
    expect(parseStudent('mlp:128,64')).toEqual({ kind: 'mlp', hidden: [128, 64] });
    expect(parseStudent('darknet:0.25')).toEqual({ kind: 'darknet', widthMultiplier: 0.25 });
    expect(parseStudent('small:3')).toEqual({ kind: 'registered', model: 'small', version: '3' });
    expect(() => parseStudent('mlp')).toThrow('--student "mlp": use mlp:<widths>, darknet:<width multiplier> or <model>:<version>');
    expect(() => parseStudent('mlp:12,x')).toThrow('--student mlp widths must be a number, got "x"');
  });
});
