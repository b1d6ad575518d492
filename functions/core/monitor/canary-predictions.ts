import type { ModelRepository } from '../registry/repository.ts';
import { capturePrefix, type CaptureRecord } from './capture.ts';
import { captureFeatures } from './drift.ts';
import type { FeatureTable } from './features.ts';
import { binCounts, jensenShannon, quantileEdges } from './stats.ts';

/**
 * The canary guard's third figure: the prediction distributions of canary and stable over the
 * guard's window, from their captured records (capture.ts), compared per prediction feature
 * (features.ts: a class, a score, a numeric value) by Jensen-Shannon divergence, numeric features
 * over ten quantile bins of the stable version's values. Only versions that capture data have it;
 * a batch reaches S3 up to the capture's batch age after its requests, so the window's last minute
 * is seen on a later pass.
 */
export const PREDICTION_BINS = 10;

export interface PredictionComparison {
  feature: string;
  /** In bits: 0 for the same distribution, 1 at most. */
  jensenShannon: number;
  stableRows: number;
  canaryRows: number;
}

const two = (n: number) => String(n).padStart(2, '0');
const isoDate = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** The records of a version captured in [fromMs, toMs], read from the objects written since fromMs; lines that are no record are counted. */
export async function capturedRecords(store: ModelRepository, model: string, version: string, fromMs: number, toMs: number): Promise<{ records: CaptureRecord[]; unreadable: number }> {
  const records: CaptureRecord[] = [];
  let unreadable = 0;
  for (let day = Date.parse(`${isoDate(fromMs)}T00:00:00Z`); day <= toMs; day += 86_400_000) {
    const prefix = capturePrefix(model, version, isoDate(day));
    // Keys are the write time (HHMMSS-<id>): a batch written before the window holds none of its records.
    const from = new Date(Math.max(day, fromMs));
    const startAfter = day < fromMs ? `${prefix}${two(from.getUTCHours())}${two(from.getUTCMinutes())}${two(from.getUTCSeconds())}` : undefined;
    for (const key of await store.objects.list(prefix, { startAfter })) {
      const bytes = await store.getObjectBytes(key);
      if (!bytes) continue; // deleted since the listing (a lifecycle rule)
      for (const line of Buffer.from(bytes).toString('utf8').split('\n')) {
        if (!line) continue;
        let record: CaptureRecord;
        try {
          record = JSON.parse(line) as CaptureRecord;
        } catch {
          unreadable++; // a torn line, reported with the verdict: the readable ones still make the figure
          continue;
        }
        const at = Date.parse(record.at);
        if (at >= fromMs && at <= toMs) records.push(record);
      }
    }
  }
  return { records, unreadable };
}

/** The prediction features of captured records. */
export const capturedPredictions = (records: readonly CaptureRecord[]): FeatureTable => captureFeatures(records).predictions;

/** Per prediction feature both versions have: the divergence of the canary's distribution from the stable one's. */
export function comparePredictions(stable: FeatureTable, canary: FeatureTable): PredictionComparison[] {
  const out: PredictionComparison[] = [];
  for (const [name, base] of [...stable.columns].sort(([a], [b]) => a.localeCompare(b))) {
    const other = canary.columns.get(name);
    if (!other || other.kind !== base.kind) continue;
    let expected: number[];
    let actual: number[];
    if (base.kind === 'categorical') {
      const categories = [...new Set([...base.values, ...other.values].map(String))].sort();
      const count = (values: readonly (number | string)[]) => {
        const counts = new Map<string, number>();
        for (const v of values) counts.set(String(v), (counts.get(String(v)) ?? 0) + 1);
        return categories.map((c) => counts.get(c) ?? 0);
      };
      expected = count(base.values);
      actual = count(other.values);
    } else {
      const edges = quantileEdges(Float64Array.from(base.values as number[]).sort(), PREDICTION_BINS);
      expected = binCounts(base.values as number[], edges);
      actual = binCounts(other.values as number[], edges);
    }
    out.push({ feature: name, jensenShannon: jensenShannon(expected, actual), stableRows: base.values.length, canaryRows: other.values.length });
  }
  return out;
}
