import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parseIdxDataset, parseJsonlDataset } from '../../core/evaluate/datasets.ts';
import { FederationClient, participate, type Attack } from '../../core/federated/client.ts';
import type { FederationRecord } from '../../core/federated/federation-table.ts';
import { parsePartition, partitionRows, subset } from '../../core/federated/partition.ts';
import { generateMaskingKeys } from '../../core/federated/secure-aggregation.ts';
import type { TrainingData } from '../../core/train/loop.ts';
import { cliContext, CliError, type CliContext, type CliOptions } from '../context.ts';
import { intervalOption, positiveInteger, sleep, timeoutOption } from '../options.ts';

const STRATEGIES = ['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad', 'fedprox', 'median', 'trimmed-mean', 'multi-krum', 'bulyan'];

/** The API through the CLI's own request (its auth), the pre-signed S3 URLs by plain fetch. */
function apiClient(ctx: CliContext): FederationClient {
  const viaCli: typeof fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (!url.startsWith(`${ctx.api}/v2/`)) return fetch(input, init);
    const { response, bytes } = await ctx.request(init?.method ?? 'GET', url.slice(ctx.api.length), init?.body as string | undefined, (init?.headers ?? {}) as Record<string, string>);
    return new Response(bytes, { status: response.status, headers: response.headers });
  };
  return new FederationClient(ctx.api, viaCli);
}

/** A data owner's rows: an IDX pair (images,labels) or a JSONL file as `mass dataset push` takes them. */
async function readRows(spec: string, inputName: string): Promise<TrainingData> {
  const [first, second] = spec.split(',');
  if (second) {
    const parsed = parseIdxDataset('local', await readFile(first as string), await readFile(second), { inputName });
    return { columns: parsed.columns, labels: parsed.labels };
  }
  const parsed = parseJsonlDataset('local', await readFile(first as string));
  if (!parsed.labels) throw new CliError(`${first}: federated training needs labelled rows`);
  return { columns: parsed.columns, labels: parsed.labels };
}

function parseAttack(text: string): Attack {
  const [kind, value] = text.split(':');
  const number = Number(value ?? '1');
  if (kind === 'sign-flip' && number > 0) return { kind: 'sign-flip', scale: number };
  if (kind === 'scale' && Number.isFinite(number)) return { kind: 'scale', factor: number };
  if (kind === 'random' && number > 0) return { kind: 'random', std: number, seed: 1 };
  throw new CliError(`--attack ${text} is not sign-flip:<scale>, scale:<factor> or random:<std>`, 2);
}

function roundLines(federation: FederationRecord): string[] {
  return federation.history.map((h) =>
    [`round ${h.round}`, `version ${h.version}`, `${h.participants.length} clients`, h.accuracy !== undefined ? `accuracy ${h.accuracy.toFixed(4)}` : '', h.loss !== undefined ? `loss ${h.loss.toFixed(4)}` : '', h.epsilon !== undefined ? `epsilon ${h.epsilon.toFixed(3)}` : '']
      .filter(Boolean)
      .join('  '),
  );
}

async function watch(client: FederationClient, id: string, interval: number, timeout: number): Promise<FederationRecord> {
  const end = Date.now() + timeout * 1000;
  let shown = 0;
  let last = '';
  for (;;) {
    const { federation, round } = await client.status(id);
    for (const line of roundLines(federation).slice(shown)) console.log(line);
    shown = federation.history.length;
    const now = `${federation.state}${round ? ` round ${round.round} attempt ${round.attempt} ${round.state} ${round.received}/${round.selected.length}` : ''}${federation.reason ? `: ${federation.reason}` : ''}`;
    if (now !== last) console.error(now);
    last = now;
    if (federation.state !== 'running' && federation.state !== 'waiting') return federation;
    if (Date.now() > end) throw new CliError(`federation ${id} is still ${federation.state} after ${timeout} s`);
    await sleep(interval);
  }
}

interface CreateFlags {
  model: string;
  version?: string;
  rounds: number;
  clientsPerRound?: number;
  clientFraction?: string;
  minClients?: number;
  strategy: string;
  strategyOptions?: string;
  mu?: string;
  dpClip?: string;
  dpNoise?: string;
  dpTargetQuantile?: string;
  secureAggregation?: boolean;
  localEpochs: number;
  batchSize: number;
  lr: string;
  evalDataset?: string;
  roundTimeout: number;
  seed?: number;
}

