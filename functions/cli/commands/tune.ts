import { readFile, writeFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { isValidName } from '../../core/artifacts/names.ts';
import type { StudyView } from '../../core/tune/service.ts';
import { parseConstraint, parseObjectives } from '../../core/tune/trial.ts';
import { cliContext, CliError, type CliOptions } from '../context.ts';
import { choiceOption, intervalOption, nonNegativeInteger, positiveInteger, sleep, timeoutOption } from '../options.ts';
import { ProgressDisplay, type ProgressSnapshot } from '../progress.ts';

interface StartFlags {
  version?: string;
  dataset: string;
  objective?: string;
  constraint: string[];
  space?: string;
  sampler: string;
  pruner?: string;
  minResource?: number;
  trials?: number;
  timeBudget?: number;
  parallel: number;
  seed?: number;
  id?: string;
  register?: boolean;
  placement?: string;
  watch?: boolean;
  interval: number;
  timeout: number;
}

const collect = (value: string, previous: string[]) => [...previous, value];

/** The line --watch shows: trials done of the budget, and the best so far (or the front's size). */
export function studySnapshot(view: StudyView): ProgressSnapshot {
  const done = view.counts.complete + view.counts.pruned;
  const first = view.objectives[0]!;
  const best = view.best?.metrics?.[first.metric];
  const stage = view.best
    ? `best ${first.metric} ${best === undefined ? '–' : Number(best.toPrecision(6))} (trial ${view.best.number})`
    : view.paretoFront
      ? `Pareto front ${view.paretoFront.length}`
      : view.counts.failed
        ? `${view.counts.failed} failed`
        : undefined;
  return { label: view.id, state: view.state, done, total: view.budget.maxTrials ?? done, ...(stage ? { stage } : {}) };
}

function studyId(id: string): string {
  if (!isValidName(id)) throw new CliError(`invalid study id ${JSON.stringify(id.slice(0, 80))}: must match [a-z0-9][a-z0-9._-]{0,63}`, 2);
  return id;
}

async function readSpace(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch (error) {
    throw new CliError(`--space ${path}: ${(error as Error).message}`, 2);
  }
}

/** How long --watch waits, after a study's job has ended, for the report its end writes. */
const REPORT_WAIT_MS = 30_000;

/**
 * Follows a study until its job ends, and then until its outcome (the reports, the registered
 * winner) is recorded, which happens just after the job's state changes; exit 0 only if it succeeded.
 */
async function watch(ctx: ReturnType<typeof cliContext>, id: string, flags: { interval: number; timeout: number }): Promise<StudyView> {
  const read = async () => JSON.parse(Buffer.from((await ctx.request('GET', `/v2/studies/${id}`)).bytes).toString('utf8')) as StudyView;
  const display = new ProgressDisplay();
  const started = Date.now();
  let ended: number | undefined;
  let view = await read();
  display.update(studySnapshot(view));
  for (;;) {
    const running = view.state === 'queued' || view.state === 'running' || view.state === 'unknown';
    if (!running) ended ??= Date.now();
    if (!running && (view.outcome || Date.now() - ended! > REPORT_WAIT_MS)) break;
    if (Date.now() - started > flags.timeout * 1000) {
      display.stop();
      throw new CliError(`gave up watching after ${flags.timeout} s; the study goes on: mass tune status ${id}`);
    }
    await sleep(flags.interval);
    view = await read();
    display.update(studySnapshot(view));
  }
  display.stop();
  return view;
}

function summary(view: StudyView): string {
  return JSON.stringify({ id: view.id, state: view.state, counts: view.counts, ...(view.best ? { best: view.best } : {}), ...(view.paretoFront ? { paretoFront: view.paretoFront } : {}), ...(view.outcome ? { outcome: view.outcome } : {}), ...(view.error ? { error: view.error } : {}) }, null, 2);
}

export function registerTuneCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();
  const tune = program.command('tune').description('search serving configurations or training hyper-parameters (POST /v2/studies)');

  const start = (type: 'serving' | 'training', name: string, defaultObjective: string) =>
    tune
      .command(name)
      .description(type === 'serving' ? 'search how a version is served: quantization, graph optimization, threads, batch size, tier memory' : "search the training engine's hyper-parameters against validation accuracy")
      .argument('<model>', 'model name')
      .option('--version <version>', 'the version to tune (default: the latest uploaded one)')
      .requiredOption('--dataset <name>', 'labelled data set in the bucket (mass dataset push)')
      .option('--objective <list>', `"<metric>:min|max, ..." (default "${defaultObjective}")`)
      .option('--constraint <text>', '"<metric><=<number>" or ">=", repeatable', collect, [])
      .option('--space <file>', 'search space as JSON (docs/tuning.md); default: the objective\'s own')
      .addOption(choiceOption('--sampler <name>', 'sampler', ['grid', 'random', 'tpe', 'gp', 'nsga2']).default(type === 'serving' ? 'grid' : 'tpe'))
      .addOption(choiceOption('--pruner <name>', 'pruner (training)', ['none', 'median', 'successive-halving']))
      .addOption(new Option('--min-resource <epochs>', 'successive halving: epochs before the first rung').argParser(positiveInteger('--min-resource')))
      .addOption(new Option('--trials <n>', 'trial budget').argParser(positiveInteger('--trials')))
      .addOption(new Option('--time-budget <seconds>', 'no trial starts after this long').argParser(positiveInteger('--time-budget')))
      .addOption(new Option('--parallel <n>', 'trials at once (lanes)').argParser(positiveInteger('--parallel')).default(1))
      .addOption(new Option('--seed <n>', 'sampler seed').argParser(nonNegativeInteger('--seed')))
      .option('--id <id>', 'study id (default: generated); the same id and request again give the same study')
      .option('--register', 'register the winner as a new version (never routed until promoted)')
      .addOption(choiceOption('--placement <where>', 'where the trials run: lambda (default) or container, where the stack runs the container worker', ['lambda', 'container']))
      .option('--watch', 'follow the study until it ends')
      .addOption(intervalOption('with --watch', 2))
      .addOption(timeoutOption('with --watch', 86_400))
      .action(async (model: string, flags: StartFlags) => {
        const ctx = cliContext(global());
        const version = flags.version ?? (await ctx.store().listRoutableVersions(model)).uploaded.at(-1);
        if (!version) throw new CliError(`model '${model}' has no uploaded version; give --version`);
        const objectives = parseObjectives(flags.objective ?? defaultObjective);
        const body = {
          ...(flags.id ? { id: studyId(flags.id) } : {}),
          objective: { type, model, version, dataset: flags.dataset },
          ...(flags.space ? { space: await readSpace(flags.space) } : {}),
          objectives,
          constraints: flags.constraint.map(parseConstraint),
          sampler: { type: flags.sampler },
          ...(flags.pruner && flags.pruner !== 'none' ? { pruner: flags.pruner === 'median' ? { type: 'median' } : { type: 'successive-halving', minResource: flags.minResource ?? 1 } } : {}),
          ...(flags.trials ? { maxTrials: flags.trials } : {}),
          ...(flags.timeBudget ? { timeBudgetSeconds: flags.timeBudget } : {}),
          ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
          parallel: flags.parallel,
          ...(flags.register ? { register: true } : {}),
          ...(flags.placement ? { placement: flags.placement } : {}),
        };
        const { bytes } = await ctx.request('POST', '/v2/studies', JSON.stringify(body));
        const view = JSON.parse(Buffer.from(bytes).toString('utf8')) as StudyView;
        console.error(`study ${view.id} (job ${view.job}); follow it with: mass tune status ${view.id} --watch`);
        if (!flags.watch) {
          console.log(JSON.stringify({ id: view.id, job: view.job, state: view.state }));
          return;
        }
        const ended = await watch(ctx, view.id, flags);
        console.log(summary(ended));
        if (ended.state !== 'succeeded') throw new CliError(`study ${view.id} ${ended.state}: ${ended.error ?? 'no reason recorded'}`);
      });

  start('serving', 'serving', 'p99_ms:min');
  start('training', 'train', 'accuracy:max');

  tune
    .command('status')
    .description('print a study; with --watch, follow it (trials done, best so far) until it ends')
    .argument('<id>', 'study id')
    .option('--watch', 'show one progress line until the study ends; exit 0 only if it succeeded')
    .option('--report <file>', 'once it ended, save its report.html here')
    .addOption(intervalOption('with --watch', 2))
    .addOption(timeoutOption('with --watch', 86_400))
    .action(async (rawId: string, flags: { watch?: boolean; report?: string; interval: number; timeout: number }) => {
      const id = studyId(rawId);
      const ctx = cliContext(global());
      const view = flags.watch ? await watch(ctx, id, flags) : (JSON.parse(Buffer.from((await ctx.request('GET', `/v2/studies/${id}`)).bytes).toString('utf8')) as StudyView);
      console.log(flags.watch ? summary(view) : JSON.stringify(view, null, 2));
      if (flags.report) {
        if (!view.outcome) throw new CliError(`study ${id} has no report yet (${view.state})`);
        const html = await ctx.store().getObjectBytes(view.outcome.reportHtml);
        if (!html) throw new CliError(`the report ${view.outcome.reportHtml} is missing from the bucket`);
        await writeFile(flags.report, html);
        console.error(`report written to ${flags.report}`);
      }
      if (flags.watch && view.state !== 'succeeded') throw new CliError(`study ${id} ${view.state}: ${view.error ?? 'no reason recorded'}`);
    });
}
