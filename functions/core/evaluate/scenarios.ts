import ort, { type InferenceSession } from '../onnx/ort.ts';
import { batchFeeds, type LoadedDataset } from './datasets.ts';
import { seededRandom } from '../platform/random.ts';
import { runtimeMessage } from '../onnx/runtime-message.ts';
import { histogram, pairedSpeedup, quantileSorted, summarizeLatencies, type LatencySummary, type SpeedupInterval } from './metrics.ts';
import { recordFailure, type FailureCount } from './runner.ts';

/**
 * The MLPerf Inference scenarios, each bounded in time so that one fits in a Lambda invocation:
 * single-stream (one query at a time, latency percentiles), offline (all queries at once, throughput
 * per batch size) and server (Poisson arrivals at a target rate; achieved rate and tail latency).
 */

/** Failed queries (rows, for a batch) against those run, with the first reasons. */
export type ErrorCount = FailureCount;

const noErrors = (): ErrorCount => ({ errors: 0, inferences: 0, failures: [] });

export interface SingleStreamResult extends LatencySummary, ErrorCount {
  histogram: { start: number; width: number; counts: number[] };
  queriesPerSecond: number;
}

export interface OfflineResult extends ErrorCount {
  batchSize: number;
  samples: number;
  seconds: number;
  samplesPerSecond: number;
}

export interface ServerResult extends ErrorCount {
  targetRate: number;
  seconds: number;
  issued: number;
  completed: number;
  achievedRate: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  /** The most a query was sent after its due time. */
  maxSendLagMs: number;
}

export interface ColdStartResult {
  repeats: number;
  /** Medians over the repeats. */
  createMs: number;
  firstRunMs: number;
  totalMs: number;
  /** Resident memory a fresh session adds (median), a proxy for the model's serving footprint. */
  sessionRssBytes: number;
}

const WARMUP_RUNS = 10;

/** One query; a refusal is counted with its reason. `onSend` gets the time it was really sent. */
async function timedRun(session: InferenceSession, dataset: LoadedDataset, row: number, rows: number, count: ErrorCount, onSend?: (at: number) => void): Promise<number> {
  const feeds = batchFeeds(dataset, row, row + rows);
  count.inferences += rows;
  const started = performance.now();
  onSend?.(started);
  try {
    await session.run(feeds);
  } catch (error) {
    recordFailure(count, { row, rows, reason: runtimeMessage(error) });
  }
  return performance.now() - started;
}

/**
 * Candidate and baseline take turns query by query (the order flipping every query), so both see
 * the same machine: on a shared host a slow minute would otherwise land on one of them only.
 */
export async function singleStream(
  sessions: InferenceSession[],
  dataset: LoadedDataset,
  options: { queries: number; maxSeconds: number },
): Promise<{ results: SingleStreamResult[]; speedup?: SpeedupInterval | undefined }> {
  const rows = dataset.manifest.rows;
  const ignored = noErrors();
  for (const session of sessions) for (let i = 0; i < WARMUP_RUNS; i++) await timedRun(session, dataset, i % rows, 1, ignored);
  const counts = sessions.map(noErrors);
  const latencies = sessions.map((): number[] => []);
  const busy = sessions.map(() => 0);
  const deadline = performance.now() + options.maxSeconds * 1000 * sessions.length;
  for (let q = 0; q < options.queries && performance.now() < deadline; q++) {
    for (let k = 0; k < sessions.length; k++) {
      const s = q % 2 === 0 ? k : sessions.length - 1 - k;
      const t = await timedRun(sessions[s]!, dataset, q % rows, 1, counts[s]!);
      latencies[s]!.push(t);
      busy[s]! += t;
    }
  }
  const results = sessions.map((_, s) => {
    const summary = summarizeLatencies(latencies[s]!);
    return {
      ...summary,
      ...counts[s]!,
      // Up to twice the p99: the chart shows the distribution; the tail is in the figures.
      histogram: histogram(latencies[s]!, 30, summary.p99 * 2),
      queriesPerSecond: latencies[s]!.length / (busy[s]! / 1000),
    };
  });
  // A failed query's time says nothing about speed: no speedup when any failed.
  const clean = counts.every((c) => c.errors === 0);
  const speedup = sessions.length === 2 && clean ? pairedSpeedup(latencies[1]!, latencies[0]!) : undefined;
  return { results, ...(speedup ? { speedup } : {}) };
}

