import { BadRequestError } from '../platform/errors.ts';

/** DESIGN.md: model names and versions; anything else is refused, never turned into a key. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Versions are canonical decimal numbers 1, 2, 3...: no leading zeros, no sign, nothing else, and at
 * most 12 digits (the registry table's sort key pads to 12). One spelling per version, so `01` can
 * never name version 1 in one place and a different key in another.
 */
export const VERSION_PATTERN = /^[1-9][0-9]{0,11}$/;
export const VERSION_RULE = 'versions are canonical decimal numbers (1, 2, 3, ...; no leading zeros, at most 12 digits)';

/** What a refusal shows of a value the caller sent: never more than 80 characters of it. */
export function shown(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
}

export function isValidName(value: string): boolean {
  return NAME_PATTERN.test(value) && !value.includes('..');
}

export function assertValidName(value: string, what: 'model name' | 'version' | 'alias' | 'job id' | 'data set'): string {
  if (!isValidName(value)) {
    throw new BadRequestError(`invalid ${what} ${shown(value)}: must match [a-z0-9][a-z0-9._-]{0,63}`);
  }
  return value;
}

export function isCanonicalVersion(value: string): boolean {
  return VERSION_PATTERN.test(value);
}

/** A version number as written everywhere (routes, upload metadata, keys); anything else is a 400. */
export function assertValidVersion(value: string): string {
  if (!isCanonicalVersion(value)) throw new BadRequestError(`invalid version ${shown(value)}: ${VERSION_RULE}`);
  return value;
}

/**
 * Aliases are names that are not numbers: a segment of digits always means a version, so `01` can
 * never be an alias that shadows (or a typo that reaches) version 1.
 */
export function assertValidAlias(value: string): string {
  assertValidName(value, 'alias');
  if (/^[0-9]+$/.test(value)) throw new BadRequestError(`invalid alias ${shown(value)}: an alias cannot be a number, numbers name versions`);
  return value;
}

/**
 * A path segment that names a version or an alias: digits are a version and must be canonical
 * (`01` is refused, not looked up), anything else must be a valid alias name.
 */
export function assertVersionOrAlias(value: string): string {
  if (/^[0-9]+$/.test(value)) return assertValidVersion(value);
  return assertValidName(value, 'version');
}

/** Versions are numbered 1, 2, 3...; numeric order, not string order, decides which is highest. */
export function compareVersions(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isInteger(na) && Number.isInteger(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}
