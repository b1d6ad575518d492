import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { build as esbuild, type Plugin } from 'esbuild';

const run = promisify(execFile);

/**
 * ESM imports of Node's built-ins become require() calls. Node builds the ESM facade of a built-in
 * by reading every export, which runs its lazy getters: node:http's WebSocket and EventSource load
 * all of undici (about 50 ms of every cold start), node:crypto's webcrypto, node:fs's promises,
 * node:util's lazy members. require() returns the module object without touching them. Measured in
 * fresh processes, import against require: crypto 10.4 against 5.8 ms, fs 4.8 against 0.15 ms,
 * util 5.4 against 0.12 ms.
 */
const BUILTINS = new Set(builtinModules.filter((name) => !name.startsWith('_')));
export const builtinsThroughRequire: Plugin = {
  name: 'builtins-through-require',
  setup(build) {
    build.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, '');
      if (!BUILTINS.has(name) || (args.kind !== 'import-statement' && args.kind !== 'dynamic-import')) return undefined;
      return { path: name, namespace: 'builtin-through-require' };
    });
    build.onLoad({ filter: /.*/, namespace: 'builtin-through-require' }, (args) => ({
      contents: `module.exports = require('node:${args.path}');`,
      loader: 'js',
    }));
  },
};

/** What a handler file becomes: `<handler>.mjs`, a shim that loads `<handler>.app.cjs` (and `<handler>.boot.cjs`). */
const APP_SUFFIX = '.app';
const BOOT_SUFFIX = '.boot';
const SCRIPT_EXTENSION = '.cjs';
const GENERATED = '// Generated at packaging (infra/esbuild/plugins.ts): the handler, loaded as scripts with their V8 code caches.';
/** A handler's boot module: imported by the handler as `./boot.ts`, bundled on its own (see handlerShim). */
const BOOT_IMPORT = './boot.ts';
const here = import.meta.dirname;
/** Where a function's training run lives when it has one: `cache-training/<function folder>.ts`. */
const TRAINING_DIR = join(here, 'cache-training');

/** CommonJS has no import.meta: bundled code that asks for its own URL gets the script's file URL. */
const SCRIPT_BANNER = "var __aiMassImportMetaUrl = require('node:url').pathToFileURL(__filename).href;";

function shimEntry(appFile: string, bootFile: string | undefined, exportNames: readonly string[]): string {
  return [
    "import { loadHandler } from './script-loader.ts';",
    `const app = await loadHandler(import.meta.url, { app: ${JSON.stringify(`./${appFile}`)}${bootFile ? `, boot: ${JSON.stringify(`./${bootFile}`)}` : ''} });`,
    `export const { ${exportNames.join(', ')} } = app;`,
    '',
  ].join('\n');
}

/**
 * Ships each handler as a shim (`<handler>.mjs`, the file Lambda loads), its bundle as a CommonJS
 * script (`<handler>.app.cjs`), and the bundle's V8 code cache (`<handler>.app.cjs.v8-cache`); a
 * handler that imports `./boot.ts` also gets that module as a script of its own, with its cache.
 * The shim (infra/esbuild/script-loader.ts, bundled in) compiles each script with its cache, runs
 * the boot script first and awaits its `ready`, then the bundle, and awaits the bundle's `ready`
 * (a handler's asynchronous init: CommonJS has no top-level await, so handlers export it instead),
 * all within Lambda's init phase.
 *
 * Boot module: the handler's import of `./boot.ts` becomes a require of `./<handler>.boot.cjs`,
 * which the shim has already run and registered in require's cache, so the bundle gets that same
 * module (the inference handler's boot fetch puts its requests on the wire there: they are answered
 * while the bundle loads). Code boot.ts shares with the bundle is in both files: two copies of
 * stateless helpers, and the boot's values cross as plain data.
 *
 * Code cache: made after a training run of the packaged handler (`train-code-cache.ts`, in a fresh
 * process, dummy credentials, endpoints on a closed loopback port unless the function has its own
 * training in `cache-training/<function folder>.ts`), so it holds every function that run
 * compiled, not only the top-level code (script-loader.ts says why). The inference function's
 * training serves a real pre-warm and requests from the local emulators. A failed training run
 * leaves a handler that compiles at cold start, with a warning. The names start with the handler's,
 * so serverless-esbuild's per-function packaging keeps them in that function's zip only.
 */
