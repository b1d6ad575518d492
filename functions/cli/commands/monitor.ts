import type { Command } from 'commander';
import { createDynamoClient, createSqsClient } from '../../core/aws/clients.ts';
import { JobTable } from '../../core/jobs/job-table.ts';
import { JobKinds } from '../../core/jobs/kinds.ts';
import { JobRuntime } from '../../core/jobs/runtime.ts';
import { SqsStepQueue } from '../../core/jobs/step-queue.ts';
import { ModelSessions } from '../../core/sessions/model-sessions.ts';
import { MONITOR_VISIBILITY_SECONDS } from '../../core/monitor/config.ts';
import { monitorJobKind, MONITOR_KIND, type MonitorRequest } from '../../core/monitor/jobs.ts';
import { liveRows, renderLiveTable } from '../../core/monitor/live.ts';
import { LocalMetricsStore } from '../../core/monitor/metrics-source.ts';
import { readModelMonitoring, writeModelMonitoring, type MonitoringConfigInput } from '../../core/monitor/policy.ts';
import { cliContext, CliError, localStackFile, type CliOptions } from '../context.ts';
import { intervalOption, positiveInteger, sleep, timeoutOption } from '../options.ts';
import { jobView } from '../../core/jobs/record.ts';
import { watchJob } from './jobs.ts';

/** The local stack's files and names (stack.json), or the environment's for a deployed stack. */
function monitorTargets() {
  const local = localStackFile() as (ReturnType<typeof localStackFile> & { metricsFile?: string; monitorQueue?: string; registryTable?: string }) | undefined;
  return {
    metricsFile: process.env.MASS_METRICS_FILE ?? local?.metricsFile,
    queue: process.env.MASS_MONITOR_QUEUE ?? local?.monitorQueue,
    table: process.env.MASS_REGISTRY_TABLE ?? local?.registryTable,
  };
}

const number = (name: string, min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) throw new CliError(`${name} must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`, 2);
  return n;
};

