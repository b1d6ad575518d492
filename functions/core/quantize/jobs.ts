/**
 * Quantization jobs: the record in DynamoDB (state changes by conditional writes), and the work
 * itself, which is idempotent end to end: the job id is a hash of the request, quantizing is
 * deterministic, and a version already registered with the same bytes and lineage is reused, so a
 * redelivered message or a retried request never registers a second version.
 */
import { createHash } from 'node:crypto';
import { GetCommand, PutCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import ort from '../onnx/ort.ts';
import { NotFoundError } from '../platform/errors.ts';
import { batchFeeds, loadDataset, matchDatasetToModel, readDatasetManifest } from '../evaluate/datasets.ts';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { pushModel } from '../registry/model-push.ts';
import type { ModelRepository } from '../registry/repository.ts';
import { assertValidName } from '../artifacts/names.ts';
import { sha256Hex } from '../platform/hash.ts';
import type { CalibrationBatches } from './calibration.ts';
import { summarizeByOpType, type OpTypeSummary, type QuantizeReport } from './common.ts';
import type { QuantizeRequest } from './options.ts';
import { quantizeModel } from './quantize-model.ts';

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed';

export interface QuantizeJob {
  job: string;
  model: string;
  sourceVersion: string;
  method: QuantizeRequest['method'];
  options: Record<string, unknown>;
  state: JobState;
  /** What the worker is doing now, for the CLI's progress line. */
  stage?: string;
  created: string;
  updated: string;
  resultVersion?: string;
  error?: string;
  report?: Omit<QuantizeReport, 'quantized' | 'skipped'> & { quantizedCount: number; byOpType: OpTypeSummary; skipped: QuantizeReport['skipped'] };
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

export class QuantizeJobs {
  readonly db: DynamoDBDocumentClient;
  readonly table: string;
  readonly now: () => Date;

  constructor(options: { db: DynamoDBDocumentClient; table: string; now?: () => Date }) {
    this.db = options.db;
    this.table = options.table;
    this.now = options.now ?? (() => new Date());
  }

  async get(job: string): Promise<QuantizeJob | undefined> {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: { job }, ConsistentRead: true }));
    return out.Item as QuantizeJob | undefined;
  }

  /** Creates the job, or returns the existing one (re-queued when it had failed). `created` says which. */
  async createOrGet(model: string, version: string, request: QuantizeRequest): Promise<{ job: QuantizeJob; created: boolean }> {
    const id = jobId(model, version, request);
    const now = this.now().toISOString();
    const job: QuantizeJob = { job: id, model, sourceVersion: version, method: request.method, options: request.options as Record<string, unknown>, state: 'queued', stage: 'queued', created: now, updated: now };
    try {
      await this.db.send(new PutCommand({ TableName: this.table, Item: job, ConditionExpression: 'attribute_not_exists(job)' }));
      return { job, created: true };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException || (error as Error).name === 'ConditionalCheckFailedException')) throw error;
    }
    const existing = (await this.get(id))!;
    if (existing.state !== 'failed') return { job: existing, created: false };
    const requeued = await this.transition(id, ['failed'], { state: 'queued', stage: 'queued', error: null });
    return { job: requeued ?? existing, created: requeued !== undefined };
  }

  /** Moves a job to new attributes if it is in one of `from`; undefined when it was not (someone else moved it). */
  async transition(id: string, from: JobState[], set: Partial<Record<keyof QuantizeJob, unknown>>): Promise<QuantizeJob | undefined> {
    const entries = Object.entries({ ...set, updated: this.now().toISOString() });
    const names: Record<string, string> = { '#state': 'state' };
    const values: Record<string, unknown> = {};
    const sets: string[] = [];
    const removes: string[] = [];
    entries.forEach(([key, value], i) => {
      names[`#k${i}`] = key;
      if (value === null) removes.push(`#k${i}`);
      else {
        values[`:v${i}`] = value;
        sets.push(`#k${i} = :v${i}`);
      }
    });
    from.forEach((state, i) => (values[`:from${i}`] = state));
    try {
      const out = await this.db.send(
        new UpdateCommand({
          TableName: this.table,
          Key: { job: id },
          UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
          ConditionExpression: `#state IN (${from.map((_, i) => `:from${i}`).join(', ')})`,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return out.Attributes as QuantizeJob;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException || (error as Error).name === 'ConditionalCheckFailedException') return undefined;
      throw error;
    }
  }
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

export interface RunJobDeps {
  store: ModelRepository;
  jobs: QuantizeJobs;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

/** Runs one job to completion. Safe to call again for the same job: a finished job is left as it is. */
export async function runQuantizeJob(deps: RunJobDeps, id: string, parse: (job: QuantizeJob) => QuantizeRequest): Promise<QuantizeJob> {
  assertValidName(id, 'job id');
  const current = await deps.jobs.get(id);
  if (!current) throw new NotFoundError(`no quantization job '${id}'`);
  if (current.state === 'succeeded' || current.state === 'failed') return current;
  // 'running' too: a worker that died mid-job leaves it running, and the redelivered message resumes it.
  const running = await deps.jobs.transition(id, ['queued', 'running'], { state: 'running', stage: 'reading the model' });
  if (!running) return (await deps.jobs.get(id))!;
  const stage = (text: string) => deps.jobs.transition(id, ['running'], { stage: text });
  try {
    const request = parse(running);
    const manifest = await deps.store.getManifest(running.model, running.sourceVersion);
    const { bytes } = await deps.store.getModelBytes(manifest);
    await stage(request.method === 'int8-static' ? 'calibrating and quantizing' : 'quantizing');
    const calibration = request.method === 'int8-static' ? datasetCalibration(deps.store, manifest, request.options.samples, request.options.batchSize) : undefined;
    const result = await quantizeModel(bytes, request, calibration);
    await stage('checking the result loads in onnxruntime');
    const session = await ort.InferenceSession.create(result.bytes, { logSeverityLevel: 3 });
    await session.release();
    await stage('registering the new version');
    const version = await registerOnce(deps.store, running, result.bytes, request);
    const { quantized, skipped, ...summary } = result.report;
    const done = await deps.jobs.transition(id, ['running'], {
      state: 'succeeded',
      stage: 'done',
      resultVersion: version,
      report: { ...summary, quantizedCount: quantized.length, byOpType: summarizeByOpType(result.report), skipped: skipped.slice(0, 100) },
    });
    deps.log?.('quantization registered', { job: id, model: running.model, version, bytes: result.bytes.byteLength });
    return done ?? (await deps.jobs.get(id))!;
  } catch (error) {
    const exposed = (error as { expose?: boolean }).expose || (error as Error).name === 'OnnxFormatError' || (error as Error).name === 'ZodError';
    const message = exposed ? (error as Error).message : `internal error (${(error as Error).name ?? 'Error'}); see the worker's logs`;
    deps.log?.('quantization failed', { job: id, error: (error as Error).message });
    const failed = await deps.jobs.transition(id, ['running'], { state: 'failed', stage: 'failed', error: message });
    return failed ?? (await deps.jobs.get(id))!;
  }
}

/** Registers the bytes as the model's next version, unless a version with these bytes and this lineage exists. */
async function registerOnce(store: ModelRepository, job: QuantizeJob, bytes: Uint8Array, request: QuantizeRequest): Promise<string> {
  const sha256 = sha256Hex(bytes);
  for (const version of (await store.listVersions(job.model)).reverse()) {
    const manifest = await store.getManifest(job.model, version).catch(() => undefined);
    if (manifest?.sha256 === sha256 && manifest.lineage?.sourceVersion === job.sourceVersion && manifest.lineage.method === request.method) return version;
  }
  const manifest = await pushModel(store, {
    name: job.model,
    bytes,
    notes: `${request.method} of version ${job.sourceVersion} (job ${job.job}); not routed until evaluated and promoted`,
    lineage: { sourceVersion: job.sourceVersion, method: request.method, options: { ...(request.options as Record<string, unknown>), job: job.job } },
  });
  return manifest.version;
}