/** Back-to-back batches per batch size; sessions alternate batch by batch, each timed on its own runs. */
export async function offline(
  sessions: InferenceSession[],
  dataset: LoadedDataset,
  options: { batchSizes: number[]; secondsPerBatchSize: number },
): Promise<OfflineResult[][]> {
  const rows = dataset.manifest.rows;
  const results = sessions.map((): OfflineResult[] => []);
  for (const wanted of options.batchSizes) {
    const batchSize = Math.min(wanted, rows);
    const ignored = noErrors();
    for (const session of sessions) await timedRun(session, dataset, 0, batchSize, ignored);
    const counts = sessions.map(noErrors);
    const samples = sessions.map(() => 0);
    const busy = sessions.map(() => 0);
    let row = 0;
    const deadline = performance.now() + options.secondsPerBatchSize * 1000 * sessions.length;
    // At least min(rows, 8 batches) each, then until the time is up.
    while (samples[0]! < Math.min(rows, 8 * batchSize) || performance.now() < deadline) {
      if (row + batchSize > rows) row = 0;
      for (let s = 0; s < sessions.length; s++) {
        busy[s]! += await timedRun(sessions[s]!, dataset, row, batchSize, counts[s]!);
        samples[s]! += batchSize;
      }
      row += batchSize;
    }
    sessions.forEach((_, s) => {
      const seconds = busy[s]! / 1000;
      results[s]!.push({ batchSize, samples: samples[s]!, seconds, samplesPerSecond: samples[s]! / seconds, ...counts[s]! });
    });
  }
  return results;
}

/**
 * Queries arrive as a Poisson process (exponential gaps, seeded) and are issued at their arrival
 * time whatever is still running; a query's latency runs from the moment it was really sent (a
 * timer may wake a little before or after its due time) to its answer, so queueing in the runtime
 * counts, as in MLPerf's server scenario, and no latency is negative. `maxSendLagMs` says how late
 * the loop sent its latest query. Issuing stops at `seconds`; stragglers finish.
 */
export async function server(
  session: InferenceSession,
  dataset: LoadedDataset,
  options: { rate: number; seconds: number; seed: number },
): Promise<ServerResult> {
  const random = seededRandom(options.seed);
  const arrivals: number[] = [];
  for (let t = 0; ; ) {
    t += (-Math.log(1 - random()) / options.rate) * 1000;
    if (t >= options.seconds * 1000) break;
    arrivals.push(t);
  }
  const count = noErrors();
  const latencies: number[] = [];
  let maxSendLagMs = 0;
  const rows = dataset.manifest.rows;
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let q = 0; q < arrivals.length; q++) {
    const due = started + arrivals[q]!;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(
      timedRun(session, dataset, q % rows, 1, count, (sent) => {
        maxSendLagMs = Math.max(maxSendLagMs, sent - due);
      }).then((ms) => {
        latencies.push(ms);
      }),
    );
  }
  await Promise.all(pending);
  const elapsed = (performance.now() - started) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    targetRate: options.rate,
    seconds: elapsed,
    issued: arrivals.length,
    completed: latencies.length - count.errors,
    achievedRate: (latencies.length - count.errors) / elapsed,
    min: sorted[0] ?? Number.NaN,
    p50: quantileSorted(sorted, 0.5),
    p99: quantileSorted(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    maxSendLagMs,
    ...count,
  };
}

function median(values: number[]): number {
  return quantileSorted(Float64Array.from(values).sort(), 0.5);
}

/** Session creation from the model's bytes plus its first run, as a fresh environment pays them. */
export async function coldStart(
  bytes: Uint8Array,
  sessionOptions: InferenceSession.SessionOptions,
  dataset: LoadedDataset,
  repeats: number,
): Promise<ColdStartResult> {
  const create: number[] = [];
  const first: number[] = [];
  const rss: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    const session = await ort.InferenceSession.create(bytes, sessionOptions);
    const t1 = performance.now();
    try {
      await session.run(batchFeeds(dataset, 0, 1));
    } finally {
      first.push(performance.now() - t1);
      create.push(t1 - t0);
      rss.push(Math.max(0, process.memoryUsage().rss - before));
      await session.release();
    }
  }
  const c = median(create);
  const f = median(first);
  return { repeats, createMs: c, firstRunMs: f, totalMs: c + f, sessionRssBytes: median(rss) };
}
