import { Option } from 'commander';
import { CliError } from './context.ts';

/**
 * Option parsers every command shares, so an option is spelled and checked the same way everywhere.
 * A bad value is a usage error (exit 2) that names the option and repeats what was given.
 */
export function nonNegativeInteger(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < 0) throw new CliError(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`, 2);
    return n;
  };
}

export function positiveInteger(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < 1) throw new CliError(`${name} must be a positive integer, got ${JSON.stringify(value)}`, 2);
    return n;
  };
}

/** Seconds as a positive finite number (fractions allowed): `--interval 0.5`. */
export function positiveSeconds(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new CliError(`${name} must be a positive number of seconds, got ${JSON.stringify(value)}`, 2);
    return n;
  };
}

/** The one poll option: `--interval <seconds>`, a positive number. */
export function intervalOption(what: string, defaultSeconds: number): Option {
  return new Option('--interval <seconds>', `seconds between polls ${what}`).argParser(positiveSeconds('--interval')).default(defaultSeconds);
}

/** The one wait limit: `--timeout <seconds>`, a positive number. */
export function timeoutOption(what: string, defaultSeconds: number): Option {
  return new Option('--timeout <seconds>', `give up waiting ${what} after this long`).argParser(positiveSeconds('--timeout')).default(defaultSeconds);
}

/** An option whose value is one of a few words. */
export function choiceOption(flags: string, description: string, choices: readonly string[]): Option {
  return new Option(flags, description).choices(choices);
}

export const sleep = (seconds: number) => new Promise<void>((resolve) => setTimeout(resolve, seconds * 1000));
