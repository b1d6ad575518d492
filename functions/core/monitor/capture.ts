import { randomBytes } from 'node:crypto';
import type { ModelManifest } from '../artifacts/manifest.ts';
import { inputFeatures, predictionFeatures, type FeatureColumn, type TensorLike } from './features.ts';
import { defaultCapture, effectiveMonitoring, type CaptureConfig, type MonitoringConfig } from './policy.ts';

/**
 * Data capture: a sampled share of a model's requests and responses, written to
 * `capture/<model>/<version>/<date>/<time>-<id>.jsonl` in batches, off the response path. `offer` is
 * synchronous and never throws: the request it came from is already answered, and whatever happens
 * to its sample (the config cannot be read, the bucket refuses the write) is counted and logged,
 * never passed back. On the response path `offer` only decides whether the request is sampled (the
 * model's config cached, resolved) and, if it is, keeps a reference to its tensors; the record
 * (features, JSON) is made in a later turn of the event loop (setImmediate:
 * after the handler has returned its answer, or while a next request waits on onnxruntime's
 * threads). Batches are written when one holds `maxRecords` records or `maxBytes`, or when its
 * oldest record is `maxAgeMs` old at the next offer; `flush()` writes what is held (the local stack
 * and tests; Lambda has no shutdown hook a function can rely on, so up to one batch per environment
 * can be lost when it is reclaimed: docs/monitoring.md).
 */
export interface CapturedTensor {
  name: string;
  datatype: string;
  shape: number[];
  /** tensors: whole */
  data?: unknown[];
  /** tensors: summary (the drift job's features of each row) */
  features?: { name: string; kind: FeatureColumn['kind']; values: (number | string)[] }[];
}

export interface CaptureRecord {
  at: string;
  model: string;
  version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  inputs: CapturedTensor[];
  outputs: CapturedTensor[];
}

export interface CaptureOffer {
  model: string;
  version: string;
  manifest: Pick<ModelManifest, 'name' | 'version'> & { monitoring?: unknown };
  request: { id?: string | undefined; parameters?: Record<string, unknown> | undefined; inputs: readonly TensorLike[] };
  outputs: readonly TensorLike[];
}

export interface CaptureWriterOptions {
  /** Writes one object (ModelStore.putObjectBytes). */
  put(key: string, body: Uint8Array): Promise<unknown>;
  /** The model-wide monitoring config (cached by the caller or here, see `configTtlMs`). */
  modelConfig(model: string): Promise<MonitoringConfig>;
  /** Called once per lost record batch, unreadable config or request that could not be recorded; never throws. */
  onError(what: 'write' | 'config' | 'record', error: Error, fields: Record<string, unknown>): void;
  /** Called per record written. */
  onWritten?(model: string, version: string, records: number): void;
  random?: () => number;
  now?: () => number;
  maxRecords?: number;
  maxBytes?: number;
  maxAgeMs?: number;
  configTtlMs?: number;
}

interface Batch {
  model: string;
  version: string;
  date: string;
  lines: string[];
  bytes: number;
  since: number;
}

const two = (n: number) => String(n).padStart(2, '0');

export const captureKey = (model: string, version: string, at: Date, id: string) =>
  `capture/${model}/${version}/${at.toISOString().slice(0, 10)}/${two(at.getUTCHours())}${two(at.getUTCMinutes())}${two(at.getUTCSeconds())}-${id}.jsonl`;

export const capturePrefix = (model: string, version: string, date: string) => `capture/${model}/${version}/${date}/`;

/** The captured form of a tensor, by option. */
function captured(tensor: TensorLike, tensors: CaptureConfig['tensors'], features: (t: TensorLike) => FeatureColumn[]): CapturedTensor {
  const base = { name: tensor.name, datatype: tensor.datatype, shape: [...tensor.shape] };
  if (tensors === 'whole') return { ...base, data: Array.from(tensor.data as ArrayLike<unknown>, (v) => (typeof v === 'bigint' ? v.toString() : v)) };
  return { ...base, features: features(tensor).map((f) => ({ name: f.name, kind: f.kind, values: f.values })) };
}

/** The record of one request as the config says: tensors whole or summarised, fields dropped. */
export function captureRecord(offer: CaptureOffer, config: CaptureConfig, at: Date): CaptureRecord {
  const dropped = new Set(config.dropFields);
  return {
    at: at.toISOString(),
    model: offer.model,
    version: offer.version,
    ...(offer.request.id !== undefined && !dropped.has('id') ? { id: offer.request.id } : {}),
    ...(offer.request.parameters !== undefined && !dropped.has('parameters') ? { parameters: offer.request.parameters } : {}),
    inputs: offer.request.inputs.filter((t) => !dropped.has(`inputs.${t.name}`)).map((t) => captured(t, config.tensors, inputFeatures)),
    outputs: offer.outputs.filter((t) => !dropped.has(`outputs.${t.name}`)).map((t) => captured(t, config.tensors, predictionFeatures)),
  };
}

interface Sampled {
  offer: CaptureOffer;
  config: CaptureConfig;
  at: number;
}

export class CaptureWriter {
  private readonly options: CaptureWriterOptions;
  private readonly batches = new Map<string, Batch>();
  private readonly configs = new Map<string, { at: number; config: Promise<MonitoringConfig>; resolved?: MonitoringConfig }>();
  /** Each version's effective capture config, by the model-wide config and the manifest it came from. */
  private readonly effective = new WeakMap<object, { modelWide: MonitoringConfig; config: CaptureConfig }>();
  private readonly writes = new Set<Promise<void>>();
  /** Sampled requests not yet recorded (the next setImmediate turn records them). */
  private sampled: Sampled[] = [];
  private scheduled = false;
  private readonly random: () => number;
  private readonly now: () => number;

