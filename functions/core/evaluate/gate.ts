import { keys } from '../artifacts/keys.ts';
import { promotionPolicySchema, type ModelManifest, type PromotionPolicy } from '../artifacts/manifest.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName } from '../artifacts/names.ts';
import type { SpeedupInterval } from './metrics.ts';

/** The part of a stored report.json the gate reads back (report.ts writes it; the gate decides it). */
interface StoredGateVerdict {
  evaluatedAt: string;
  gate: Pick<GateResult, 'passed' | 'reasons'>;
}

/**
 * The promotion gate. The policy comes from the candidate version's manifest (`policy`), else from
 * the model-wide `models/<model>/policy.json`, else DEFAULT_POLICY; the one that applied is recorded
 * in the report. A limit that needs a baseline (accuracy drop, speedup) is skipped, and says so, when
 * the evaluation had none.
 */
export const DEFAULT_POLICY: PromotionPolicy = { maxAccuracyDrop: 0.01, maxErrorRate: 0 };

export type PolicySource = 'manifest' | 'model' | 'default';

export async function resolvePolicy(store: ModelRepository, manifest: ModelManifest): Promise<{ policy: PromotionPolicy; source: PolicySource }> {
  if (manifest.policy) return { policy: manifest.policy, source: 'manifest' };
  const bytes = await store.getObjectBytes(keys.modelPolicy(manifest.name));
  if (bytes) {
    const parsed = promotionPolicySchema.safeParse(JSON.parse(Buffer.from(bytes).toString('utf8')));
    if (!parsed.success) throw new Error(`${keys.modelPolicy(manifest.name)} is not a valid policy: ${parsed.error.issues[0]?.message}`);
    return { policy: parsed.data, source: 'model' };
  }
  return { policy: DEFAULT_POLICY, source: 'default' };
}

export interface GateCheck {
  rule: keyof PromotionPolicy;
  limit: number;
  actual: number | null;
  passed: boolean;
  skipped: boolean;
  detail: string;
}

export interface GateResult {
  passed: boolean;
  policy: PromotionPolicy;
  policySource: PolicySource;
  checks: GateCheck[];
  /** Why it failed (each failed check), or, when it passed, what was checked. */
  reasons: string[];
}

/** One scenario's error rate, as the gate reads it. */
export interface ScenarioErrorRate {
  /** e.g. "accuracy rows", "single-stream queries". */
  what: string;
  errors: number;
  inferences: number;
  /** The first failure's reason, when any failed. */
  firstReason?: string | undefined;
}

/** What the gate reads from a report: the figures are computed before the gate runs. */
export interface GateInputs {
  /** candidate top-1 minus baseline top-1 (negative is a drop), with its paired interval. */
  accuracyDelta?: { value: number; low: number; high: number } | undefined;
  /** Median over interleaved query pairs of baseline latency / candidate latency, with its interval. */
  speedup?: SpeedupInterval | undefined;
  /** Why a speedup that should have been measured (baseline and single-stream present) was not. */
  speedupUnavailable?: string | undefined;
  candidateP99Ms?: number | undefined;
  /** The candidate's error rate in each scenario that ran; each is held to the limit on its own. */
  candidateErrors?: ScenarioErrorRate[] | undefined;
  baselineVersion?: string | null | undefined;
}

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;

