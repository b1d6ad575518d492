import { BadRequestError } from '../../platform/errors.ts';
import { activeConfiguration, gridValues, type Configuration, type ParamValue, type SearchSpace } from '../space.ts';
import { compareForObjective } from '../trial.ts';
import { completed, type SampleContext, type Sampler } from './sampler.ts';

/**
 * The design's incremental grid: the groups are searched one after another; while one group's grid
 * is enumerated, every other parameter stays at the best trial's value so far (before any trial has
 * finished, at the middle of its grid). Trial numbers map to (group, grid index) in order, so
 * workers agree on what each trial is. A group's grid is the product of its parameters' values; a
 * value the configuration's own conditions make inactive is dropped, so a conditional group can
 * repeat a configuration. Workers that ask for the next group before the last one finished fix the
 * others at the best among the trials finished by then.
 */
export class IncrementalGridSampler implements Sampler {
  readonly name = 'incremental-grid';
  readonly groups: string[][];

  constructor(groups: string[][]) {
    this.groups = groups;
  }

  /** Refuses groups that miss a parameter, name one twice or name one not in the space. */
  check(space: SearchSpace): void {
    const seen = new Set<string>();
    for (const name of this.groups.flat()) {
      if (!(name in space.parameters)) throw new BadRequestError(`incremental grid: group parameter '${name}' is not in the space`);
      if (seen.has(name)) throw new BadRequestError(`incremental grid: parameter '${name}' is in more than one group`);
      if (!gridValues(space.parameters[name]!)) throw new BadRequestError(`incremental grid: parameter '${name}' is continuous; give it a step`);
      seen.add(name);
    }
    const missing = Object.keys(space.parameters).filter((n) => !seen.has(n));
    if (missing.length > 0) throw new BadRequestError(`incremental grid: parameter '${missing[0]}' is in no group`);
  }

  /** Grid size of each group, in order; the study's trial budget for one pass is their sum. */
  groupSizes(space: SearchSpace): number[] {
    return this.groups.map((g) => g.reduce((n, name) => n * gridValues(space.parameters[name]!)!.length, 1));
  }

  sample(context: SampleContext): Configuration | undefined {
    const { space } = context;
    this.check(space);
    const sizes = this.groupSizes(space);
    let index = context.trialNumber;
    let group = 0;
    while (group < sizes.length && index >= sizes[group]!) index -= sizes[group++]!;
    if (group === sizes.length) return undefined;

    const finished = completed(context.trials).sort((a, b) => compareForObjective(a, b, context.directions[0]!));
    const best = finished[0]?.params ?? {};
    const values: Configuration = {};
    for (const [name, p] of Object.entries(space.parameters)) {
      const grid = gridValues(p)!;
      values[name] = name in best ? best[name]! : (grid[Math.floor((grid.length - 1) / 2)] as ParamValue);
    }
    // Mixed radix over the group: its last parameter varies fastest.
    const names = this.groups[group]!;
    for (let k = names.length - 1; k >= 0; k--) {
      const grid = gridValues(space.parameters[names[k]!]!)!;
      values[names[k]!] = grid[index % grid.length] as ParamValue;
      index = Math.floor(index / grid.length);
    }
    return activeConfiguration(space, values);
  }
}