export function registerMonitorCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();
  const monitor = program
    .command('monitor')
    .description("a model's live figures (local stack), data capture, baselines, drift reports and canary guards (docs/monitoring.md)")
    .argument('[model]', 'show this model\'s requests, latency percentiles, errors, cold starts and drift per version, refreshed')
    .addOption(intervalOption('between refreshes', 2))
    .option('--window <seconds>', 'figures over the last this many seconds', positiveInteger('--window'), 60)
    .option('--once', 'print the figures once and exit')
    .action(async (model: string | undefined, flags: { interval: number; window: number; once?: boolean }) => {
      if (!model) {
        monitor.help();
        return;
      }
      const { metricsFile } = monitorTargets();
      if (!metricsFile) throw new CliError('no metrics file: `mass monitor <model>` reads the local stack\'s (npm start) or MASS_METRICS_FILE; in AWS, open the CloudWatch dashboard');
      const store = new LocalMetricsStore(metricsFile);
      for (;;) {
        const table = renderLiveTable(model, liveRows(await store.samples(), model, Date.now(), flags.window * 1000), flags.window);
        if (flags.once) {
          console.log(table);
          return;
        }
        process.stdout.write(process.stdout.isTTY ? `\x1b[2J\x1b[H${table}\n` : `${table}\n\n`);
        await sleep(flags.interval);
      }
    });

  monitor
    .command('capture')
    .description("set a model's data capture (its monitoring setting in the registry); a version's manifest `monitoring.capture` wins over it")
    .argument('<model>', 'model name')
    .option('--rate <share>', 'share of requests captured, 0..1', number('--rate', 0, 1), 0.1)
    .option('--whole', 'keep whole tensors (default: per-row summaries, what drift needs)')
    .option('--drop <fields>', 'comma-separated fields left out: id, parameters, inputs.<name>, outputs.<name>')
    .option('--off', 'stop capturing')
    .action(async (model: string, flags: { rate: number; whole?: boolean; drop?: string; off?: boolean }) => {
      const store = cliContext(global()).store();
      const current = await readModelMonitoring(store, model);
      const capture = { enabled: !flags.off, samplingRate: flags.rate, tensors: flags.whole ? ('whole' as const) : ('summary' as const), dropFields: flags.drop ? flags.drop.split(',').map((f) => f.trim()).filter(Boolean) : [] };
      const written = await writeModelMonitoring(store, model, { ...current, capture } as MonitoringConfigInput);
      console.log(JSON.stringify(written.capture));
    });

  monitor
    .command('guard')
    .description("set the canary guard of one alias (off by default): roll a canary back when it breaches the policy")
    .argument('<model>', 'model name')
    .requiredOption('--alias <alias>', 'the alias whose canary splits are guarded')
    .option('--off', 'turn the guard off')
    .option('--window <seconds>', 'sliding window compared', positiveInteger('--window'))
    .option('--min-requests <n>', 'requests each side needs in the window before a verdict', positiveInteger('--min-requests'))
    .option('--max-error-rate-increase <share>', 'canary error rate above the stable one by more than this rolls back', number('--max-error-rate-increase', 0, 1))
    .option('--max-p99-ratio <x>', 'canary p99 above the stable one times this (and by more than --min-p99-increase-ms) rolls back', number('--max-p99-ratio', 1, 1000))
    .option('--min-p99-increase-ms <ms>', 'latency slack in milliseconds', number('--min-p99-increase-ms', 0, 600_000))
    .option('--max-prediction-js <bits>', 'a captured prediction feature diverging from the stable one by more than this (Jensen-Shannon) rolls back', number('--max-prediction-js', 0.001, 1))
    .option('--min-predictions <n>', 'captured prediction rows each side needs before their distributions are compared', positiveInteger('--min-predictions'))
    .action(async (model: string, flags: { alias: string; off?: boolean; window?: number; minRequests?: number; maxErrorRateIncrease?: number; maxP99Ratio?: number; minP99IncreaseMs?: number; maxPredictionJs?: number; minPredictions?: number }) => {
      const store = cliContext(global()).store();
      const current = await readModelMonitoring(store, model);
      const guard = {
        ...current.guards?.[flags.alias],
        enabled: !flags.off,
        ...(flags.window !== undefined ? { windowSeconds: flags.window } : {}),
        ...(flags.minRequests !== undefined ? { minRequests: flags.minRequests } : {}),
        ...(flags.maxErrorRateIncrease !== undefined ? { maxErrorRateIncrease: flags.maxErrorRateIncrease } : {}),
        ...(flags.maxP99Ratio !== undefined ? { maxP99Ratio: flags.maxP99Ratio } : {}),
        ...(flags.minP99IncreaseMs !== undefined ? { minP99IncreaseMs: flags.minP99IncreaseMs } : {}),
        ...(flags.maxPredictionJs !== undefined ? { maxPredictionJs: flags.maxPredictionJs } : {}),
        ...(flags.minPredictions !== undefined ? { minPredictions: flags.minPredictions } : {}),
      };
      const written = await writeModelMonitoring(store, model, { ...current, guards: { ...current.guards, [flags.alias]: guard } } as MonitoringConfigInput);
      console.log(JSON.stringify(written.guards?.[flags.alias]));
    });

  const submit = async (request: MonitorRequest, watch?: { watch?: boolean; interval: number; timeout: number }) => {
    const ctx = cliContext(global());
    const { queue, table } = monitorTargets();
    if (!queue || !table) throw new CliError('no monitor queue or registry table: run `npm start` for the local stack, or set MASS_MONITOR_QUEUE and MASS_REGISTRY_TABLE');
    const store = ctx.store();
    const runtime = new JobRuntime({
      table: new JobTable(createDynamoClient(), table),
      kinds: new JobKinds([monitorJobKind({ store, sessions: new ModelSessions({ store }), metric: () => undefined })]),
      queue: new SqsStepQueue(createSqsClient(), () => queue),
      visibilitySeconds: MONITOR_VISIBILITY_SECONDS,
    });
    const { job } = await runtime.submit({ kind: MONITOR_KIND, request, parent: { model: request.model, version: request.version } });
    if (!watch?.watch) {
      console.log(`job ${job.id} ${job.state}: follow it with mass jobs status ${job.id} --watch`);
      return;
    }
    const done = await watchJob(async () => jobView(await runtime.get(job.id)), jobView(job), watch);
    console.log(JSON.stringify(done.result ?? null));
  };

  /** The version as an argument or as --version (the other commands' spelling); one of them, not two that differ. */
  const versionOf = (positional: string | undefined, flag: string | undefined) => {
    if (positional !== undefined && flag !== undefined && positional !== flag) throw new CliError(`two versions given: ${positional} and --version ${flag}`, 2);
    const version = positional ?? flag;
    if (version === undefined) throw new CliError('which version? give it as an argument or with --version', 2);
    return version;
  };
  const watchable = (command: Command) =>
    command
      .option('--watch', 'follow the job until it ends and print its result; exit 0 only if it succeeded')
      .addOption(intervalOption('with --watch', 1))
      .addOption(timeoutOption('with --watch', 3600));

  type WatchFlags = { version?: string; watch?: boolean; interval: number; timeout: number };
  watchable(
    monitor
      .command('baseline')
      .description("compute a version's baseline (per input feature and prediction) from a data set, stored with the version")
      .argument('<model>', 'model name')
      .argument('[version]', 'version (or --version)')
      .option('--version <version>', 'version')
      .requiredOption('--dataset <name>', 'data set (mass dataset push)')
      .option('--rows <n>', 'use the first n rows', positiveInteger('--rows')),
  ).action(async (model: string, version: string | undefined, flags: WatchFlags & { dataset: string; rows?: number }) => {
    await submit({ task: 'baseline', model, version: versionOf(version, flags.version), dataset: flags.dataset, ...(flags.rows ? { rows: flags.rows } : {}) }, flags);
  });

  watchable(
    monitor
      .command('drift')
      .description('compare a day of captured data with the baseline; report under monitoring/<model>/<version>/<date>/ (the API: POST /v2/models/{name}/versions/{version}/monitor)')
      .argument('<model>', 'model name')
      .argument('[version]', 'version (or --version)')
      .option('--version <version>', 'version')
      .option('--date <yyyy-mm-dd>', 'the capture day (default: today)'),
  ).action(async (model: string, version: string | undefined, flags: WatchFlags & { date?: string }) => {
    await submit({ task: 'drift', model, version: versionOf(version, flags.version), ...(flags.date ? { date: flags.date } : {}) }, flags);
  });
}
