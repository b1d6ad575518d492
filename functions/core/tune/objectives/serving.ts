/**
 * The serving objective: for one registered version, a space over how it is served (quantization
 * method and options, onnxruntime's graph optimization level, intra-op threads, batch size, the
 * tier's memory). Each trial builds the variant (or reuses one an earlier trial built, by the hash of
 * its method and options), measures latency and throughput on the worker, accuracy on a data set
 * read by the evaluation's readers, its size, and the cost of a million inferences on Lambda.
 */
import { createHash } from 'node:crypto';
import * as z from 'zod';
import ort, { type InferenceSession, type Tensor } from '../../onnx/ort.ts';
import { batchFeeds, loadDataset, matchDatasetToModel, readDatasetManifest, type LoadedDataset } from '../../evaluate/datasets.ts';
import { outputValues } from '../../evaluate/runner.ts';
import { quantileSorted } from '../../evaluate/metrics.ts';
import { keys } from '../../artifacts/keys.ts';
import type { ModelManifest } from '../../artifacts/manifest.ts';
import { pushModel } from '../../registry/model-push.ts';
import type { ModelRepository } from '../../registry/repository.ts';
import { NAME_PATTERN, VERSION_PATTERN } from '../../artifacts/names.ts';
import { datasetCalibration } from '../../quantize/jobs.ts';
import { quantizeRequestSchema, type QuantizeRequest } from '../../quantize/options.ts';
import { quantizeModel } from '../../quantize/quantize-model.ts';
import type { Json } from '../../jobs/record.ts';
import type { Configuration } from '../space.ts';
import { checkLabelledReferences, zodRefusal, type ObjectiveContext, type ObjectiveDefinition, type PreparedObjective } from './objective.ts';

/** AWS Lambda on x86 in us-east-1 (aws.amazon.com/lambda/pricing): duration per GB-second, and per request. */
export const LAMBDA_PRICE = { usdPerGbSecond: 0.0000166667, usdPerMillionRequests: 0.2, region: 'us-east-1', architecture: 'x86_64' } as const;

export const SERVING_PARAMETERS = ['quantization', 'perChannel', 'reduceRange', 'calibration', 'graphOptimizationLevel', 'intraOpThreads', 'batchSize', 'memoryMiB'] as const;
export const SERVING_METRICS = ['p50_ms', 'p99_ms', 'mean_ms', 'throughput', 'accuracy', 'accuracy_drop', 'size_mb', 'cost_per_million', 'memory_mib'] as const;

const servingOptionsSchema = z.strictObject({
  model: z.string().regex(NAME_PATTERN, 'a model name: [a-z0-9][a-z0-9._-]{0,63}'),
  version: z.string().regex(VERSION_PATTERN, 'a version number'),
  /** Labelled rows for accuracy (and calibration for int8-static). */
  dataset: z.string().regex(NAME_PATTERN, 'a data set name: [a-z0-9][a-z0-9._-]{0,63}'),
  /** Rows of the data set scored for accuracy (the first N). */
  accuracyRows: z.number().int().min(1).max(100_000).default(1000),
  /** Timed requests per trial, after `warmupRuns` untimed ones. */
  latencyRuns: z.number().int().min(5).max(10_000).default(100),
  /**
   * Least time the timed requests span, in seconds (more requests than `latencyRuns` when they are
   * fast): a tail measured over a window of a tenth of a second says whether the machine's other work
   * struck in that window, over seconds it says how often it strikes.
   */
  latencySeconds: z.number().min(0).max(60).default(0),
  warmupRuns: z.number().int().min(0).max(1000).default(5),
});
export type ServingOptions = z.infer<typeof servingOptionsSchema>;