export function evaluateGate(policy: PromotionPolicy, source: PolicySource, inputs: GateInputs): GateResult {
  const checks: GateCheck[] = [];
  const add = (rule: keyof PromotionPolicy, limit: number, actual: number | undefined, ok: (a: number) => boolean, text: (a: number) => string, missing: string) => {
    if (actual === undefined || Number.isNaN(actual)) checks.push({ rule, limit, actual: null, passed: true, skipped: true, detail: missing });
    else checks.push({ rule, limit, actual, passed: ok(actual), skipped: false, detail: text(actual) });
  };
  if (policy.maxAccuracyDrop !== undefined) {
    const limit = policy.maxAccuracyDrop;
    const d = inputs.accuracyDelta;
    add(
      'maxAccuracyDrop',
      limit,
      d ? -d.value : undefined,
      (drop) => drop <= limit,
      (drop) =>
        `top-1 accuracy drop ${pct(drop)} against version ${inputs.baselineVersion} (95% interval of the change ${pct(d!.low)} to ${pct(d!.high)}); the policy allows at most ${pct(limit)}`,
      'accuracy drop not checked: no baseline version or no labels',
    );
  }
  if (policy.minSpeedup !== undefined) {
    const limit = policy.minSpeedup;
    const s = inputs.speedup;
    if (!s && inputs.speedupUnavailable) {
      // A comparison that ran but cannot show a speedup has not shown one: that fails.
      checks.push({ rule: 'minSpeedup', limit, actual: null, passed: false, skipped: false, detail: `speedup not established: ${inputs.speedupUnavailable}` });
    } else {
      // Only the interval's lower bound counts: a noisy machine widens the interval, it never passes a copy.
      add(
        'minSpeedup',
        limit,
        s?.low,
        (low) => low >= limit,
        (low) =>
          `single-stream speedup ${s!.value.toFixed(3)}x over version ${inputs.baselineVersion} (${Math.round(s!.confidence * 100)}% interval ${low.toFixed(3)}x to ${s!.high.toFixed(3)}x over ${s!.pairs} interleaved query pairs); the policy needs the interval's lower bound at ${limit}x or more`,
        'speedup not checked: no baseline version or no single-stream scenario',
      );
    }
  }
  if (policy.maxP99Ms !== undefined) {
    const limit = policy.maxP99Ms;
    add(
      'maxP99Ms',
      limit,
      inputs.candidateP99Ms,
      (p) => p <= limit,
      (p) => `single-stream p99 ${p.toFixed(3)} ms; the policy allows at most ${limit} ms`,
      'p99 not checked: no single-stream scenario',
    );
  }
  if (policy.maxErrorRate !== undefined) {
    const limit = policy.maxErrorRate;
    const ran = (inputs.candidateErrors ?? []).filter((e) => e.inferences > 0);
    const rate = (e: ScenarioErrorRate) => e.errors / e.inferences;
    const worst = ran.reduce<ScenarioErrorRate | undefined>((w, e) => (!w || rate(e) > rate(w) ? e : w), undefined);
    add(
      'maxErrorRate',
      limit,
      worst ? rate(worst) : undefined,
      (r) => r <= limit,
      (r) =>
        worst!.errors === 0
          ? `error rate 0.00% in every scenario (${ran.map((e) => `${e.inferences} ${e.what}`).join(', ')}); the policy allows at most ${pct(limit)}`
          : `error rate ${pct(r)} of ${worst!.what} (${worst!.errors} of ${worst!.inferences} failed; first: ${worst!.firstReason}); the policy allows at most ${pct(limit)}`,
      'error rate not checked: no inferences ran',
    );
  }
  const failed = checks.filter((c) => !c.passed);
  return {
    passed: failed.length === 0,
    policy,
    policySource: source,
    checks,
    reasons: failed.length > 0 ? failed.map((c) => c.detail) : checks.filter((c) => !c.skipped).map((c) => c.detail),
  };
}

export interface EvaluationVerdict {
  passed: boolean;
  reportKey: string;
  evaluatedAt: string;
  reasons: string[];
}

/**
 * The verdict of the most recently started evaluation of a version that produced a report (ids
 * start with their UTC start time, so they sort by it); undefined when none has. Running and failed
 * evaluations have no report and are passed over. `mass promote` refuses a canary on `passed: false`.
 */
export async function latestEvaluationVerdict(store: ModelRepository, model: string, version: string): Promise<EvaluationVerdict | undefined> {
  assertValidName(model, 'model name');
  assertValidName(version, 'version');
  const prefix = keys.evalVersionPrefix(model, version);
  const ids = await store.objects.listFolders(prefix);
  ids.sort().reverse();
  for (const id of ids) {
    const reportKey = keys.evalReport(model, version, id);
    const bytes = await store.getObjectBytes(reportKey);
    if (!bytes) continue;
    const report = JSON.parse(Buffer.from(bytes).toString('utf8')) as StoredGateVerdict;
    return { passed: report.gate.passed, reportKey, evaluatedAt: report.evaluatedAt, reasons: report.gate.reasons };
  }
  return undefined;
}
