/**
 * Quantization as a kind of the job runtime (docs/jobs.md): one step that reads the source version,
 * quantizes it, checks the result loads and registers it as a new, unrouted version. The work is
 * idempotent end to end: the job id is a hash of the request, quantizing is deterministic, and a
 * version already registered with the same bytes and lineage is reused, so a redelivered step or a
 * retried request never registers a second version.
 */
import { createHash } from 'node:crypto';
import ort from '../onnx/ort.ts';
import { BadRequestError } from '../platform/errors.ts';
import { batchFeeds, loadDataset, matchDatasetToModel, readDatasetManifest } from '../evaluate/datasets.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { pushModel } from '../registry/model-push.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { NAME_PATTERN } from '../artifacts/names.ts';
import { sha256Hex } from '../platform/hash.ts';
import * as z from 'zod';
import { JobCancelledError, LeaseLostError, type JobKind, type TerminalRule } from '../jobs/kinds.ts';
import type { JobRecord, Json } from '../jobs/record.ts';
import type { CalibrationBatches } from './calibration.ts';
import { summarizeByOpType, type OpTypeSummary, type QuantizeReport } from './common.ts';
import { quantizeRequestSchema, type QuantizeRequest } from './options.ts';
import { quantizeModel } from './quantize-model.ts';

export const QUANTIZE_KIND = 'quantize';
const STEP = 'quantize';

/** The request as the schemas parse it; the worker re-parses the stored options and sees the same defaults. */
export function parseQuantizeRequest(body: unknown): QuantizeRequest {
  const parsed = quantizeRequestSchema.safeParse(body);
  if (!parsed.success) throw new BadRequestError(`invalid quantize request: ${z.prettifyError(parsed.error)}`);
  return parsed.data;
}

/** A job's request, as its record keeps it. */
const quantizeJobRequestSchema = z.strictObject({
  model: z.string().regex(NAME_PATTERN),
  sourceVersion: z.string().regex(NAME_PATTERN),
  method: z.string(),
  options: z.record(z.string(), z.unknown()),
});
type QuantizeJobRequest = z.infer<typeof quantizeJobRequestSchema>;

type QuantizeJobReport = Omit<QuantizeReport, 'quantized' | 'skipped'> & { quantizedCount: number; byOpType: OpTypeSummary; skipped: QuantizeReport['skipped'] };

/** What the step records: the registered version and its report, or why the model cannot be quantized. */
type QuantizeStepResult = { resultVersion: string; report: QuantizeJobReport } | { error: string };

/** `GET /v2/models/{name}/quantizations/{job}`, as before the job runtime: the request, the stage, the result. */
export interface QuantizeJob {
  job: string;
  model: string;
  sourceVersion: string;
  method: QuantizeRequest['method'];
  options: Record<string, unknown>;
  state: JobRecord['state'];
  /** What the worker is doing now, for the CLI's progress line. */
  stage?: string;
  created: string;
  updated: string;
  resultVersion?: string;
  error?: string;
  report?: QuantizeJobReport;
}

/** The same request always names the same job: sha256 over model, version, method and the parsed options. */
export function jobId(model: string, version: string, request: QuantizeRequest): string {
  const canonical = JSON.stringify([model, version, request.method, sortKeys(request.options)]);
  return `q-${createHash('sha256').update(canonical).digest('hex').slice(0, 20)}`;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
  return value;
}

/** The job's record in the shape the quantize routes have always answered with. */
export function quantizeJobView(record: JobRecord): QuantizeJob {
  const request = record.request as unknown as QuantizeJobRequest;
  const result = record.result as unknown as { resultVersion?: string; report?: QuantizeJobReport } | undefined;
  const stage = record.state === 'queued' ? 'queued' : record.state === 'succeeded' ? 'done' : record.state === 'running' ? record.progress?.stage : record.state;
  return {
    job: record.id,
    model: request.model,
    sourceVersion: request.sourceVersion,
    method: request.method as QuantizeRequest['method'],
    options: request.options,
    state: record.state,
    ...(stage !== undefined ? { stage } : {}),
    created: record.created,
    updated: record.updated,
    ...(result?.resultVersion !== undefined ? { resultVersion: result.resultVersion } : {}),
    ...(record.error !== undefined ? { error: record.error } : {}),
    ...(result?.report !== undefined ? { report: result.report } : {}),
  };
}

