import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { quantileSorted } from '../evaluate/metrics.ts';
import { traceClient } from '../platform/tracing.ts';
import type { MetricsSource, VersionFigures } from './guard.ts';

/**
 * The metrics the handlers emit, read back. In AWS, CloudWatch has them (from the EMF lines in the
 * functions' logs). On one machine, the local stack parses the same EMF lines from the functions'
 * output and keeps them in a JSON-lines file (`.local/metrics.jsonl`), which `mass monitor` and the
 * local canary guard read: the figures come from the very lines CloudWatch would have turned into metrics.
 */
export const LATENCY_METRIC = 'InferenceLatency';
export const FAILURE_METRIC = 'InferenceRuntimeFailures';

/** One metric of one EMF record: its values and every dimension of the record. */
export interface EmfSample {
  at: number;
  namespace: string;
  name: string;
  unit: string;
  values: number[];
  /** The dimension names CloudWatch would key the metric by, one list per dimension set. */
  dimensionSets: string[][];
  dimensions: Record<string, string>;
}

interface EmfRecord {
  _aws?: { Timestamp?: number; CloudWatchMetrics?: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit?: string }[] }[] };
  [key: string]: unknown;
}

/** The metrics of one line of output, or none when the line is not an EMF record. */
export function parseEmfLine(line: string): EmfSample[] {
  const start = line.indexOf('{"_aws"');
  if (start < 0) return [];
  let record: EmfRecord;
  try {
    record = JSON.parse(line.slice(start)) as EmfRecord;
  } catch {
    return []; // output that merely contains the marker; not a record
  }
  const directives = record._aws?.CloudWatchMetrics;
  if (!Array.isArray(directives)) return [];
  const samples: EmfSample[] = [];
  for (const directive of directives) {
    const names = new Set(directive.Dimensions.flat());
    const dimensions = Object.fromEntries([...names].filter((n) => typeof record[n] === 'string').map((n) => [n, record[n] as string]));
    for (const metric of directive.Metrics) {
      const raw = record[metric.Name];
      const values = (Array.isArray(raw) ? raw : [raw]).filter((v): v is number => typeof v === 'number');
      if (values.length === 0) continue;
      samples.push({ at: record._aws?.Timestamp ?? Date.now(), namespace: directive.Namespace, name: metric.Name, unit: metric.Unit ?? 'None', values, dimensionSets: directive.Dimensions, dimensions });
    }
  }
  return samples;
}

/** Whether a sample carries a series keyed by exactly these dimensions (besides `service`). */
export function hasSeries(sample: EmfSample, keys: readonly string[]): boolean {
  return sample.dimensionSets.some((set) => set.filter((d) => d !== 'service').sort().join(',') === [...keys].sort().join(','));
}

/** A version's figures from samples (requests: answered plus failed; p99 of the answered ones). */
export function figuresOf(samples: readonly EmfSample[], model: string, version: string, fromMs: number, toMs: number): VersionFigures {
  const latencies: number[] = [];
  let errors = 0;
  for (const s of samples) {
    if (s.at < fromMs || s.at > toMs || s.dimensions.model !== model || s.dimensions.version !== version || !hasSeries(s, ['model', 'version'])) continue;
    if (s.name === LATENCY_METRIC) latencies.push(...s.values);
    else if (s.name === FAILURE_METRIC) errors += s.values.reduce((a, b) => a + b, 0);
  }
  latencies.sort((a, b) => a - b);
  const requests = latencies.length + errors;
  return { requests, errors, errorRate: requests ? errors / requests : 0, p99Ms: latencies.length ? quantileSorted(latencies, 0.99) : null };
}

/** The local stack's metrics file: parsed EMF samples appended as JSON lines. */
export class LocalMetricsStore implements MetricsSource {
  readonly file: string;
  private pending = '';
  private writing: Promise<void> = Promise.resolve();

  constructor(file: string) {
    this.file = file;
  }

  /** Takes a chunk of a function's output; complete lines that are EMF records are kept. */
  ingest(chunk: string): void {
    const text = this.pending + chunk;
    const lines = text.split('\n');
    this.pending = lines.pop() ?? '';
    const samples = lines.flatMap(parseEmfLine);
    if (samples.length) this.append(samples);
  }

  append(samples: readonly EmfSample[]): Promise<void> {
    const body = samples.map((s) => JSON.stringify(s)).join('\n') + '\n';
    this.writing = this.writing.then(async () => {
      await mkdir(dirname(this.file), { recursive: true });
      await appendFile(this.file, body);
    });
    return this.writing;
  }

  /** Waits for appends in flight. */
  settled(): Promise<void> {
    return this.writing;
  }

  async samples(sinceMs = 0): Promise<EmfSample[]> {
    await this.writing;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as EmfSample)
      .filter((s) => s.at >= sinceMs);
  }

  async figures(model: string, version: string, fromMs: number, toMs: number): Promise<VersionFigures> {
    return figuresOf(await this.samples(fromMs), model, version, fromMs, toMs);
  }
}

/**
 * CloudWatch's figures of a version: p99 and count of InferenceLatency and the sum of
 * InferenceRuntimeFailures by service, model and version over the window, in one GetMetricData.
 * The client is loaded when first used (@aws-sdk/client-cloudwatch).
 */
export class CloudWatchMetricsSource implements MetricsSource {
  private readonly namespace: string;
  private readonly service: string;
  private readonly client: Promise<{ send(command: unknown): Promise<unknown> }>;
  private readonly sdk = import('@aws-sdk/client-cloudwatch');

  constructor(options: { namespace: string; service: string; region?: string; endpoint?: string }) {
    this.namespace = options.namespace;
    this.service = options.service;
    this.client = this.sdk.then(({ CloudWatchClient }) => traceClient(new CloudWatchClient({ ...(options.region ? { region: options.region } : {}), ...(options.endpoint ? { endpoint: options.endpoint } : {}) })));
  }

  async figures(model: string, version: string, fromMs: number, toMs: number): Promise<VersionFigures> {
    const { GetMetricDataCommand } = await this.sdk;
    const period = Math.max(60, Math.ceil((toMs - fromMs) / 60_000) * 60);
    const metric = (name: string) => ({
      Namespace: this.namespace,
      MetricName: name,
      Dimensions: [
        { Name: 'service', Value: this.service },
        { Name: 'model', Value: model },
        { Name: 'version', Value: version },
      ],
    });
    const out = (await (await this.client).send(
      new GetMetricDataCommand({
        StartTime: new Date(toMs - period * 1000),
        EndTime: new Date(toMs),
        MetricDataQueries: [
          { Id: 'p99', MetricStat: { Metric: metric(LATENCY_METRIC), Period: period, Stat: 'p99' } },
          { Id: 'answered', MetricStat: { Metric: metric(LATENCY_METRIC), Period: period, Stat: 'SampleCount' } },
          { Id: 'errors', MetricStat: { Metric: metric(FAILURE_METRIC), Period: period, Stat: 'Sum' } },
        ],
      }),
    )) as { MetricDataResults?: { Id?: string; Values?: number[] }[] };
    const value = (id: string) => out.MetricDataResults?.find((r) => r.Id === id)?.Values?.reduce((a, b) => a + b, 0);
    const answered = value('answered') ?? 0;
    const errors = value('errors') ?? 0;
    const requests = answered + errors;
    return { requests, errors, errorRate: requests ? errors / requests : 0, p99Ms: answered ? (out.MetricDataResults?.find((r) => r.Id === 'p99')?.Values?.[0] ?? null) : null };
  }
}
