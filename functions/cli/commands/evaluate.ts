import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { SCENARIOS } from '../../core/evaluate/jobs.ts';
import type { EvaluationReport } from '../../core/evaluate/report.ts';
import type { JobState, JobView } from '../../core/jobs/record.ts';
import { cliContext, CliError, type CliContext, type CliOptions } from '../context.ts';
import { intervalOption, sleep } from '../options.ts';
import { ProgressDisplay } from '../progress.ts';
import { snapshotOf } from './jobs.ts';

interface StatusBody {
  id: string;
  job: string;
  status: JobState;
  progress: { done: number; total: number; next?: string };
  error?: string;
  verdict?: { passed: boolean; reasons: string[] };
  report?: EvaluationReport;
}

/** Exit status of `mass evaluate --watch` when the evaluation finished but failed the promotion gate. */
export const GATE_FAILED_EXIT = 4;

const pct = (v: number | undefined) => (v === undefined ? '–' : `${(v * 100).toFixed(2)}%`);

function path(name: string, version: string, rest: string): string {
  return `/v2/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}/${rest}`;
}

async function getStatus(ctx: CliContext, name: string, version: string, id: string): Promise<StatusBody> {
  const { bytes } = await ctx.request('GET', path(name, version, `evaluations/${encodeURIComponent(id)}`));
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as StatusBody;
}

function summary(report: EvaluationReport): string[] {
  const c = report.candidate;
  const lines = [`version ${report.version} on ${report.dataset.name} (${report.dataset.rows} rows)${report.baselineVersion ? ` against version ${report.baselineVersion}` : ''}`];
  if (c.classification) lines.push(`  top-1 ${pct(c.classification.top1.value)} [${pct(c.classification.top1.low)}, ${pct(c.classification.top1.high)}], top-${c.classification.topK.k} ${pct(c.classification.topK.value)}`);
  if (c.regression) lines.push(`  MAE ${c.regression.mae.value.toFixed(5)}, RMSE ${c.regression.rmse.value.toFixed(5)}`);
  if (c.singleStream) lines.push(`  single-stream p50 ${c.singleStream.p50.toFixed(3)} ms, p90 ${c.singleStream.p90.toFixed(3)} ms, p99 ${c.singleStream.p99.toFixed(3)} ms`);
  if (c.offline) lines.push(`  offline ${c.offline.map((o) => `batch ${o.batchSize}: ${o.samplesPerSecond.toFixed(0)}/s`).join(', ')}`);
  if (c.server) lines.push(`  server target ${c.server.targetRate}/s: achieved ${c.server.achievedRate.toFixed(1)}/s, p99 ${c.server.p99.toFixed(3)} ms`);
  if (c.coldStart) lines.push(`  cold start ${c.coldStart.createMs.toFixed(1)} ms create + ${c.coldStart.firstRunMs.toFixed(1)} ms first run`);
  if (report.comparison?.top1Delta) lines.push(`  top-1 change ${pct(report.comparison.top1Delta.value)} [${pct(report.comparison.top1Delta.low)}, ${pct(report.comparison.top1Delta.high)}]`);
  if (report.comparison?.speedup !== undefined) lines.push(`  speedup ${report.comparison.speedup.toFixed(3)}x`);
  lines.push(`gate: ${report.gate.passed ? 'PASS' : 'FAIL'} (policy from ${report.gate.policySource})`);
  for (const reason of report.gate.reasons) lines.push(`  - ${reason}`);
  return lines;
}

