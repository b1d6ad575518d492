import { hash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, Script } from 'node:vm';

/**
 * What a packaged handler's shim runs (infra/esbuild/plugins.ts bundles it into `<handler>.mjs`):
 * the handler's boot module and bundle are CommonJS scripts compiled through `vm.Script` with a V8
 * code cache made after the code ran, not before.
 *
 * Why not Node's compile cache: it serializes a module right after compiling it, so it holds the
 * top-level code only, and every function is still parsed and compiled on its first call (a
 * function called at import and one never called give caches of the same size). A cache made
 * with `script.createCachedData()` after a training run holds every function that run compiled;
 * for the inference function that is the whole cold path, request included.
 *
 * V8 checks a cache against its own version, its flags and the source's length (not its content),
 * so the cache file starts with the sha256 of the source it was made from, and a cache for other
 * source is not used. Either way the script compiles as usual: a stale cache costs a file read,
 * never correctness. Set AI_MASS_CODE_CACHE_DEBUG=1 to have each script say what became of its cache
 * (absent, stale, rejected by V8, accepted). node:crypto is loaded here (~9 ms) where any AWS call
 * would load it anyway.
 */

/** A handler module's asynchronous init, which the shim awaits during Lambda's init phase. */
export interface HandlerScript {
  ready?: Promise<unknown>;
  [name: string]: unknown;
}

/** The training step calls this (when AI_MASS_CODE_CACHE_TRAINING is set) to write each script's cache. */
export const SAVE_CODE_CACHE = Symbol.for('ai-mass.save-code-cache');

/** The name of a script's cache, beside it. */
function codeCacheFile(scriptFile: string): string {
  return `${scriptFile}.v8-cache`;
}

interface CompiledScript {
  /** Runs the script as a CommonJS module; its exports. */
  run(): HandlerScript;
  saveCache(): void;
}

/**
 * Compiles one CommonJS script, with its code cache when there is one. Run, the module goes into
 * require's cache under its path, so a later script's `require()` of it gets these exports.
 */
function compileScript(file: string): CompiledScript {
  const source = readFileSync(file, 'utf8');
  const sourceHash = hash('sha256', source, 'buffer');
  let cache: Buffer | undefined;
  try {
    cache = readFileSync(codeCacheFile(file));
  } catch {
    cache = undefined; // no cache: compile as usual
  }
  const fresh = cache !== undefined && cache.length > sourceHash.length && sourceHash.equals(cache.subarray(0, sourceHash.length));
  const cachedData = fresh ? cache!.subarray(sourceHash.length) : undefined;
  // The wrapper's line is line 0, so the script's own lines keep their numbers (its source map holds).
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {\n${source}\n})`, {
    filename: file,
    lineOffset: -1,
    // A dynamic import() in the script goes through Node's own loader, as it would in a module.
    importModuleDynamically: constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    ...(cachedData ? { cachedData } : {}),
  });
  if (process.env.AI_MASS_CODE_CACHE_DEBUG) {
    const state = !cache ? 'absent' : !cachedData ? 'stale' : script.cachedDataRejected ? 'rejected' : 'accepted';
    process.stderr.write(`code cache for ${file}: ${state}\n`);
  }
  return {
    run() {
      const module = new Module(file);
      module.filename = file;
      const require = createRequire(file);
      require.cache[file] = module;
      (script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, require, module, file, dirname(file));
      module.loaded = true;
      return module.exports as HandlerScript;
    },
    saveCache: () => writeFileSync(codeCacheFile(file), Buffer.concat([sourceHash, script.createCachedData()])),
  };
}

/**
 * Loads a packaged handler: its boot script first (when it has one) and whatever it awaits, then
 * the bundle and its init. The exports are the bundle's.
 */
export async function loadHandler(shimUrl: string, files: { app: string; boot?: string | undefined }): Promise<HandlerScript> {
  const dir = dirname(fileURLToPath(shimUrl));
  const compiled: CompiledScript[] = [];
  if (process.env.AI_MASS_CODE_CACHE_TRAINING) {
    // Registered first: an init that fails (or a script that throws) still leaves what it compiled to cache.
    (globalThis as Record<symbol, unknown>)[SAVE_CODE_CACHE] = () => compiled.forEach((script) => script.saveCache());
  }
  const load = async (file: string) => {
    const script = compileScript(join(dir, file));
    compiled.push(script);
    const exports = script.run();
    await exports.ready;
    return exports;
  };
  if (files.boot) await load(files.boot);
  return load(files.app);
}
