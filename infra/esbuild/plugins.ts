import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
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

/** What a handler file becomes: a shim that turns Node's compile cache on, then loads the bundle. */
export const COMPILE_CACHE_SUFFIX = '.compile-cache';
export const APP_SUFFIX = '.app';
export const BOOT_SUFFIX = '.boot';
/** A handler's boot module: imported by the handler as `./boot.ts`, bundled on its own (see handlerShim). */
const BOOT_IMPORT = './boot.ts';

function shim(appFile: string, cacheDir: string, exportNames: readonly string[], bootFile: string | undefined): string {
  // A static `export * from` would load the bundle before the cache is on: import it dynamically and
  // re-export its names (a Lambda handler is a named export).
  return [
    '// Generated at packaging (infra/esbuild/plugins.ts): V8 code cache for the bundle, then the bundle.',
    "import { enableCompileCache } from 'node:module';",
    "import { fileURLToPath } from 'node:url';",
    `enableCompileCache({ directory: fileURLToPath(new URL(${JSON.stringify(`./${cacheDir}`)}, import.meta.url)), portable: true });`,
    ...(bootFile ? [`await import(${JSON.stringify(`./${bootFile}`)}); // the handler's boot module runs before the bundle is parsed`] : []),
    `export const { ${exportNames.join(', ')} } = await import(${JSON.stringify(`./${appFile}`)});`,
    '',
  ].join('\n');
}

/**
 * Ships each handler as a shim, its bundle and Node's compile cache (V8 code cache); a handler that
 * imports `./boot.ts` also gets that module bundled on its own, which the shim evaluates first.
 *
 * Boot module: the handler's import of `./boot.ts` becomes an external import of
 * `<handler>.boot.mjs`, a bundle of boot.ts alone. The shim imports it before the main bundle, so
 * it runs before the main bundle is read and parsed (the inference handler's boot fetch puts its
 * requests on the wire there: they are answered while the rest loads); the bundle's own import
 * then finds the same, already evaluated module. Code boot.ts shares with the bundle is in both
 * files: two copies of stateless helpers, and the boot's values cross as plain data.
 *
 * Compile cache: parsing and compiling the bundle was
 * the largest share of our cold start after onnxruntime itself; with the cache, V8 deserializes
 * code instead. The bundle moves to `<handler>.app.mjs`, `<handler>.mjs` becomes a shim that enables
 * the cache from `<handler>.compile-cache/` (portable: keyed by paths relative to the cache, so it
 * holds in /var/task) and imports the bundle. The cache is made by importing the handler once here
 * (its init, with dummy credentials and a closed loopback endpoint; an init that throws still leaves
 * the compiled code). Node checks each entry against its own version, V8 flags and the source's hash,
 * and compiles as before when any differs: a stale cache costs a lookup, never correctness. The names
 * start with the handler's, so serverless-esbuild's per-function packaging keeps them in that
 * function's zip only.
 */
