import { BadRequestError } from '../../platform/errors.ts';
import { gridValues, isActive, type Configuration, type ParamValue, type SearchSpace } from '../space.ts';
import type { SampleContext, Sampler } from './sampler.ts';

/**
 * Every configuration of the space, in a defined order: the first parameter varies slowest, each
 * value in ascending order (choices in declared order). A conditional parameter branches only under
 * the parent values that activate it, so each distinct configuration appears once.
 */
export function enumerateGrid(space: SearchSpace, names = Object.keys(space.parameters), fixed: Configuration = {}): Configuration[] {
  for (const name of names) {
    if (!gridValues(space.parameters[name]!)) {
      throw new BadRequestError(`grid search: parameter '${name}' is continuous; give it a step or use another sampler`);
    }
  }
  const out: Configuration[] = [];
  const walk = (index: number, chosen: Configuration) => {
    if (index === names.length) {
      out.push({ ...chosen });
      return;
    }
    const name = names[index]!;
    const p = space.parameters[name]!;
    if (!isActive(p, { ...fixed, ...chosen })) return walk(index + 1, chosen);
    for (const v of gridValues(p)!) {
      chosen[name] = v as ParamValue;
      walk(index + 1, chosen);
    }
    delete chosen[name];
  };
  walk(0, {});
  return out;
}

/** Trial n gets the grid's n-th configuration; past the end there is nothing left to propose. */
export class GridSampler implements Sampler {
  readonly name = 'grid';
  private grid: Configuration[] | undefined;
  private gridSpace: SearchSpace | undefined;

  sample(context: SampleContext): Configuration | undefined {
    if (this.gridSpace !== context.space) {
      this.grid = enumerateGrid(context.space);
      this.gridSpace = context.space;
    }
    return this.grid![context.trialNumber];
  }

  size(space: SearchSpace): number {
    return enumerateGrid(space).length;
  }
}