function createRequest(flags: CreateFlags): Record<string, unknown> {
  let options: Record<string, unknown> = {};
  if (flags.strategyOptions) {
    try {
      options = JSON.parse(flags.strategyOptions) as Record<string, unknown>;
    } catch (error) {
      throw new CliError(`--strategy-options is not JSON: ${(error as Error).message}`, 2);
    }
  }
  if (flags.strategy === 'fedprox') options.mu = Number(flags.mu ?? 0.01);
  if ((flags.strategy === 'multi-krum' || flags.strategy === 'bulyan') && options.byzantine === undefined) options.byzantine = 1;
  return {
    model: flags.model,
    ...(flags.version ? { version: flags.version } : {}),
    rounds: flags.rounds,
    ...(flags.clientFraction ? { clientFraction: Number(flags.clientFraction) } : { clientsPerRound: flags.clientsPerRound ?? 10 }),
    ...(flags.minClients ? { minClients: flags.minClients } : {}),
    strategy: { kind: flags.strategy, ...options },
    ...(flags.dpClip ? { privacy: { clip: Number(flags.dpClip), noiseMultiplier: Number(flags.dpNoise ?? 1), ...(flags.dpTargetQuantile ? { adaptive: { targetQuantile: Number(flags.dpTargetQuantile) } } : {}) } } : {}),
    ...(flags.secureAggregation ? { secureAggregation: true } : {}),
    local: { epochs: flags.localEpochs, batchSize: flags.batchSize, learningRate: Number(flags.lr) },
    ...(flags.evalDataset ? { evalDataset: flags.evalDataset } : {}),
    roundTimeoutSeconds: flags.roundTimeout,
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
  };
}

function addCreateOptions(command: Command): Command {
  return command
    .requiredOption('--model <name>', 'the model to train (a registered version)')
    .option('--version <version>', 'the version the first round starts from (default: the highest)')
    .requiredOption('--rounds <n>', 'rounds to run', positiveInteger('--rounds'))
    .option('--clients-per-round <n>', 'clients selected per round (default 10)', positiveInteger('--clients-per-round'))
    .option('--client-fraction <f>', 'or a fraction of the joined clients per round')
    .option('--min-clients <n>', 'updates a round needs by its deadline (default half the selection)', positiveInteger('--min-clients'))
    .option('--strategy <name>', STRATEGIES.join(' | '), 'fedavg')
    .option('--strategy-options <json>', 'e.g. {"momentum":0.9} for fedavgm, {"byzantine":2} for multi-krum or bulyan')
    .option('--mu <mu>', 'fedprox: the proximal term (default 0.01)')
    .option('--dp-clip <norm>', 'differential privacy: L2 clip of each update')
    .option('--dp-noise <z>', 'differential privacy: noise multiplier (default 1)')
    .option('--dp-target-quantile <q>', 'adaptive clipping: --dp-clip is the first clip norm, then it follows this quantile of the update norms')
    .option('--secure-aggregation', 'pairwise masks: the server sees only the sum')
    .option('--local-epochs <n>', 'epochs each client trains per round', positiveInteger('--local-epochs'), 1)
    .option('--batch-size <n>', 'client batch size', positiveInteger('--batch-size'), 10)
    .option('--lr <rate>', 'client learning rate', '0.01')
    .option('--eval-dataset <name>', 'evaluate every round on this data set')
    .option('--round-timeout <seconds>', 'round deadline', positiveInteger('--round-timeout'), 600)
    .option('--seed <n>', 'seeds the client selection', positiveInteger('--seed'));
}