  constructor(options: CaptureWriterOptions) {
    this.options = options;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
  }

  /** Samples one answered request; returns at once, never throws. */
  offer(offer: CaptureOffer): void {
    try {
      const modelWide = this.cachedConfig(offer.model);
      if (modelWide) this.decide(offer, modelWide);
      else {
        // The model's config is being read (first request, or its period ran out): decide when it is in.
        const config = this.captureConfig(offer.model);
        this.track(config.then((resolved) => this.decide(offer, resolved)).catch((error: Error) => this.options.onError('config', error, { model: offer.model, version: offer.version })));
      }
      if (this.batches.size > 0) this.flushAged();
    } catch (error) {
      this.options.onError('config', error as Error, { model: offer.model, version: offer.version });
    }
  }

  /** Records what is sampled, writes every batch held now, and waits for writes in flight. */
  async flush(): Promise<void> {
    for (;;) {
      this.record();
      if (this.writes.size > 0) {
        await Promise.all([...this.writes]);
        continue;
      }
      if (this.batches.size === 0 && this.sampled.length === 0) return;
      for (const key of [...this.batches.keys()]) this.write(key);
    }
  }

  private decide(offer: CaptureOffer, modelWide: MonitoringConfig): void {
    const config = this.effectiveCapture(modelWide, offer.manifest);
    if (!config.enabled || config.samplingRate <= 0 || this.random() >= config.samplingRate) return;
    // The tensors by reference: nothing writes to a request's or a response's tensors once it is answered.
    this.sampled.push({ offer, config, at: this.now() });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.record());
    }
  }

  /** The manifest's sections over the model-wide ones, worked out once per manifest (a zod parse). */
  private effectiveCapture(modelWide: MonitoringConfig, manifest: CaptureOffer['manifest']): CaptureConfig {
    const cached = this.effective.get(manifest);
    if (cached && cached.modelWide === modelWide) return cached.config;
    const config = effectiveMonitoring(modelWide, manifest).capture ?? defaultCapture();
    this.effective.set(manifest, { modelWide, config });
    return config;
  }

  /** Makes the records of the sampled requests and adds them to their batches. */
  private record(): void {
    this.scheduled = false;
    const sampled = this.sampled;
    if (sampled.length === 0) return;
    this.sampled = [];
    for (const { offer, config, at } of sampled) {
      try {
        const when = new Date(at);
        const line = JSON.stringify(captureRecord(offer, config, when));
        const date = when.toISOString().slice(0, 10);
        const key = `${offer.model}/${offer.version}/${date}`;
        let batch = this.batches.get(key);
        if (!batch) {
          batch = { model: offer.model, version: offer.version, date, lines: [], bytes: 0, since: at };
          this.batches.set(key, batch);
        }
        batch.lines.push(line);
        batch.bytes += Buffer.byteLength(line) + 1;
        if (batch.lines.length >= (this.options.maxRecords ?? 200) || batch.bytes >= (this.options.maxBytes ?? 4 * 1024 * 1024)) this.write(key);
      } catch (error) {
        this.options.onError('record', error as Error, { model: offer.model, version: offer.version });
      }
    }
    this.flushAged();
  }

  private track(promise: Promise<void>): void {
    this.writes.add(promise);
    void promise.finally(() => this.writes.delete(promise));
  }

  /** The model-wide config when it has been read and is still within its period. */
  private cachedConfig(model: string): MonitoringConfig | undefined {
    const cached = this.configs.get(model);
    return cached?.resolved && this.now() - cached.at < (this.options.configTtlMs ?? 30_000) ? cached.resolved : undefined;
  }

  /**
   * The model-wide config, read at most once per `configTtlMs`. One that cannot be read is reported
   * once per period and taken as no capture (the version's manifest may still enable it).
   */
  private captureConfig(model: string): Promise<MonitoringConfig> {
    const ttl = this.options.configTtlMs ?? 30_000;
    const cached = this.configs.get(model);
    if (cached && this.now() - cached.at < ttl) return cached.config;
    const entry: { at: number; config: Promise<MonitoringConfig>; resolved?: MonitoringConfig } = { at: this.now(), config: Promise.resolve({}) };
    entry.config = this.options.modelConfig(model).then(
      (config) => (entry.resolved = config),
      (error: Error) => {
        this.options.onError('config', error, { model });
        return (entry.resolved = {});
      },
    );
    this.configs.set(model, entry);
    return entry.config;
  }

  private flushAged(): void {
    const maxAge = this.options.maxAgeMs ?? 60_000;
    for (const [key, batch] of this.batches) if (this.now() - batch.since >= maxAge) this.write(key);
  }

  private write(key: string): void {
    const batch = this.batches.get(key);
    if (!batch) return;
    this.batches.delete(key);
    const body = Buffer.from(`${batch.lines.join('\n')}\n`);
    const objectKey = captureKey(batch.model, batch.version, new Date(this.now()), randomBytes(6).toString('hex'));
    const written = this.options.put(objectKey, body).then(
      () => this.options.onWritten?.(batch.model, batch.version, batch.lines.length),
      (error: Error) => this.options.onError('write', error, { model: batch.model, version: batch.version, records: batch.lines.length, key: objectKey }),
    );
    this.track(written);
  }
}
