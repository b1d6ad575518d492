import { describe, expect, it } from 'vitest';
import ort from '../../functions/core/onnx/ort.ts';
import { augmentationBatches } from '../../functions/core/train/augment-batches.ts';
import { parseStudyRequest } from '../../functions/core/tune/jobs.ts';
import { checkTrainingSpace, hiddenWidths, trainingAugmentation, trainingConfiguration } from '../../functions/core/tune/objectives/training.ts';
import { parseSearchSpace } from '../../functions/core/tune/space.ts';

const options = { model: 'quad', version: '1', dataset: 'quads', validationFraction: 0.2, seed: 0 };

describe('the training objective searches widths and augmentation strengths', () => {
  it('reads hidden widths in order and turns strengths into the augmentation they stand for', () => {
    const c = trainingConfiguration({ width1: 24, width2: 8, augmentProbability: 0.25, augmentShift: 2, augmentBrightness: 0.3, augmentNoise: 0 });
    expect(hiddenWidths(c)).toEqual([24, 8]);
    expect(trainingAugmentation(c)).toEqual({ kinds: ['shift', 'brightness'], probability: 0.25, strengths: { shift: [2], brightness: [0.7, 1.3] } });
    // Every strength 0 (the defaults): no augmentation, and no widths: the registered model is trained.
    const plain = trainingConfiguration({ learningRate: 0.01 });
    expect([hiddenWidths(plain), trainingAugmentation(plain)]).toEqual([[], undefined]);
  });

  it('refuses a trial configuration with a bad width or strength, naming the parameter', () => {
    expect(() => trainingConfiguration({ width2: 8 })).toThrow('invalid training configuration: width2: needs width1 (widths fill the hidden layers from the first)');
    expect(() => trainingConfiguration({ width1: 0 })).toThrow(/^invalid training configuration: width1: /);
    expect(() => trainingConfiguration({ augmentRotation: 120 })).toThrow(/^invalid training configuration: augmentRotation: /);
  });

  it.each([
    [{ width1: { type: 'int', low: 0, high: 64 } }, {}, "invalid search space: parameter 'width1': 0 is not accepted: "],
    [{ width1: { type: 'int', low: 4, high: 64 }, width3: { type: 'int', low: 4, high: 64 } }, {}, "invalid search space: parameter 'width3': needs width2 in the space"],
    [{ width1: { type: 'categorical', choices: [8, 16] } }, { trainablePrefix: 'dense' }, "invalid search space: parameter 'width1': widths build a new MLP"],
    [{ augmentProbability: { type: 'float', low: 0.1, high: 0.9 } }, {}, "invalid search space: parameter 'augmentProbability': needs an augmentation strength in the space"],
    [{ augmentContrast: { type: 'float', low: 0, high: 1.5 } }, {}, "invalid search space: parameter 'augmentContrast': 1.5 is not accepted: "],
  ])('refuses the space %j at submission', (parameters, extra, message) => {
    expect(() => checkTrainingSpace(parseSearchSpace({ parameters }), { ...options, ...extra })).toThrow(message);
  });

  it('accepts a space over widths and strengths, and a POST /v2/studies body naming a bad one is a 400', () => {
    const parameters = {
      width1: { type: 'int', low: 4, high: 64, log: true },
      width2: { type: 'categorical', choices: [4, 8] },
      augmentProbability: { type: 'float', low: 0.1, high: 1 },
      augmentRotation: { type: 'float', low: 0, high: 30 },
    };
    expect(() => checkTrainingSpace(parseSearchSpace({ parameters }), options)).not.toThrow();
    const body = { objective: { type: 'training', ...options }, objectives: [{ metric: 'accuracy', direction: 'maximize' }], sampler: { type: 'random' }, maxTrials: 2 };
    expect(parseStudyRequest({ ...body, space: { parameters } }).space.parameters.width1).toEqual(parameters.width1);
    const bad = { ...body, space: { parameters: { ...parameters, augmentRotation: { type: 'float', low: 0, high: 400 } } } };
    expect(() => parseStudyRequest(bad)).toThrow(expect.objectContaining({ statusCode: 400, message: expect.stringMatching(/^invalid search space: parameter 'augmentRotation': 400 is not accepted/) }));
  });
});

describe('training augmentation at searched strengths', () => {
  it('draws from the strengths given instead of the family\'s stated ones', async () => {
    // one bright centre pixel of a 3x3 image, every row shifted by exactly 1 pixel (down-right or up-left)
    const image = new Float32Array(9);
    image[4] = 1;
    const hook = augmentationBatches({ kinds: ['shift'], probability: 1, strengths: { shift: [1] } }, 'x', { height: 3, width: 3, channels: 1, maxValue: 1 }, 7);
    for (let step = 0; step < 6; step++) {
      const out = await hook({ x: new ort.Tensor('float32', image.slice(), [1, 9]) }, new Uint32Array([0]), step);
      expect([0, 8]).toContain(Array.from(out.x!.data as Float32Array).indexOf(1));
    }
  });
});