/** A trial's configuration with every parameter the space left out at its default. */
export interface ServingConfiguration {
  quantization: 'none' | QuantizeRequest['method'];
  perChannel: boolean;
  /** Undefined: the quantization method's own default (7-bit for int8-dynamic, 8-bit for int8-static). */
  reduceRange?: boolean;
  calibration: 'minmax' | 'percentile' | 'entropy';
  graphOptimizationLevel: 'disabled' | 'basic' | 'extended' | 'all';
  intraOpThreads: number;
  batchSize: number;
  memoryMiB: number;
}

const configurationSchema = z.strictObject({
  quantization: z.enum(['none', 'int8-dynamic', 'int8-static', 'fp16']).default('none'),
  perChannel: z.boolean().default(true),
  reduceRange: z.boolean().optional(),
  calibration: z.enum(['minmax', 'percentile', 'entropy']).default('minmax'),
  graphOptimizationLevel: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
  intraOpThreads: z.number().int().min(1).max(64).default(1),
  batchSize: z.number().int().min(1).max(4096).default(1),
  /** Lambda's range. */
  memoryMiB: z.number().int().min(128).max(10_240).default(1024),
});

export function servingConfiguration(params: Configuration): ServingConfiguration {
  const parsed = configurationSchema.safeParse(params);
  if (!parsed.success) throw zodRefusal('serving configuration', parsed.error);
  return parsed.data;
}

/** The quantization a configuration asks for, as the quantize engine takes it; undefined for none. */
export function quantizeRequestOf(c: ServingConfiguration, dataset: string): QuantizeRequest | undefined {
  switch (c.quantization) {
    case 'none':
      return undefined;
    case 'int8-dynamic':
      return quantizeRequestSchema.parse({ method: 'int8-dynamic', options: { perChannel: c.perChannel, ...(c.reduceRange === undefined ? {} : { reduceRange: c.reduceRange }) } });
    case 'int8-static':
      return quantizeRequestSchema.parse({ method: 'int8-static', options: { dataset, perChannel: c.perChannel, ...(c.reduceRange === undefined ? {} : { reduceRange: c.reduceRange }), calibration: c.calibration } });
    case 'fp16':
      return quantizeRequestSchema.parse({ method: 'fp16', options: {} });
  }
}

/**
 * Cost of a million inferences on Lambda at `memoryMiB`, each request carrying `batchSize` rows and
 * taking `msPerRequest`: duration at the GB-second price plus the request charge.
 */
export function costPerMillion(memoryMiB: number, msPerRequest: number, batchSize: number): number {
  const requests = 1e6 / batchSize;
  const gbSeconds = (memoryMiB / 1024) * (msPerRequest / 1000) * requests;
  return gbSeconds * LAMBDA_PRICE.usdPerGbSecond + (requests / 1e6) * LAMBDA_PRICE.usdPerMillionRequests;
}

const variantHash = (request: QuantizeRequest | undefined) => createHash('sha256').update(JSON.stringify(request ?? 'none')).digest('hex').slice(0, 24);

/** Accuracy in percent of the first output's argmax (or its labels) on rows [0, rows), `batch` rows a run. */
export async function classificationAccuracy(session: InferenceSession, dataset: LoadedDataset, rows: number, batch: number): Promise<number> {
  const labels = dataset.labels!;
  const output = session.outputNames[0]!;
  let correct = 0;
  for (let start = 0; start < rows; start += batch) {
    const end = Math.min(rows, start + batch);
    const out = await session.run(batchFeeds(dataset, start, end), [output]);
    const { values, labels: isLabel } = outputValues(out[output] as Tensor);
    const width = values.length / (end - start);
    for (let r = 0; r < end - start; r++) {
      let predicted = 0;
      if (isLabel) predicted = values[r]!;
      else for (let c = 1; c < width; c++) if (values[r * width + c]! > values[r * width + predicted]!) predicted = c;
      if (predicted === labels[start + r]) correct++;
    }
  }
  return (100 * correct) / rows;
}

export interface LatencyMeasurement {
  /** Timed requests. */
  runs: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  /** Rows per second over the timed runs. */
  throughput: number;
}

