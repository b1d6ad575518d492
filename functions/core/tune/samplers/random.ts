import { fromInternal, internalBounds, isActive, type Configuration, type Parameter, type SearchSpace } from '../space.ts';
import type { SampleContext, Sampler } from './sampler.ts';

/** One value drawn uniformly: in log space for a log scale, then onto the step grid. */
export function sampleUniform(p: Parameter, random: () => number): Configuration[string] {
  if (p.type === 'categorical') return p.choices[Math.floor(random() * p.choices.length)]!;
  const [lo, hi] = internalBounds(p);
  if (p.type === 'int' && p.log) {
    // Widened by half a unit each side so the end points are as likely as their neighbours.
    const a = Math.log(p.low - 0.5);
    return fromInternal(p, a + random() * (Math.log(p.high + 0.5) - a));
  }
  if (p.type === 'int' || p.step !== undefined) {
    const step = p.step ?? 1;
    return fromInternal(p, lo - step / 2 + random() * (hi - lo + step));
  }
  return fromInternal(p, lo + random() * (hi - lo));
}

/** A whole configuration drawn uniformly, only active parameters drawn. */
export function sampleConfiguration(space: SearchSpace, random: () => number): Configuration {
  const out: Configuration = {};
  for (const [name, p] of Object.entries(space.parameters)) {
    if (isActive(p, out)) out[name] = sampleUniform(p, random);
  }
  return out;
}

export class RandomSampler implements Sampler {
  readonly name = 'random';
  sample(context: SampleContext): Configuration {
    return sampleConfiguration(context.space, context.random);
  }
}
