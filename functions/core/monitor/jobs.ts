import * as z from 'zod';
import { BadRequestError, NotFoundError } from '../platform/errors.ts';
import type { JobKind, StepContext, StepOutcome } from '../jobs/kinds.ts';
import { JobStepError } from '../jobs/kinds.ts';
import type { Json } from '../jobs/record.ts';
import type { ModelSessions } from '../sessions/model-sessions.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName, assertValidVersion } from '../artifacts/names.ts';
import type { ModelEventPublisher } from '../registry/events.ts';
import { computeBaseline, readBaseline, writeBaseline } from './baseline.ts';
import { capturePrefix, type CaptureRecord } from './capture.ts';
import { captureFeatures, compareWithBaseline } from './drift.ts';
import { defaultDrift, effectiveMonitoring, readModelMonitoring } from './policy.ts';
import { monitoringPrefix, renderDriftHtml, type DriftReport } from './report.ts';

/**
 * The `monitor` job kind on the one job runtime (docs/jobs.md): `baseline` runs a version over a data
 * set and stores its baseline; `drift` compares the version's captured rows of a day (or of the
 * policy's window) with that baseline, writes report.json and report.html under
 * `monitoring/<model>/<version>/<date>/`, emits ModelDrift and DriftScore, and on drift publishes
 * ModelDriftDetected. One step each; both are idempotent (fixed keys, the same inputs give the same report).
 */
export const MONITOR_KIND = 'monitor';
/** Captured rows a drift step reads at most (the first ones of the window, in key order). */
export const MAX_DRIFT_ROWS = 100_000;

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const name = z.string().refine((v) => /^[a-z0-9][a-z0-9._-]{0,63}$/.test(v), 'must match [a-z0-9][a-z0-9._-]{0,63}');
const monitorRequestSchema = z.discriminatedUnion('task', [
  z.strictObject({ task: z.literal('baseline'), model: name, version: name, dataset: name, rows: z.number().int().positive().optional() }),
  z.strictObject({ task: z.literal('drift'), model: name, version: name, date: z.string().regex(DATE, 'date must be YYYY-MM-DD').optional() }),
]);
export type MonitorRequest = z.infer<typeof monitorRequestSchema>;