/**
 * Times `runs` requests of `batch` rows each (cycling through the data set) after `warmup` untimed
 * ones, and more until the timed ones span `minMs` milliseconds of `now`.
 */
export async function measureLatency(session: InferenceSession, dataset: LoadedDataset, batch: number, runs: number, warmup: number, minMs = 0, now: () => number = () => performance.now()): Promise<LatencyMeasurement> {
  const rows = dataset.manifest.rows;
  const feedsAt = (i: number) => {
    const start = (i * batch) % Math.max(1, rows - batch + 1);
    return batchFeeds(dataset, start, start + batch);
  };
  for (let i = 0; i < warmup; i++) await session.run(feedsAt(i));
  const ms: number[] = [];
  const first = now();
  for (let i = 0; i < runs || now() - first < minMs; i++) {
    const feeds = feedsAt(i);
    const started = now();
    await session.run(feeds);
    ms.push(now() - started);
  }
  const total = ms.reduce((a, b) => a + b, 0);
  const sorted = Float64Array.from(ms).sort();
  return { runs: ms.length, p50Ms: quantileSorted(sorted, 0.5), p99Ms: quantileSorted(sorted, 0.99), meanMs: total / ms.length, throughput: (ms.length * batch * 1000) / total };
}

/**
 * Whether a key exists, by listing it: a GetObject of a missing key is a 403, not a 404, to a role
 * without s3:ListBucket, and the worker's ListBucket is held to its jobs/ prefix.
 */
async function objectExists(store: ModelRepository, key: string): Promise<boolean> {
  return (await store.objects.firstKey(key)) === key;
}

/** Options checked at submission; the model, version and data set are read when the first trial runs. */
function parseServingOptions(input: unknown): ServingOptions {
  const parsed = servingOptionsSchema.safeParse(input);
  if (!parsed.success) throw zodRefusal('serving objective', parsed.error);
  return parsed.data;
}

async function readModel(store: ModelRepository, options: ServingOptions): Promise<{ manifest: ModelManifest; bytes: Uint8Array; dataset: LoadedDataset; batchable: boolean }> {
  const manifest = await store.getManifest(options.model, options.version);
  const datasetManifest = await readDatasetManifest(store, options.dataset);
  const { batchable } = matchDatasetToModel(datasetManifest, manifest);
  const [{ bytes }, dataset] = await Promise.all([store.getModelBytes(manifest), loadDataset(store, datasetManifest)]);
  return { manifest, bytes, dataset, batchable };
}