/** Calibration batches from a data set in the bucket (the evaluation data sets: JSONL rows or IDX images). */
export function datasetCalibration(store: ModelRepository, manifest: ModelManifest, samples: number, batchSize: number) {
  return async (name: string): Promise<CalibrationBatches> => {
    const datasetManifest = await readDatasetManifest(store, name);
    const { batchable } = matchDatasetToModel(datasetManifest, manifest);
    const dataset = await loadDataset(store, datasetManifest);
    const rows = Math.min(samples, datasetManifest.rows);
    const step = batchable ? batchSize : 1;
    return async function* () {
      for (let start = 0; start < rows; start += step) yield batchFeeds(dataset, start, Math.min(rows, start + step));
    };
  };
}

/** A failure that is the model's or the request's, not the worker's: the job fails with it, unretried. */
function isRequestError(error: unknown): boolean {
  return Boolean((error as { expose?: boolean }).expose) || (error as Error).name === 'OnnxFormatError' || (error as Error).name === 'ZodError';
}

/** A quantize step that ended with the model's or the request's error fails the job with that reason. */
const quantizeTerminalRule: TerminalRule = (_job, steps) => {
  const result = steps.find((s) => s.name === STEP)?.result as QuantizeStepResult | undefined;
  if (!result) return { state: 'failed', error: 'the quantize step recorded no result' };
  if ('error' in result) return { state: 'failed', error: result.error };
  return { state: 'succeeded', result: result as unknown as Json };
};

export interface QuantizeKindDeps {
  store: ModelRepository;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export function createQuantizeKind(deps: QuantizeKindDeps): JobKind {
  return {
    name: QUANTIZE_KIND,
    parseRequest(body) {
      const parsed = quantizeJobRequestSchema.safeParse(body);
      if (!parsed.success) throw new BadRequestError(`invalid quantize job: ${z.prettifyError(parsed.error)}`);
      parseQuantizeRequest({ method: parsed.data.method, options: parsed.data.options });
      return parsed.data as Json;
    },
    plan: () => [{ name: STEP, handler: STEP }],
    // A worker that dies (or a transient AWS error) is retried; a model that cannot be quantized is not.
    maxAttempts: 3,
    terminal: quantizeTerminalRule,
    steps: {
      async [STEP](ctx) {
        const job = ctx.job.request as unknown as QuantizeJobRequest;
        const stages = 4;
        try {
          const request = parseQuantizeRequest({ method: job.method, options: job.options });
          await ctx.progress(0, stages, 'reading the model');
          const manifest = await deps.store.getManifest(job.model, job.sourceVersion);
          const { bytes } = await deps.store.getModelBytes(manifest);
          await ctx.progress(1, stages, request.method === 'int8-static' ? 'calibrating and quantizing' : 'quantizing');
          const calibration = request.method === 'int8-static' ? datasetCalibration(deps.store, manifest, request.options.samples, request.options.batchSize) : undefined;
          const result = await quantizeModel(bytes, request, calibration);
          await ctx.progress(2, stages, 'checking the result loads in onnxruntime');
          const session = await ort.InferenceSession.create(result.bytes, { logSeverityLevel: 3 });
          await session.release();
          await ctx.progress(3, stages, 'registering the new version');
          const version = await registerOnce(deps.store, ctx.job.id, job, result.bytes, request);
          const { quantized, skipped, ...summary } = result.report;
          deps.log?.('quantization registered', { job: ctx.job.id, model: job.model, version, bytes: result.bytes.byteLength });
          const done: QuantizeStepResult = {
            resultVersion: version,
            report: { ...summary, quantizedCount: quantized.length, byOpType: summarizeByOpType(result.report), skipped: skipped.slice(0, 100) },
          };
          return { result: done as unknown as Json };
        } catch (error) {
          if (error instanceof JobCancelledError || error instanceof LeaseLostError || !isRequestError(error)) throw error;
          deps.log?.('quantization refused', { job: ctx.job.id, error: (error as Error).message });
          return { result: { error: (error as Error).message } };
        }
      },
    },
  };
}

/** Registers the bytes as the model's next version, unless a version with these bytes and this lineage exists. */
async function registerOnce(store: ModelRepository, id: string, job: QuantizeJobRequest, bytes: Uint8Array, request: QuantizeRequest): Promise<string> {
  const sha256 = sha256Hex(bytes);
  for (const version of (await store.listVersions(job.model)).reverse()) {
    const manifest = await store.getManifest(job.model, version).catch(() => undefined);
    if (manifest?.sha256 === sha256 && manifest.lineage?.sourceVersion === job.sourceVersion && manifest.lineage.method === request.method) return version;
  }
  const manifest = await pushModel(store, {
    name: job.model,
    bytes,
    notes: `${request.method} of version ${job.sourceVersion} (job ${id}); not routed until evaluated and promoted`,
    lineage: { sourceVersion: job.sourceVersion, method: request.method, options: { ...(request.options as Record<string, unknown>), job: id } },
  });
  return manifest.version;
}