export function registerEvaluateCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();

  program
    .command('evaluate')
    .description('evaluate a model version on a data set: accuracy, latency, throughput, robustness, and the promotion gate')
    .argument('<name>', 'model name')
    .requiredOption('--version <version>', 'the candidate version')
    .requiredOption('--dataset <name>', 'data set (see `mass dataset push`)')
    .option('--baseline <version>', 'compare with this version (default: the lineage source, else the version before)')
    .option('--no-baseline', 'no comparison')
    .option('--scenarios <list>', `comma-separated: ${SCENARIOS.join(', ')} (default: all that apply)`)
    .option('--options <json>', 'evaluation options as JSON, e.g. {"rows": 1000, "serverRate": 100}')
    .option('--id <id>', 'evaluation id (one per version), making a retried command idempotent')
    .option('--watch', 'follow progress until the report is ready; exit 4 when the gate fails')
    .option('--html <file>', 'with --watch: save report.html here')
    .addOption(intervalOption('with --watch', 2))
    .action(async (name: string, opts: { version: string; dataset: string; baseline?: string | false; scenarios?: string; options?: string; id?: string; watch?: boolean; html?: string; interval: number }) => {
      let options: unknown;
      if (opts.options) {
        try {
          options = JSON.parse(opts.options);
        } catch (error) {
          throw new CliError(`--options is not valid JSON: ${(error as Error).message}`, 2);
        }
      }
      const scenarios = opts.scenarios?.split(',').map((s) => s.trim()).filter(Boolean);
      const unknown = scenarios?.filter((s) => !(SCENARIOS as readonly string[]).includes(s)) ?? [];
      if (scenarios?.length === 0 || unknown.length > 0) throw new CliError(`--scenarios takes a comma-separated list of ${SCENARIOS.join(', ')}, got ${JSON.stringify(opts.scenarios)}`, 2);
      const body = {
        dataset: opts.dataset,
        ...(opts.baseline === false ? { baseline: null } : opts.baseline ? { baseline: opts.baseline } : {}),
        ...(scenarios ? { scenarios } : {}),
        ...(options !== undefined ? { options } : {}),
        ...(opts.id ? { id: opts.id } : {}),
      };
      const ctx = cliContext(global());
      const { bytes } = await ctx.request('POST', path(name, opts.version, 'evaluate'), JSON.stringify(body));
      const started = JSON.parse(Buffer.from(bytes).toString('utf8')) as { id: string; job: string; baseline: string | null; steps: number };
      console.log(`evaluation ${started.id} of ${name} version ${opts.version}${started.baseline ? ` against version ${started.baseline}` : ''}: ${started.steps} steps queued (job ${started.job})`);
      if (!opts.watch) return;
      // The job's own progress (steps done, rate, the step running), as `mass jobs status --watch` shows it.
      const display = new ProgressDisplay();
      for (;;) {
        const job = JSON.parse(Buffer.from((await ctx.request('GET', `/v2/jobs/${encodeURIComponent(started.job)}`)).bytes).toString('utf8')) as JobView;
        display.update({ ...snapshotOf(job), label: `evaluation ${started.id}` });
        if (job.state !== 'queued' && job.state !== 'running') break;
        await sleep(opts.interval);
      }
      display.stop();
      const status = await getStatus(ctx, name, opts.version, started.id);
      if (status.status !== 'succeeded') throw new CliError(`evaluation ${status.id} ${status.status}: ${status.error ?? 'no reason recorded'}`);
      if (status.report) for (const l of summary(status.report)) console.log(l);
      if (opts.html) {
        const html = await ctx.request('GET', path(name, opts.version, `evaluations/${encodeURIComponent(status.id)}/report.html`));
        await writeFile(opts.html, html.bytes);
        console.log(`report written to ${opts.html}`);
      }
      if (status.verdict && !status.verdict.passed) throw new CliError(`evaluation ${status.id} failed the promotion gate`, GATE_FAILED_EXIT);
    });

  program
    .command('evaluation')
    .description("show an evaluation's status, and its report summary once done")
    .argument('<name>', 'model name')
    .argument('<id>', 'evaluation id')
    .requiredOption('--version <version>', 'the evaluated version')
    .option('--json', 'print the full status and report as JSON')
    .action(async (name: string, id: string, opts: { version: string; json?: boolean }) => {
      const status = await getStatus(cliContext(global()), name, opts.version, id);
      if (opts.json) {
        console.log(JSON.stringify(status, null, 2));
        return;
      }
      console.log(`evaluation ${status.id}: ${status.status} [${status.progress.done}/${status.progress.total}]${status.error ? `: ${status.error}` : ''}`);
      if (status.report) for (const l of summary(status.report)) console.log(l);
    });
}
