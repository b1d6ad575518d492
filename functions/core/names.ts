import { BadRequestError } from './errors.ts';

/** DESIGN.md: model names and versions; anything else is refused, never turned into a key. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export function isValidName(value: string): boolean {
  return NAME_PATTERN.test(value) && !value.includes('..');
}

export function assertValidName(value: string, what: 'model name' | 'version' | 'alias' | 'job id' | 'data set'): string {
  if (!isValidName(value)) {
    throw new BadRequestError(
      `invalid ${what} ${JSON.stringify(value.slice(0, 80))}: must match [a-z0-9][a-z0-9._-]{0,63}`,
    );
  }
  return value;
}

/** Versions are numbered 1, 2, 3...; numeric order, not string order, decides which is highest. */
export function compareVersions(a: string, b: string): number {
  const na = Number(a);
  const nb = Number(b);
  if (Number.isInteger(na) && Number.isInteger(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}
