import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../functions/core/platform/errors.ts';
import { readTrainConfig } from '../../functions/core/train/config.ts';
import { parseStudent } from '../../functions/cli/commands/train.ts';
import { readContainerPlacement } from '../../functions/core/jobs/config.ts';

describe('the train function configuration', () => {
  it('reads the environment with its defaults', () => {
    expect(readTrainConfig({ REGISTRY_TABLE: 'ai-mass-dev-registry', MODEL_BUCKET: 'ai-mass-dev-models', TRAIN_STEPS_QUEUE_NAME: 'ai-mass-dev-train-steps' })).toEqual({
      table: 'ai-mass-dev-registry',
      bucket: 'ai-mass-dev-models',
      stepQueue: 'ai-mass-dev-train-steps',
      visibilitySeconds: 960,
      intraOpThreads: 0,
      pauseMarginSeconds: 20,
      containerThreshold: 1e14,
    });
  });

  it('fails the cold start naming what is missing or wrong', () => {
    expect(() => readTrainConfig({ MODEL_BUCKET: 'ai-mass-dev-models', TRAIN_VISIBILITY_SECONDS: '10' })).toThrow(ConfigError);
    expect(() => readTrainConfig({ MODEL_BUCKET: 'ai-mass-dev-models', TRAIN_VISIBILITY_SECONDS: '10' })).toThrow(
      'invalid train configuration: table: REGISTRY_TABLE environment variable is not set; stepQueue: TRAIN_STEPS_QUEUE_NAME environment variable is not set; visibilitySeconds: Too small: expected number to be >=30',
    );
  });
});

describe('job placement configuration', () => {
  it('places jobs on Lambda only, unless the stack runs the container worker and names its queue', () => {
    expect(readContainerPlacement({})).toEqual({ placements: ['lambda'] });
    expect(readContainerPlacement({ CONTAINER_WORKERS: 'false', CONTAINER_STEPS_QUEUE_NAME: 'ai-mass-dev-container-steps' })).toEqual({ placements: ['lambda'] });
    expect(readContainerPlacement({ CONTAINER_WORKERS: 'true', CONTAINER_STEPS_QUEUE_NAME: 'ai-mass-dev-container-steps' })).toEqual({ placements: ['lambda', 'container'], containerQueue: 'ai-mass-dev-container-steps' });
    expect(() => readContainerPlacement({ CONTAINER_WORKERS: 'true' })).toThrow('invalid job placement configuration: CONTAINER_WORKERS=true needs CONTAINER_STEPS_QUEUE_NAME (or CONTAINER_STEPS_QUEUE_URL)');
  });

  it('reads the train threshold, refusing one that is not a positive number', () => {
    const env = { REGISTRY_TABLE: 'ai-mass-dev-registry', MODEL_BUCKET: 'ai-mass-dev-models', TRAIN_STEPS_QUEUE_NAME: 'ai-mass-dev-train-steps' };
    expect(readTrainConfig({ ...env, TRAIN_CONTAINER_THRESHOLD: '5e12' }).containerThreshold).toBe(5e12);
    expect(() => readTrainConfig({ ...env, TRAIN_CONTAINER_THRESHOLD: '-1' })).toThrow('invalid train configuration: containerThreshold: Too small: expected number to be >0');
  });
});

describe('mass distill --student', () => {
  it('reads an MLP, a Darknet width and a registered version', () => {
    expect(parseStudent('mlp:128,64')).toEqual({ kind: 'mlp', hidden: [128, 64] });
    expect(parseStudent('darknet:0.25')).toEqual({ kind: 'darknet', widthMultiplier: 0.25 });
    expect(parseStudent('darknet:0.5:1,1')).toEqual({ kind: 'darknet', widthMultiplier: 0.5, stages: [1, 1] });
    expect(parseStudent('small:3')).toEqual({ kind: 'registered', model: 'small', version: '3' });
    expect(() => parseStudent('mlp')).toThrow('--student "mlp": use mlp:<widths>, darknet:<width multiplier> or <model>:<version>');
    expect(() => parseStudent('mlp:12,x')).toThrow('--student mlp widths must be a number, got "x"');
  });
});
