import { describe, expect, it } from 'vitest';
import { activeConfiguration, fromInternal, gridValues, parseSearchSpace } from '../../functions/core/tune/space.ts';
import { parseConstraint, parseObjectives } from '../../functions/core/tune/trial.ts';
import { parseStudyConfig, Study } from '../../functions/core/tune/study.ts';

const refusal = (input: unknown) => {
  try {
    parseSearchSpace(input);
  } catch (error) {
    return { status: (error as { statusCode: number }).statusCode, message: (error as Error).message };
  }
  return undefined;
};

describe('search space', () => {
  it('accepts every parameter type and keeps declared order', () => {
    const space = parseSearchSpace({
      parameters: {
        optimizer: { type: 'categorical', choices: ['sgd', 'adam'] },
        lr: { type: 'float', low: 0.0001, high: 0.1, log: true },
        momentum: { type: 'float', low: 0, high: 0.9, step: 0.1, when: { parent: 'optimizer', values: ['sgd'] } },
        batch: { type: 'int', low: 16, high: 256, log: true },
      },
    });
    expect(Object.keys(space.parameters)).toEqual(['optimizer', 'lr', 'momentum', 'batch']);
  });

  it.each([
    [{ parameters: {} }, 'invalid search space: parameters: at least one parameter is required'],
    [{ parameters: { x: { type: 'float', low: 1, high: 1 } } }, "invalid search space: parameter 'x': low (1) must be below high (1)"],
    [{ parameters: { x: { type: 'float', low: 0, high: 1, log: true } } }, "invalid search space: parameter 'x': a log scale needs low above 0, got 0"],
    [{ parameters: { x: { type: 'float', low: 1, high: 2, log: true, step: 0.5 } } }, "invalid search space: parameter 'x': step and log cannot be combined"],
    [{ parameters: { x: { type: 'float', low: 0, high: 0.95, step: 0.1 } } }, "invalid search space: parameter 'x': high - low (0.95) is not a multiple of step 0.1"],
    [{ parameters: { x: { type: 'int', low: 0, high: 10, step: 3 } } }, "invalid search space: parameter 'x': high - low (10) is not a multiple of step 3"],
    [{ parameters: { x: { type: 'categorical', choices: ['a', 'a'] } } }, "invalid search space: parameter 'x': choices must be distinct"],
    [{ parameters: { x: { type: 'categorical', choices: [] } } }, 'invalid search space: parameters.x.choices: Too small: expected array to have >=1 items'],
    [{ parameters: { x: { type: 'int', low: 0.5, high: 3 } } }, 'invalid search space: parameters.x.low: Invalid input: expected int, received number'],
    [{ parameters: { x: { type: 'bool' } } }, "invalid search space: parameters.x.type: Invalid discriminator value. Expected 'float' | 'int' | 'categorical'"],
    [{ parameters: { x: { type: 'float', low: 0, high: 1, scale: 2 } } }, 'invalid search space: parameters.x: Unrecognized key: "scale"'],
    [{ parameters: { x: { type: 'float', low: 0, high: 1, when: { parent: 'y', values: ['a'] } } } }, "invalid search space: parameter 'x': condition parent 'y' is not a parameter"],
    [
      { parameters: { x: { type: 'float', low: 0, high: 1, when: { parent: 'o', values: ['a'] } }, o: { type: 'categorical', choices: ['a'] } } },
      "invalid search space: parameter 'x': condition parent 'o' must be declared before it",
    ],
    [
      { parameters: { o: { type: 'int', low: 0, high: 3 }, x: { type: 'float', low: 0, high: 1, when: { parent: 'o', values: [1] } } } },
      "invalid search space: parameter 'x': condition parent 'o' must be categorical",
    ],
    [
      { parameters: { o: { type: 'categorical', choices: ['a', 'b'] }, x: { type: 'float', low: 0, high: 1, when: { parent: 'o', values: ['c'] } } } },
      'invalid search space: parameter \'x\': condition value "c" is not a choice of \'o\'',
    ],
  ])('refuses %j with an exact 400 message', (input, message) => {
    expect(refusal(input)).toEqual({ status: 400, message });
  });

  it('lists grid values exactly, without binary noise', () => {
    const space = parseSearchSpace({
      parameters: {
        f: { type: 'float', low: 0.1, high: 0.5, step: 0.1 },
        i: { type: 'int', low: 2, high: 10, step: 4 },
        c: { type: 'categorical', choices: ['x', 1, true] },
        u: { type: 'float', low: 0, high: 1 },
      },
    });
    expect(gridValues(space.parameters.f!)).toEqual([0.1, 0.2, 0.3, 0.4, 0.5]);
    expect(gridValues(space.parameters.i!)).toEqual([2, 6, 10]);
    expect(gridValues(space.parameters.c!)).toEqual(['x', 1, true]);
    expect(gridValues(space.parameters.u!)).toBeUndefined();
  });

  it('maps internal values back onto the step grid, the integers and the bounds', () => {
    const space = parseSearchSpace({
      parameters: { f: { type: 'float', low: 0, high: 1, step: 0.25 }, i: { type: 'int', low: 1, high: 100, log: true } },
    });
    expect(fromInternal(space.parameters.f as never, 0.6)).toBe(0.5);
    expect(fromInternal(space.parameters.f as never, 1.3)).toBe(1);
    expect(fromInternal(space.parameters.i as never, Math.log(9.6))).toBe(10);
  });

  it('drops parameters whose parent does not activate them', () => {
    const space = parseSearchSpace({
      parameters: {
        o: { type: 'categorical', choices: ['sgd', 'adam'] },
        m: { type: 'float', low: 0, high: 1, when: { parent: 'o', values: ['sgd'] } },
      },
    });
    expect(activeConfiguration(space, { o: 'adam', m: 0.5 })).toEqual({ o: 'adam' });
    expect(activeConfiguration(space, { o: 'sgd', m: 0.5 })).toEqual({ o: 'sgd', m: 0.5 });
  });
});