export function parseMonitorRequest(body: unknown): MonitorRequest {
  const parsed = monitorRequestSchema.safeParse(body);
  if (!parsed.success) throw new BadRequestError(`invalid monitoring job: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`).join('; ')}`);
  if (parsed.data.task === 'drift' && parsed.data.date && Number.isNaN(Date.parse(`${parsed.data.date}T00:00:00Z`))) throw new BadRequestError(`invalid date ${parsed.data.date}`);
  return parsed.data;
}

export interface MonitorDeps {
  store: ModelRepository;
  sessions: ModelSessions;
  events?: ModelEventPublisher | undefined;
  /** A metric with its dimensions (observability.ts recordMetric). */
  metric(name: string, value: number, dimensions: Record<string, string>, unit?: 'Count' | 'None'): void;
  now?: () => Date;
}

const isoDate = (d: Date) => d.toISOString().slice(0, 10);

/** Every key under a prefix, in key order. */
async function listKeys(store: ModelRepository, prefix: string): Promise<string[]> {
  return store.objects.list(prefix);
}

/** Captured records of the days, each line parsed; a line that is not a record is skipped and counted. */
async function readCapture(store: ModelRepository, model: string, version: string, days: readonly string[]) {
  const records: CaptureRecord[] = [];
  let objects = 0;
  let unreadable = 0;
  let rows = 0;
  for (const day of days) {
    for (const key of await listKeys(store, capturePrefix(model, version, day))) {
      if (rows >= MAX_DRIFT_ROWS) break;
      const bytes = await store.getObjectBytes(key);
      if (!bytes) continue; // deleted since the listing (a lifecycle rule)
      objects++;
      for (const line of Buffer.from(bytes).toString('utf8').split('\n')) {
        if (!line) continue;
        try {
          const record = JSON.parse(line) as CaptureRecord;
          records.push(record);
          rows += record.inputs[0]?.shape.length && record.inputs[0].shape.length >= 2 ? record.inputs[0].shape[0]! : 1;
        } catch {
          unreadable++; // reported in the result, not fatal: one torn line must not hide a day's drift
        }
      }
    }
  }
  return { records, objects, unreadable };
}

export async function runDrift(deps: MonitorDeps, request: Extract<MonitorRequest, { task: 'drift' }>): Promise<DriftReport & { unreadableLines: number }> {
  const model = assertValidName(request.model, 'model name');
  const version = assertValidVersion(request.version);
  const now = deps.now?.() ?? new Date();
  const date = request.date ?? isoDate(now);
  const manifest = await deps.store.getManifest(model, version);
  const policy = effectiveMonitoring(await readModelMonitoring(deps.store, model), manifest).drift ?? defaultDrift();
  let baseline;
  try {
    baseline = await readBaseline(deps.store, model, version);
  } catch (error) {
    if (error instanceof NotFoundError) throw new JobStepError(error.message, { cause: error });
    throw error;
  }
  const end = Date.parse(`${date}T00:00:00Z`);
  const days = Array.from({ length: policy.windowDays }, (_, i) => isoDate(new Date(end - (policy.windowDays - 1 - i) * 86_400_000)));
  const capture = await readCapture(deps.store, model, version, days);
  const result = compareWithBaseline(baseline, captureFeatures(capture.records), policy);
  const report: DriftReport = {
    model,
    version,
    date,
    days,
    captureObjects: capture.objects,
    records: capture.records.length,
    baseline: { created: baseline.created, dataset: baseline.dataset, rows: baseline.rows },
    policy,
    created: now.toISOString(),
    ...result,
  };
  const prefix = monitoringPrefix(model, version, date);
  await deps.store.putObjectBytes(`${prefix}report.json`, Buffer.from(JSON.stringify(report, null, 2)), 'application/json');
  await deps.store.putObjectBytes(`${prefix}report.html`, Buffer.from(renderDriftHtml(report)), 'text/html; charset=utf-8');
  if (report.enough) {
    for (const dims of [{ model, version }, {}] as Record<string, string>[]) {
      deps.metric('ModelDrift', report.drift ? 1 : 0, dims);
      deps.metric('DriftScore', report.score, dims, 'None');
    }
  }
  if (report.drift) {
    await deps.events?.publish({
      type: 'ModelDriftDetected',
      model,
      version,
      at: report.created,
      details: {
        report: `${prefix}report.json`,
        date,
        samples: report.samples,
        score: report.score,
        features: report.features.filter((f) => f.drifted).map((f) => ({ name: f.name, psi: f.psi, jensenShannon: f.jensenShannon, ksPValue: f.ks?.pValue ?? null, reasons: f.reasons })),
      },
    });
  }
  return { ...report, unreadableLines: capture.unreadable };
}

export function monitorJobKind(deps: MonitorDeps): JobKind {
  return {
    name: MONITOR_KIND,
    parseRequest: (body) => parseMonitorRequest(body) as Json,
    plan: () => [{ name: 'main', handler: 'main' }],
    maxAttempts: 3,
    steps: {
      async main(ctx: StepContext): Promise<StepOutcome> {
        const request = parseMonitorRequest(ctx.job.request);
        if (request.task === 'baseline') {
          let baseline;
          try {
            baseline = await computeBaseline({ ...deps, progress: (done, total) => ctx.progress(done, total, 'baseline') }, request);
          } catch (error) {
            if (error instanceof BadRequestError || error instanceof NotFoundError) throw new JobStepError(error.message, { cause: error });
            throw error;
          }
          const key = await writeBaseline(deps.store, baseline);
          return { result: { baseline: key, rows: baseline.rows, inputs: baseline.inputs.length, predictions: baseline.predictions.length } };
        }
        const report = await runDrift(deps, request);
        const prefix = monitoringPrefix(report.model, report.version, report.date);
        return {
          result: {
            drift: report.drift,
            enough: report.enough,
            samples: report.samples,
            score: report.score,
            drifted: report.features.filter((f) => f.drifted).map((f) => f.name),
            report: `${prefix}report.json`,
            html: `${prefix}report.html`,
            unreadableLines: report.unreadableLines,
          },
        };
      },
    },
  };
}

/** Idempotency key of the scheduled drift job of one version and day. */
export const driftJobKey = (model: string, version: string, date: string) => `drift:${model}:${version}:${date}`;

/**
 * The scheduled run: a drift job for every version with a baseline and captured data on `date`
 * (yesterday, by default: a finished day). Keyed, so a schedule that fires twice submits each once.
 */
export async function scheduleDriftJobs(
  store: ModelRepository,
  submit: (request: MonitorRequest, key: string) => Promise<{ job: { id: string }; created: boolean }>,
  date: string,
): Promise<{ model: string; version: string; job: string; created: boolean }[]> {
  const submitted = [];
  for (const model of await store.listModels()) {
    for (const version of await store.listVersions(model)) {
      if ((await store.objects.firstKey(capturePrefix(model, version, date))) === undefined) continue;
      if ((await store.objects.firstKey(`models/${model}/${version}/monitoring/baseline.json`)) === undefined) continue;
      const { job, created } = await submit({ task: 'drift', model, version, date }, driftJobKey(model, version, date));
      submitted.push({ model, version, job: job.id, created });
    }
  }
  return submitted;
}

export const yesterday = (now: Date) => isoDate(new Date(now.getTime() - 86_400_000));
