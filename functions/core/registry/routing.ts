import { createHash } from 'node:crypto';
import { BadRequestError } from '../platform/errors.ts';
import type { AliasRecord, AliasRoute } from './registry-table.ts';

/** The alias a request that names no version goes to, unless configured otherwise (DEFAULT_ALIAS). */
export const DEFAULT_ALIAS = 'prod';

/** Routes of an alias: at least one, distinct versions, integer weights 0..100 adding up to 100. */
export function assertValidRoutes(routes: AliasRoute[]): AliasRoute[] {
  if (routes.length === 0) throw new BadRequestError('an alias needs at least one route');
  const seen = new Set<string>();
  let total = 0;
  for (const r of routes) {
    if (seen.has(r.version)) throw new BadRequestError(`version '${r.version}' appears twice in the routes`);
    seen.add(r.version);
    if (!Number.isInteger(r.weight) || r.weight < 0 || r.weight > 100) {
      throw new BadRequestError(`weight of version '${r.version}' must be an integer from 0 to 100, got ${r.weight}`);
    }
    total += r.weight;
  }
  if (total !== 100) throw new BadRequestError(`route weights must add up to 100, got ${total}`);
  return routes;
}

/** A point in [0, 100) that depends only on the caller key, so one caller always lands on one side. */
export function stickyPoint(key: string): number {
  return (createHash('sha256').update(key).digest().readUInt32BE(0) % 10_000) / 100;
}

/**
 * Picks the version a request goes to: weighted at random, or by the caller's sticky key when the
 * client sent one (so a user sees one version for the life of a canary).
 */
export function chooseRoute(routes: readonly AliasRoute[], stickyKey?: string, random: () => number = Math.random): string {
  const point = stickyKey ? stickyPoint(stickyKey) : random() * 100;
  let upTo = 0;
  for (const r of routes) {
    upTo += r.weight;
    if (point < upTo) return r.version;
  }
  // Only reachable through rounding at exactly 100: the last route with any weight.
  return [...routes].reverse().find((r) => r.weight > 0)!.version;
}

/**
 * The version a request that names none goes to: through the default alias when the model has one,
 * else the highest version a user uploaded (`uploaded`, lowest first: uploadedVersions). A version
 * the platform made (a quantized variant, later fine-tuned, distilled, federated, tuned ones) has a
 * lineage and is never in `uploaded`: it serves such requests only once promoted into the default
 * alias's routes. Undefined for a model with neither.
 */
export function defaultVersion(
  uploaded: readonly string[],
  aliases: ReadonlyMap<string, AliasRecord>,
  defaultAlias: string,
  stickyKey?: string,
): string | undefined {
  const byDefault = aliases.get(defaultAlias);
  if (byDefault) return chooseRoute(byDefault.routes, stickyKey);
  return uploaded.at(-1);
}