export const handlerShim: Plugin = {
  name: 'handler-shim',
  setup(build) {
    build.initialOptions.metafile = true; // the bundle's export names, for the shim
    const { entryPoints, outExtension } = build.initialOptions;
    const entries = new Set(Array.isArray(entryPoints) ? entryPoints.filter((e): e is string => typeof e === 'string').map((e) => resolve(build.initialOptions.absWorkingDir ?? process.cwd(), e)) : []);
    build.onResolve({ filter: /^\.\/boot\.ts$/ }, (args) => {
      // A missing boot.ts is left to esbuild, which reports it as any unresolved import.
      if (args.kind !== 'import-statement' || !entries.has(args.importer) || !existsSync(join(args.resolveDir, BOOT_IMPORT))) return undefined;
      return { path: `./${basename(args.importer, extname(args.importer))}${BOOT_SUFFIX}${outExtension?.['.js'] ?? '.js'}`, external: true };
    });
    build.onEnd(async (result) => {
      const { outdir, entryPoints, outExtension } = build.initialOptions;
      if (result.errors.length > 0 || !outdir || !Array.isArray(entryPoints) || build.initialOptions.write === false) return;
      const extension = outExtension?.['.js'] ?? '.js';
      for (const entry of entryPoints) {
        if (typeof entry !== 'string') continue;
        const stem = basename(entry, extname(entry));
        const cwd = build.initialOptions.absWorkingDir ?? process.cwd();
        const handlerFile = resolve(cwd, outdir, `${stem}${extension}`);
        const output = Object.entries(result.metafile?.outputs ?? {}).find(([file]) => resolve(cwd, file) === handlerFile)?.[1];
        if (!output) continue;
        const appName = `${stem}${APP_SUFFIX}${extension}`;
        const cacheName = `${stem}${COMPILE_CACHE_SUFFIX}`;
        const dir = dirname(handlerFile);
        const code = await readFile(handlerFile, 'utf8');
        // esbuild leaves an unchanged output unwritten on a rebuild: the shim and its cache still hold.
        if (code.includes('Generated at packaging (infra/esbuild/plugins.ts)')) continue;
        await rm(join(dir, cacheName), { recursive: true, force: true });
        await writeFile(join(dir, appName), code.replace(`//# sourceMappingURL=${stem}${extension}.map`, `//# sourceMappingURL=${appName}.map`));
        await rename(`${handlerFile}.map`, join(dir, `${appName}.map`)).catch(() => undefined);
        const bootSource = join(dirname(resolve(cwd, entry)), BOOT_IMPORT);
        const bootName = output.imports.some((i) => i.external && i.path === `./${stem}${BOOT_SUFFIX}${extension}`) ? `${stem}${BOOT_SUFFIX}${extension}` : undefined;
        if (bootName) {
          const { entryPoints: _entries, outdir: _outdir, outExtension: _ext, metafile: _metafile, plugins: _plugins, ...options } = build.initialOptions;
          await esbuild({ ...options, entryPoints: [bootSource], outfile: join(dir, bootName), plugins: [builtinsThroughRequire], logLevel: 'error' });
        }
        await writeFile(handlerFile, shim(appName, cacheName, output.exports.filter((name) => name !== 'default'), bootName));
        await trainCompileCache(handlerFile);
      }
    });
  },
};

async function trainCompileCache(handlerFile: string): Promise<void> {
  const script = [
    "import { flushCompileCache } from 'node:module';",
    `try { await import(${JSON.stringify(new URL(`file://${handlerFile}`).href)}); } catch {}`,
    'flushCompileCache();',
    'process.exit(0);',
  ].join('\n');
  try {
    await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: dirname(handlerFile),
      timeout: 60_000,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        AWS_ACCESS_KEY_ID: 'compile-cache',
        AWS_SECRET_ACCESS_KEY: 'compile-cache',
        AWS_REGION: 'us-east-1',
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
        DYNAMODB_ENDPOINT_URL: 'http://127.0.0.1:9',
        POWERTOOLS_LOG_LEVEL: 'SILENT',
        POWERTOOLS_METRICS_DISABLED: 'true',
        AWS_MAX_ATTEMPTS: '1',
        MODEL_BUCKET: 'compile-cache-training',
        // The inference handler's init then runs its preload: a registry query and S3 GETs that
        // fail at connect, after the SDK's endpoint, signing and middleware code has been compiled
        // into the cache (the first request's share of a cold start).
        REGISTRY_TABLE: 'compile-cache-training',
        PRELOAD_MODELS: 'compile-cache-training:1',
      },
    });
  } catch (error) {
    // The cache is an optimization: a handler without one works, it only compiles at cold start.
    console.warn(`compile cache for ${handlerFile} not made: ${(error as Error).message.split('\n')[0]}`);
  }
}

export default [builtinsThroughRequire, handlerShim];
