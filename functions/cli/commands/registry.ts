import type { Command } from 'commander';
import { cliContext, CliError, type CliOptions } from '../context.ts';

interface AliasRecord {
  alias: string;
  routes: { version: string; weight: number }[];
  revision: number;
}

const routesText = (routes: { version: string; weight: number }[]) => routes.map((r) => `${r.version}=${r.weight}%`).join(' ');

/** Versions and rollouts: `mass versions`, `mass promote`, `mass traffic`, `mass rollback`. */
export function registerRegistryCommands(program: Command): void {
  const ctx = () => cliContext(program.opts<CliOptions>());
  const call = async (method: string, path: string, body?: unknown) => {
    const { bytes } = await ctx().request(method, path, body === undefined ? undefined : JSON.stringify(body));
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
  };
  const aliasPath = (name: string, alias: string) => `/v2/models/${encodeURIComponent(name)}/aliases/${encodeURIComponent(alias)}`;

  program
    .command('versions')
    .description('list the versions of a model with status, notes and lineage, and its aliases')
    .argument('<name>', 'model name')
    .action(async (name: string) => {
      const listing = (await call('GET', `/v2/models/${encodeURIComponent(name)}/versions`)) as {
        versions: { version: string; status: string; created: string; notes: string; lineage: { sourceVersion: string; method: string } | null; aliases: string[] }[];
        aliases: AliasRecord[];
      };
      for (const v of listing.versions) {
        const from = v.lineage ? `  from ${v.lineage.sourceVersion} by ${v.lineage.method}` : '';
        const aliases = v.aliases.length ? `  [${v.aliases.join(', ')}]` : '';
        console.log(`${v.version}\t${v.status}\t${v.created}${aliases}${from}${v.notes ? `\t${v.notes}` : ''}`);
      }
      for (const a of listing.aliases) console.log(`alias ${a.alias} (revision ${a.revision}): ${routesText(a.routes)}`);
    });

  program
    .command('promote')
    .description('point an alias at a version, fully or as a canary; refused when its latest evaluation failed, unless --force')
    .argument('<name>', 'model name')
    .argument('<version>', 'version to promote')
    .option('--alias <alias>', 'alias to change', 'prod')
    .option('--canary <percent>', 'send this share of the alias\'s traffic to the version')
    .option('--force', 'promote even though the latest evaluation failed')
    .action(async (name: string, version: string, opts: { alias: string; canary?: string; force?: boolean }) => {
      const weight = opts.canary === undefined ? undefined : Number(opts.canary);
      if (weight !== undefined && (!Number.isInteger(weight) || weight < 1 || weight > 100)) throw new CliError('--canary must be an integer from 1 to 100', 2);
      const record = (await call('POST', `${aliasPath(name, opts.alias)}/promote`, { version, ...(weight ? { canary_weight: weight } : {}), ...(opts.force ? { force: true } : {}) })) as AliasRecord;
      console.log(`${name} ${record.alias} (revision ${record.revision}): ${routesText(record.routes)}`);
    });

  program
    .command('traffic')
    .description('set an alias\'s routes exactly, e.g. `mass traffic mnist 3=90 4=10`')
    .argument('<name>', 'model name')
    .argument('<routes...>', 'version=percent pairs adding up to 100')
    .option('--alias <alias>', 'alias to change', 'prod')
    .action(async (name: string, pairs: string[], opts: { alias: string }) => {
      const routes = pairs.map((pair) => {
        const match = /^([^=]+)=(\d+)$/.exec(pair);
        if (!match) throw new CliError(`expected version=percent, got ${JSON.stringify(pair)}`, 2);
        return { version: match[1]!, weight: Number(match[2]) };
      });
      const current = (await call('GET', aliasPath(name, opts.alias)).catch(() => undefined)) as AliasRecord | undefined;
      const record = (await call('PUT', aliasPath(name, opts.alias), { routes, revision: current?.revision ?? 0 })) as AliasRecord;
      console.log(`${name} ${record.alias} (revision ${record.revision}): ${routesText(record.routes)}`);
    });

  program
    .command('rollback')
    .description('restore an alias\'s routes from before its last change')
    .argument('<name>', 'model name')
    .option('--alias <alias>', 'alias to roll back', 'prod')
    .action(async (name: string, opts: { alias: string }) => {
      const record = (await call('POST', `${aliasPath(name, opts.alias)}/rollback`, {})) as AliasRecord;
      console.log(`${name} ${record.alias} (revision ${record.revision}): ${routesText(record.routes)}`);
    });
}