describe('objectives and constraints', () => {
  it('parses the CLI forms', () => {
    expect(parseObjectives('p99_ms:min, accuracy:max')).toEqual([
      { metric: 'p99_ms', direction: 'minimize' },
      { metric: 'accuracy', direction: 'maximize' },
    ]);
    expect(parseConstraint('accuracy_drop<=0.5')).toEqual({ metric: 'accuracy_drop', op: '<=', bound: 0.5 });
    expect(parseConstraint(' accuracy >= 0.9 ')).toEqual({ metric: 'accuracy', op: '>=', bound: 0.9 });
  });

  it('refuses malformed objectives and constraints with exact messages', () => {
    expect(() => parseObjectives('p99_ms:lowest')).toThrow("objective 'p99_ms:lowest' must be <metric>:min or <metric>:max");
    expect(() => parseObjectives(' , ')).toThrow('at least one objective is required');
    expect(() => parseConstraint('accuracy_drop<0.5')).toThrow("constraint 'accuracy_drop<0.5' must be <metric><=<number> or <metric>>=<number>");
  });
});

describe('study configuration', () => {
  const space = { parameters: { x: { type: 'float', low: 0, high: 1 } } };
  const two = [{ metric: 'a', direction: 'minimize' }, { metric: 'b', direction: 'maximize' }];

  it.each([
    [{ space, objectives: two, sampler: { type: 'tpe' } }, "invalid study: sampler 'tpe' optimizes one objective; use 'nsga2', 'random' or 'grid' for 2"],
    [{ space, objectives: two, sampler: { type: 'nsga2' }, pruner: { type: 'median' } }, "invalid study: pruner 'median' needs a single objective"],
    [{ space, objectives: [{ metric: 'a', direction: 'minimize' }], sampler: { type: 'grid' } }, "grid search: parameter 'x' is continuous; give it a step or use another sampler"],
    [{ space, objectives: [{ metric: 'a', direction: 'up' }], sampler: { type: 'random' } }, 'invalid study: objectives.0.direction: Invalid option: expected one of "minimize"|"maximize"'],
    [{ space, objectives: [{ metric: 'a', direction: 'minimize' }], sampler: { type: 'cmaes' } }, "invalid study: sampler.type: Invalid discriminator value. Expected 'grid' | 'incremental-grid' | 'random' | 'tpe' | 'gp' | 'nsga2'"],
    [{ space, objectives: [{ metric: 'a', direction: 'minimize' }, { metric: 'a', direction: 'maximize' }], sampler: { type: 'random' } }, "invalid study: objective 'a' is named twice"],
    [
      { space, objectives: [{ metric: 'a', direction: 'minimize' }], sampler: { type: 'incremental-grid', groups: [['y']] } },
      "incremental grid: group parameter 'y' is not in the space",
    ],
    [{ space: { parameters: { 'a b': { type: 'int', low: 0, high: 1 } } }, objectives: [{ metric: 'a', direction: 'minimize' }], sampler: { type: 'random' } }, "invalid search space: parameter 'a b': a name is a letter or _ then up to 63 of A-Z a-z 0-9 _ . -"],
  ])('refuses %j', (input, message) => {
    expect(() => parseStudyConfig(input)).toThrow(message);
    let status = 0;
    try {
      Study.create(input);
    } catch (error) {
      status = (error as { statusCode: number }).statusCode;
    }
    expect(status).toBe(400);
  });
});