export function registerFederationCommands(program: Command): void {
  const global = () => program.opts<CliOptions>();
  const federation = program.command('federation').description('federated learning: train across data owners who never upload their data (docs/federated.md)');

  addCreateOptions(federation.command('create').description('start a federation; each round becomes a new version with lineage, never routed until promoted')).action(async (flags: CreateFlags) => {
    const created = await apiClient(cliContext(global())).create(createRequest(flags));
    console.log(JSON.stringify(created, null, 2));
  });

  federation
    .command('join')
    .description('take part as a data owner: train locally on every round this client is selected for, upload only the update')
    .argument('<id>', 'federation id')
    .requiredOption('--data <file>', 'local rows: a JSONL file, or IDX images,labels')
    .option('--input <name>', 'the model input IDX images feed', 'input')
    .option('--max-rounds <n>', 'stop after this many rounds', positiveInteger('--max-rounds'))
    .action(async (id: string, flags: { data: string; input: string; maxRounds?: number }) => {
      const client = apiClient(cliContext(global()));
      const data = await readRows(flags.data, flags.input);
      const { federation: record } = await client.status(id);
      const keys = record.request.secureAggregation ? generateMaskingKeys() : undefined;
      const joined = await client.join(id, keys?.publicKey);
      console.error(`joined ${id} as ${joined.client}; ${data.labels?.length ?? 0} rows stay here`);
      const out = await participate(client, { federation: id, client: joined.client, token: joined.token, data, keys, ...(flags.maxRounds ? { maxRounds: flags.maxRounds } : {}), onRound: (task, answer) => console.error(`round ${task.round}: update delivered (${answer.received}/${answer.selected})`) });
      console.error(`federation ${id}: ${out.state} after ${out.rounds} rounds from this client`);
    });

  federation
    .command('status')
    .description('print a federation; with --watch, one line per round (accuracy, loss, epsilon) until it ends')
    .argument('<id>', 'federation id')
    .option('--watch', 'follow it until it completes or pauses')
    .addOption(intervalOption('with --watch', 2))
    .addOption(timeoutOption('with --watch', 86_400))
    .action(async (id: string, flags: { watch?: boolean; interval: number; timeout: number }) => {
      const client = apiClient(cliContext(global()));
      if (!flags.watch) {
        console.log(JSON.stringify(await client.status(id), null, 2));
        return;
      }
      const done = await watch(client, id, flags.interval, flags.timeout);
      if (done.state !== 'completed') throw new CliError(`federation ${id} is ${done.state}${done.reason ? `: ${done.reason}` : ''}`);
    });

  addCreateOptions(federation.command('simulate').description('run many clients in this process against the stack, each with a share of one data set'))
    .requiredOption('--clients <n>', 'simulated data owners', positiveInteger('--clients'))
    .requiredOption('--data <file>', 'the data set to share out: JSONL, or IDX images,labels')
    .option('--input <name>', 'the model input IDX images feed', 'input')
    .option('--partition <kind>', 'iid | shards:<k> | dirichlet:<alpha>', 'iid')
    .option('--malicious <fraction>', 'share of clients that attack', '0')
    .option('--attack <kind>', 'sign-flip:<scale> | scale:<factor> | random:<std>', 'sign-flip:10')
    .addOption(intervalOption('while watching', 2))
    .addOption(timeoutOption('for the federation', 86_400))
    .action(async (flags: CreateFlags & { clients: number; data: string; input: string; partition: string; malicious: string; attack: string; interval: number; timeout: number }) => {
      const client = apiClient(cliContext(global()));
      const data = await readRows(flags.data, flags.input);
      let partition;
      try {
        partition = parsePartition(flags.partition);
      } catch (error) {
        throw new CliError((error as Error).message, 2);
      }
      const attack = parseAttack(flags.attack);
      const malicious = Math.round(Number(flags.malicious) * flags.clients);
      const created = await client.create(createRequest(flags));
      console.error(`federation ${created.id}: ${flags.clients} clients (${malicious} malicious), partition ${flags.partition}`);
      const shards = partitionRows(data.labels as Int32Array, flags.clients, partition, flags.seed ?? 1);
      const runs = [];
      for (let index = 0; index < flags.clients; index++) {
        const keys = created.request.secureAggregation ? generateMaskingKeys() : undefined;
        const joined = await client.join(created.id, keys?.publicKey);
        runs.push(participate(client, { federation: created.id, client: joined.client, token: joined.token, data: subset(data, shards[index] as Uint32Array), keys, ...(index < malicious ? { attack } : {}) }));
      }
      const done = await watch(client, created.id, flags.interval, flags.timeout);
      await Promise.allSettled(runs);
      if (done.state !== 'completed') throw new CliError(`federation ${created.id} is ${done.state}${done.reason ? `: ${done.reason}` : ''}`);
    });
}
