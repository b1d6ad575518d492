import * as z from 'zod';
import { BadRequestError } from '../platform/errors.ts';

/**
 * A search space in JSON: parameters by name, in the order they are sampled. A parameter with
 * `when` is conditional: active only when its parent (a categorical declared before it) took one of
 * the listed values; an inactive parameter is absent from a trial's configuration.
 *
 *   { "parameters": {
 *       "optimizer": { "type": "categorical", "choices": ["sgd", "adam"] },
 *       "lr":        { "type": "float", "low": 0.0001, "high": 0.1, "log": true },
 *       "momentum":  { "type": "float", "low": 0, "high": 0.9, "step": 0.1, "when": { "parent": "optimizer", "values": ["sgd"] } },
 *       "batch":     { "type": "int", "low": 16, "high": 256, "log": true } } }
 */
const choiceSchema = z.union([z.string(), z.number(), z.boolean()]);
export type Choice = z.infer<typeof choiceSchema>;

const conditionSchema = z.strictObject({
  parent: z.string().min(1),
  values: z.array(choiceSchema).min(1),
});

const floatSchema = z.strictObject({
  type: z.literal('float'),
  low: z.number(),
  high: z.number(),
  step: z.number().positive().optional(),
  log: z.boolean().optional(),
  when: conditionSchema.optional(),
});

const intSchema = z.strictObject({
  type: z.literal('int'),
  low: z.number().int(),
  high: z.number().int(),
  step: z.number().int().positive().optional(),
  log: z.boolean().optional(),
  when: conditionSchema.optional(),
});

const categoricalSchema = z.strictObject({
  type: z.literal('categorical'),
  choices: z.array(choiceSchema).min(1),
  when: conditionSchema.optional(),
});

const parameterSchema = z.discriminatedUnion('type', [floatSchema, intSchema, categoricalSchema]);

export const searchSpaceSchema = z.strictObject({
  parameters: z.record(z.string(), parameterSchema),
});

export type FloatParameter = z.infer<typeof floatSchema>;
export type IntParameter = z.infer<typeof intSchema>;
export type CategoricalParameter = z.infer<typeof categoricalSchema>;
export type NumericParameter = FloatParameter | IntParameter;
export type Parameter = z.infer<typeof parameterSchema>;
export type SearchSpace = z.infer<typeof searchSpaceSchema>;
export type ParamValue = number | string | boolean;
export type Configuration = Record<string, ParamValue>;

export class InvalidSpaceError extends BadRequestError {
  constructor(message: string) {
    super(`invalid search space: ${message}`);
    this.name = 'InvalidSpaceError';
  }
}

/** Parses and checks a space; anything wrong is an InvalidSpaceError naming the parameter. */
export function parseSearchSpace(input: unknown): SearchSpace {
  const parsed = searchSpaceSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.path.join('.');
    throw new InvalidSpaceError(path ? `${path}: ${issue.message}` : issue.message);
  }
  const space = parsed.data;
  const names = Object.keys(space.parameters);
  if (names.length === 0) throw new InvalidSpaceError('parameters: at least one parameter is required');
  names.forEach((name, index) => checkParameter(space, name, index, names));
  return space;
}

function checkParameter(space: SearchSpace, name: string, index: number, names: string[]): void {
  const p = space.parameters[name]!;
  const fail = (message: string) => {
    throw new InvalidSpaceError(`parameter '${name}': ${message}`);
  };
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/.test(name)) fail('a name is a letter or _ then up to 63 of A-Z a-z 0-9 _ . -');
  if (p.type === 'categorical') {
    const keys = p.choices.map((c) => JSON.stringify(c));
    if (new Set(keys).size !== keys.length) fail('choices must be distinct');
  } else {
    if (!(p.low < p.high)) fail(`low (${p.low}) must be below high (${p.high})`);
    if (p.log && p.low <= 0) fail(`a log scale needs low above 0, got ${p.low}`);
    if (p.log && p.step !== undefined && !(p.type === 'int' && p.step === 1)) fail('step and log cannot be combined');
    if (p.step !== undefined) {
      const steps = (p.high - p.low) / p.step;
      if (Math.abs(steps - Math.round(steps)) > 1e-9) fail(`high - low (${roundSignificant(p.high - p.low)}) is not a multiple of step ${p.step}`);
    }
  }
  if (p.when) {
    const parentIndex = names.indexOf(p.when.parent);
    if (parentIndex < 0) fail(`condition parent '${p.when.parent}' is not a parameter`);
    if (parentIndex >= index) fail(`condition parent '${p.when.parent}' must be declared before it`);
    const parent = space.parameters[p.when.parent]!;
    if (parent.type !== 'categorical') fail(`condition parent '${p.when.parent}' must be categorical`);
    const choices = (parent as CategoricalParameter).choices;
    for (const v of p.when.values) if (!choices.includes(v)) fail(`condition value ${JSON.stringify(v)} is not a choice of '${p.when.parent}'`);
  }
}

/** Whether a parameter is active given the values chosen so far for the parameters before it. */
export function isActive(p: Parameter, chosen: Configuration): boolean {
  if (!p.when) return true;
  if (!(p.when.parent in chosen)) return false;
  return p.when.values.includes(chosen[p.when.parent]!);
}

/** Drops the parameters that are inactive under the configuration's own values (in declared order). */
export function activeConfiguration(space: SearchSpace, values: Configuration): Configuration {
  const out: Configuration = {};
  for (const [name, p] of Object.entries(space.parameters)) {
    if (isActive(p, out) && name in values) out[name] = values[name]!;
  }
  return out;
}

/** Bounds in the space a sampler works in: the logarithm for a log scale. */
export function internalBounds(p: NumericParameter): [number, number] {
  return p.log ? [Math.log(p.low), Math.log(p.high)] : [p.low, p.high];
}

export function toInternal(p: NumericParameter, value: number): number {
  return p.log ? Math.log(value) : value;
}

/** The value a sampler's internal number stands for: back from log, on the step grid, in bounds. */
export function fromInternal(p: NumericParameter, x: number): number {
  let v = p.log ? Math.exp(x) : x;
  const step = p.step ?? (p.type === 'int' ? 1 : undefined);
  if (step !== undefined) v = p.low + Math.round((v - p.low) / step) * step;
  v = Math.min(p.high, Math.max(p.low, v));
  return p.type === 'int' ? Math.round(v) : step !== undefined ? roundSignificant(v) : v;
}

/** Position in [0, 1] of a value within its internal bounds (GP and genetic samplers). */
export function toUnit(p: NumericParameter, value: number): number {
  const [lo, hi] = internalBounds(p);
  return (toInternal(p, value) - lo) / (hi - lo);
}

export function fromUnit(p: NumericParameter, u: number): number {
  const [lo, hi] = internalBounds(p);
  return fromInternal(p, lo + Math.min(1, Math.max(0, u)) * (hi - lo));
}

/** Every value of a discrete parameter in ascending order; undefined for a continuous float. */
export function gridValues(p: Parameter): ParamValue[] | undefined {
  if (p.type === 'categorical') return p.choices;
  const step = p.step ?? (p.type === 'int' ? 1 : undefined);
  if (step === undefined) return undefined;
  const count = Math.round((p.high - p.low) / step) + 1;
  return Array.from({ length: count }, (_, k) => (p.type === 'int' ? p.low + k * step : roundSignificant(p.low + k * step)));
}

/** Removes the binary noise of `low + k * step` (0.30000000000000004 becomes 0.3). */
export function roundSignificant(v: number): number {
  return Number(v.toPrecision(12));
}