export const servingObjective: ObjectiveDefinition = {
  type: 'serving',
  metrics: SERVING_METRICS,
  parameters: SERVING_PARAMETERS,
  parseOptions: (input) => parseServingOptions(input) as unknown as Json,
  async checkReferences(raw, store) {
    const options = parseServingOptions(raw);
    await checkLabelledReferences(store, options, (labels) => `the serving objective measures accuracy on labelled rows; data set '${options.dataset}' has ${labels === 'target' ? 'targets' : 'no labels'}`);
  },
  defaultSpace: () => ({
    parameters: {
      quantization: { type: 'categorical', choices: ['none', 'int8-dynamic', 'fp16'] },
      graphOptimizationLevel: { type: 'categorical', choices: ['basic', 'all'] },
      intraOpThreads: { type: 'categorical', choices: [1, 2] },
      batchSize: { type: 'categorical', choices: [1, 8, 32] },
      memoryMiB: { type: 'categorical', choices: [1024, 2048] },
    },
  }),

  async prepare(raw, context: ObjectiveContext): Promise<PreparedObjective> {
    const options = parseServingOptions(raw);
    const source = await readModel(context.store, options);
    const rows = Math.min(options.accuracyRows, source.dataset.manifest.rows);
    const variants = new Map<string, Promise<Uint8Array>>();
    let baseline: Promise<number> | undefined;

    /** The variant's bytes: built once per study (kept in the bucket under the job), then reused. */
    const variant = (request: QuantizeRequest | undefined): Promise<Uint8Array> => {
      if (!request) return Promise.resolve(source.bytes);
      const key = keys.tuneVariant(context.job, variantHash(request));
      let built = variants.get(key);
      if (!built) {
        built = (async () => {
          if (await objectExists(context.store, key)) return (await context.store.getObjectBytes(key))!;
          const calibration = request.method === 'int8-static' ? datasetCalibration(context.store, source.manifest, request.options.samples, request.options.batchSize) : undefined;
          const { bytes } = await quantizeModel(source.bytes, request, calibration);
          await context.store.putObjectBytes(key, bytes);
          return bytes;
        })();
        built.catch(() => variants.delete(key));
        variants.set(key, built);
      }
      return built;
    };

    const accuracyOf = async (bytes: Uint8Array, level: ServingConfiguration['graphOptimizationLevel'], threads: number, batch: number) => {
      const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: level, intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', logSeverityLevel: 3 });
      try {
        return await classificationAccuracy(session, source.dataset, rows, batch);
      } finally {
        await session.release();
      }
    };

    return {
      async run(params) {
        const c = servingConfiguration(params);
        const batch = source.batchable ? c.batchSize : 1;
        const request = quantizeRequestOf(c, options.dataset);
        const bytes = await variant(request);
        baseline ??= accuracyOf(source.bytes, 'all', 1, source.batchable ? 32 : 1);
        const session = await ort.InferenceSession.create(bytes, {
          graphOptimizationLevel: c.graphOptimizationLevel,
          intraOpNumThreads: c.intraOpThreads,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          logSeverityLevel: 3,
        });
        try {
          const latency = await measureLatency(session, source.dataset, batch, options.latencyRuns, options.warmupRuns, options.latencySeconds * 1000);
          const accuracy = await classificationAccuracy(session, source.dataset, rows, source.batchable ? 32 : 1);
          return {
            metrics: {
              p50_ms: latency.p50Ms,
              p99_ms: latency.p99Ms,
              mean_ms: latency.meanMs,
              throughput: latency.throughput,
              accuracy,
              accuracy_drop: (await baseline) - accuracy,
              size_mb: bytes.byteLength / 1e6,
              cost_per_million: costPerMillion(c.memoryMiB, latency.meanMs, batch),
              memory_mib: c.memoryMiB,
            },
          };
        } finally {
          await session.release();
        }
      },
    };
  },

  async registerWinner(raw, trial, context) {
    const options = parseServingOptions(raw);
    const c = servingConfiguration(trial.params);
    const request = quantizeRequestOf(c, options.dataset);
    const bytes = request ? await context.store.getObjectBytes(keys.tuneVariant(context.job, variantHash(request))) : undefined;
    if (request && !bytes) throw new Error(`the winning variant of study '${context.study}' is missing from the bucket`);
    const source = await context.store.getManifest(options.model, options.version);
    // Registering the source's own bytes again would find the same file: the winner is then the source
    // with a serving configuration, recorded on the study, and no new version is made.
    if (!bytes) return { model: options.model, version: options.version };
    for (const version of (await context.store.listVersions(options.model)).reverse()) {
      const manifest = await context.store.getManifest(options.model, version).catch(() => undefined);
      if (manifest?.lineage?.method === 'tune' && manifest.lineage.options?.study === context.study) return { model: options.model, version };
    }
    const manifest = await pushModel(context.store, {
      name: options.model,
      bytes,
      tier: source.tier,
      notes: `serving search winner of study ${context.study} (trial ${trial.number}); not routed until evaluated and promoted`,
      lineage: { sourceVersion: options.version, method: 'tune', options: { study: context.study, job: context.job, trial: trial.number, ...c } },
    });
    return { model: options.model, version: manifest.version };
  },
};
