import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { build, type BuildOptions, type Plugin } from 'esbuild';
import { BENCH_AWS_ENV, root } from './common.ts';

const run = promisify(execFile);

interface PrintedService {
  custom: { esbuild: Omit<BuildOptions, 'plugins'> & { plugins?: string; exclude?: string[]; outputFileExtension?: string; outputWorkFolder?: string } };
  provider: { environment?: Record<string, unknown> };
  functions: Record<string, { handler: string; environment?: Record<string, unknown> }>;
}

/**
 * Variables of a function's environment that tune the process itself (Node's flags, glibc's malloc)
 * rather than say what to serve: a benchmark's fresh process gets them as the deployed function
 * does, and sets the rest (bucket, tables, endpoints) itself.
 */
const PROCESS_TUNING = ['NODE_OPTIONS', 'GLIBC_TUNABLES'] as const;

/** serverless.yml as `serverless print` resolves it (offline): one source for the bundle options. */
export async function printService(): Promise<PrintedService> {
  const { stdout } = await run(process.execPath, [join(root, 'node_modules', 'serverless', 'bin', 'serverless.js'), 'print', '--format', 'json', '--stage', 'bench'], {
    cwd: root,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...BENCH_AWS_ENV, AWS_ENDPOINT_URL: 'http://127.0.0.1:9' },
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout) as PrintedService;
}

/**
 * Bundles one handler with the options serverless-esbuild uses for deployment, into a folder with no
 * node_modules above it, as the function's zip is unpacked on Lambda (`extra.external`: packages left out,
 * for a side-by-side measurement); with the process-tuning part
 * of the environment serverless.yml gives the function of that handler.
 */
export async function buildDeployedBundle(entry: string, extra: { external?: string[] } = {}): Promise<{ file: string; processEnv: Record<string, string> }> {
  const service = await printService();
  const { exclude = [], outputFileExtension = '.mjs', outputWorkFolder: _work, plugins: pluginsFile, ...options } = service.custom.esbuild;
  const plugins = typeof pluginsFile === 'string' ? ((await import(join(root, pluginsFile))) as { default: Plugin[] }).default : [];
  const outdir = await mkdtemp(join(tmpdir(), 'ai-mass-bundle-'));
  await build({
    ...options,
    entryPoints: [join(root, entry)],
    outdir,
    outExtension: { '.js': outputFileExtension },
    external: [...exclude, ...(extra.external ?? [])],
    plugins,
    logLevel: 'error',
  });
  const name = entry.split('/').pop()!.replace(/\.ts$/, outputFileExtension);
  const handlerPath = entry.replace(/\.ts$/, '');
  const fn = Object.values(service.functions).find((f) => f.handler.startsWith(`${handlerPath}.`));
  if (!fn) throw new Error(`no function in serverless.yml has its handler in ${entry}`);
  const environment = { ...service.provider.environment, ...fn.environment };
  const processEnv = Object.fromEntries(PROCESS_TUNING.filter((k) => environment[k] !== undefined).map((k) => [k, String(environment[k])]));
  return { file: join(outdir, name), processEnv };
}