export const handlerShim: Plugin = {
  name: 'handler-shim',
  setup(build) {
    build.initialOptions.metafile = true; // the bundle's export names, for the shim
    build.onEnd(async (result) => {
      const { outdir, entryPoints, outExtension } = build.initialOptions;
      if (result.errors.length > 0 || !outdir || !Array.isArray(entryPoints) || build.initialOptions.write === false) return;
      const extension = outExtension?.['.js'] ?? '.js';
      const cwd = build.initialOptions.absWorkingDir ?? process.cwd();
      const {
        entryPoints: _entries, outdir: _outdir, outExtension: _ext, metafile: _metafile, plugins: _plugins, splitting: _splitting, chunkNames: _chunks, banner: _banner, format: _format,
        ...options
      } = build.initialOptions;
      const script = { ...options, format: 'cjs' as const, banner: { js: SCRIPT_BANNER }, define: { ...options.define, 'import.meta.url': '__aiMassImportMetaUrl' }, logLevel: 'error' as const };
      for (const entry of entryPoints) {
        if (typeof entry !== 'string') continue;
        const source = resolve(cwd, entry);
        const stem = basename(entry, extname(entry));
        const handlerFile = resolve(cwd, outdir, `${stem}${extension}`);
        const output = Object.entries(result.metafile?.outputs ?? {}).find(([file]) => resolve(cwd, file) === handlerFile)?.[1];
        if (!output) continue;
        // esbuild leaves an unchanged output unwritten on a rebuild: the shim and its caches still hold.
        if ((await readFile(handlerFile, 'utf8')).startsWith(GENERATED)) continue;
        const dir = dirname(handlerFile);
        const appName = `${stem}${APP_SUFFIX}${SCRIPT_EXTENSION}`;
        const bootName = `${stem}${BOOT_SUFFIX}${SCRIPT_EXTENSION}`;
        let hasBoot = false;
        const bootAsScript: Plugin = {
          name: 'boot-as-script',
          setup(b) {
            b.onResolve({ filter: /^\.\/boot\.ts$/ }, (args) => {
              // Only the handler's own import; a missing boot.ts is left to esbuild, which reports it as any unresolved import.
              if (args.kind !== 'import-statement' || resolve(args.importer) !== source || !existsSync(join(args.resolveDir, BOOT_IMPORT))) return undefined;
              hasBoot = true;
              return { path: `./${bootName}`, external: true };
            });
          },
        };
        // Dynamic imports of built-ins (the SDK's HTTP handler has them) become require() here too.
        await esbuild({ ...script, entryPoints: [source], outfile: join(dir, appName), plugins: [bootAsScript, builtinsThroughRequire] });
        if (hasBoot) await esbuild({ ...script, entryPoints: [join(dirname(source), BOOT_IMPORT)], outfile: join(dir, bootName), plugins: [builtinsThroughRequire] });
        await rm(`${handlerFile}.map`, { force: true }); // the map of the ESM build this shim replaces
        await esbuild({
          stdin: { contents: shimEntry(appName, hasBoot ? bootName : undefined, output.exports.filter((name) => name !== 'default' && name !== 'ready')), resolveDir: here, sourcefile: 'handler-shim.ts', loader: 'ts' },
          bundle: true,
          format: 'esm',
          platform: 'node',
          target: options.target ?? 'node24',
          outfile: handlerFile,
          banner: { js: `${GENERATED}\nimport { createRequire as __aiMassCreateRequire } from 'node:module'; const require = __aiMassCreateRequire(import.meta.url);` },
          plugins: [builtinsThroughRequire],
          logLevel: 'error',
        });
        // The local stack skips the training: a cold start there is not measured, and each training run
        // is a fresh process (the inference one with emulators), most of a local start on a busy machine.
        // Without a cache the shim compiles the script as usual.
        if (process.env.AI_MASS_SKIP_CODE_CACHE_TRAINING === '1') continue;
        const training = join(TRAINING_DIR, `${basename(dirname(source))}.ts`);
        await trainCodeCache(handlerFile, existsSync(training) ? training : undefined);
      }
    });
  },
};

/** Runs the packaged handler once in a fresh process (its training, when it has one) and writes its scripts' code caches. */
async function trainCodeCache(handlerFile: string, training: string | undefined): Promise<void> {
  try {
    await run(process.execPath, [join(here, 'train-code-cache.ts'), handlerFile, ...(training ? [training] : [])], {
      cwd: dirname(handlerFile),
      timeout: 120_000,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        AWS_ACCESS_KEY_ID: 'code-cache',
        AWS_SECRET_ACCESS_KEY: 'code-cache',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
        DYNAMODB_ENDPOINT_URL: 'http://127.0.0.1:9',
        POWERTOOLS_LOG_LEVEL: 'SILENT',
        POWERTOOLS_METRICS_DISABLED: 'true',
        AWS_MAX_ATTEMPTS: '1',
        MODEL_BUCKET: 'code-cache-training',
        AI_MASS_CODE_CACHE_TRAINING: '1',
        // Where Lambda finds the layer's onnxruntime-node (/opt/nodejs/node_modules): here, the project's own.
        NODE_PATH: join(here, '..', '..', 'node_modules'),
        // Where a training that went through leaves its marker (train-code-cache.ts): the package tests set it.
        ...(process.env.AI_MASS_CODE_CACHE_TRAINED_DIR ? { AI_MASS_CODE_CACHE_TRAINED_DIR: process.env.AI_MASS_CODE_CACHE_TRAINED_DIR } : {}),
      },
    });
  } catch (error) {
    // The cache is an optimization: a handler without one works, it only compiles at cold start.
    console.warn(`code cache for ${handlerFile} not made: ${(error as Error).message.split('\n').slice(0, 3).join(' ')}`);
  }
}

export default [builtinsThroughRequire, handlerShim];
