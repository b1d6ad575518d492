import { ConflictError, HttpError, NotFoundError } from '../platform/errors.ts';
import type { ModelRepository } from './repository.ts';
import { assertValidAlias, assertValidName, assertValidVersion } from '../artifacts/names.ts';
import type { AliasRecord, AliasRoute, RegistryTable } from './registry-table.ts';
import { assertValidRoutes, DEFAULT_ALIAS } from './routing.ts';

/** The latest evaluation's verdict on a version (the evaluation gate); undefined when never evaluated. */
export type EvaluationGate = (store: ModelRepository, model: string, version: string) => Promise<{ passed: boolean; reportKey: string; reasons: string[] } | undefined>;

export class PromotionRefusedError extends HttpError {
  constructor(message: string) {
    super(422, message);
    this.name = 'PromotionRefusedError';
  }
}

export interface RolloutDeps {
  store: ModelRepository;
  gate?: EvaluationGate | undefined;
  now?: () => Date;
}

function registryOf(store: ModelRepository): RegistryTable {
  if (!store.registry) throw new Error('rollouts need the registry table (REGISTRY_TABLE)');
  return store.registry;
}

async function assertRegistered(store: ModelRepository, model: string, version: string): Promise<void> {
  const record = await registryOf(store).getVersion(model, version);
  if (!record || record.status !== 'registered') throw new NotFoundError(`model '${model}' has no version '${version}'`);
}

export interface PromoteInput {
  model: string;
  version: string;
  alias?: string | undefined;
  /** Percent of the alias's traffic for `version` as a canary; undefined or 100 promotes fully. */
  canaryWeight?: number | undefined;
  /** The revision the caller read; a concurrent change since then gets 409. Undefined: the current one. */
  revision?: number | undefined;
  /** Promote even though the latest evaluation failed. */
  force?: boolean | undefined;
}

/**
 * Points an alias at a version, fully or as a weighted canary beside the version that serves now.
 * Refused when the version's latest evaluation failed, unless forced.
 */
export async function promote(deps: RolloutDeps, input: PromoteInput): Promise<AliasRecord> {
  const model = assertValidName(input.model, 'model name');
  const version = assertValidVersion(input.version);
  const alias = assertValidAlias(input.alias ?? DEFAULT_ALIAS);
  const registry = registryOf(deps.store);
  await assertRegistered(deps.store, model, version);
  if (deps.gate && !input.force) {
    const verdict = await deps.gate(deps.store, model, version);
    if (verdict && !verdict.passed) {
      throw new PromotionRefusedError(
        `version '${version}' of '${model}' failed its latest evaluation (${verdict.reportKey}): ${verdict.reasons.join('; ')}; promote with force to override`,
      );
    }
  }
  const current = await registry.getAlias(model, alias);
  const revision = input.revision ?? current?.revision ?? 0;
  let routes: AliasRoute[];
  const weight = input.canaryWeight ?? 100;
  if (weight >= 100) {
    routes = [{ version, weight: 100 }];
  } else {
    const serving = current?.routes.filter((r) => r.version !== version && r.weight > 0) ?? [];
    if (serving.length === 0) {
      throw new ConflictError(`alias '${alias}' of '${model}' serves no other version yet: promote a version fully before starting a canary`);
    }
    // The canary takes its share from the version that serves most today.
    const main = [...serving].sort((a, b) => b.weight - a.weight)[0]!;
    routes = assertValidRoutes([
      { version: main.version, weight: 100 - weight },
      { version, weight },
    ]);
  }
  const record = await registry.setAlias(model, alias, routes, revision, current?.routes ?? null, (deps.now ?? (() => new Date()))());
  await deps.store.events?.publish({
    type: weight >= 100 ? 'ModelPromoted' : 'ModelTrafficChanged',
    model,
    version,
    alias,
    routes,
    at: record.updated,
  });
  return record;
}

/** Sets an alias's routes and weights exactly as given (compare-and-set on its revision). */
export async function setRoutes(deps: RolloutDeps, input: { model: string; alias: string; routes: AliasRoute[]; revision: number }): Promise<AliasRecord> {
  const model = assertValidName(input.model, 'model name');
  const alias = assertValidAlias(input.alias);
  const routes = assertValidRoutes(input.routes.map((r) => ({ version: assertValidVersion(r.version), weight: r.weight })));
  for (const r of routes) await assertRegistered(deps.store, model, r.version);
  const registry = registryOf(deps.store);
  const current = await registry.getAlias(model, alias);
  const record = await registry.setAlias(model, alias, routes, input.revision, current?.routes ?? null, (deps.now ?? (() => new Date()))());
  await deps.store.events?.publish({ type: 'ModelTrafficChanged', model, version: routes[0]!.version, alias, routes, at: record.updated });
  return record;
}

/** Restores an alias's routes from before its last change. */
export async function rollback(deps: RolloutDeps, input: { model: string; alias?: string | undefined; revision?: number | undefined }): Promise<AliasRecord> {
  const model = assertValidName(input.model, 'model name');
  const alias = assertValidAlias(input.alias ?? DEFAULT_ALIAS);
  const registry = registryOf(deps.store);
  const current = await registry.getAlias(model, alias);
  if (!current) throw new NotFoundError(`model '${model}' has no alias '${alias}'`);
  if (!current.previous || current.previous.length === 0) throw new ConflictError(`alias '${alias}' of '${model}' has no earlier routes to roll back to`);
  const record = await registry.setAlias(model, alias, current.previous, input.revision ?? current.revision, current.routes, (deps.now ?? (() => new Date()))());
  const main = [...record.routes].sort((a, b) => b.weight - a.weight)[0]!;
  await deps.store.events?.publish({ type: 'ModelRolledBack', model, version: main.version, alias, routes: record.routes, at: record.updated });
  return record;
}
