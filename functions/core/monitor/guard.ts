import type { ModelRepository } from '../registry/repository.ts';
import { rollback } from '../registry/rollout.ts';
import type { AliasRecord } from '../registry/registry-table.ts';
import { defaultGuard, readModelMonitoring, type GuardPolicy } from './policy.ts';
import { capturedPredictions, capturedRecords, comparePredictions, type PredictionComparison } from './canary-predictions.ts';

/**
 * The canary guard (CodeDeploy's Lambda canaries, for an alias's split): while an alias routes to two
 * versions and its guard is enabled, compare the canary (the smaller share) with the stable version
 * over the last `windowSeconds`: error rate (runtime failures over requests) and p99 latency, each
 * only once both have served `minRequests`, and where both capture data, the distribution of each
 * prediction feature once both have `minPredictions` captured rows (canary-predictions.ts). On a breach the alias is rolled back through the
 * registry's rollback (which publishes ModelRolledBack), and ModelCanaryRolledBack carries the figures.
 */
export interface VersionFigures {
  requests: number;
  errors: number;
  errorRate: number;
  p99Ms: number | null;
}

/** Where the figures come from: CloudWatch in AWS, the local stack's EMF store on one machine. */
export interface MetricsSource {
  figures(model: string, version: string, fromMs: number, toMs: number): Promise<VersionFigures>;
}

export interface GuardVerdict {
  model: string;
  alias: string;
  stable: { version: string; weight: number; figures: VersionFigures };
  canary: { version: string; weight: number; figures: VersionFigures };
  policy: GuardPolicy;
  /** Per prediction feature, canary against stable; null where either has fewer captured rows than minPredictions. */
  predictions: PredictionComparison[] | null;
  /** Captured lines that were no record (skipped). */
  unreadableCaptureLines: number;
  /** waiting: too few requests yet; healthy: within the policy; breach: rolled back. */
  outcome: 'waiting' | 'healthy' | 'rolled-back' | 'rollback-failed';
  reasons: string[];
  error?: string;
}

export interface GuardDeps {
  store: ModelRepository;
  metrics: MetricsSource;
  now?: () => number;
  /** Counts a rollback (CanaryRollbacks metric). */
  onRollback?(verdict: GuardVerdict): void;
}

/** The breaches of a policy by a canary's figures against the stable version's. */
export function judgeCanary(
  stable: VersionFigures,
  canary: VersionFigures,
  policy: GuardPolicy,
  predictions: readonly PredictionComparison[] | null = null,
): { outcome: 'waiting' | 'healthy' | 'breach'; reasons: string[] } {
  if (canary.requests < policy.minRequests || stable.requests < policy.minRequests) return { outcome: 'waiting', reasons: [] };
  const reasons: string[] = [];
  const increase = canary.errorRate - stable.errorRate;
  if (increase > policy.maxErrorRateIncrease) {
    reasons.push(`error rate ${(canary.errorRate * 100).toFixed(2)}% against ${(stable.errorRate * 100).toFixed(2)}% (more than ${(policy.maxErrorRateIncrease * 100).toFixed(2)} points higher)`);
  }
  if (canary.p99Ms !== null && stable.p99Ms !== null && canary.p99Ms > stable.p99Ms * policy.maxP99Ratio && canary.p99Ms - stable.p99Ms > policy.minP99IncreaseMs) {
    reasons.push(`p99 latency ${canary.p99Ms.toFixed(1)} ms against ${stable.p99Ms.toFixed(1)} ms (over ${policy.maxP99Ratio}x and ${policy.minP99IncreaseMs} ms more)`);
  }
  for (const p of predictions ?? []) {
    if (p.jensenShannon > policy.maxPredictionJs) {
      reasons.push(`prediction distribution of ${p.feature}: Jensen-Shannon ${p.jensenShannon.toFixed(3)} bits from the stable version's (over ${policy.maxPredictionJs}; ${p.canaryRows} and ${p.stableRows} captured rows)`);
    }
  }
  return { outcome: reasons.length ? 'breach' : 'healthy', reasons };
}

/** Stable and canary of an alias with a split: the largest share and the next one; undefined without a split. */
function split(alias: AliasRecord): [{ version: string; weight: number }, { version: string; weight: number }] | undefined {
  const serving = alias.routes.filter((r) => r.weight > 0).sort((a, b) => b.weight - a.weight);
  if (serving.length < 2 || !alias.previous?.length) return undefined;
  return [serving[0]!, serving[1]!];
}

/** One pass over every model's guarded aliases. */
export async function runCanaryGuard(deps: GuardDeps): Promise<GuardVerdict[]> {
  const registry = deps.store.registry;
  if (!registry) throw new Error('the canary guard needs the registry table (REGISTRY_TABLE)');
  const now = (deps.now ?? Date.now)();
  const verdicts: GuardVerdict[] = [];
  for (const model of await deps.store.listModels()) {
    const guards = (await readModelMonitoring(deps.store, model)).guards ?? {};
    const enabled = Object.entries(guards).filter(([, g]) => g.enabled);
    if (enabled.length === 0) continue;
    const aliases = new Map((await registry.listAliases(model)).map((a) => [a.alias, a]));
    for (const [aliasName, guard] of enabled) {
      const alias = aliases.get(aliasName);
      const sides = alias && split(alias);
      if (!alias || !sides) continue;
      const policy = { ...defaultGuard(), ...guard };
      const from = now - policy.windowSeconds * 1000;
      const [stableRoute, canaryRoute] = sides;
      const [stable, canary, stableCapture, canaryCapture] = await Promise.all([
        deps.metrics.figures(model, stableRoute.version, from, now),
        deps.metrics.figures(model, canaryRoute.version, from, now),
        capturedRecords(deps.store, model, stableRoute.version, from, now),
        capturedRecords(deps.store, model, canaryRoute.version, from, now),
      ]);
      const compared = comparePredictions(capturedPredictions(stableCapture.records), capturedPredictions(canaryCapture.records));
      const predictions = compared.length > 0 && compared.every((p) => p.stableRows >= policy.minPredictions && p.canaryRows >= policy.minPredictions) ? compared : null;
      const judged = judgeCanary(stable, canary, policy, predictions);
      const verdict: GuardVerdict = {
        model,
        alias: aliasName,
        stable: { ...stableRoute, figures: stable },
        canary: { ...canaryRoute, figures: canary },
        policy,
        predictions,
        unreadableCaptureLines: stableCapture.unreadable + canaryCapture.unreadable,
        outcome: judged.outcome === 'breach' ? 'rolled-back' : judged.outcome,
        reasons: judged.reasons,
      };
      if (judged.outcome === 'breach') {
        try {
          // The revision read above: a person's change since then wins (409) over this rollback.
          const record = await rollback({ store: deps.store }, { model, alias: aliasName, revision: alias.revision });
          await deps.store.events?.publish({
            type: 'ModelCanaryRolledBack',
            model,
            version: canaryRoute.version,
            alias: aliasName,
            routes: record.routes,
            at: record.updated,
            details: { reasons: verdict.reasons, stable: verdict.stable, canary: verdict.canary, predictions, windowSeconds: policy.windowSeconds, minRequests: policy.minRequests },
          });
          deps.onRollback?.(verdict);
        } catch (error) {
          verdict.outcome = 'rollback-failed';
          verdict.error = (error as Error).message;
        }
      }
      verdicts.push(verdict);
    }
  }
  return verdicts;
}
